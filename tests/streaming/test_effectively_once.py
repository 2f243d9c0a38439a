"""The effectively-once promise, against the real local stack: whatever happens to the workers
(replays, duplicates, kill -9, a sink going away), ClickHouse holds every Tweet once, Redis counts
every Tweet once, and every malformed message reaches the dead-letter topic.

Expected numbers are computed by `streaming_support.expect` from the bytes read back from the
topic and the documented semantics, never from the sinks under test.
"""

from __future__ import annotations

import os
import random
import signal
import time
from datetime import UTC, datetime

import orjson
import pytest
from confluent_kafka import KafkaException
from streaming_support import (
    BackgroundProducer,
    KafkaRecord,
    PrivateClickHouse,
    PrivateRedis,
    WorkerProcess,
    assert_clickhouse_matches,
    assert_committed_everything,
    assert_dead_letters,
    assert_hot_matches,
    ch_rows,
    cli_env,
    committed_offsets,
    drain,
    expect,
    high_watermarks,
    interleave,
    malformed,
    processes,
    produce,
    read_hot,
    read_topic,
    redis_snapshot,
    store_raw,
    synthetic,
    total_lag,
    wait_for,
    with_duplicates,
)

from streaming.offset_reset import reset_group
from streaming.parsing import parse_payload
from streaming.sinks import HotAggregatesSink, PartitionBatch
from tweetflow.app import cli
from tweetflow.clients import ensure_topics, kafka_admin
from tweetflow.hot_keys import watermark_key
from tweetflow.schema import ensure_schema
from tweetflow.settings import Settings

pytestmark = pytest.mark.slow


def _ch_counts(settings: Settings) -> tuple[int, int]:
    return (ch_rows(settings, "SELECT count() FROM raw_tweets")[0][0],
            ch_rows(settings, "SELECT count() FROM tweet_deletes")[0][0])


def _rows_since(settings: Settings, since: datetime) -> int:
    """Rows ingested at or after `since` (a merge keeps the newest row, so none can hide)."""
    micros = int(since.timestamp() * 1_000_000)
    return sum(ch_rows(settings, f"SELECT count() FROM {table} "
                                 f"WHERE toUnixTimestamp64Micro(ingested_at) >= {micros}")[0][0]
               for table in ("raw_tweets", "tweet_deletes"))


def test_happy_path_counts_each_tweet_once_and_dead_letters_the_rest(test_settings: Settings) -> None:
    s = test_settings
    hot = with_duplicates(synthetic(101, 1800), 0.1, seed=1)
    cold = synthetic(102, 60, hours_ago=75, span_hours=2)  # beyond the 48 h horizon: ClickHouse only
    pairs = interleave(hot + cold, malformed(), seed=2)
    produce(s, pairs)
    records = read_topic(s)
    assert len(records) == len(pairs)
    exp = expect(records)
    assert exp.deleted and exp.duplicates and exp.deletes, "the input lacks deletes or duplicates"
    assert set(exp.dead_letter_codes) == {"invalid_json", "invalid_utf8", "missing_field",
                                          "oversize", "unknown_shape", "empty"}

    totals = drain(s)

    assert_clickhouse_matches(s, exp)
    assert_hot_matches(s, exp)
    assert_dead_letters(s, exp)
    assert_committed_everything(s)
    assert totals.messages == len(records) and totals.replayed == 0
    assert totals.dead_letters == len(exp.letters)
    assert (totals.counted, totals.duplicates, totals.deletes) == (
        exp.counted, exp.duplicates, exp.deletes)


def test_replay_from_earliest_changes_nothing(test_settings: Settings) -> None:
    s = test_settings
    produce(s, interleave(with_duplicates(synthetic(201, 1200), 0.1, seed=3), malformed(), seed=4))
    records = read_topic(s)
    exp = expect(records)
    drain(s)
    assert_hot_matches(s, exp)
    redis_before, ch_before = redis_snapshot(s), _ch_counts(s)
    dlq_before = high_watermarks(s, s.topic_dlq)
    replay_started = datetime.now(UTC)

    moved = reset_group(s, "earliest")

    assert {tp.partition: tp.offset for tp in moved} == {p: 0 for p in high_watermarks(s)}
    assert committed_offsets(s) == {p: 0 for p in high_watermarks(s)}
    totals = drain(s)
    assert redis_snapshot(s) == redis_before
    assert _rows_since(s, replay_started) == 0
    after = _ch_counts(s)  # without FINAL: merges may only ever lower these
    assert after[0] <= ch_before[0] and after[1] <= ch_before[1]
    assert high_watermarks(s, s.topic_dlq) == dlq_before
    assert totals.messages == totals.replayed == len(records)
    assert (totals.events, totals.dead_letters, totals.counted) == (0, 0, 0)
    assert_clickhouse_matches(s, exp)
    assert_committed_everything(s)


