"""The embedded ClickHouse endpoint, driven as a real server: a subprocess on a free port, spoken to
over HTTP by urllib/http.client (curl-like) and by clickhouse-connect."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
import zstandard
from clickhouse_connect.driver.exceptions import DatabaseError
from endpoint_support import ANALYST, ANALYST_PASSWORD, Endpoint, paused_body

ROWS = [[1, "it's \"quoted\"", ["a", "b"], 1.5], [2, "tab\there\nnewline", [], None]]
COLUMNS = ["id", "s", "tags", "n"]


def test_ping_and_root_answer_ok(endpoint: Endpoint) -> None:
    assert endpoint.get("/ping") == (200, b"Ok.\n")
    assert endpoint.get("/") == (200, b"Ok.\n")
    assert endpoint.get("/nowhere")[0] == 404


def test_version_and_response_headers_over_plain_get(endpoint: Endpoint) -> None:
    status, body, headers = endpoint.request(query="SELECT version()", query_id="q-version")
    assert status == 200
    assert body.decode().startswith("26.")
    assert headers["X-ClickHouse-Query-Id"] == "q-version"
    assert headers["X-ClickHouse-Format"] == "TabSeparated"
    assert headers["X-ClickHouse-Timezone"]
    assert json.loads(headers["X-ClickHouse-Summary"])["result_rows"] == "1"


def test_compressed_response_when_asked(endpoint: Endpoint) -> None:
    status, body, headers = endpoint.request(
        headers={"Accept-Encoding": "gzip"}, query="SELECT 42", enable_http_compression="1")
    assert (status, headers["Content-Encoding"]) == (200, "gzip")
    assert gzip.decompress(body) == b"42\n"


def test_clickhouse_connect_command_and_query(endpoint: Endpoint) -> None:
    client = endpoint.client()
    assert client.server_version.startswith("26.")
    assert client.command("SELECT 1 + 1") == 2
    result = client.query("SELECT number, toString(number) AS s FROM numbers(3)")
    assert result.result_rows == [(0, "0"), (1, "1"), (2, "2")]


def test_native_insert_round_trip(endpoint: Endpoint, table: str) -> None:
    client = endpoint.client()
    client.insert(table, ROWS, column_names=COLUMNS)
    got = client.query(f"SELECT id, s, tags, n FROM {table} ORDER BY id").result_rows
    assert [list(r) for r in got] == ROWS


@pytest.mark.parametrize("method", ["lz4", "zstd", "gzip"])
def test_compressed_native_insert(endpoint: Endpoint, table: str, method: str) -> None:
    client = endpoint.client(compress=method)
    client.insert(table, [[i, f"row {i}", [], None] for i in range(5000)], column_names=COLUMNS)
    assert client.command(f"SELECT count() FROM {table}") == 5000


def test_json_each_row_insert_in_the_body(endpoint: Endpoint, table: str) -> None:
    body = b'INSERT INTO %s FORMAT JSONEachRow\n{"id": 7, "s": "x", "tags": ["t"], "n": 2}\n' % (
        table.encode())
    assert endpoint.request(body=body)[0] == 200
    assert endpoint.get(query=f"SELECT id, s, tags, n FROM {table} FORMAT JSONEachRow") == (
        200, b'{"id":7,"s":"x","tags":["t"],"n":2}\n')


def _chunked_post(endpoint: Endpoint, query: str, chunks: Iterator[bytes],
                  headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=30)
    try:
        conn.request("POST", "/?" + urlencode({"query": query}), body=chunks,
                     headers=headers or {}, encode_chunked=True)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_text_and_row_binary_inserts(endpoint: Endpoint, table: str) -> None:
    insert = f"INSERT INTO {table} (id, s)"
    assert endpoint.request(body=b'1,"a,b"\n', query=f"{insert} FORMAT CSV")[0] == 200
    assert endpoint.request(body=f"{insert} FORMAT TabSeparated\n2\tc\\td\n".encode())[0] == 200
    row_binary = struct.pack("<QB", 3, 1) + b"e"
    assert endpoint.request(body=row_binary, query=f"{insert} FORMAT RowBinary")[0] == 200
    header = b"\x02\x02id\x01s\x06UInt64\x06String"
    status, _ = _chunked_post(  # chunked and zstd-compressed, as a streaming client sends it
        endpoint, f"{insert} FORMAT RowBinaryWithNamesAndTypes",
        iter([zstandard.compress(header + struct.pack("<QB", 4, 1)), zstandard.compress(b"f")]),
        {"Content-Encoding": "zstd"})
    assert status == 200
    rows = endpoint.client().query(f"SELECT id, s FROM {table} ORDER BY id").result_rows
    assert rows == [(1, "a,b"), (2, "c\td"), (3, "e"), (4, "f")]


def test_query_parameters_are_bound_not_spliced(endpoint: Endpoint, table: str) -> None:
    tricky = "it's \"q\" \\ '); DROP TABLE " + table + " --"
    client = endpoint.client()
    assert client.query("SELECT {s:String}", parameters={"s": tricky}).result_rows == [(tricky,)]
    status, body = endpoint.get(query="SELECT {s:String}, {n:UInt8}", param_s="a'b", param_n="5")
    assert (status, body) == (200, b"a\\'b\t5\n")  # TabSeparated escapes the quote on output
    assert client.command(f"EXISTS TABLE {table}") == 1


def test_unknown_table_is_a_database_error_with_its_code(endpoint: Endpoint) -> None:
    with pytest.raises(DatabaseError, match=r"Code: 60\.") as info:
        endpoint.client().query("SELECT * FROM no_such_table")
    assert "UNKNOWN_TABLE" in str(info.value)
    status, body, headers = endpoint.request(query="SELECT * FROM no_such_table")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (404, "60")
    assert body.startswith(b"Code: 60. DB::Exception: ") and b"(version 26." in body


def test_analyst_reads_but_cannot_write(endpoint: Endpoint, table: str) -> None:
    endpoint.client().insert(table, ROWS, column_names=COLUMNS)
    analyst = endpoint.client(username=ANALYST, password=ANALYST_PASSWORD)
    assert analyst.command(f"SELECT count() FROM {table}") == 2
    for statement in (f"CREATE TABLE {table}_x (a Int8) ENGINE = Memory", f"DROP TABLE {table}",
                      f"TRUNCATE TABLE {table}", f"ALTER TABLE {table} DELETE WHERE 1",
                      f"INSERT INTO {table} (id) VALUES (9)", "SET readonly = 0"):
        with pytest.raises(DatabaseError, match=r"Code: 164\."):
            analyst.command(statement)
    with pytest.raises(DatabaseError, match=r"Code: 164\."):
        analyst.insert(table, ROWS, column_names=COLUMNS)
    auth = base64.b64encode(f"{ANALYST}:{ANALYST_PASSWORD}".encode()).decode()
    status, body, _ = endpoint.request(  # a URL setting cannot lift readonly either
        body=f"INSERT INTO {table} (id) VALUES (9)".encode(),
        headers={"Authorization": f"Basic {auth}"}, readonly="0")
    assert status == 500 and body.startswith(b"Code: 164.")
    assert analyst.command(f"SELECT count() FROM {table}") == 2


def test_wrong_password_is_authentication_failed(endpoint: Endpoint) -> None:
    with pytest.raises(DatabaseError, match=r"Code: 516\."):
        endpoint.client(username=ANALYST, password="wrong")
    status, body, headers = endpoint.request(
        headers={"X-ClickHouse-User": "nobody", "X-ClickHouse-Key": "x"}, query="SELECT 1")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (403, "516")
    assert b"(AUTHENTICATION_FAILED)" in body


def test_get_implies_readonly(endpoint: Endpoint) -> None:
    status, body = endpoint.get(query="CREATE TABLE via_get (a Int8) ENGINE = Memory")
    assert status == 500 and body.startswith(b"Code: 164.")


def test_session_keeps_temporary_tables(endpoint: Endpoint) -> None:
    session = uuid.uuid4().hex
    assert endpoint.request(body=b"CREATE TEMPORARY TABLE tmp AS SELECT 5 AS v",
                            session_id=session)[0] == 200
    assert endpoint.get(query="SELECT v FROM tmp", session_id=session) == (200, b"5\n")
    assert endpoint.get(query="SELECT v FROM tmp")[0] == 404


def test_data_survives_a_restart(endpoint: Endpoint, table: str) -> None:
    endpoint.client().insert(table, ROWS, column_names=COLUMNS)
    endpoint.stop()
    endpoint.start()
    assert endpoint.client().command(f"SELECT count() FROM {table}") == 2


def test_long_insert_does_not_stall_reads(endpoint: Endpoint, table: str) -> None:
    """A slow streaming INSERT stays open until a concurrent SELECT has finished.

    If the endpoint serialized queries, the SELECT would wait for the INSERT, which waits for the
    SELECT (up to its timeout): completion order would be insert first.
    """
    finished: list[str] = []
    insert_running, select_done = threading.Event(), threading.Event()

    def insert() -> None:
        status, body = _chunked_post(endpoint, f"INSERT INTO {table} (id, s) FORMAT TSV",
                                     paused_body(b"".join(b"%d\tx\n" % i for i in range(1000)),
                                                 b"".join(b"%d\ty\n" % i for i in range(1000, 2000)),
                                                 insert_running, select_done, timeout=10))
        assert status == 200, body
        finished.append("insert")

    writer = threading.Thread(target=insert)
    writer.start()
    assert insert_running.wait(timeout=10)
    reader = endpoint.client()
    running = "SELECT count() FROM system.processes WHERE query_kind = 'Insert'"
    while reader.command(running) == 0 and writer.is_alive():  # the engine is inside the INSERT
        time.sleep(0.01)
    reader.query(f"SELECT count() FROM {table}")
    finished.append("select")
    select_done.set()
    writer.join(timeout=30)
    assert finished == ["select", "insert"]
    assert reader.command(f"SELECT count() FROM {table}") == 2000
