"""The ClickHouse schema the consumers write: raw Tweets and compliance deletes.

Why ReplacingMergeTree keyed by Tweet id: Kafka delivers at least once, so the same Tweet can
arrive more than once (producer retries, replays, a worker killed before it committed). Rows with
the same key collapse to the newest `ingested_at`; readers that need exact numbers read with FINAL
or deduplicate in dbt staging. The consumers also skip offsets they know were applied, so in the
common case no duplicate row is written at all (see docs/effectively-once.md).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from tweetflow.settings import Settings, get_settings

RAW_TWEETS = "raw_tweets"
TWEET_DELETES = "tweet_deletes"
# Engagement counts (retweets, replies, likes, quotes) are UInt32 below: the parser rejects larger
# values and the sink refuses them, rather than let the server wrap them silently.
COUNT_LIMIT = 1 << 32
# raw_tweets is partitioned by the UTC day of `created_at`; the sink groups a batch's rows by it.
RAW_TWEETS_PARTITION_BY = "toYYYYMMDD(created_at)"


def raw_tweets_partition(created_at: datetime) -> date:
    """The partition (UTC day) of raw_tweets that a Tweet created at `created_at` lands in."""
    return created_at.astimezone(UTC).date()


# (name, ClickHouse type) in insert order; the ClickHouse sink builds rows in this order.
RAW_TWEET_COLUMNS: tuple[tuple[str, str], ...] = (
    ("tweet_id", "UInt64"),
    ("author_id", "UInt64"),
    ("author_handle", "String"),
    ("created_at", "DateTime64(3, 'UTC')"),
    ("lang", "LowCardinality(String)"),
    ("text", "String"),
    ("kind", "LowCardinality(String)"),
    ("conversation_id", "UInt64"),
    ("replied_to_id", "UInt64"),
    ("retweeted_id", "UInt64"),
    ("quoted_id", "UInt64"),
    ("in_reply_to_user_id", "UInt64"),
    ("hashtags", "Array(String)"),
    ("mentions", "Array(String)"),
    ("cashtags", "Array(String)"),
    ("urls", "Array(String)"),
    ("domains", "Array(String)"),
    ("retweet_count", "UInt32"),
    ("reply_count", "UInt32"),
    ("like_count", "UInt32"),
    ("quote_count", "UInt32"),
    ("impression_count", "UInt64"),
    ("source", "LowCardinality(String)"),
    ("country", "LowCardinality(String)"),
    ("possibly_sensitive", "Bool"),
    ("edit_history_tweet_ids", "Array(UInt64)"),
    ("matching_rules", "Array(String)"),
    ("kafka_partition", "UInt16"),
    ("kafka_offset", "UInt64"),
    ("ingested_at", "DateTime64(6, 'UTC')"),
)

TWEET_DELETE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("tweet_id", "UInt64"),
    ("user_id", "UInt64"),
    ("deleted_at", "DateTime64(3, 'UTC')"),
    ("kafka_partition", "UInt16"),
    ("kafka_offset", "UInt64"),
    ("ingested_at", "DateTime64(6, 'UTC')"),
)


def _columns_sql(columns: tuple[tuple[str, str], ...]) -> str:
    return ",\n    ".join(f"`{name}` {ctype}" for name, ctype in columns)


def _engine(settings: Settings, database: str, table: str, version: str) -> str:
    """Plain ReplacingMergeTree, or its Replicated twin when a cluster name is configured."""
    if settings.clickhouse_cluster:
        path = f"/clickhouse/tables/{{shard}}/{database}/{table}"
        return f"ReplicatedReplacingMergeTree('{path}', '{{replica}}', {version})"
    return f"ReplacingMergeTree({version})"


def schema_statements(settings: Settings | None = None, database: str | None = None) -> list[str]:
    """DDL for the database and its tables, idempotent (IF NOT EXISTS)."""
    settings = settings or get_settings()
    db = database or settings.clickhouse_database
    on_cluster = f" ON CLUSTER `{settings.clickhouse_cluster}`" if settings.clickhouse_cluster else ""
    local = "_local" if settings.clickhouse_cluster else ""
    statements = [
        f"CREATE DATABASE IF NOT EXISTS `{db}`{on_cluster}",
        f"""CREATE TABLE IF NOT EXISTS `{db}`.`{RAW_TWEETS}{local}`{on_cluster} (
    {_columns_sql(RAW_TWEET_COLUMNS)},
    INDEX created_at_minmax created_at TYPE minmax GRANULARITY 1
) ENGINE = {_engine(settings, db, RAW_TWEETS + local, "ingested_at")}
PARTITION BY {RAW_TWEETS_PARTITION_BY}
ORDER BY tweet_id
COMMENT 'One row per Tweet version as consumed from Kafka; dedupe by tweet_id (newest ingested_at wins).'""",
        f"""CREATE TABLE IF NOT EXISTS `{db}`.`{TWEET_DELETES}{local}`{on_cluster} (
    {_columns_sql(TWEET_DELETE_COLUMNS)}
) ENGINE = {_engine(settings, db, TWEET_DELETES + local, "ingested_at")}
ORDER BY tweet_id
COMMENT 'One row per deleted Tweet id (compliance events).'""",
    ]
    if settings.clickhouse_cluster:
        for table in (RAW_TWEETS, TWEET_DELETES):
            statements.append(
                f"CREATE TABLE IF NOT EXISTS `{db}`.`{table}`{on_cluster} AS `{db}`.`{table}_local` "
                f"ENGINE = Distributed(`{settings.clickhouse_cluster}`, `{db}`, `{table}_local`, "
                f"cityHash64(tweet_id))"
            )
    return statements


def ensure_schema(settings: Settings | None = None, database: str | None = None) -> None:
    """Create the database and tables if missing."""
    from tweetflow.clients import clickhouse_client

    settings = settings or get_settings()
    client = clickhouse_client(settings, database="default")
    try:
        for statement in schema_statements(settings, database):
            client.command(statement)
    finally:
        client.close()
