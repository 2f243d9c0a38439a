"""How a pipeline recovers from an event (a node killed, the group scaled), read from what a
`LagSampler(applied=True)` sampled: when every partition had applied what the topic held at the
event (its high watermark in the last lag sample before it, at most one interval old), when the
group's lag came back under a threshold, and the largest lag in between.

Why both: a killed broker stalls only the partitions it led, so the total applied count keeps
rising through the outage; "every partition applied what it held at the event" says the stalled
ones resumed (a batch already in hand when the event came does not count as progress). The lag
threshold says the backlog they built was worked off.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from bench.harness.lag import LagSampler
from bench.report import percentile


@dataclass
class Recovery:
    at: float  # monotonic time of the event
    progressed_at: float | None = None  # every partition applied what it held at the event
    recovered_at: float | None = None  # ... and the lag back under the threshold
    max_lag: int = 0  # the group's largest lag from the event to the next event or the end
    blind_s: float = 0.0  # the longest time without a lag reading in that window (a dead
    # broker can hold the reads up: the lag then peaked unseen, above max_lag)

    @property
    def progress_s(self) -> float:
        return self.progressed_at - self.at if self.progressed_at else float("nan")

    @property
    def recovery_s(self) -> float:
        return self.recovered_at - self.at if self.recovered_at else float("nan")


def lag_threshold(sampler: LagSampler, since: float, rate: float) -> float:
    """Twice the 95th percentile of the lag sampled since `since` (the baseline under steady
    ingest), and at least one second of the offered rate."""
    baseline = [x.total_lag for x in sampler.samples if x.t >= since]
    return max(2 * percentile(baseline, 95) if baseline else 0.0, rate)


def recovery(sampler: LagSampler, at: float, threshold: float, partitions: int,
             until: float | None = None) -> Recovery:
    """The recovery from an event at `at` (monotonic), as far as the samples go."""
    out = Recovery(at)
    before = [x.high for x in list(sampler.samples) if x.t <= at]
    held = before[-1] if before else {}  # next offset to be written, per partition
    for t, applied in list(sampler.applied):  # the last offset applied, per partition
        if t > at and all(applied.get(p, -1) >= held.get(p, 0) - 1 for p in range(partitions)):
            out.progressed_at = t
            break
    window = [x for x in list(sampler.samples) if x.t >= at and (until is None or x.t <= until)]
    out.max_lag = max((x.total_lag for x in window), default=0)
    times = [at, *(x.t for x in window)]
    out.blind_s = max((b - a for a, b in pairwise(times)), default=0.0)
    if out.progressed_at is not None:
        out.recovered_at = next((x.t for x in window if x.t >= out.progressed_at
                                 and x.total_lag <= threshold), None)
    return out
