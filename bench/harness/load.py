"""Load generators as real processes (`bench.loadgen`), their JSON progress lines collected."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from bench.harness.processes import child_env, die_with_parent, stop_process
from tweetflow.settings import PROJECT_ROOT, Settings


class LoadGen:
    """A `bench.loadgen` process; its JSON progress lines are collected in a thread."""

    def __init__(self, settings: Settings, *args: str, log_path: Path | None = None) -> None:
        cmd = [sys.executable, "-m", "bench.loadgen", *args]
        self.stderr = log_path.open("ab") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=child_env(settings),
                                     stdout=subprocess.PIPE, stderr=self.stderr,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=die_with_parent)
        self.progress: list[dict[str, Any]] = []
        self.final: dict[str, Any] = {}
        self.burst: tuple[float, float] | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("done"):
                self.final = doc
            elif "burst_start" in doc:
                self.burst = (doc["burst_start"], doc["burst_end"])
            else:
                self.progress.append(doc)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float = 600.0) -> dict[str, Any]:
        self.proc.wait(timeout)
        self._reader.join(10)
        if hasattr(self.stderr, "close"):
            self.stderr.close()
        return self.final

    def interrupt(self, timeout: float = 200.0) -> dict[str, Any]:
        """SIGTERM: the generator stops publishing, waits for every ack, and reports."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def stop(self) -> None:
        stop_process(self.proc, 10)

    def append_rate(self) -> float:
        """Messages/s the generator sent over its whole run."""
        return self.final.get("attempted", 0) / self.final["elapsed"] if self.final.get(
            "elapsed") else float("nan")


def produce(settings: Settings, *args: str, processes: int = 1, log_path: Path | None = None,
            timeout: float = 900.0) -> list[dict[str, Any]]:
    """Run `processes` load generators (seeds 1..n: distinct ids) to completion."""
    gens = [LoadGen(settings, *args, "--seed", str(1000 + i), log_path=log_path)
            for i in range(processes)]
    return [g.wait(timeout) for g in gens]
