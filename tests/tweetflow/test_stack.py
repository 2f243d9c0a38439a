"""The local stack: a fresh one comes up from an empty data dir and goes away completely; the
shared one answers every client the platform uses."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from confluent_kafka import Consumer, Producer

from tweetflow import namespaces
from tweetflow.app.stack.manager import Stack
from tweetflow.app.stack.process import ManagedProcess, wait_until
from tweetflow.clients import clickhouse_client, kafka_admin, kafka_config, redis_client
from tweetflow.settings import PROJECT_ROOT, Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids(stack: Stack) -> list[int | None]:
    return [row.pid for row in stack.status()]


def _started(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/PID/stat), None when no such process: with
    pid_max 32768 a busy machine reuses a pid soon after its process ended."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def test_fresh_stack_from_empty_data_dir_comes_up_and_down(tmp_path: Path) -> None:
    kafka, controller, redis_port, ch = (_free_port() for _ in range(4))
    settings = Settings(
        _env_file=None, TWEETFLOW_DATA_DIR=str(tmp_path), KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{kafka}",
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", kafka_port=kafka,
        kafka_controller_port=controller, embedded_clickhouse_port=ch,
    )
    stack = Stack(settings)
    try:
        rows = stack.up()
        assert [r.state for r in rows] == ["up", "up", "up"], rows
        assert rows[2].version.startswith("26."), rows[2]
        first = _pids(stack)
        started = {pid: _started(pid) for pid in first if pid is not None}
        stack.up()  # idempotent: nothing restarted
        assert _pids(stack) == first
        topics = set(kafka_admin(settings).list_topics(timeout=10).topics)
        assert {settings.topic_raw, settings.topic_dlq} <= topics
    finally:
        stopped = stack.down()
    assert sorted(stopped) == ["clickhouse", "kafka", "redis"]
    assert all(r.state == "down" and r.pid is None for r in stack.status())
    for pid in first:
        # gone, or its pid reused by another process since (another start time)
        assert pid is not None and _started(pid) != started[pid], f"pid {pid} still running"


# A child that survives SIGTERM, so a stop must fall back to SIGKILL: the first ignores it; in the
# second, SIGTERM ends the main thread but another thread runs on, as a thread group's leader turns
# zombie while its other threads still exit (the process holds its ports until they end).
_IGNORES_SIGTERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN)"
_LEADER_EXITS = ("import ctypes, signal, threading, time; threading.Thread(target=time.sleep, "
                 "args=(600,)).start(); signal.signal(signal.SIGTERM, "
                 "lambda *_: ctypes.CDLL(None).pthread_exit(None))")


@pytest.mark.parametrize("program", [_IGNORES_SIGTERM, _LEADER_EXITS], ids=["ignores", "leader"])
def test_stop_returns_only_once_the_process_has_exited(
        tmp_path: Path, program: str, caplog: pytest.LogCaptureFixture) -> None:
    marker = f"stop-test-{uuid.uuid4().hex}"
    proc = ManagedProcess("stubborn", tmp_path / "stubborn.pid", tmp_path / "stubborn.log", marker)
    code = f"{program}; print('ready', flush=True); time.sleep(600)"
    pid = proc.start([sys.executable, "-c", code, marker])
    assert wait_until(lambda: "ready" in proc.log_file.read_text(), 30), proc.log_tail()
    started = _started(pid)
    try:
        assert proc.stop(timeout=0.5)
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever stop() left behind
            os.killpg(pid, signal.SIGKILL)
    assert _started(pid) != started, f"pid {pid} still running"
    assert proc.pid() is None and not proc.pid_file.exists()
    assert "SIGKILL" in caplog.text


def test_status_cli_reports_every_component(stack: Settings) -> None:
    result = subprocess.run([str(PROJECT_ROOT / ".venv/bin/tweetflow"), "stack", "status"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("kafka", "redis", "clickhouse"):
        assert any(line.startswith(name) and " up " in line for line in result.stdout.splitlines())


def test_kafka_round_trip(stack: Settings, topic_factory) -> None:
    topic = topic_factory(partitions=3)
    producer = Producer(kafka_config(stack, **{"enable.idempotence": True}))
    sent = {f"k{i}".encode(): f"v{i}".encode() for i in range(50)}
    for key, value in sent.items():
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0
    group = f"g-{uuid.uuid4().hex}"
    consumer = Consumer(kafka_config(stack, **{"group.id": group, "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    got: dict[bytes, bytes] = {}
    try:
        for _ in range(60):
            for m in consumer.consume(100, timeout=1):
                if m.error() is None:
                    got[m.key()] = m.value()
            if len(got) == len(sent):
                break
    finally:
        consumer.close()
        namespaces.delete_groups(stack, [group])
    assert got == sent


def test_redis_round_trip(stack: Settings) -> None:
    r = redis_client(stack)
    key = f"test:{uuid.uuid4().hex}"
    try:
        assert r.set(key, "v", ex=60)
        assert r.get(key) == b"v"
        assert r.config_get("appendonly")["appendonly"] == "yes"
    finally:
        r.delete(key)


def test_clickhouse_endpoint_serves_clients(test_settings: Settings) -> None:
    client = clickhouse_client(test_settings, compress="lz4")
    assert client.server_version.startswith("26.")
    client.command("CREATE TABLE t (id UInt64, name String) ENGINE = MergeTree ORDER BY id")
    client.insert("t", [[1, "a"], [2, "b"]], column_names=["id", "name"])  # Native, lz4
    body = b'{"id": 3, "name": "c"}\n{"id": 4, "name": "d"}\n'
    url = f"{test_settings.clickhouse_http_url}/?database={test_settings.clickhouse_database}"
    query = urllib.parse.quote("INSERT INTO t FORMAT JSONEachRow")
    with urllib.request.urlopen(urllib.request.Request(f"{url}&query={query}", data=body)) as resp:
        assert resp.status == 200
    rows = client.query("SELECT id, name FROM t WHERE id >= {low:UInt64} ORDER BY id",
                        parameters={"low": 2}).result_rows
    assert rows == [(2, "b"), (3, "c"), (4, "d")]
    with pytest.raises(DatabaseError, match="Code: 60"):
        client.query("SELECT * FROM no_such_table")


def test_analyst_user_reads_but_cannot_write(test_settings: Settings) -> None:
    clickhouse_client(test_settings).command(
        "CREATE TABLE t (id UInt64) ENGINE = MergeTree ORDER BY id")
    analyst = clickhouse_client(test_settings, user=test_settings.clickhouse_analyst_user,
                                password=test_settings.clickhouse_analyst_password)
    assert analyst.query("SELECT count() FROM t").result_rows == [(0,)]
    with pytest.raises(DatabaseError, match="Code: 164"):
        analyst.command("INSERT INTO t VALUES (1)")
    with pytest.raises(DatabaseError, match="Code: 164"):
        analyst.command("DROP TABLE t")


def test_dbt_debug_connects_through_the_endpoint(test_settings: Settings) -> None:
    from analytics_pipeline.resources import dbt_env

    env = {**os.environ, **dbt_env(test_settings)}
    result = subprocess.run(
        [str(PROJECT_ROOT / ".venv/bin/dbt"), "debug", "--project-dir", "dbt_project",
         "--profiles-dir", "dbt_project"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "All checks passed" in result.stdout
