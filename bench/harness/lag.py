"""Consumer lag over time: the group's lag (`streaming.offsets.group_lag`) sampled in a thread,
and optionally the offsets the hot sink has applied (its Redis watermarks), sampled apart: while a
broker or the group's coordinator is down the lag cannot be read, the applied offsets can."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from streaming.offsets import group_lag
from tweetflow.settings import Settings


@dataclass
class LagSample:
    t: float  # monotonic
    committed: dict[int, int]
    high: dict[int, int]

    @property
    def lag(self) -> dict[int, int]:
        return {p: max(0, hi - self.committed.get(p, 0)) for p, hi in self.high.items()}

    @property
    def total_lag(self) -> int:
        return sum(self.lag.values())

    @property
    def total_committed(self) -> int:
        return sum(max(0, c) for c in self.committed.values())

    @property
    def total_high(self) -> int:
        return sum(self.high.values())


class LagSampler:
    """Samples the group's lag (streaming.offsets.group_lag) every `interval` s in a thread."""

    def __init__(self, settings: Settings, interval: float = 0.5, *, applied: bool = False) -> None:
        self.settings = settings
        self.interval = interval
        self.samples: list[LagSample] = []
        self.with_applied = applied
        self.applied: list[tuple[float, dict[int, int]]] = []  # (monotonic, last applied offsets)
        self.errors = 0
        self.paused = threading.Event()  # set while the broker is down on purpose
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        # its own thread: reading the lag can block for seconds while a broker is down
        self._applied_thread = threading.Thread(target=self._run_applied, daemon=True)

    def __enter__(self) -> LagSampler:
        self._thread.start()
        if self.with_applied:
            self._applied_thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        if self._applied_thread.is_alive():
            self._applied_thread.join(15)

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            if self.paused.is_set():
                self._stop.wait(self.interval)
                continue
            try:
                rows = group_lag(self.settings)
                committed = {r.partition: (r.committed if r.committed >= 0 else r.low) for r in rows}
                self.samples.append(LagSample(began, committed, {r.partition: r.high for r in rows}))
            except Exception:
                self.errors += 1
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def _run_applied(self) -> None:
        from bench.harness.stores import redis_watermarks
        from tweetflow.clients import redis_client

        r = None
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                r = r or redis_client(self.settings, socket_timeout=2)
                self.applied.append((began, redis_watermarks(self.settings, r)))
            except Exception:
                self.errors += 1
                r = None  # a new client finds the cluster's nodes anew
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - began)))
