"""The hot tier on a real six-node Redis Cluster (REDIS_MODE=cluster): every atomic apply touches
one slot, counts stay exact through duplicates, deletes and edit chains whose versions land on
different shards, the dedup state stays compact, and a master killed mid-ingest loses nothing.

Expected numbers come from the input and the documented semantics (streaming_support.expect,
docs/data-contracts.md), never from the sinks under test.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from streaming_support import (
    BackgroundProducer,
    KafkaRecord,
    WorkerProcess,
    assert_clickhouse_matches,
    assert_committed_everything,
    assert_hot_matches,
    drain,
    expect,
    finish,
    processes,
    produce,
    read_topic,
    store_raw,
    synthetic,
    wait_for,
    with_duplicates,
)

from streaming.parsing import parse_payload
from streaming.sinks import ClickHouseSink, HotAggregatesSink, PartitionBatch
from tweetflow.clients import redis_client
from tweetflow.hot_keys import bucket_start, dimension_key, home_shard, shard_tag, tweets_key
from tweetflow.model import Event, Tweet
from tweetflow.settings import Settings
from tweetflow.snowflake import snowflake_id, snowflake_time

pytestmark = pytest.mark.slow


def test_a_stream_with_duplicates_and_deletes_counts_exactly_on_a_cluster(
        cluster_settings: Settings, redis_cluster) -> None:
    s = cluster_settings
    produce(s, with_duplicates(synthetic(1201, 3000), 0.1, seed=3))
    drain(s)
    exp = expect(read_topic(s))
    assert exp.duplicates and exp.deletes
    assert_hot_matches(s, exp)
    assert_clickhouse_matches(s, exp)
    assert_committed_everything(s)
    # one slot per shard, and the shards spread over the masters
    r = redis_client(s)
    slots = {}
    for key in r.scan_iter(match=f"{s.redis_prefix}:*", count=1000):
        tag = key.decode().split(":")[1]
        slots.setdefault(tag, set()).add(r.keyslot(key))
    assert len(slots) == s.hot_shard_count == 6 and all(len(v) == 1 for v in slots.values())
    masters = {str(r.get_node_from_key(f"{s.redis_prefix}:{tag}:x")) for tag in slots}
    assert len(masters) >= 2


# --- edit chains whose versions and deletes sit on different shards -----------------------------


def _id_on_another_shard(ms: int, shards: int, avoid: set[int]) -> int:
    """A Snowflake id minted at `ms` whose home shard is none of `avoid`."""
    for seq in range(1000):
        tweet_id = snowflake_id(ms, worker=7, sequence=seq)
        if home_shard(tweet_id, shards) not in avoid:
            return tweet_id
    raise AssertionError("no id found on another shard")


def _version(tweet_id: int, hashtags: tuple[str, ...], chain: tuple[int, ...] = ()) -> Event:
    t = Tweet(tweet_id=tweet_id, author_id=1, author_handle="ed",
              created_at=snowflake_time(tweet_id), lang="en",
              text=" ".join(f"#{h}" for h in hashtags), kind="original", hashtags=hashtags,
              edit_history_tweet_ids=(*chain, tweet_id))
    return Event("tweet", tweet_id, t)


def _chain(settings: Settings, now_ms: int) -> tuple[Event, Event, Event]:
    """A root and two edits, each on its own shard."""
    shards = settings.hot_shard_count
    root_id = _id_on_another_shard(now_ms - 3 * 3_600_000, shards, set())
    edit_id = _id_on_another_shard(now_ms - 3 * 3_600_000 + 10 * 60_000, shards,
                                   {home_shard(root_id, shards)})
    last_id = _id_on_another_shard(now_ms - 3 * 3_600_000 + 20 * 60_000, shards,
                                   {home_shard(root_id, shards), home_shard(edit_id, shards)})
    root = _version(root_id, ("probe", "typoo"))
    edit = _version(edit_id, ("probe", "typo"), (root_id,))
    last = _version(last_id, ("probe", "fixed"), (root_id, edit_id))
    return root, edit, last


def _apply(sink: HotAggregatesSink, shards: int, *events: Event) -> None:
    """Each event as the batch of the partition its id is keyed to (its home)."""
    for event in events:
        partition = home_shard(event.tweet_id, shards)
        expected = sink.watermarks().get(partition, -1)
        sink.apply(PartitionBatch(partition, expected + 1, [(expected + 1, event)],
                                  {expected + 1: str(event.tweet_id).encode()}), expected)


def _hourly(settings: Settings, hour: int) -> tuple[int, dict[str, int]]:
    """Tweets and hashtags of an hour, summed over the shards."""
    r = redis_client(settings, decode_responses=True)
    tweets, tags = 0, {}
    for shard in range(settings.hot_shard_count):
        tweets += int(r.get(tweets_key(settings.redis_prefix, "h", hour, shard)) or 0)
        key = dimension_key(settings.redis_prefix, "hashtag", "h", hour, shard)
        for tag, n in r.zrange(key, 0, -1, withscores=True):
            tags[tag] = tags.get(tag, 0) + int(n)
    return tweets, {t: n for t, n in tags.items() if n}


def _store(settings: Settings, events: list[Event]) -> None:
    """The versions' rows in ClickHouse, as the pipeline writes them before Redis counts them."""
    sink = ClickHouseSink(settings)
    try:
        sink.write([(0, i, e) for i, e in enumerate(events)])
    finally:
        sink.close()


