"""The bench's pure helpers: the truth it compares stores with, and the timing arithmetic of the
scenarios (no stack needed)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from bench.harness import KafkaRecord, LagSample, LagSampler, Truth, diff_counters, recovery
from bench.scenarios import SCENARIOS, load
from bench.scenarios.bad_input import cases
from bench.scenarios.burst import _between
from bench.scenarios.freshness import visibility
from bench.scenarios.replay import compare
from streaming.synthetic import SyntheticSource
from tweetflow.hot_keys import ID_LOW_BITS, bucket_start, dedup_meta_key, is_dedup_key, seen_key


def _records(n: int, seed: int = 5) -> list[KafkaRecord]:
    source = SyntheticSource(seed, start_ms=1_700_000_000_000, rate=50.0)
    out = []
    for offset in range(n):
        key, value, _ = source.next_message()
        out.append(KafkaRecord(0, offset, key, value, 0))
    return out


def test_truth_counts_unique_live_tweets_per_minute_and_hashtags_per_hour() -> None:
    records = _records(3000)
    duplicate = records[10]
    records.append(KafkaRecord(0, 3000, duplicate.key, duplicate.value, 0))
    records.append(KafkaRecord(0, 3001, b"x", b"not json", 0))
    truth = Truth.of(records)
    assert truth.messages == 3002
    assert truth.dead_letters == {(0, 3001): "invalid_json"}
    assert truth.tweet_events == len(truth.tweets) + 1  # the duplicate copy
    assert truth.deleted and truth.deleted <= set(truth.tweets)  # synthetic deletes hit own Tweets
    live = truth.live()
    assert len(live) == len(truth.tweets) - len(truth.deleted)
    assert sum(truth.minute_counts().values()) == len(live)
    t = next(iter(live.values()))
    if t.hashtags:
        hour = bucket_start(t.created_at.timestamp(), "h")
        assert truth.hour_hashtags()[(hour, t.hashtags[0].lower())] >= 1


def test_diff_counters_names_the_first_differences() -> None:
    assert diff_counters(Counter(a=1, b=2), Counter(a=1, b=2)) == []
    out = diff_counters(Counter({i: 1 for i in range(10)}), Counter(), limit=2)
    assert out == ["0: expected 1, got 0", "1: expected 1, got 0", "... 8 more"]


def test_replay_rebuild_compares_counts_but_not_the_dedup_layout() -> None:
    def state(k: int, minute_count: int) -> dict:
        """A snapshot as redis_state names its keys: after the prefix, without the shard tag."""
        window = 1_900_000_000_000_000_000 >> (ID_LOW_BITS + k)
        seen = seen_key("tf", 0, k, window).split("}:", 1)[1]
        dedup_meta = dedup_meta_key("tf", 0).split("}:", 1)[1]
        return {"clickhouse": {"live_tweets": minute_count}, "redis": {
            "n:m:60": minute_count, seen: minute_count, dedup_meta: {"k493": str(k)}}}

    live, rebuilt = state(17, 40), state(18, 40)
    assert compare(live, rebuilt, same_group=False) == []
    assert len(compare(live, rebuilt)) == 3  # one consumer group keeps its dedup layout
    assert compare(live, state(18, 41), same_group=False) == [
        "clickhouse live_tweets: 40 != 41", "redis n:m:60: 40 != 41"]
    assert all(is_dedup_key(k) for k in (seen_key("tf", 2, 9, 7), dedup_meta_key("tf", 2)))
    assert not any(is_dedup_key(k) for k in ("n:m:60", "tf:{s0}:z:hashtag:h:3600", "tf:{s0}:wm:t"))


def test_visibility_is_the_first_watermark_poll_at_or_past_the_offset() -> None:
    records = [KafkaRecord(0, 0, None, b"", 1_000), KafkaRecord(0, 1, None, b"", 1_100),
               KafkaRecord(1, 0, None, b"", 1_000)]
    polls = [(1.05, {0: -1}), (1.2, {0: 0}), (1.5, {0: 1, 1: 0})]
    assert [d for _, d in visibility(records, polls)] == pytest.approx([0.2, 0.4, 0.5])
    assert [t for t, _ in visibility(records, polls)] == pytest.approx([1.0, 1.1, 1.0])


def test_burst_window_growth_interpolates_a_cumulative_series() -> None:
    points = [(0.0, 0), (1.0, 100), (2.0, 1100), (3.0, 1200)]
    assert _between(points, 1.0, 2.0) == pytest.approx(1000)
    assert _between(points, 0.5, 2.5) == pytest.approx(1100)


def test_bad_input_cases_cover_every_reason_code_and_parse_as_expected() -> None:
    from streaming.pipeline import Record, parse_records

    all_cases = cases()
    codes = {c.reason_code for c in all_cases}
    assert {"invalid_json", "invalid_utf8", "missing_field", "wrong_type", "invalid_value",
            "future_timestamp", "oversize", "unknown_shape", "empty"} <= codes
    for case in all_cases:
        located, letters = parse_records([Record(0, 0, case.key, case.value)])
        assert not located and letters[0].reason_code == case.reason_code, case.label
    assert json.loads(all_cases[6].value or b"null")["data"].get("id") is None  # no id


def test_recovery_waits_for_every_partition_to_apply_what_it_held_then_for_the_lag() -> None:
    """A killed broker stalls the partitions it led (here 1) while the others go on: progress
    counts from when the stalled one has applied what the topic held at the event, recovery from
    when the lag is back under the bar."""
    sampler = LagSampler(None, applied=True)  # type: ignore[arg-type]  # never started
    for t in range(10):
        high = {0: 100 + 10 * t, 1: 100 + 10 * t}  # next offsets to be written
        applied = {0: 99 + 10 * t, 1: 60 if t < 5 else 120}  # last offsets applied
        sampler.applied.append((float(t), applied))
        lag = [50, 60, 400, 900, 700, 300, 90, 80, 70, 60][t]
        sampler.samples.append(LagSample(float(t), {0: high[0] - lag, 1: high[1]}, high))
    rec = recovery(sampler, 0.5, 100, 2)  # held at 0.5: offsets up to 99 (the sample at 0)
    assert (rec.progressed_at, rec.recovered_at, rec.max_lag) == (5.0, 6.0, 900)
    assert (rec.progress_s, rec.recovery_s) == (4.5, 5.5)
    assert recovery(sampler, 0.5, 100, 2, until=2.0).max_lag == 400
    assert rec.blind_s == 1.0
    late = recovery(sampler, 7.5, 100, 2)  # partition 1 never applies offsets 120..169
    assert (late.progressed_at, late.recovered_at, late.max_lag) == (None, None, 70)


def test_every_scenario_module_loads() -> None:
    for name in SCENARIOS:
        module = load(name)
        assert name == module.NAME and module.TITLE and callable(module.run)
    with pytest.raises(KeyError):
        load("nope")
