"""CPU per message per process: utime + stime from /proc, sampled along a run, by role (the
consumer workers, their parent, Redis, the ClickHouse endpoint, the Kafka broker).

Why /proc rather than the workers' own metrics: the metrics time stages of the workers only, in
wall time; the servers' share (the Redis Lua apply, the endpoint parsing rows and writing parts,
the broker's fetches) is CPU the pipeline costs too, and it shows only in the servers' processes.
A process's /proc/<pid>/stat sums all its threads (the JVM's, chDB's, Redis' I/O threads).
Resolution: one clock tick (10 ms) per process and sample.

Servers the stack does not manage (an external URL) are not measured; a shared stack's servers
also do other clients' work, which their figures then include (`tweetflow bench` runs the
throughput scenario on a private stack for that reason).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tweetflow.settings import Settings

if TYPE_CHECKING:
    from tweetflow.app.stack.cluster_profile import ClusterProfile

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of one process (all its threads) so far; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def stack_pids(settings: Settings, cluster: ClusterProfile | None = None) -> dict[str, list[int]]:
    """The pids of the stack's servers that run on this machine, by role; with a cluster profile
    (`tweetflow stack up --profile cluster`), "Kafka broker" and "Redis" are its three brokers
    and six Redis nodes."""
    from tweetflow.app.stack.components import ClickHouseEndpoint, Kafka, Redis

    roles = {"Redis": Redis, "ClickHouse endpoint": ClickHouseEndpoint, "Kafka broker": Kafka}
    out = {}
    for role, kind in roles.items():
        component = kind(settings)
        pid = component.proc.pid() if component.managed else None
        if pid is not None:
            out[role] = [pid]
    if cluster is not None:
        for role, nodes in (("Kafka broker", cluster.brokers), ("Redis", cluster.redis.nodes)):
            out[role] = [pid for node in nodes if (pid := node.proc.pid()) is not None]
    return out


@dataclass(frozen=True)
class CpuSample:
    messages: int  # messages applied when sampled
    seconds: Mapping[str, float]  # CPU seconds used so far, by role


class CpuMeter:
    """Samples the CPU of each role's processes; `roles` give the pids of a role now (workers
    start after the meter does)."""

    def __init__(self, roles: Mapping[str, Callable[[], list[int]]]) -> None:
        self.roles = dict(roles)
        self.samples: list[CpuSample] = []
        self._last: dict[int, tuple[str, float]] = {}  # pid -> (role, CPU seconds when last seen)

    def sample(self, messages: int) -> None:
        for role, pids in self.roles.items():
            for pid in pids():
                seconds = cpu_seconds(pid)
                if seconds is not None:
                    self._last[pid] = (role, seconds)
        totals = dict.fromkeys(self.roles, 0.0)
        for role, seconds in self._last.values():
            totals[role] += seconds
        self.samples.append(CpuSample(messages, totals))

    def per_message(self, lo: float, hi: float) -> dict[str, float]:
        """µs of CPU per message by role between the first samples at `lo` and `hi` of the
        final message count (the window of `bench.report.rate_between`); empty if too few."""
        if not self.samples:
            return {}
        final = self.samples[-1].messages
        a = next((s for s in self.samples if s.messages >= lo * final), None)
        b = next((s for s in self.samples if s.messages >= hi * final), None)
        if a is None or b is None or b.messages <= a.messages:
            return {}
        n = b.messages - a.messages
        return {role: (b.seconds[role] - a.seconds[role]) / n * 1e6 for role in self.roles}
