"""A second local stack (Kafka, Redis, a ClickHouse endpoint) on free ports under a temporary data
directory, for the outage scenario.

Why not stop the shared stack's processes: whatever else uses the stack at the time (a demo, a
test run, another bench) would fail for reasons of ours. The private stack is started, stopped and
restarted by the same code as the shared one (`tweetflow.app.stack`: `Stack(settings).up()` starts
whatever is down), so what the scenario restarts is what users run.

`profile="cluster"` starts what `tweetflow stack up --profile cluster` starts (three KRaft brokers,
a six-node Redis Cluster; `ClusterProfile`), on free ports, beside the private ClickHouse endpoint;
`settings` then point at it (REDIS_MODE=cluster), as the profile's printed settings do.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.harness import free_port
from tweetflow.app.stack.cluster_profile import ClusterPorts, ClusterProfile
from tweetflow.app.stack.components import ClickHouseEndpoint, Component, Kafka, Redis
from tweetflow.app.stack.manager import Stack
from tweetflow.app.stack.process import ManagedProcess, StackError, wait_until
from tweetflow.settings import Settings

COMPONENTS = ("redis", "clickhouse", "kafka")
PREFIX = "tweetflow-bench-stack-"
CLUSTER_PORTS = "cluster-ports.json"  # a cluster profile's ports, to stop a stale one
MARKERS = {"kafka": "kafka.Kafka", "clickhouse": "tweetflow.embedded_clickhouse",
           "redis": "redis-server"}


class PrivateStack:
    def __init__(self, base: Settings, profile: str = "single") -> None:
        remove_stale()
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX))
        (self.root / "owner.pid").write_text(str(os.getpid()))
        ports = _distinct_ports(4)
        self.settings = base.model_copy(update={
            "data_dir": self.root, "kafka_port": ports[0],
            "kafka_controller_port": ports[1],
            "kafka_bootstrap_servers": f"127.0.0.1:{ports[0]}",
            "embedded_clickhouse_port": ports[2], "clickhouse_url": "",
            "redis_url": f"redis://127.0.0.1:{ports[3]}/0", "redis_mode": "standalone"})
        libs = base.data_dir / "kafka-libs"
        if libs.is_dir():  # the broker's jars, fetched once by the shared stack
            (self.root / "kafka-libs").symlink_to(libs)
        self.cluster: ClusterProfile | None = None
        if profile == "cluster":
            p = _distinct_ports(18, avoid=ports)
            cluster_ports = ClusterPorts(tuple(p[:3]), tuple(p[3:6]), tuple(p[6:12]),
                                         tuple(p[12:]))
            (self.root / CLUSTER_PORTS).write_text(json.dumps(p))  # for remove_stale
            self.cluster = ClusterProfile(self.settings, cluster_ports)
            self.settings = cluster_ports.settings(self.settings)

    def component(self, name: str) -> Component:
        kinds = {"redis": Redis, "clickhouse": ClickHouseEndpoint, "kafka": Kafka}
        return kinds[name](self.settings)

    @property
    def stack(self) -> Stack:
        return Stack(self.settings, cluster=self.cluster)

    def up(self) -> None:
        self.stack.up()

    def down(self) -> None:
        try:
            self.stack.down()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def stop(self, name: str) -> None:
        self.component(name).down()

    def restart(self, name: str) -> float:
        """`Stack(settings).up()` (it starts what is down); seconds until `name` answers."""
        began = time.monotonic()
        self.stack.up()
        if not wait_until(lambda: self.answers(name), 120):
            raise StackError(f"{name} did not answer after the restart")
        return time.monotonic() - began

    def answers(self, name: str) -> bool:
        try:
            return bool(self.component(name).answers())  # type: ignore[attr-defined]
        except Exception:
            return False


def _distinct_ports(n: int, avoid: list[int] | None = None) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        if (port := free_port()) not in ports and port not in (avoid or []):
            ports.append(port)
    return ports


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
        if (root / CLUSTER_PORTS).exists():
            p = json.loads((root / CLUSTER_PORTS).read_text())
            ClusterProfile(Settings().model_copy(update={"data_dir": root}), ClusterPorts(
                tuple(p[:3]), tuple(p[3:6]), tuple(p[6:12]), tuple(p[12:]))).down()
        shutil.rmtree(root, ignore_errors=True)
        removed.append(root.name)
    return removed
