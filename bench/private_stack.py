"""A second local stack (Kafka, Redis, a ClickHouse endpoint) on free ports under a temporary data
directory, for the outage scenario.

Why not stop the shared stack's processes: whatever else uses the stack at the time (a demo, a
test run, another bench) would fail for reasons of ours. A private stack is started and stopped by
the same code as the shared one (tweetflow.stack), so what the scenario restarts is what users run;
only Redis is started here, because the Redis component manages the default port alone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.harness import free_port
from tweetflow.settings import Settings
from tweetflow.stack.components import ClickHouseEndpoint, Kafka
from tweetflow.stack.manager import Stack
from tweetflow.stack.process import ManagedProcess, StackError, wait_until

COMPONENTS = ("redis", "clickhouse", "kafka")
PREFIX = "tweetflow-bench-stack-"
MARKERS = {"kafka": "kafka.Kafka", "clickhouse": "tweetflow.embedded_clickhouse",
           "redis": "redis-server"}


class PrivateStack:
    def __init__(self, base: Settings) -> None:
        remove_stale()
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX))
        (self.root / "owner.pid").write_text(str(os.getpid()))
        redis_port = free_port()
        kafka_port, controller_port, clickhouse_port = free_port(), free_port(), free_port()
        self.settings = base.model_copy(update={
            "data_dir": self.root, "kafka_port": kafka_port,
            "kafka_controller_port": controller_port,
            "kafka_bootstrap_servers": f"127.0.0.1:{kafka_port}",
            "embedded_clickhouse_port": clickhouse_port, "clickhouse_url": "",
            "redis_url": f"redis://127.0.0.1:{redis_port}/0"})
        self.redis_port = redis_port
        libs = base.data_dir / "kafka-libs"
        if libs.is_dir():  # the broker's jars, fetched once by the shared stack
            (self.root / "kafka-libs").symlink_to(libs)
        self.redis = _process(self.root, "redis")

    # --- life cycle --------------------------------------------------------------------------

    def up(self) -> None:
        """Start whatever is down (Redis here, the rest through `Stack(settings).up()`)."""
        self._start_redis()
        Stack(self.settings).up()

    def down(self) -> None:
        try:
            Stack(self.settings).down()
        finally:
            self.redis.stop()
            shutil.rmtree(self.root, ignore_errors=True)

    def stop(self, name: str) -> None:
        if name == "redis":
            self.redis.stop()
        elif name == "kafka":
            Kafka(self.settings).down()
        elif name == "clickhouse":
            ClickHouseEndpoint(self.settings).down()
        else:
            raise ValueError(name)

    def restart(self, name: str) -> float:
        """Start the stopped component again; seconds until it answers."""
        began = time.monotonic()
        if name == "redis":
            self._start_redis()
        else:
            Stack(self.settings).up()
        if not wait_until(lambda: self.answers(name), 120):
            raise StackError(f"{name} did not answer after the restart")
        return time.monotonic() - began

    def answers(self, name: str) -> bool:
        try:
            if name == "redis":
                import redis

                return bool(redis.Redis.from_url(self.settings.redis_url, socket_timeout=2).ping())
            component = Kafka(self.settings) if name == "kafka" else ClickHouseEndpoint(self.settings)
            return component.answers()
        except Exception:
            return False

    def _start_redis(self) -> None:
        if self.redis.pid() is None:
            directory = self.root / "redis"
            directory.mkdir(parents=True, exist_ok=True)
            self.redis.start(["redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port),
                              "--dir", str(directory), "--appendonly", "yes", "--save", "",
                              "--daemonize", "no", "--maxmemory-policy", "noeviction"])
        if not wait_until(lambda: self.answers("redis"), 30):
            raise StackError(f"private Redis did not start; log {self.redis.log_file}")


def _process(root: Path, name: str) -> ManagedProcess:
    return ManagedProcess(name, root / name / f"{name}.pid", root / "logs" / f"{name}.log",
                          MARKERS[name])


def remove_stale() -> list[str]:
    """Stop and delete private stacks whose bench process is gone (one killed mid-run leaves its
    services running: they are detached by design)."""
    removed = []
    for root in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            owner = int((root / "owner.pid").read_text())
        except (OSError, ValueError):
            owner = 0
        if owner and Path(f"/proc/{owner}").exists():
            continue
        for name in MARKERS:
            _process(root, name).stop()
        shutil.rmtree(root, ignore_errors=True)
        removed.append(root.name)
    return removed
