"""The hot tier's history and rebuild plans: pure parts, no stack needed (the behaviour on the
real stack: test_hot_healing.py)."""

from __future__ import annotations

from streaming.healer import HealRange, ShardPlan
from tweetflow import hot_history as hh


def test_a_shard_is_complete_from_a_number_only() -> None:
    assert hh.history_start("1780000000") == 1780000000
    assert hh.history_start(b"1780000000") == 1780000000
    assert hh.history_start(hh.HEALING) is None
    assert hh.history_start(None) is None


def test_the_tier_is_complete_from_its_latest_shard_and_only_if_every_shard_is() -> None:
    assert hh.combined_start([b"100", b"250", b"200"]) == 250
    assert hh.combined_start([b"100", None]) is None
    assert hh.combined_start([b"100", b"pending"]) is None
    assert hh.combined_start([]) is None


def test_evictions_count_only_against_a_baseline_of_the_same_server_run() -> None:
    assert hh.evictions_since("run1 5", "run1", 6)
    assert not hh.evictions_since("run1 5", "run1", 5)
    assert not hh.evictions_since("run1 5", "run2", 9)  # restarted: the counter began again
    assert not hh.evictions_since(None, "run1", 9)
    assert hh.evictions_since(b"run1 0", "run1", 1)


def test_a_plan_survives_its_round_trip_through_redis_fields() -> None:
    plan = ShardPlan(0, "abc", "hole1", 1780000000, "raw", 1779999700,
                     [HealRange(0, 10, 500), HealRange(3, 7, 9, "7 9")], 1780172800.5)
    again = ShardPlan.parse(0, plan.fields())
    assert again == plan
    assert ShardPlan.parse(0, {}) is None


def test_progress_counts_the_offsets_below_the_rebuilds_watermarks() -> None:
    plan = ShardPlan(0, "abc", "h", 0, "kafka", 0, [HealRange(0, 10, 20), HealRange(1, 0, 10)])
    assert plan.total == 20
    assert plan.done({}) == 0
    assert plan.done({0: 14, 1: 9}) == 5 + 10
    assert plan.done({0: 99}) == 10  # never past a range's end
