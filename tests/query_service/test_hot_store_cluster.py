"""The hot store's reads on a real Redis Cluster (six shards over three masters) equal the counts of
the input, exactly: top K (merged across shards, ties by member), scores, series, volume and the
newest minute; the same reads of a one-shard standalone Redis agree."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict

import pytest

from query_service.hot_store import HotStore, connect
from query_service.planner import HOUR, MINUTE, Part, Source
from streaming.parsing import parse_payload
from streaming.sinks import ClickHouseSink, HotAggregatesSink, PartitionBatch
from streaming.synthetic import generate
from tweetflow.hot_keys import home_shard
from tweetflow.model import Event
from tweetflow.settings import Settings


def _events(now: float) -> list[Event]:
    start_ms = int((now - 3 * 3600) * 1000)
    return [e for _, value, _ in generate(91, start_ms=start_ms, count=5000, rate=0.5)
            for e in parse_payload(value)]


def _write(settings: Settings, events: list[Event]) -> None:
    """As the consumers do: raw rows, then each partition's batch (keyed by the Tweet id)."""
    sink = ClickHouseSink(settings)
    sink.write([(0, i, e) for i, e in enumerate(events)])
    sink.close()
    shards = settings.hot_shard_count
    batches: dict[int, PartitionBatch] = {}
    for offset, event in enumerate(events):
        partition = home_shard(event.tweet_id, shards) if shards > 1 else 0
        b = batches.setdefault(partition, PartitionBatch(partition, -1))
        b.events.append((offset, event))
        b.keys[offset] = str(event.tweet_id).encode()
        b.last_offset = offset
    hot = HotAggregatesSink(settings)
    try:
        hot.apply_all(list(batches.values()), {})
    finally:
        hot.close()


def _truth(events: list[Event]) -> tuple[dict, dict]:
    """(hashtag counts, Tweets) per (grain, bucket) of the Tweets not deleted."""
    deleted = {e.tweet_id for e in events if e.kind == "delete"}
    tweets = {e.tweet_id: e.tweet for e in events if e.tweet is not None}
    tags: dict[tuple[int, int], Counter[str]] = defaultdict(Counter)
    volume: Counter[tuple[int, int]] = Counter()
    for tweet_id, t in tweets.items():
        if tweet_id in deleted:
            continue
        for grain in (MINUTE, HOUR):
            bucket = int(t.created_at.timestamp()) // grain * grain
            volume[(grain, bucket)] += 1
            tags[(grain, bucket)].update({h.lower() for h in t.hashtags})
    return tags, volume


def _summed(tags: dict, parts: list[Part]) -> Counter[str]:
    total: Counter[str] = Counter()
    for p in parts:
        for bucket in p.buckets():
            total.update(tags.get((p.grain, bucket), Counter()))
    return total


@pytest.mark.parametrize("mode", ["cluster", "standalone"])
def test_every_hot_read_equals_the_input(mode: str, request: pytest.FixtureRequest) -> None:
    settings: Settings = request.getfixturevalue(
        "cluster_settings" if mode == "cluster" else "test_settings")
    now = time.time()
    events = _events(now)
    _write(settings, events)
    tags, volume = _truth(events)
    hour = int(now) // HOUR * HOUR
    parts = [Part(Source.HOT, hour - 3 * HOUR, hour - HOUR, HOUR),
             Part(Source.HOT, hour - HOUR, hour - HOUR + 30 * MINUTE, MINUTE)]
    expected = _summed(tags, parts)
    ranked = sorted(expected.items(), key=lambda kv: (-kv[1], kv[0]))
    members = [m for m, _ in ranked[:5]] + ["no-such-tag"]
    minutes = [Part(Source.HOT, hour - 2 * HOUR, hour - 2 * HOUR + 20 * MINUTE, MINUTE)]

    async def reads():
        client = connect(settings)
        store = HotStore(client, settings.redis_prefix, settings.hot_shard_count)
        try:
            tops = {k: await store.top("hashtag", parts, k) for k in (1, 3, 10, 50, None)}
            return (tops, await store.scores("hashtag", members, parts),
                    await store.series("hashtag", members[0], minutes),
                    await store.volume(minutes), await store.newest_minute(now, 4 * HOUR))
        finally:
            await client.aclose()

    tops, scores, series, rows, newest = asyncio.run(reads())
    assert settings.hot_shard_count == (6 if mode == "cluster" else 1)
    for k, top in tops.items():
        assert top == (ranked if k is None else ranked[:k]), k
    assert scores == {m: expected.get(m, 0) for m in members}
    assert series == {b: tags.get((MINUTE, b), Counter())[members[0]]
                      for b in minutes[0].buckets()}
    assert {b: r.count for b, r in rows.items()} == {b: volume[(MINUTE, b)]
                                                    for b in minutes[0].buckets()}
    assert newest == max(b for (grain, b), n in volume.items() if grain == MINUTE and n and b <= now)


def test_sums_over_most_of_an_hour_and_hour_bounds_stay_exact(test_settings: Settings) -> None:
    """query_service.bucket_sums' plans on real keys: 35 minutes of an hour are read as the hour
    minus its other 25 minutes, 20 minutes with the hour key as their bound; both stay exact when
    the hour's leaders count only outside the window, and a missing hour key (each minute then
    bounds itself) changes nothing in the bounded read."""
    import random

    from tweetflow.clients import redis_client
    from tweetflow.hot_keys import dimension_key

    r, rng = redis_client(test_settings), random.Random(7)
    hour = (int(time.time()) // HOUR - 1) * HOUR
    per_minute: list[dict[str, int]] = []
    for minute in range(60):
        counts = ({"outside": 100 + minute, "everywhere": 1} if minute < 25 else
                  {f"w{i}": rng.randint(1, 9) for i in range(rng.randint(1, 30))})
        r.zadd(dimension_key(test_settings.redis_prefix, "hashtag", "m", hour + minute * MINUTE),
               counts)
        per_minute.append(counts)
    hour_key = dimension_key(test_settings.redis_prefix, "hashtag", "h", hour)
    r.zadd(hour_key, dict(sum((Counter(c) for c in per_minute), Counter())))

    def expected(first: int) -> list[tuple[str, int]]:
        total = sum((Counter(c) for c in per_minute[first:]), Counter())
        return sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))

    async def reads(first: int):
        client = connect(test_settings)
        try:
            store = HotStore(client, test_settings.redis_prefix, 1)
            window = [Part(Source.HOT, hour + first * MINUTE, hour + HOUR, MINUTE)]
            tops = {k: await store.top("hashtag", window, k, platforms=["x"])
                    for k in (1, 3, 10, None)}
            return tops, await store.scores("hashtag", ["outside", "w1"], window)
        finally:
            await client.aclose()

    for first, drop_hour in ((25, False), (40, False), (40, True)):
        if drop_hour:
            r.delete(hour_key)
        ranked = expected(first)
        tops, scores = asyncio.run(reads(first))
        for k, top in tops.items():
            assert top == (ranked if k is None else ranked[:k]), (first, drop_hour, k)
        if not drop_hour:
            assert scores == {m: dict(ranked).get(m, 0) for m in ("outside", "w1")}, first
