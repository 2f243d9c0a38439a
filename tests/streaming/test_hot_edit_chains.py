"""Hot aggregates of edit chains when two workers race: Tweets are keyed by their own id in Kafka,
so the versions of one chain (and a delete of one of them) may sit on different partitions and be
applied by different workers at the same moment. Whoever applies second must see the first's
effect: the chain still counts once, with its newest version (docs/effectively-once.md).

The race is made deterministic: the first worker's plan is read from Redis, then the second
worker applies its batch, then the first worker's script runs against the changed state.
"""

from __future__ import annotations

import time

from streaming.sinks import ClickHouseSink
from streaming.sinks.hot_aggregates import HotAggregatesSink, PartitionBatch
from tweetflow.clients import redis_client
from tweetflow.hot_keys import bucket_start, dimension_key, tweets_key
from tweetflow.model import Event, Tweet
from tweetflow.settings import Settings
from tweetflow.snowflake import snowflake_id, snowflake_time


def _version(ms: int, hashtags: tuple[str, ...], chain: tuple[int, ...] = ()) -> Event:
    tweet_id = snowflake_id(ms, worker=7)
    t = Tweet(tweet_id=tweet_id, author_id=1, author_handle="ed", created_at=snowflake_time(tweet_id),
              lang="en", text=" ".join(f"#{h}" for h in hashtags), kind="original",
              hashtags=hashtags, edit_history_tweet_ids=(*chain, tweet_id))
    return Event("tweet", tweet_id, t)


def _race(settings: Settings, first: list[Event], second: list[list[Event]]) -> int:
    """Apply `first` on partition 1, with each batch of `second` (partitions 2, 3, ...) applied by
    another worker between its plan and its script; the first worker's retries."""
    _store(settings, [*first, *(e for batch in second for e in batch)])
    racing, other = HotAggregatesSink(settings), HotAggregatesSink(settings)
    lookup, pending = racing.shard[0].lookup, list(second)

    def lookup_then_race(ids: set[int]) -> dict[int, str | None]:
        found = lookup(ids)
        while pending:
            batch = pending.pop(0)
            partition = 2 + len(second) - len(pending) - 1
            other.apply(PartitionBatch(partition, 0, [(0, e) for e in batch]), -1)
        return found

    racing.shard[0].lookup = lookup_then_race  # type: ignore[method-assign]
    try:
        return racing.apply(PartitionBatch(1, len(first) - 1, list(enumerate(first))), -1).retries
    finally:
        racing.close()
        other.close()


def _store(settings: Settings, events: list[Event]) -> None:
    """The versions' rows in ClickHouse, as the pipeline writes them before Redis counts them."""
    sink = ClickHouseSink(settings)
    try:
        sink.write([(0, i, e) for i, e in enumerate(events)])
    finally:
        sink.close()


def _hourly(settings: Settings, hour: int) -> tuple[int, dict[str, float]]:
    r = redis_client(settings, decode_responses=True)
    tweets = int(r.get(tweets_key(settings.redis_prefix, "h", hour)) or 0)
    tags = dict(r.zrange(dimension_key(settings.redis_prefix, "hashtag", "h", hour), 0, -1,
                         withscores=True))
    return tweets, tags


def _hours(*events: Event) -> list[int]:
    return [bucket_start(snowflake_time(e.tweet_id).timestamp(), "h") for e in events]


def _chain(now_ms: int) -> tuple[Event, Event]:
    root = _version(now_ms - 3 * 3_600_000, ("probe", "typoo"))
    edit = _version(now_ms - 3 * 3_600_000 + 20 * 60_000, ("probe", "typo"), (root.tweet_id,))
    return root, edit


def test_an_edit_racing_its_original_on_another_partition_counts_once(
        test_settings: Settings) -> None:
    root, edit = _chain(int(time.time() * 1000))
    assert _race(test_settings, [edit], [[root]]) == 1  # replanned on the root's new state
    root_hour, edit_hour = _hours(root, edit)
    assert _hourly(test_settings, root_hour) == (1, {"probe": 1.0, "typo": 1.0})
    if edit_hour != root_hour:  # the chain counts at its root's time only
        assert _hourly(test_settings, edit_hour) == (0, {})


def test_a_delete_of_an_edit_racing_the_edit_removes_the_chain(test_settings: Settings) -> None:
    root, edit = _chain(int(time.time() * 1000))
    delete = Event("delete", edit.tweet_id)
    assert _race(test_settings, [delete], [[root], [edit]]) == 1
    # a late copy of either version counts nothing
    late = HotAggregatesSink(test_settings)
    late.apply(PartitionBatch(4, 1, [(0, root), (1, edit)]), -1)
    late.close()
    for hour in _hours(root, edit):
        assert _hourly(test_settings, hour) == (0, {})
