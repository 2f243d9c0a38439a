"""SIGTERM under load: the endpoint stops gracefully and loses nothing it acknowledged.

What a graceful stop means here: the process exits 0; an INSERT in flight when the signal arrives
either finishes and is answered 200, or is answered with ClickHouse's error; every row answered 200
is there after a restart; no INSERT is stored in part. (The endpoint once died with SIGSEGV in
chDB's shutdown when SIGTERM came during concurrent inserts, and the streaming tests stopped it
with SIGKILL to avoid that.) Each test owns its endpoint, because each one stops it.
"""

from __future__ import annotations

import http.client
import signal
import socket
import threading
from pathlib import Path
from urllib.parse import urlencode

from clickhouse_connect.driver.exceptions import ClickHouseError
from endpoint_support import Endpoint, paused_body

WRITERS = 4
BATCH_ROWS = 5_000
ACKED_BEFORE_SIGTERM = 3 * WRITERS  # inserts answered before the signal: the load is running
TABLE = "loaded"


def _endpoint(tmp_path: Path, *args: str) -> Endpoint:
    endpoint = Endpoint(tmp_path / "data", tmp_path / "endpoint.log", *args)
    endpoint.start()
    endpoint.client().command(f"CREATE TABLE {TABLE} (writer UInt8, batch UInt32, id UInt64, "
                              "s String) ENGINE = MergeTree ORDER BY (writer, batch, id)")
    return endpoint


def _terminated(endpoint: Endpoint) -> int:
    """SIGTERM, then the exit code (a crash in the engine's shutdown shows as -SIGSEGV)."""
    assert endpoint.proc is not None
    endpoint.proc.send_signal(signal.SIGTERM)
    return endpoint.proc.wait(timeout=60)


def _stored_batches(endpoint: Endpoint) -> dict[tuple[int, int], int]:
    rows = endpoint.client().query(
        f"SELECT writer, batch, count() FROM {TABLE} GROUP BY writer, batch").result_rows
    return {(int(w), int(b)): int(n) for w, b, n in rows}


def test_sigterm_during_concurrent_inserts_exits_0_and_keeps_every_acknowledged_row(
        tmp_path: Path) -> None:
    endpoint = _endpoint(tmp_path)
    acked: set[tuple[int, int]] = set()
    failures: list[BaseException] = []
    lock, enough = threading.Lock(), threading.Event()

    def write(writer: int) -> None:
        client = endpoint.client(send_receive_timeout=60)
        batch = 0
        while True:
            rows = [[writer, batch, i, f"w{writer}b{batch}r{i}" * 4] for i in range(BATCH_ROWS)]
            try:
                client.insert(TABLE, rows, column_names=["writer", "batch", "id", "s"])
            except (ClickHouseError, OSError) as exc:  # the stop: an error answer or no server
                failures.append(exc)
                return
            with lock:
                acked.add((writer, batch))
                if len(acked) >= ACKED_BEFORE_SIGTERM:
                    enough.set()
            batch += 1

    writers = [threading.Thread(target=write, args=(w,), daemon=True) for w in range(WRITERS)]
    for thread in writers:
        thread.start()
    assert enough.wait(timeout=120), endpoint.log_path.read_text()[-3000:]
    code = _terminated(endpoint)
    for thread in writers:
        thread.join(timeout=60)
    assert code == 0, endpoint.log_path.read_text()[-3000:]
    assert len(failures) == WRITERS  # every writer saw the stop as an error, none hung

    endpoint.start()
    try:
        stored = _stored_batches(endpoint)
    finally:
        endpoint.stop()
    assert {b: stored.get(b) for b in acked} == dict.fromkeys(acked, BATCH_ROWS)
    assert {b: n for b, n in stored.items() if n != BATCH_ROWS} == {}  # nothing stored in part


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_an_insert_in_flight_at_sigterm_finishes_and_is_answered(tmp_path: Path) -> None:
    """The body is still arriving when the signal comes: the endpoint stops accepting
    connections, reads the rest of the body, stores it, answers 200, then exits 0."""
    endpoint = _endpoint(tmp_path)
    first_half_sent, stopping = threading.Event(), threading.Event()

    body = paused_body(b"".join(b"0\t0\t%d\tx\n" % i for i in range(1000)),
                       b"".join(b"0\t0\t%d\ty\n" % i for i in range(1000, 2000)),
                       first_half_sent, stopping)
    conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=60)
    answer: list[tuple[int, bytes]] = []

    def insert() -> None:
        conn.request("POST", "/?" + urlencode({"query": f"INSERT INTO {TABLE} FORMAT TSV"}),
                     body=body, encode_chunked=True)
        resp = conn.getresponse()
        answer.append((resp.status, resp.read()))

    sender = threading.Thread(target=insert, daemon=True)
    sender.start()
    assert first_half_sent.wait(timeout=30)
    watcher = endpoint.client()
    running = "SELECT count() FROM system.processes WHERE query_kind = 'Insert'"
    while watcher.command(running) == 0:  # the engine is reading the body: the insert is in flight
        assert sender.is_alive()
    assert endpoint.proc is not None
    endpoint.proc.send_signal(signal.SIGTERM)
    while not _refuses_connections(endpoint.port):  # the stop has begun: no new connections
        assert endpoint.proc.poll() is None, endpoint.log_path.read_text()[-3000:]
    stopping.set()
    sender.join(timeout=60)
    assert answer and answer[0][0] == 200, (answer, endpoint.log_path.read_text()[-3000:])
    assert endpoint.proc.wait(timeout=60) == 0, endpoint.log_path.read_text()[-3000:]
    conn.close()

    endpoint.start()
    try:
        assert _stored_batches(endpoint) == {(0, 0): 2000}
    finally:
        endpoint.stop()


def test_a_statement_outliving_the_drain_is_cancelled_with_an_error(tmp_path: Path) -> None:
    """A query still running when the drain time is up is cancelled: its client gets
    QUERY_WAS_CANCELLED (394), not a dropped connection, and the process still exits 0."""
    endpoint = _endpoint(tmp_path, "--drain-seconds", "1")
    answer: list[tuple[int, bytes, str | None]] = []

    def long_query() -> None:  # 100 blocks of one row, one second each
        status, body, headers = endpoint.request(
            body=b"SELECT sleepEachRow(1) FROM numbers(100) SETTINGS max_block_size = 1",
            wait_end_of_query="1")
        answer.append((status, body, headers.get("X-ClickHouse-Exception-Code")))

    client = threading.Thread(target=long_query, daemon=True)
    client.start()
    watcher = endpoint.client()
    while watcher.command("SELECT count() FROM system.processes WHERE query LIKE '%sleepEach%' "
                          "AND query NOT LIKE '%system.processes%'") == 0:
        assert client.is_alive()
    assert _terminated(endpoint) == 0, endpoint.log_path.read_text()[-3000:]
    client.join(timeout=30)
    assert answer and answer[0][0] != 200 and answer[0][2] == "394", answer
