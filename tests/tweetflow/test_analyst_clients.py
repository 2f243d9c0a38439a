"""The analysts' own tools against the embedded endpoint, as the read-only analyst, with each
client's default settings: the JDBC driver (DBeaver, Metabase), clickhouse-go v2 over HTTP
(Grafana), clickhouse-connect (Superset) and curl.

The JDBC and Go programs (tests/clients/) print one "check<TAB>result" line per check; they are
built once and cached under the data dir (client_programs.py).
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from client_programs import go_command, jdbc_command, run_checks
from endpoint_support import ANALYST, ANALYST_PASSWORD, Endpoint


@pytest.fixture(scope="module")
def marts(endpoint: Endpoint) -> Iterator[tuple[str, str]]:
    """A database with one small table, as the marts are: (database, table)."""
    database, table = f"marts_{uuid.uuid4().hex[:8]}", "daily"
    client = endpoint.client()
    client.command(f"CREATE DATABASE {database}")
    client.command(f"CREATE TABLE {database}.{table} (id UInt64, s String, tags Array(String)) "
                   "ENGINE = MergeTree ORDER BY id")
    client.insert(f"{database}.{table}", [[1, "it's \"quoted\"", ["a"]], [2, "b", []],
                                          [3, "c", ["x", "y"]]], column_names=["id", "s", "tags"])
    yield database, table
    client.command(f"DROP DATABASE {database}")


def test_jdbc_driver_with_its_default_settings(endpoint: Endpoint, marts: tuple[str, str]) -> None:
    database, table = marts
    url = f"jdbc:clickhouse://127.0.0.1:{endpoint.port}/{database}"  # compress=1 by default
    got = run_checks([*jdbc_command(), url, ANALYST, ANALYST_PASSWORD, table])
    assert got["product"] == "ClickHouse"
    assert got["tables"] == f"{table}:TABLE"
    assert got["columns"] == "id:UInt64,s:String,tags:Array(String)"
    assert got["prepared"] == "2=b,3=c"
    assert got["datetime64"] == "2024-01-02T03:04:05.678Z"
    assert got["arrays"] == "[[1, 2, 3], [a, b]]"
    assert got["max_rows"] == "2"  # setMaxRows: max_result_rows + result_overflow_mode=break
    assert got["readonly"].startswith(f"ERROR 164 Code: 164. DB::Exception: {ANALYST}: ")
    assert got["cancel"].startswith("cancelled in_processes_after=0 "), got["cancel"]
    assert got["after_cancel"] == "still usable"


def test_clickhouse_go_over_http(endpoint: Endpoint, marts: tuple[str, str]) -> None:
    got = run_checks([*go_command(), f"127.0.0.1:{endpoint.port}", ANALYST, ANALYST_PASSWORD,
                      marts[0]])
    assert got["ping"] == got["sql_ping"] == "ok"
    assert got["server_version"].startswith("26.")
    assert got["server_param"] == "42"
    assert got["array_and_datetime64"] == '["a" "b" "it\'s"] 2024-01-02T03:04:05.678Z'
    assert got["sql_rows"] == "0:0:[0 1],1:1:[1 2],2:2:[2 3]"
    assert got["sql_bound"] == "99989"
    assert "code: 164" in got["readonly"]
    assert got["lz4"] == f"100000 {sum(range(100000))}"  # Native inside compress=1 blocks
    assert got["context_cancel"] == "cancelled in_processes_after=0"


def test_clickhouse_connect_as_the_analyst(endpoint: Endpoint, marts: tuple[str, str]) -> None:
    database, table = marts
    client = endpoint.client(username=ANALYST, password=ANALYST_PASSWORD, database=database)
    rows = client.query(f"SELECT id, s FROM {table} WHERE id > {{n:UInt64}} ORDER BY id",
                        parameters={"n": 1}).result_rows
    assert rows == [(2, "b"), (3, "c")]
    assert client.query_arrow(f"SELECT count() AS n FROM {table}").column("n").to_pylist() == [3]
    assert client.command("SELECT currentUser()") == ANALYST


def test_curl_as_the_analyst(endpoint: Endpoint, marts: tuple[str, str]) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    database, table = marts
    result = subprocess.run(
        [curl, "-sS", "--fail-with-body", "--compressed", "-u", f"{ANALYST}:{ANALYST_PASSWORD}",
         f"http://127.0.0.1:{endpoint.port}/?database={database}&enable_http_compression=1"
         "&param_n=2", "--data-binary", f"SELECT s FROM {table} WHERE id = {{n:UInt64}}"],
        capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stdout) == (0, "b\n"), result.stderr
