"""How much to publish and how fast: a run's plan (`RunPlan`: rates, a burst, a count or a
duration; when each original is due, how a plan is shared among processes) and the token bucket
that paces `streaming.producer.run_plan` to it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["BurstSpec", "RunPlan", "TokenBucket"]


class TokenBucket:
    """Paces calls to `rate` per second (0 = unlimited), allowing `slack` seconds of burst.

    Hand-written: twenty lines with an injectable sleep (the producer serves delivery callbacks
    while it waits), which the rate-limiter packages do not offer. Sleeps only once the debt
    exceeds a millisecond, so high rates cost no syscall per message.
    """

    def __init__(self, rate: float, slack: float = 0.05,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Any] = time.sleep) -> None:
        self._clock, self._sleep, self._slack = clock, sleep, slack
        self._tokens, self._last = 0.0, clock()
        self.rate = 0.0
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        self.rate = max(0.0, rate)
        self._capacity = max(1.0, self.rate * self._slack)

    def credit(self) -> float:
        """Calls that may go now without a wait (what fell due while nobody called)."""
        if self.rate <= 0:
            return math.inf
        return min(self._capacity, self._tokens + (self._clock() - self._last) * self.rate)

    def take(self, n: int = 1) -> None:
        """Pay for `n` calls, sleeping off any debt over a millisecond."""
        if self.rate <= 0:
            return
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self.rate) - n
        self._last = now
        if self._tokens < 0:
            wait = -self._tokens / self.rate
            if wait >= 0.001:
                self._sleep(wait)


@dataclass(frozen=True)
class BurstSpec:
    """`RATE:SECONDS`: run at RATE messages/s for SECONDS in the middle of the run."""

    rate: float
    seconds: float

    @classmethod
    def parse(cls, text: str) -> BurstSpec:
        try:
            rate, seconds = (float(x) for x in text.split(":"))
        except ValueError:
            raise ValueError(f"burst {text!r} is not RATE:SECONDS") from None
        if rate < 0 or seconds <= 0:
            raise ValueError(f"burst {text!r}: RATE must be >= 0 and SECONDS > 0")
        return cls(rate, seconds)


@dataclass(frozen=True)
class RunPlan:
    """How much to publish and how fast. `rate`, `count` and `duration` limit originals;
    duplicates come on top. The run stops at `count` or `duration`, whichever comes first
    (None or <= 0: no limit of that kind), or when the source is exhausted."""

    rate: float = 1000.0
    duration: float | None = 10.0
    count: int | None = None
    duplicates: float = 0.0
    burst: BurstSpec | None = None
    seed: int = 42
    duplicate_delay: tuple[float, float] = (0.05, 1.0)  # seconds after the original
    window: tuple[float, float] | None = None  # the burst's, when fixed by a whole run (share)

    def burst_window(self) -> tuple[float, float] | None:
        """(start, end) of the burst in seconds from the start of the run: centred on the run's
        nominal length (`duration`, else `count / rate`)."""
        if self.burst is None:
            return None
        if self.window is not None:
            return self.window
        if self.duration and self.duration > 0:
            length = self.duration
        elif self.count and self.rate > 0:
            length = self.count / self.rate
        else:
            length = 0.0
        start = max(0.0, (length - self.burst.seconds) / 2)
        return start, start + self.burst.seconds

    def phases(self) -> list[tuple[float, float, float]]:
        """(start, end, rate) of the run's phases in seconds from its start; the last ends at
        `duration` or never (inf); rate 0 = unpaced."""
        end = self.duration if self.duration and self.duration > 0 else math.inf
        window = self.burst_window()
        if window is None or self.burst is None:
            return [(0.0, end, self.rate)]
        cuts = [(0.0, window[0], self.rate), (window[0], window[1], self.burst.rate),
                (window[1], end, self.rate)]
        return [(a, min(b, end), r) for a, b, r in cuts if a < min(b, end)]

    def offset_of(self, i: int) -> float | None:
        """When the plan sends original number `i` (from 0), in seconds from its start; None
        when that falls in an unpaced phase or after the run."""
        sent = 0.0
        for start, end, rate in self.phases():
            if rate <= 0:
                return None
            if i < sent + (end - start) * rate:
                return start + (i - sent) / rate
            sent += (end - start) * rate
        return None

    def planned_originals(self) -> float:
        """How many originals the whole run sends (inf: no end, or an unpaced phase)."""
        total = sum(math.inf if rate <= 0 else (end - start) * rate
                    for start, end, rate in self.phases())
        return min(total, self.count) if self.count and self.count > 0 else total

    def share(self, index: int, processes: int) -> RunPlan:
        """Process `index`'s part of the plan when `processes` run it together: the rates
        divided, `count` split exactly (the first ones take the remainder), the same burst
        window, its own seed for duplicates."""
        count = self.count
        if count and count > 0:
            count = count // processes + (index < count % processes)
        burst = self.burst and BurstSpec(self.burst.rate / processes, self.burst.seconds)
        window = self.burst_window()
        return replace(self, rate=self.rate / processes, count=count, burst=burst,
                       seed=self.seed + index, window=window)
