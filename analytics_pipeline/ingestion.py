"""What the stream consumers own, observed rather than materialized: the Kafka topic, the raw
ClickHouse tables and the Redis hot aggregates.

Why observable source assets: Dagster does not write these (the consumer group does, continuously),
but it should show their lineage into the marts and how far along they are; an observation
records offsets, lag, row counts and the newest event time without touching the data.
"""

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from dagster import (
    AssetKey,
    AssetSpec,
    BetaWarning,
    DataVersion,
    MetadataValue,
    ObserveResult,
    multi_observable_source_asset,
)

from analytics_pipeline.resources import TweetflowResource
from streaming.offsets import group_lag
from tweetflow.hot_keys import GRAIN_SECONDS
from tweetflow.settings import Settings

# The observable-source decorator is beta, yet it is Dagster's documented way to observe data it
# does not write; the warning names nothing a reader of this code could act on.
warnings.filterwarnings("ignore", category=BetaWarning, message=".*observable_source_asset")

TOPIC_KEY = AssetKey("tweets_raw_topic")
RAW_TWEETS_KEY = AssetKey("raw_tweets")
TWEET_DELETES_KEY = AssetKey("tweet_deletes")
HOT_AGGREGATES_KEY = AssetKey("redis_hot_aggregates")
GROUP = "ingestion"


def topic_offsets(settings: Settings) -> list[dict[str, int]]:
    """Per partition of the raw topic: first and end offsets, the group's committed offset
    (-1: none), lag."""
    return [{"partition": r.partition, "low": r.low, "high": r.high, "committed": r.committed,
             "lag": r.lag} for r in group_lag(settings)]


@multi_observable_source_asset(
    specs=[AssetSpec(TOPIC_KEY, group_name=GROUP, description=(
        "The Kafka topic of raw Tweet payloads (key = Tweet id); the consumer group reads it "
        "into ClickHouse and Redis. Observed: offsets per partition and the group's lag."))],
    name="tweets_raw_topic",
)
def tweets_raw_topic(tweetflow: TweetflowResource) -> ObserveResult:
    settings = tweetflow.settings
    rows = topic_offsets(settings)
    end_offsets = ",".join(f"{r['partition']}:{r['high']}" for r in rows)
    return ObserveResult(
        asset_key=TOPIC_KEY,
        data_version=DataVersion(end_offsets),
        metadata={
            "topic": settings.topic_raw,
            "consumer_group": settings.consumer_group,
            "partitions": len(rows),
            "messages_retained": sum(r["high"] - r["low"] for r in rows),
            "end_offsets_total": sum(r["high"] for r in rows),
            "consumer_lag": sum(r["lag"] for r in rows),
            "offsets": MetadataValue.md(_markdown_table(rows)),
        },
    )


_TABLE_STATS = {
    "raw_tweets": "SELECT count(), uniqExact(tweet_id), max(ingested_at), max(created_at) "
                  "FROM raw_tweets",
    "tweet_deletes": "SELECT count(), uniqExact(tweet_id), max(ingested_at), max(deleted_at) "
                     "FROM tweet_deletes",
}


@multi_observable_source_asset(
    specs=[
        AssetSpec(RAW_TWEETS_KEY, deps=[TOPIC_KEY], group_name=GROUP, description=(
            "One row per Tweet version consumed (ReplacingMergeTree by tweet_id, newest "
            "ingested_at wins). Observed: rows, distinct Tweets, newest ingestion and event "
            "time.")),
        AssetSpec(TWEET_DELETES_KEY, deps=[TOPIC_KEY], group_name=GROUP, description=(
            "One row per deleted Tweet id (compliance events). Observed: rows, newest delete.")),
    ],
    name="raw_tables",
)
def raw_tables(tweetflow: TweetflowResource) -> Iterator[ObserveResult]:
    client = tweetflow.clickhouse()
    try:
        for table, sql in _TABLE_STATS.items():
            rows, ids, newest_ingest, newest_event = client.query(sql).result_rows[0]
            yield ObserveResult(
                asset_key=AssetKey(table),
                # Changes whenever a row arrives, so downstream marts show as stale.
                data_version=DataVersion(f"{rows}:{_iso(newest_ingest)}"),
                metadata={
                    "database": tweetflow.settings.clickhouse_database,
                    "dagster/row_count": rows,
                    "distinct_tweet_ids": ids,
                    "newest_ingested_at": _iso(newest_ingest),
                    "newest_event_time": _iso(newest_event),
                },
            )
    finally:
        client.close()


def hot_aggregates_stats(tweetflow: TweetflowResource) -> dict[str, Any]:
    """How many minute and hour buckets Redis holds, and the newest of each."""
    r = tweetflow.redis()
    prefix = tweetflow.settings.redis_prefix
    stats: dict[str, Any] = {}
    for grain in GRAIN_SECONDS:
        buckets = [int(k.rsplit(":", 1)[1])
                   for k in r.scan_iter(match=f"{prefix}:n:{grain}:*", count=1000)]
        newest = max(buckets, default=None)
        stats[f"{grain}_buckets"] = len(buckets)
        stats[f"newest_{grain}_bucket"] = (
            datetime.fromtimestamp(newest, UTC).isoformat() if newest is not None else "")
        stats[f"newest_{grain}_tweets"] = (
            int(r.get(f"{prefix}:n:{grain}:{newest}") or 0) if newest is not None else 0)
    return stats


@multi_observable_source_asset(
    specs=[AssetSpec(HOT_AGGREGATES_KEY, deps=[TOPIC_KEY], group_name="hot", description=(
        "Per-minute and per-hour Tweet counts, entity top-lists and author HLLs in Redis, written "
        "by the consumers within the hot horizon (layout: tweetflow/hot_keys.py). Observed: "
        "buckets held and the newest ones."))],
    name="redis_hot_aggregates",
)
def redis_hot_aggregates(tweetflow: TweetflowResource) -> ObserveResult:
    stats = hot_aggregates_stats(tweetflow)
    return ObserveResult(
        asset_key=HOT_AGGREGATES_KEY,
        data_version=DataVersion(f"{stats['newest_m_bucket']}:{stats['newest_m_tweets']}"),
        metadata={"redis_prefix": tweetflow.settings.redis_prefix, **stats},
    )


def _iso(moment: datetime | None) -> str:
    if moment is None or moment.timestamp() <= 0:
        return ""
    return moment.isoformat()


def _markdown_table(rows: list[dict[str, int]]) -> str:
    if not rows:
        return "(no partitions)"
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in rows]
    return "\n".join(lines)