def test_replay_to_a_time_rereads_only_the_tail_and_changes_nothing(test_settings: Settings) -> None:
    s = test_settings
    produce(s, synthetic(301, 500))
    time.sleep(0.05)
    cut = datetime.now(UTC)
    cut_ms = int(cut.timestamp() * 1000)
    time.sleep(0.05)
    produce(s, with_duplicates(synthetic(302, 500), 0.1, seed=5))
    records = read_topic(s)
    tail = [r for r in records if r.timestamp_ms >= cut_ms]
    assert 0 < len(tail) < len(records)
    drain(s)
    exp = expect(records)
    assert_hot_matches(s, exp)
    redis_before = redis_snapshot(s)
    highs = high_watermarks(s)
    first_after = {p: min((r.offset for r in tail if r.partition == p), default=high)
                   for p, high in highs.items()}

    with cli_env(s):
        assert cli.main(["replay", "--to", cut.isoformat(), "--execute"]) == 0

    assert committed_offsets(s) == first_after
    totals = drain(s)
    assert totals.messages == totals.replayed == len(tail)
    assert redis_snapshot(s) == redis_before
    # what arrives after a replay is counted as usual
    produce(s, with_duplicates(synthetic(303, 300), 0.2, seed=6))
    drain(s)
    exp = expect(read_topic(s))
    assert_hot_matches(s, exp)
    assert_clickhouse_matches(s, exp)
    assert_committed_everything(s)


def test_every_message_published_twice_counts_once(test_settings: Settings) -> None:
    s = test_settings
    base = interleave(synthetic(401, 800), malformed()[:2], seed=7)
    produce(s, [pair for pair in base for _ in range(2)])  # each copy right after the original
    drain(s)
    exp = expect(read_topic(s))
    assert exp.duplicates >= 800
    assert_hot_matches(s, exp)
    assert_clickhouse_matches(s, exp)
    assert_dead_letters(s, exp)  # both copies of a malformed message, each once
    wm_key = watermark_key(s.redis_prefix, s.topic_raw).encode()
    before = {k: v for k, v in redis_snapshot(s).items() if k != wm_key}

    # the whole stream a third time, in later batches: only the per-id `seen` state catches it
    produce(s, base)
    totals = drain(s)

    assert {k: v for k, v in redis_snapshot(s).items() if k != wm_key} == before
    assert totals.messages == len(base) and totals.replayed == 0
    assert totals.counted == totals.deletes == 0
    exp = expect(read_topic(s))
    assert_hot_matches(s, exp)
    assert_clickhouse_matches(s, exp)
    assert_committed_everything(s)


