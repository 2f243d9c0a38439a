"""INSERTs over HTTP: an answer of 200 means the rows are stored; anything else is ClickHouse's error.

Each case inserts over HTTP into the private endpoint and then reads back. The silent cases are the
ones found in chDB 26.9's streaming-insert calls (`send_insert`/`insert_append`/`insert_done`):
errors raised while the table writes its parts (too many partitions, a constraint) were dropped
and the insert reported success (docs/embedded-clickhouse.md, "Inserts"). The others raised
already; they stay covered so a change of insert path cannot lose them.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import socket
import time
import uuid
from collections.abc import Iterable
from urllib.parse import urlencode

import pytest
from endpoint_support import ANALYST, ANALYST_PASSWORD, Endpoint


def _table(endpoint: Endpoint, columns: str, tail: str = "ORDER BY tuple()") -> str:
    name = f"ins_{uuid.uuid4().hex[:8]}"
    endpoint.client().command(f"CREATE TABLE {name} ({columns}) ENGINE = MergeTree {tail}")
    return name


def _rows(values: Iterable[object]) -> bytes:
    return b"".join(json.dumps(v).encode() + b"\n" for v in values)


def _post(endpoint: Endpoint, query: str, chunks: Iterable[bytes], **params: str
          ) -> tuple[int, bytes, str | None]:
    """POST `chunks` as a chunked body: (status, body, X-ClickHouse-Exception-Code)."""
    conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=60)
    try:
        conn.request("POST", "/?" + urlencode({"query": query, **params}), body=iter(chunks),
                     encode_chunked=True)
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.getheader("X-ClickHouse-Exception-Code")
    finally:
        conn.close()


def _count(endpoint: Endpoint, table: str) -> int:
    return int(endpoint.client().command(f"SELECT count() FROM {table}"))


def _spread(n: int) -> list[list[object]]:
    """One row on each of `n` consecutive days from 2016-01-01: one partition each."""
    start = dt.date(2016, 1, 1)
    return [[(start + dt.timedelta(days=i)).isoformat(), i] for i in range(n)]


def test_too_many_partitions_is_an_error_and_nothing_is_acknowledged(endpoint: Endpoint) -> None:
    table = _table(endpoint, "d Date, x UInt32", "PARTITION BY d ORDER BY x")
    status, body, code = _post(endpoint, f"INSERT INTO {table} FORMAT JSONCompactEachRow",
                               [_rows(_spread(730))])
    assert (status, code) == (500, "252"), body
    assert b"Too many partitions for single INSERT block" in body
    assert _count(endpoint, table) == 0


def test_raised_partition_limit_stores_every_row(endpoint: Endpoint) -> None:
    table = _table(endpoint, "d Date, x UInt32", "PARTITION BY d ORDER BY x")
    status, body, _ = _post(endpoint, f"INSERT INTO {table} FORMAT JSONCompactEachRow",
                            [_rows(_spread(730))], max_partitions_per_insert_block="1000")
    assert status == 200, body
    assert _count(endpoint, table) == 730


def test_constraint_violation_is_an_error(endpoint: Endpoint) -> None:
    table = _table(endpoint, "x UInt32, CONSTRAINT small CHECK x < 5")
    status, body, code = _post(endpoint, f"INSERT INTO {table} FORMAT JSONCompactEachRow",
                               [_rows([i] for i in range(10))])
    assert (status, code) == (500, "469"), body
    assert b"Constraint `small`" in body
    assert _count(endpoint, table) == 0


def test_bad_row_in_the_middle_of_a_streamed_body_is_an_error(endpoint: Endpoint) -> None:
    table = _table(endpoint, "x UInt32")
    good = _rows([i] for i in range(50_000))
    status, body, code = _post(endpoint, f"INSERT INTO {table} FORMAT JSONCompactEachRow",
                               [good, b'["not a number"]\n', good])
    assert (status, code) == (400, "27"), body
    assert _count(endpoint, table) == 0


def test_memory_limit_is_an_error(endpoint: Endpoint) -> None:
    table = _table(endpoint, "x UInt32, s String")
    rows = _rows([i, "x" * 200] for i in range(100_000))
    status, body, code = _post(endpoint, f"INSERT INTO {table} FORMAT JSONCompactEachRow",
                               [rows], max_memory_usage="1000000")
    assert (status, code) == (500, "241"), body
    assert _count(endpoint, table) == 0


def test_negative_into_unsigned_is_an_error(endpoint: Endpoint) -> None:
    table = _table(endpoint, "x UInt32")
    status, body, code = _post(endpoint, f"INSERT INTO {table} FORMAT JSONCompactEachRow",
                               [_rows([-i] for i in range(1, 4))])
    assert status != 200 and code == "72", body
    assert _count(endpoint, table) == 0


def test_unknown_table_fails_even_with_a_body_larger_than_a_pipe(endpoint: Endpoint) -> None:
    """The engine refuses before it reads any data: the endpoint must not wait for it to read."""
    status, body, code = _post(endpoint, "INSERT INTO no_such_table FORMAT JSONCompactEachRow",
                               [_rows([i, "y" * 100] for i in range(20_000))])
    assert (status, code) == (404, "60"), body


def test_settings_clause_in_the_statement_is_kept(endpoint: Endpoint) -> None:
    table = _table(endpoint, "d Date, x UInt32", "PARTITION BY d ORDER BY x")
    query = (f"INSERT INTO {table} (d, x) SETTINGS max_partitions_per_insert_block = 1000 "
             "FORMAT JSONCompactEachRow")
    status, body, _ = _post(endpoint, query, [_rows(_spread(300))])
    assert status == 200, body
    assert _count(endpoint, table) == 300


def test_analyst_insert_is_refused_and_writes_nothing(endpoint: Endpoint) -> None:
    table = _table(endpoint, "x UInt32")
    status, body, _ = endpoint.request(
        body=_rows([[1]]), query=f"INSERT INTO {table} FORMAT JSONCompactEachRow",
        user=ANALYST, password=ANALYST_PASSWORD)
    assert status == 500 and b"READONLY" in body
    assert _count(endpoint, table) == 0


@pytest.mark.parametrize("rows", [1, 10_000, 300_000])
def test_acknowledged_rows_are_all_readable(endpoint: Endpoint, rows: int) -> None:
    table = _table(endpoint, "x UInt64, s String", "ORDER BY x")
    chunks = [_rows([i, "z" * 20] for i in range(start, min(rows, start + 50_000)))
              for start in range(0, rows, 50_000)]
    status, body, _ = _post(endpoint, f"INSERT INTO {table} FORMAT JSONCompactEachRow", chunks)
    assert status == 200, body
    assert _count(endpoint, table) == rows


def test_body_cut_short_stores_nothing(endpoint: Endpoint) -> None:
    """A client that goes away mid-body (here: before the last chunk) has its INSERT cancelled;
    rows already streamed into the engine are not stored as if the body had been whole."""
    table = _table(endpoint, "x UInt32")
    rows = _rows([i] for i in range(20_000))
    query = urlencode({"query": f"INSERT INTO {table} FORMAT JSONCompactEachRow"})
    with socket.create_connection(("127.0.0.1", endpoint.port), timeout=10) as sock:
        sock.sendall(f"POST /?{query} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     .encode() + b"%x\r\n" % len(rows) + rows + b"\r\n")
        time.sleep(0.5)  # the engine is reading the rows
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "Insert" in _running_kinds(endpoint):
        time.sleep(0.05)
    assert _count(endpoint, table) == 0


def _running_kinds(endpoint: Endpoint) -> str:
    return str(endpoint.client().command("SELECT groupArray(query_kind) FROM system.processes"))
