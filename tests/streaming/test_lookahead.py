"""How much the producer keeps made ahead (streaming/lookahead.py).

Found by `make demo`: its trickle producer (`tweetflow produce --rate 50 --duration 0`) filled
its buffer during every pacing wait until the memory cap, and each buffered synthetic message
held ~5 KB more than its payload (orjson's output buffer): 6.4 GB of RSS after 73 s.
"""

from __future__ import annotations

import tracemalloc

from streaming.lookahead import fill_target
from streaming.producer import BurstSpec, RunPlan
from streaming.synthetic import SyntheticSource

GENERATION = 50_000.0  # messages a second one process makes (the module docstring's figure)
MEMORY_CAP = 1_000_000


def test_a_steady_run_without_end_keeps_nothing_ahead() -> None:
    assert fill_target(RunPlan(rate=50, duration=None), GENERATION, MEMORY_CAP) == 0
    assert fill_target(RunPlan(rate=50, duration=0), GENERATION, MEMORY_CAP) == 0


def test_a_burst_is_made_ahead_up_to_the_memory_cap() -> None:
    burst = RunPlan(rate=2000, duration=60, burst=BurstSpec(143_000, 10))
    assert fill_target(burst, GENERATION, MEMORY_CAP) == MEMORY_CAP  # 1.43 M wanted
    small = RunPlan(rate=2000, duration=60, burst=BurstSpec(40_000, 2))
    assert fill_target(small, GENERATION, MEMORY_CAP) == 80_000


def test_an_unpaced_run_may_fill_the_memory_cap() -> None:
    assert fill_target(RunPlan(rate=0, duration=None, count=5_000_000), GENERATION,
                       MEMORY_CAP) == MEMORY_CAP
    assert fill_target(RunPlan(rate=0, duration=None, count=1000), GENERATION, MEMORY_CAP) == 1000


def test_a_synthetic_message_holds_little_more_than_its_bytes() -> None:
    source = SyntheticSource(7)
    tracemalloc.start()
    try:
        held = [source.next_message(None) for _ in range(2000)]
        payload = sum(len(m[0]) + len(m[1]) for m in held) / len(held)
        before = tracemalloc.get_traced_memory()[0]
        del held  # what the messages alone held (the generator keeps its own recent Tweets)
        per_message = (before - tracemalloc.get_traced_memory()[0]) / 2000
    finally:
        tracemalloc.stop()
    assert per_message < payload + 300, (per_message, payload)