def test_kill_9_workers_at_random_moments_keeps_counts_exact(test_settings: Settings,
                                                             tmp_path) -> None:
    s = test_settings
    seed = int(os.environ.get("TF_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    pairs = interleave(with_duplicates(synthetic(501, 2400), 0.1, seed=8), malformed()[:3], seed=9)
    with processes() as children:
        workers = [WorkerProcess(s, tmp_path / f"worker{i}.log", batch_size=100, batch_ms=100,
                                 idle_exit_s=12) for i in range(2)]
        children.extend(workers)
        for w in workers:
            w.start()
        with BackgroundProducer(s, pairs, rate=200):
            for _ in range(3):
                time.sleep(rng.uniform(1.0, 3.5))
                victim = rng.choice(workers)
                assert victim.alive(), victim.log()
                assert victim.kill() == -signal.SIGKILL
                victim.start()
        wait_for(lambda: not any(w.alive() for w in workers), 90,
                 f"the workers to go idle and exit (TF_CRASH_SEED={seed})")
        for w in workers:
            assert w.proc is not None and w.proc.returncode == 0, w.log()
    if total_lag(s):  # both went idle while a rebalance held partitions: finish the job
        drain(s)
    exp = expect(read_topic(s))
    assert_hot_matches(s, exp)
    assert_clickhouse_matches(s, exp)
    assert_dead_letters(s, exp, exactly_once=False)
    assert_committed_everything(s)


def _outage(settings: Settings, tmp_path, server: PrivateRedis | PrivateClickHouse, sink: str,
            children: list) -> None:
    """Produce while one worker consumes; stop `server` for ~8 s mid-stream: the worker must
    keep retrying without committing, then catch up."""
    worker = WorkerProcess(settings, tmp_path / "worker.log", batch_size=100, batch_ms=100)
    children.append(worker)
    worker.start()
    pairs = interleave(with_duplicates(synthetic(601, 1500), 0.1, seed=10), malformed()[:2],
                       seed=11)
    with BackgroundProducer(settings, pairs, rate=150):
        wait_for(lambda: sum(committed_offsets(settings).values()) > 100, 60,
                 "the worker to commit its first batches")
        server.stop()
        wait_for(lambda: f"{sink} unavailable" in worker.log(), 30, "the worker to back off")
        frozen = committed_offsets(settings)
        down_until = time.monotonic() + 8
        while time.monotonic() < down_until:
            assert worker.alive(), worker.log()
            assert committed_offsets(settings) == frozen, "committed while a sink was down"
            time.sleep(1)
        server.start()
    wait_for(lambda: total_lag(settings) == 0, 90, "catch-up after the outage")
    worker.signal(signal.SIGTERM)
    assert worker.wait(60) == 0, worker.log()


def test_redis_outage_backs_off_without_committing(test_settings: Settings, tmp_path) -> None:
    with processes() as children:
        redis = PrivateRedis(tmp_path / "redis")
        children.append(redis.start())
        s = test_settings.model_copy(update={"redis_url": redis.url})
        _outage(s, tmp_path, redis, "redis", children)
        exp = expect(read_topic(s))
        assert_hot_matches(s, exp, url=redis.url)
        assert_clickhouse_matches(s, exp)
        assert_dead_letters(s, exp)
        assert_committed_everything(s, url=redis.url)


def test_clickhouse_outage_backs_off_without_committing(test_settings: Settings,
                                                        tmp_path) -> None:
    with processes() as children:
        endpoint = PrivateClickHouse(tmp_path / "clickhouse")
        children.append(endpoint.start())
        s = test_settings.model_copy(update={"clickhouse_url": endpoint.url})
        ensure_schema(s)
        _outage(s, tmp_path, endpoint, "clickhouse", children)
        exp = expect(read_topic(s))
        assert_hot_matches(s, exp)
        assert_clickhouse_matches(s, exp)
        assert_dead_letters(s, exp)
        assert_committed_everything(s)


# --- two writers of one partition (a zombie after a rebalance), at the sink --------------------------


def _records(pairs, partition: int = 0, first_offset: int = 0) -> list[KafkaRecord]:
    return [KafkaRecord(partition, first_offset + i, k, v, 0) for i, (k, v) in enumerate(pairs)]


def _batch(records: list[KafkaRecord]) -> PartitionBatch:
    return PartitionBatch(records[0].partition, records[-1].offset,
                          [(r.offset, e) for r in records for e in parse_payload(r.value or b"")])


def test_zombie_applying_the_same_batch_counts_once(test_settings: Settings) -> None:
    s = test_settings
    records = _records(with_duplicates(synthetic(701, 400), 0.1, seed=12))
    exp = expect(records)
    batch = _batch(records)
    live, zombie = HotAggregatesSink(s), HotAggregatesSink(s)
    planned_on = (live.watermarks().get(0, -1), zombie.watermarks().get(0, -1))
    assert planned_on == (-1, -1)

    first = live.apply(batch, planned_on[0])
    second = zombie.apply(batch, planned_on[1])

    assert (first.counted, first.duplicates, first.deletes) == (exp.counted, exp.duplicates,
                                                                exp.deletes)
    assert second.already_applied and second.retries == 1
    assert (second.counted, second.deletes) == (0, 0)
    assert_hot_matches(s, exp)
    assert live.watermarks() == {0: records[-1].offset}


def test_one_moved_watermark_among_several_partitions_replans_only_that_partition(
        test_settings: Settings) -> None:
    """A batch spans partitions; another writer already applied one of them. The one atomic step
    must refuse, and the re-plan must count the other partitions once and that one not again."""
    s = test_settings
    first = _records(with_duplicates(synthetic(704, 300), 0.1, seed=15), partition=0)
    second = _records(synthetic(705, 300), partition=1)
    third = _records(synthetic(706, 300), partition=2)
    live, zombie = HotAggregatesSink(s), HotAggregatesSink(s)
    assert live.apply(_batch(second), -1).counted == expect(second).counted

    result = zombie.apply_all([_batch(first), _batch(second), _batch(third)], {})

    assert result.retries == 1 and not result.already_applied
    assert result.counted == expect(second + first + third).counted - expect(second).counted
    assert_hot_matches(s, expect(first + second + third))
    assert zombie.watermarks() == {0: first[-1].offset, 1: second[-1].offset, 2: third[-1].offset}


def test_a_writer_racing_between_plan_and_apply_is_caught(test_settings: Settings) -> None:
    """The competing write lands after the zombie planned (read the watermark and the `seen`
    state) and before its script runs: the compare-and-set must send the zombie back to planning."""
    s = test_settings
    pairs = with_duplicates(synthetic(702, 400), 0.1, seed=13)
    records = _records(pairs)
    head = records[:200]
    # other Tweets on two partitions at once (as producers with different partitioners would do)
    fresh = with_duplicates(synthetic(703, 200), 0.1, seed=14)
    third, other = _records(fresh[50:150], partition=1), _records(fresh, partition=2)
    store_raw(s, records + other)
    live = HotAggregatesSink(s)

    def zombie_racing(competing) -> HotAggregatesSink:
        zombie = HotAggregatesSink(s)
        original, fired = zombie.shard[0].lookup, []

        def lookup_then_compete(ids):
            found = original(ids)
            if not fired:
                fired.append(True)
                competing()
            return found

        zombie.shard[0].lookup = lookup_then_compete  # type: ignore[method-assign]
        return zombie

    # same partition: the live worker applies offsets 0..199 while the zombie plans 0..399
    tail = zombie_racing(lambda: live.apply(_batch(head), -1)).apply(_batch(records), -1)
    assert tail.retries == 1 and not tail.already_applied
    assert tail.counted == expect(records).counted - expect(head).counted
    assert_hot_matches(s, expect(records))
    # another partition, same ids: the watermark still matches, the per-id checks must not
    result = zombie_racing(lambda: live.apply(_batch(third), -1)).apply(_batch(other), -1)
    assert result.retries == 1 and not result.already_applied
    assert result.counted == expect(third + other).counted - expect(third).counted
    assert_hot_matches(s, expect(records + other + third))


# --- two versions of one Tweet id ----------------------------------------------------------------


def test_two_versions_of_a_tweet_id_count_the_same_version_in_both_sinks(
        test_settings: Settings) -> None:
    s = test_settings
    key, value = next((k, v) for k, v in synthetic(1301, 200, delete_fraction=0)
                      if b"referenced_tweets" not in (v or b""))
    doc = orjson.loads(value or b"")
    data = doc["data"]
    start = len(data["text"]) + 1
    data["text"] += " #VersionTwo"  # the same Tweet id, now with one more hashtag
    data.setdefault("entities", {}).setdefault("hashtags", []).append(
        {"start": start, "end": start + 11, "tag": "VersionTwo"})
    produce(s, [(key, value), (key, orjson.dumps(doc))])
    drain(s)
    tweet_id = int(data["id"])
    (hashtags,) = ch_rows(s, f"SELECT hashtags FROM raw_tweets FINAL WHERE tweet_id = {tweet_id}")[0]
    in_redis = any("versiontwo" in members
                   for (dim, _, _), members in read_hot(s).z.items() if dim == "hashtag")
    assert "versiontwo" in hashtags  # the newest version wins in ClickHouse ...
    assert in_redis  # ... and in Redis


# --- a raw topic deleted and created again ---------------------------------------------------------


def _recreate(settings: Settings, topic: str) -> None:
    admin = kafka_admin(settings)  # keep a reference until the future resolves
    admin.delete_topics([topic])[topic].result(timeout=30)

    def created() -> bool:
        try:
            return bool(ensure_topics(settings, topic))
        except KafkaException:  # still being deleted
            return False

    wait_for(created, 60, f"{topic} to be created again")


def test_a_recreated_topic_is_consumed_in_full(test_settings: Settings) -> None:
    s = test_settings
    produce(s, synthetic(1401, 200, delete_fraction=0))
    drain(s)
    _recreate(s, s.topic_raw)
    produce(s, synthetic(1402, 200, delete_fraction=0))
    drain(s)
    exp = expect(read_topic(s))
    stored = {r[0] for r in ch_rows(s, "SELECT tweet_id FROM raw_tweets FINAL")}
    assert set(exp.tweets) <= stored, f"{len(set(exp.tweets) - stored)} new Tweets never stored"
