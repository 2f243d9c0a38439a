"""The embedded ClickHouse endpoint as the tests drive it: a subprocess on a free port, restartable
on its data dir, spoken to over HTTP (urllib, http.client) and by clickhouse-connect."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client

from bench.harness import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ANALYST, ANALYST_PASSWORD = "analyst", "analyst-secret"


class Endpoint:
    """`python -m tweetflow.embedded_clickhouse` in a subprocess, restartable on its data dir."""

    def __init__(self, data_dir: Path, log_path: Path, *args: str) -> None:
        self.data_dir, self.log_path, self.args = data_dir, log_path, args
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if "CLICKHOUSE" not in k}
        env.update(CLICKHOUSE_USER="default", CLICKHOUSE_PASSWORD="",
                   CLICKHOUSE_ANALYST_USER=ANALYST, CLICKHOUSE_ANALYST_PASSWORD=ANALYST_PASSWORD)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tweetflow.embedded_clickhouse",
                 "--data-dir", str(self.data_dir), "--port", str(self.port), *self.args],
                cwd=PROJECT_ROOT, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                if self.get("/ping") == (200, b"Ok.\n"):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"endpoint did not start:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.terminate()
        assert self.proc.wait(timeout=20) == 0

    def request(self, path: str = "/", body: bytes | None = None,
                headers: dict[str, str] | None = None, **params: str
                ) -> tuple[int, bytes, http.client.HTTPMessage]:
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urlencode(params)
        req = urllib.request.Request(url, data=body, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as err:
            return err.code, err.read(), err.headers

    def get(self, path: str = "/", **params: str) -> tuple[int, bytes]:
        status, body, _ = self.request(path, **params)
        return status, body

    def client(self, **kwargs: object) -> Client:
        kwargs.setdefault("username", "default")
        return clickhouse_connect.get_client(host="127.0.0.1", port=self.port, **kwargs)


def paused_body(head: bytes, tail: bytes, paused: threading.Event, resume: threading.Event,
                timeout: float = 60.0) -> Iterator[bytes]:
    """A request body in two chunks: `paused` is set once `head` is sent, and `tail` waits for
    `resume` (an INSERT the endpoint is in the middle of reading)."""
    yield head
    paused.set()
    resume.wait(timeout)
    yield tail


@pytest.fixture
def table(endpoint: Endpoint) -> str:
    """A fresh table `(id UInt64, s String, tags Array(String), n Nullable(Float64))`."""
    name = f"t_{uuid.uuid4().hex[:8]}"
    endpoint.client().command(f"CREATE TABLE {name} (id UInt64, s String, tags Array(String), "
                              "n Nullable(Float64)) ENGINE = MergeTree ORDER BY id")
    return name


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    root = tmp_path_factory.mktemp("embedded_clickhouse")
    server = Endpoint(root / "data", root / "endpoint.log")
    server.start()
    yield server
    server.stop()