@pytest.mark.parametrize("order", ["root-first", "newest-first", "middle-first"])
def test_an_edit_chain_spread_over_three_shards_counts_once_with_its_newest_version(
        cluster_settings: Settings, order: str) -> None:
    s = cluster_settings
    root, edit, last = _chain(s, int(time.time() * 1000))
    _store(s, [root, edit, last])
    arrivals = {"root-first": [root, edit, last, root], "newest-first": [last, edit, root, last],
                "middle-first": [edit, last, root, edit]}[order]
    sink = HotAggregatesSink(s)
    try:
        _apply(sink, s.hot_shard_count, *arrivals)
    finally:
        sink.close()
    hour = bucket_start(snowflake_time(root.tweet_id).timestamp(), "h")
    assert _hourly(s, hour) == (1, {"probe": 1, "fixed": 1})


@pytest.mark.parametrize("delete_first", [True, False])
def test_a_delete_of_an_edit_on_its_own_shard_removes_the_chain(
        cluster_settings: Settings, delete_first: bool) -> None:
    s = cluster_settings
    root, edit, last = _chain(s, int(time.time() * 1000))
    _store(s, [root, edit, last])
    delete = Event("delete", edit.tweet_id)
    arrivals = [delete, root, last] if delete_first else [root, last, delete]
    sink = HotAggregatesSink(s)
    try:
        _apply(sink, s.hot_shard_count, *arrivals)
        _apply(sink, s.hot_shard_count, edit, root, delete)  # late copies change nothing
    finally:
        sink.close()
    hour = bucket_start(snowflake_time(root.tweet_id).timestamp(), "h")
    assert _hourly(s, hour) == (0, {})


def test_an_edit_racing_its_root_on_another_shard_counts_once(cluster_settings: Settings) -> None:
    """The edit's worker reads the root's state on the root's shard, then the root's own worker
    applies it, then the edit's script runs: it must see the change and plan again."""
    s = cluster_settings
    shards = s.hot_shard_count
    root, edit, _ = _chain(s, int(time.time() * 1000))
    _store(s, [root, edit])
    racing, other = HotAggregatesSink(s), HotAggregatesSink(s)
    home = racing.shard[home_shard(root.tweet_id, shards)]
    lookup, fired = home.lookup, []

    def lookup_then_race(ids: set[int]) -> dict[int, str | None]:
        found = lookup(ids)
        if not fired:
            fired.append(True)
            _apply(other, shards, root)
        return found

    home.lookup = lookup_then_race  # type: ignore[method-assign]
    try:
        _apply(racing, shards, edit)
    finally:
        racing.close()
        other.close()
    hour = bucket_start(snowflake_time(root.tweet_id).timestamp(), "h")
    assert fired and _hourly(s, hour) == (1, {"probe": 1, "typo": 1})


# --- compact dedup ----------------------------------------------------------------------------------


