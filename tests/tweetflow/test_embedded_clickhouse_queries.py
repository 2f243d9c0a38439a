"""Running queries on the embedded endpoint: the client's query_id end to end, KILL QUERY with the
server's ownership rule, cancellation when the client goes away, and the analyst's limits.

Slow queries sleep (`sleepEachRow`, one row per block) rather than burn CPU; each would run for a
minute, so "it stopped" is seen long before it could have finished by itself.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlencode

import pytest
from endpoint_support import ANALYST, ANALYST_PASSWORD, Endpoint

SLOW = "SELECT sum(sleepEachRow(0.1)) FROM numbers(600)"  # 60 s, one row per block
AS_ANALYST = {"Authorization": "Basic " + base64.b64encode(
    f"{ANALYST}:{ANALYST_PASSWORD}".encode()).decode()}


def _processes(endpoint: Endpoint, query_id: str) -> list[list[str]]:
    """(query_id, user, query) rows of system.processes for `query_id`, read as `default`."""
    status, body = endpoint.get(
        query="SELECT query_id, user, query FROM system.processes WHERE query_id = {q:String} "
              "FORMAT TSV", param_q=query_id)
    assert status == 200, body
    return [line.split("\t") for line in body.decode().splitlines()]


def _wait_until(condition: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)


@contextmanager
def _running(endpoint: Endpoint, query_id: str, headers: dict[str, str] | None = None
             ) -> Iterator[dict[str, object]]:
    """SLOW running as `query_id` in a thread until the block ends; yields its outcome."""
    outcome: dict[str, object] = {}

    def run() -> None:
        status, body, answer = endpoint.request(
            body=SLOW.encode(), headers=headers or {}, query_id=query_id, max_block_size="1")
        outcome.update(status=status, body=body, code=answer.get("X-ClickHouse-Exception-Code"))

    thread = threading.Thread(target=run)
    thread.start()
    try:
        _wait_until(lambda: _processes(endpoint, query_id), f"{query_id} in system.processes")
        yield outcome
    finally:
        if _processes(endpoint, query_id):
            endpoint.request(body=f"KILL QUERY WHERE query_id = '{query_id}' SYNC".encode())
        thread.join(timeout=30)


def test_system_processes_shows_the_clients_query_id_and_user(endpoint: Endpoint) -> None:
    query_id = f"analyst-{uuid.uuid4()}"
    with _running(endpoint, query_id, AS_ANALYST):
        [(shown_id, user, query)] = _processes(endpoint, query_id)
        assert (shown_id, user, query) == (query_id, ANALYST, SLOW)


def test_kill_query_by_query_id_stops_the_query(endpoint: Endpoint) -> None:
    query_id = f"killme-{uuid.uuid4()}"
    with _running(endpoint, query_id, AS_ANALYST) as outcome:
        status, body, _ = endpoint.request(
            body=f"KILL QUERY WHERE query_id = '{query_id}' SYNC FORMAT TSV".encode(),
            headers=AS_ANALYST)
        assert status == 200, body
        assert body.decode().split("\t")[:3] == ["finished", query_id, ANALYST]
        _wait_until(lambda: "code" in outcome, "the killed query to answer")
    assert outcome["code"] == "394"  # QUERY_WAS_CANCELLED
    assert _processes(endpoint, query_id) == []


def test_the_analyst_cannot_kill_the_pipelines_queries(endpoint: Endpoint) -> None:
    query_id = f"pipeline-{uuid.uuid4()}"
    with _running(endpoint, query_id) as outcome:
        status, body, headers = endpoint.request(
            body=f"KILL QUERY WHERE query_id = '{query_id}'".encode(), headers=AS_ANALYST)
        assert (status, headers["X-ClickHouse-Exception-Code"]) == (403, "497"), body
        assert b"attempts to kill query created by default" in body
        status, body, _ = endpoint.request(  # nor by matching everything
            body=b"KILL QUERY WHERE 1 SYNC", headers=AS_ANALYST)
        assert [row[:2] for row in _processes(endpoint, query_id)] == [[query_id, "default"]]
        assert "code" not in outcome
        status, body, _ = endpoint.request(
            body=f"KILL QUERY WHERE query_id = '{query_id}' SYNC".encode())
        assert status == 200, body
        _wait_until(lambda: "code" in outcome, "the killed query to answer")
    assert outcome["code"] == "394"


def test_a_second_query_with_a_running_query_id_is_refused(endpoint: Endpoint) -> None:
    query_id = f"dup-{uuid.uuid4()}"
    with _running(endpoint, query_id, AS_ANALYST):
        status, body, headers = endpoint.request(query="SELECT 1", query_id=query_id)
        assert (status, headers["X-ClickHouse-Exception-Code"]) == (500, "216"), body


def test_a_query_stops_when_its_client_disconnects(endpoint: Endpoint) -> None:
    query_id = f"gone-{uuid.uuid4()}"
    client = socket.create_connection(("127.0.0.1", endpoint.port))
    params = urlencode({"query": SLOW, "query_id": query_id, "max_block_size": "1"})
    client.sendall(f"GET /?{params} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    _wait_until(lambda: _processes(endpoint, query_id), "the query to start")
    client.close()
    _wait_until(lambda: not _processes(endpoint, query_id), "the query to stop", timeout=20)


def _analyst(endpoint: Endpoint, sql: str, **params: str) -> tuple[int, bytes, str | None]:
    status, body, headers = endpoint.request(body=sql.encode(), headers=AS_ANALYST, **params)
    return status, body, headers.get("X-ClickHouse-Exception-Code")


def test_the_analyst_profile_has_limits(endpoint: Endpoint) -> None:
    status, body, _ = _analyst(endpoint, "SELECT getSetting('max_execution_time') > 0, "
                               "getSetting('max_result_rows') > 0, "
                               "getSetting('max_memory_usage') > 0")
    assert (status, body) == (200, b"1\t1\t1\n")


def test_the_analysts_settings_apply_within_the_limits(endpoint: Endpoint) -> None:
    assert _analyst(endpoint, SLOW, max_block_size="1", max_execution_time="1")[2] == "159"
    assert _analyst(endpoint, "SELECT number FROM numbers(100)", max_result_rows="10")[2] == "396"
    status, body, _ = _analyst(endpoint, "SELECT number FROM numbers(100)", max_result_rows="5",
                               result_overflow_mode="break", max_block_size="5")
    assert (status, body) == (200, b"0\n1\n2\n3\n4\n")


@pytest.mark.parametrize("setting", ["max_execution_time", "max_result_rows", "max_memory_usage"])
@pytest.mark.parametrize("value", ["0", "1000000000000000"])
def test_the_analyst_cannot_lift_a_limit(endpoint: Endpoint, setting: str, value: str) -> None:
    status, body, code = _analyst(endpoint, "SELECT 1", **{setting: value})
    assert (status, code) == (500, "452"), body  # SETTING_CONSTRAINT_VIOLATION
    # inside SQL the engine refuses any change (READONLY), or the value itself (BAD_ARGUMENTS)
    assert _analyst(endpoint, f"SELECT 1 SETTINGS {setting} = {value}")[2] in ("164", "36")


def test_current_user_and_errors_name_the_real_user(endpoint: Endpoint) -> None:
    status, body, _ = _analyst(endpoint, "SELECT currentUser(), user(), current_user(), "
                                         "'currentUser()' AS literal")
    assert (status, body) == (200, b"analyst\tanalyst\tanalyst\tcurrentUser()\n")
    status, body, _ = _analyst(endpoint, "CREATE TABLE nope (a Int8) ENGINE = Memory")
    assert body.startswith(b"Code: 164. DB::Exception: analyst: Cannot execute query"), body
    assert endpoint.get(query="SELECT currentUser()") == (200, b"default\n")
