"""A second local stack (Kafka, Redis, a ClickHouse endpoint) on free ports under a temporary data
directory, for the outage scenario.

Why not stop the shared stack's processes: whatever else uses the stack at the time (a demo, a
test run, another bench) would fail for reasons of ours. The private stack is started, stopped and
restarted by the same code as the shared one (`tweetflow.app.stack`: `Stack(settings).up()` starts
whatever is down), so what the scenario restarts is what users run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.harness import free_port
from tweetflow.app.stack.components import ClickHouseEndpoint, Component, Kafka, Redis
from tweetflow.app.stack.manager import Stack
from tweetflow.app.stack.process import ManagedProcess, StackError, wait_until
from tweetflow.settings import Settings

COMPONENTS = ("redis", "clickhouse", "kafka")
PREFIX = "tweetflow-bench-stack-"
MARKERS = {"kafka": "kafka.Kafka", "clickhouse": "tweetflow.embedded_clickhouse",
           "redis": "redis-server"}


class PrivateStack:
    def __init__(self, base: Settings) -> None:
        remove_stale()
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX))
        (self.root / "owner.pid").write_text(str(os.getpid()))
        kafka_port, controller_port, clickhouse_port = free_port(), free_port(), free_port()
        self.settings = base.model_copy(update={
            "data_dir": self.root, "kafka_port": kafka_port,
            "kafka_controller_port": controller_port,
            "kafka_bootstrap_servers": f"127.0.0.1:{kafka_port}",
            "embedded_clickhouse_port": clickhouse_port, "clickhouse_url": "",
            "redis_url": f"redis://127.0.0.1:{free_port()}/0"})
        libs = base.data_dir / "kafka-libs"
        if libs.is_dir():  # the broker's jars, fetched once by the shared stack
            (self.root / "kafka-libs").symlink_to(libs)

    def component(self, name: str) -> Component:
        kinds = {"redis": Redis, "clickhouse": ClickHouseEndpoint, "kafka": Kafka}
        return kinds[name](self.settings)

    def up(self) -> None:
        Stack(self.settings).up()

    def down(self) -> None:
        try:
            Stack(self.settings).down()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def stop(self, name: str) -> None:
        self.component(name).down()

    def restart(self, name: str) -> float:
        """`Stack(settings).up()` (it starts what is down); seconds until `name` answers."""
        began = time.monotonic()
        Stack(self.settings).up()
        if not wait_until(lambda: self.answers(name), 120):
            raise StackError(f"{name} did not answer after the restart")
        return time.monotonic() - began

    def answers(self, name: str) -> bool:
        try:
            return bool(self.component(name).answers())  # type: ignore[attr-defined]
        except Exception:
            return False


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