def test_the_dedup_state_takes_at_most_16_bytes_an_id_and_stays_a_listpack(
        cluster_settings: Settings) -> None:
    """20,000 Tweets at a live stream's density (5,000 a second) over six shards; the bench
    measures the same at scale (bench/streaming_bench.py)."""
    s = cluster_settings
    start_ms = int(time.time() * 1000) - 2 * 3_600_000
    from streaming.synthetic import generate

    records = [KafkaRecord(0, i, k, v, 0) for i, (k, v, _) in enumerate(
        generate(77, start_ms=start_ms, count=20_000, rate=5000, delete_fraction=0))]
    store_raw(s, records)
    by_partition: dict[int, list[tuple[int, Event]]] = {}
    for r in records:
        for event in parse_payload(r.value or b""):
            by_partition.setdefault(home_shard(event.tweet_id, 6), []).append((r.offset, event))
    sink = HotAggregatesSink(s)
    try:
        for partition, events in by_partition.items():
            sink.apply(PartitionBatch(partition, events[-1][0], events), -1)
    finally:
        sink.close()
    r = redis_client(s)
    total = ids = 0
    for key in r.scan_iter(match=f"{s.redis_prefix}:*:seen:*", count=1000):
        total += int(r.memory_usage(key, samples=0))
        ids += int(r.hlen(key))
        assert r.object("encoding", key) == b"listpack", key
    assert ids == len({e.tweet_id for events in by_partition.values() for _, e in events})
    assert total / ids <= 16 * 2**20 / 1e6, f"{total / ids:.1f} bytes an id"


# --- a master killed mid-ingest ------------------------------------------------------------------


def test_a_master_killed_mid_ingest_loses_no_count(cluster_settings: Settings, redis_cluster,
                                                   tmp_path) -> None:
    s = cluster_settings
    pairs = with_duplicates(synthetic(1202, 6000), 0.05, seed=4)
    victim = max(redis_cluster.masters(but_url_node=True),
                 key=lambda node: _shards_served(s, node.port))
    with processes() as children:
        workers = _started_workers(s, tmp_path, pairs[:200])
        children += workers
        with BackgroundProducer(s, pairs[200:], rate=1000):
            wait_for(lambda: _applied(s) > 1500, 120, "the workers to apply a first share")
            os.kill(victim.proc.pid() or 0, signal.SIGKILL)
            wait_for(redis_cluster.healthy, 60, "a replica to take the killed master's slots")
        finish(s, workers)
    redis_cluster.up()  # the killed node comes back as a replica, for the tests after this one


def test_writes_acknowledged_but_never_replicated_are_applied_again_after_failover(
        cluster_settings: Settings, redis_cluster, tmp_path) -> None:
    """Redis replicates asynchronously: with its replica frozen, a master acknowledges batches its
    replica never receives, and the replica then takes over without them. The consumers wait for
    the replica (WAIT) before committing, so they still hold those batches and apply them again
    on the new master. (With REDIS_WAIT_REPLICAS=0 this test loses counts.)"""
    s = cluster_settings
    victim = max(redis_cluster.masters(but_url_node=True),
                 key=lambda node: _shards_served(s, node.port))
    replica = next(n for n in redis_cluster.nodes if n.port != victim.port and int(
        n.info("replication").get("master_port", 0)) == victim.port)
    pairs = synthetic(1203, 5000, delete_fraction=0.03)
    with processes() as children:
        workers = _started_workers(s, tmp_path, pairs[:200])
        children += workers
        with BackgroundProducer(s, pairs[200:], rate=1000):
            wait_for(lambda: _applied(s) > 1200, 120, "the workers to apply a first share")
            os.kill(replica.proc.pid() or 0, signal.SIGSTOP)
            try:  # cut the link: what the victim acknowledges now never reaches the replica
                victim.client().client_kill_filter(_type="replica")
                time.sleep(3)
                os.kill(victim.proc.pid() or 0, signal.SIGKILL)
            finally:
                os.kill(replica.proc.pid() or 0, signal.SIGCONT)
            wait_for(redis_cluster.healthy, 60, "the replica to take the killed master's slots")
        finish(s, workers, clickhouse=False)
    redis_cluster.up()


def _started_workers(settings: Settings, tmp_path, first: list) -> list[WorkerProcess]:
    """Two worker processes that have joined the group and applied `first` (so what is produced
    next flows through them steadily)."""
    workers = [WorkerProcess(settings, tmp_path / f"w{i}.log").start() for i in range(2)]
    produce(settings, first)
    wait_for(lambda: _applied(settings) >= len(first), 120, "the workers to join")
    return workers


def _shards_served(settings: Settings, port: int) -> int:
    r = redis_client(settings)
    return sum(1 for shard in range(settings.hot_shard_count)
               if r.get_node_from_key(shard_tag(shard)).port == port)


def _applied(settings: Settings) -> int:
    from bench.harness import redis_watermarks

    return sum(o + 1 for o in redis_watermarks(settings).values())
