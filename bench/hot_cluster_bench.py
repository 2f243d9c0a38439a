"""The hot tier on one Redis and on a Redis Cluster, side by side: the trending question's latency
on the hot path (uncached) and the dedup state's memory per million Tweet ids.

    .venv/bin/python -m bench.hot_cluster_bench [--tweets 300000] [--iterations 500]

1. Start a private six-node Redis Cluster (three masters, three replicas; the same code as
   `tweetflow stack up --profile cluster`) on free ports; the standalone side is the running
   stack's Redis.
2. On each, apply `--tweets` synthetic Tweets over the last hour (every partition's batches, as the
   consumers would; 6 shards on the cluster, 1 standalone) with the hot sink itself.
3. Ask the 1 h trending question the way the query service's hot path does (the planner's parts,
   then HotStore.top for the window and HotStore.scores for its 24 h baseline), `--iterations`
   times, uncached; report p50 / p99 (target: p99 under 10 ms on this machine).
4. MEMORY USAGE (exact, SAMPLES 0) of the `seen` hashes and their exponents, per million ids,
   for `--tweets` Tweets applied again at the product's rate (23,000 a second of event time)
   (target: at most 16 MiB, aim 10).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from bench.harness.processes import free_port
from bench.report import percentile
from query_service import planner
from query_service.hot_store import HotStore, connect
from streaming.parsing import parse_payload
from streaming.sinks import HotAggregatesSink, PartitionBatch
from streaming.synthetic import generate
from tweetflow import namespaces
from tweetflow.app.stack.redis_cluster import RedisCluster
from tweetflow.clients import redis_client
from tweetflow.hot_keys import home_shard, is_dedup_key
from tweetflow.settings import Settings, get_settings

BATCH = 10_000
SPEC_TWEETS_PER_S = 23_000  # 2.5 TB/day at the bench's ~1.24 KB a message


def load(settings: Settings, tweets: int, rate: float | None = None) -> float:
    """Apply `tweets` synthetic Tweets (no deletes) from an hour ago, spread over the hour or at
    `rate` a second of event time; returns seconds taken."""
    start_ms = int((time.time() - 3600) * 1000)
    events = [e for _, value, _ in generate(5, start_ms=start_ms, count=tweets,
                                            rate=rate or tweets / 3500, delete_fraction=0)
              for e in parse_payload(value)]
    sink = HotAggregatesSink(settings)
    began = time.perf_counter()
    try:
        offsets: dict[int, int] = {}
        for i in range(0, len(events), BATCH):
            batches: dict[int, PartitionBatch] = {}
            for event in events[i:i + BATCH]:
                p = home_shard(event.tweet_id, settings.topic_partitions)
                offset = offsets[p] = offsets.get(p, -1) + 1
                batches.setdefault(p, PartitionBatch(p, offset)).events.append((offset, event))
                batches[p].last_offset = offset
            sink.apply_all(list(batches.values()), {p: b.events[0][0] - 1
                                                    for p, b in batches.items()})
    finally:
        sink.close()
    return time.perf_counter() - began


async def trending_latencies(settings: Settings, iterations: int) -> list[float]:
    """The hot path of TrendingHashtags (window 1 h, limit 10), as query_service.service asks."""
    now = time.time()
    end = int(now) + 1
    start = int(now) // 60 * 60 + 60 - 3600
    horizon = settings.hot_horizon_hours * 3600
    window = planner.plan(planner.ENTITIES, start, end, now=int(now), hot_horizon_seconds=horizon)
    baseline = planner.plan(planner.ENTITIES, start - planner.DAY, start, now=int(now),
                            hot_horizon_seconds=horizon)
    client = connect(settings)
    store = HotStore(client, settings.redis_prefix, settings.hot_shard_count)
    latencies = []
    try:
        for _ in range(iterations):
            began = time.perf_counter()
            top = await store.top("hashtag", window.hot_parts, 10)
            await store.scores("hashtag", [m for m, _ in top], baseline.hot_parts)
            latencies.append((time.perf_counter() - began) * 1000)
    finally:
        await client.aclose()
    return latencies


def dedup_memory(settings: Settings) -> tuple[int, int]:
    """(bytes, ids) of the dedup state: the `seen` hashes and the exponents of every shard."""
    r = redis_client(settings)
    total = ids = 0
    for key in r.scan_iter(match=f"{settings.redis_prefix}:*", count=2000):
        name = key.decode()
        if is_dedup_key(name):
            total += int(r.memory_usage(key, samples=0) or 0)
            ids += int(r.hlen(key)) if ":seen:" in name else 0
    return total, ids


def measure(settings: Settings, label: str, tweets: int, iterations: int) -> dict[str, float]:
    seconds = load(settings, tweets)
    latencies = asyncio.run(trending_latencies(settings, iterations))
    # The dedup state at the product's rate (2.5 TB/day, ~23,000 Tweets a second): its windows
    # are sized by the ids' density, so a sparser stream costs more per id (a key's overhead).
    dense = settings.model_copy(update={"redis_prefix": settings.redis_prefix + "_dense"})
    load(dense, tweets, SPEC_TWEETS_PER_S)
    size, ids = dedup_memory(dense)
    namespaces.delete_keys(dense)
    row = {"shards": settings.hot_shard_count, "load Tweets/s": tweets / seconds,
           "trending p50 ms": percentile(latencies, 50), "trending p99 ms": percentile(latencies, 99),
           "dedup MiB per million ids": size / max(ids, 1) * 1e6 / 2**20, "ids": ids}
    print(f"{label:<11} " + "  ".join(f"{k} {v:,.2f}" for k, v in row.items()), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tweets", type=int, default=300_000)
    parser.add_argument("--iterations", type=int, default=500)
    args = parser.parse_args(argv)
    base = get_settings()
    tag = f"bench_hot_{uuid.uuid4().hex[:8]}"
    standalone = namespaces.scoped(base, tag)
    with tempfile.TemporaryDirectory() as tmp:
        ports = []
        while len(ports) < 12:
            if (port := free_port()) not in ports:
                ports.append(port)
        cluster = RedisCluster(base.model_copy(update={"data_dir": Path(tmp)}), ports[:6],
                               ports[6:])
        try:
            cluster.up()
            clustered = standalone.model_copy(update={"redis_url": cluster.url,
                                                      "redis_mode": "cluster"})
            measure(standalone, "standalone", args.tweets, args.iterations)
            measure(clustered, "cluster", args.tweets, args.iterations)
        finally:
            namespaces.delete_keys(standalone)
            cluster.down()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
