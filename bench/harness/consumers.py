"""Consumer groups as real processes: `tweetflow consume` started as a deployment would start it
(configured through the environment), its workers found in /proc, its metrics scraped, its log
kept, and the group's membership in Kafka waited for."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.harness.processes import (
    child_env,
    children_of,
    cmdline,
    die_with_parent,
    free_ports,
    stop_process,
)
from tweetflow.settings import PROJECT_ROOT, Settings


def wait_group(settings: Settings, members: int, timeout: float = 60.0) -> bool:
    from confluent_kafka import ConsumerGroupState

    from tweetflow.clients import kafka_admin

    admin = kafka_admin(settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            group = admin.describe_consumer_groups([settings.consumer_group])[
                settings.consumer_group].result(10)
            assigned = sum(len(m.assignment.topic_partitions) for m in group.members
                           if m.assignment)
            if (group.state == ConsumerGroupState.STABLE and len(group.members) == members
                    and assigned == settings.topic_partitions):
                return True
        except Exception:
            pass
        time.sleep(0.3)
    return False


class Consumers:
    """`tweetflow consume` processes of one namespace; each process runs `workers` workers."""

    def __init__(self, settings: Settings, log_path: Path, *, batch_size: int = 10000,
                 batch_ms: int = 500) -> None:
        self.settings = settings
        self.log_path = log_path
        self.batch_size, self.batch_ms = batch_size, batch_ms
        self.procs: list[subprocess.Popen] = []
        self.metrics_ports: list[int] = []

    def start(self, workers: int = 2, *, metrics: bool = False, metrics_port: int = 0
              ) -> subprocess.Popen:
        """Start a `tweetflow consume` process; with `metrics`, its workers serve Prometheus
        metrics (see `metrics`). A worker's metrics port is also its static member id
        (streaming/consume_cli.py): `metrics_port` restarts a process under the ids it had."""
        base = metrics_port or (free_ports(workers) if metrics else 0)
        if base and base not in self.metrics_ports:
            self.metrics_ports += [base + i for i in range(workers)]
        cmd = [sys.executable, "-m", "tweetflow.app.cli", "consume", "--workers", str(workers),
               "--metrics-port", str(base), "--batch-size", str(self.batch_size),
               "--batch-ms", str(self.batch_ms)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=child_env(self.settings),
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, preexec_fn=die_with_parent)
        self.procs.append(proc)
        return proc

    def worker_pids(self, proc: subprocess.Popen | None = None) -> list[int]:
        """Live worker processes, of every `tweetflow consume` or of `proc` (multiprocessing's
        resource tracker, also a child, excluded)."""
        return [c for p in ([proc] if proc else self.procs) if p.poll() is None
                for c in children_of(p.pid) if b"spawn_main" in cmdline(c)]

    def wait_workers(self, n: int, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.worker_pids()) >= n:
                return True
            time.sleep(0.1)
        return False

    def wait_ready(self, members: int, timeout: float = 60.0) -> bool:
        """Until the group is stable with `members` members holding every partition (so a
        measurement does not start with the workers still importing and joining)."""
        return wait_group(self.settings, members, timeout)

    def stop(self, timeout: float = 40.0) -> list[int | None]:
        codes = [stop_process(p, timeout) for p in self.procs]
        return codes

    def metrics(self) -> dict[str, float]:
        """Sums over the workers serving metrics: seconds spent per sink
        (`sink_seconds:<sink>`), batches and their seconds, messages consumed."""
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        out: dict[str, float] = {}
        for port in self.metrics_ports:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
            except OSError:
                continue
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    name = sample.name
                    if name == "tweetflow_sink_seconds_sum":
                        key = f"sink_seconds:{sample.labels['sink']}"
                    elif name in ("tweetflow_batch_seconds_sum", "tweetflow_batch_seconds_count",
                                  "tweetflow_consumed_messages_total"):
                        key = name
                    else:
                        continue
                    out[key] = out.get(key, 0.0) + sample.value
        return out

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tracebacks(self) -> int:
        return self.log_text().count("Traceback (most recent call last)")

