"""The ClickHouse schema the consumers write: raw Tweets and compliance deletes.

Why ReplacingMergeTree keyed by Tweet id: Kafka delivers at least once, so the same Tweet can
arrive more than once (producer retries, replays, a worker killed before it committed). Rows with
the same key collapse to the newest `ingested_at`; readers that need exact numbers read with FINAL
or deduplicate in dbt staging. The consumers also skip offsets they know were applied, so in the
common case no duplicate row is written at all (see docs/effectively-once.md).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from tweetflow.platforms import platform_sql
from tweetflow.settings import Settings, get_settings
from tweetflow.snowflake import SNOWFLAKE_EPOCH_MS

RAW_TWEETS = "raw_tweets"
TWEET_DELETES = "tweet_deletes"
# Per event day, a version that moves whenever the consumers write raw rows or deletes for that day
# (the server's clock at the write); the marts record the version they were built from, so the
# query service knows for which days a mart is complete (docs/marts-coverage.md).
RAW_DAY_VERSIONS = "raw_day_versions"
MART_DAY_VERSIONS = "mart_day_versions"  # written by dbt's hooks (macros/mart_versions.sql)
# Engagement counts (retweets, replies, likes, quotes) are UInt32 below: the parser rejects larger
# values and the sink refuses them, rather than let the server wrap them silently.
COUNT_LIMIT = 1 << 32
# raw_tweets is partitioned by the UTC month of `created_at`; the sink groups a batch's rows by
# partition. Why months: a batch of a years-long archive writes one part per partition it touches;
# with day partitions a 10,000-Tweet batch of a ten-year archive wrote ~3,650 parts and ingested at
# 5% of the live rate (bench scenario `archive`), and ClickHouse advises well under 10,000
# partitions per table. Tables created with day partitions (before) keep them: the sink reads the
# table's own key (partition_of).
RAW_TWEETS_PARTITION_BY = "toYYYYMM(created_at)"


def utc_day(moment: datetime) -> date:
    """The UTC day of an instant: the event day of raw_day_versions and of the marts."""
    return moment.astimezone(UTC).date()


def _utc_month(moment: datetime) -> date:
    return utc_day(moment).replace(day=1)


def partition_of(partition_key: str) -> Callable[[datetime], date]:
    """How raw_tweets' PARTITION BY `partition_key` (as system.tables shows it) groups created_at:
    by month or by day (a finer grouping than the table's is always accepted)."""
    key = partition_key.replace(" ", "")
    return _utc_month if key == RAW_TWEETS_PARTITION_BY else utc_day


# Tweet.chain_root_id and .chain_created_at in SQL: the first id of the edit history, else the
# Tweet's own id; the root's time: the Tweet's own for a root, else the root id's Snowflake time.
CHAIN_ROOT_SQL = "if(empty(edit_history_tweet_ids), tweet_id, edit_history_tweet_ids[1])"
CHAIN_CREATED_AT_SQL = ("if(tweet_id = chain_root_id, created_at, fromUnixTimestamp64Milli("
                        f"toInt64(bitShiftRight(chain_root_id, 22) + {SNOWFLAKE_EPOCH_MS}), 'UTC'))")
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
# Columns the server derives from those above, last in the table: the Tweet's edit chain. Every
# version of an edited Tweet has a row of its own; staging counts each chain once, at the chain's
# time (indexed: a window of it skips the granules outside). Derived by the server, they cost the
# consumers nothing (sending them: +0.45 µs a row), and rows written before the columns existed
# get the same values. Added to an existing table by ensure_schema (CREATE TABLE IF NOT EXISTS
# leaves it as it is).
RAW_TWEET_DERIVED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("chain_root_id", f"UInt64 DEFAULT {CHAIN_ROOT_SQL}"),
    ("chain_created_at", f"DateTime64(3, 'UTC') DEFAULT {CHAIN_CREATED_AT_SQL}"),
)
_CHAIN_INDEX = "chain_created_at_minmax chain_created_at TYPE minmax GRANULARITY 1"
# The rows of raw_tweets that are versions of edited Tweets (their history lists more than one
# id), copied on insert by a materialized view. Why: staging counts each edit chain once, which
# needs every chain's versions; found in raw_tweets itself they cost a scan of the whole table on
# every read of staging, here a scan of the edits alone, about 1 % of the Tweets. Measured on 2
# million rows with 1 % edits (a day's Tweets from stg_tweets): 15 ms before edit chains, 100-230
# ms with the versions found in raw_tweets, 24 ms with this table and chain_created_at's index.
RAW_TWEET_EDITS = "raw_tweet_edits"
_EDITS_SELECT = ("SELECT chain_root_id, tweet_id, edit_history_tweet_ids FROM `{db}`.`{raw}` "
                 "WHERE length(edit_history_tweet_ids) > 1")

# The platform of a row (tweetflow.platforms): a function of its id, derived by the server like
# the edit chain's columns (nothing to send, rows written before it get the same value), last in
# raw_tweets and tweet_deletes and added to an existing table by ensure_schema.
PLATFORM_COLUMN: tuple[str, str] = ("platform",
                                    f"LowCardinality(String) DEFAULT {platform_sql('tweet_id')}")
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
        return f"ReplicatedReplacingMergeTree('{path}', '{{replica}}'{', ' if version else ''}{version})"
    return f"ReplacingMergeTree({version})"


def schema_statements(settings: Settings | None = None, database: str | None = None) -> list[str]:
    """DDL for the database and its tables, idempotent (IF NOT EXISTS), and the columns added
    since (ADD COLUMN IF NOT EXISTS) for a database created by an earlier version."""
    settings = settings or get_settings()
    db = database or settings.clickhouse_database
    on_cluster = f" ON CLUSTER `{settings.clickhouse_cluster}`" if settings.clickhouse_cluster else ""
    local = "_local" if settings.clickhouse_cluster else ""
    statements = [
        f"CREATE DATABASE IF NOT EXISTS `{db}`{on_cluster}",
        f"""CREATE TABLE IF NOT EXISTS `{db}`.`{RAW_TWEETS}{local}`{on_cluster} (
    {_columns_sql((*RAW_TWEET_COLUMNS, *RAW_TWEET_DERIVED_COLUMNS, PLATFORM_COLUMN))},
    INDEX created_at_minmax created_at TYPE minmax GRANULARITY 1,
    INDEX {_CHAIN_INDEX}
) ENGINE = {_engine(settings, db, RAW_TWEETS + local, "ingested_at")}
PARTITION BY {RAW_TWEETS_PARTITION_BY}
ORDER BY tweet_id
COMMENT 'One row per Tweet version as consumed from Kafka; dedupe by tweet_id (newest ingested_at wins).'""",
        f"""CREATE TABLE IF NOT EXISTS `{db}`.`{TWEET_DELETES}{local}`{on_cluster} (
    {_columns_sql((*TWEET_DELETE_COLUMNS, PLATFORM_COLUMN))}
) ENGINE = {_engine(settings, db, TWEET_DELETES + local, "ingested_at")}
ORDER BY tweet_id
COMMENT 'One row per deleted Tweet id (compliance events).'""",
        f"""CREATE TABLE IF NOT EXISTS `{db}`.`{RAW_DAY_VERSIONS}{local}`{on_cluster} (
    `day` Date,
    `version` DateTime64(6, 'UTC') DEFAULT now64(6, 'UTC')
) ENGINE = {_engine(settings, db, RAW_DAY_VERSIONS + local, "version")}
ORDER BY day
COMMENT 'Per event day: when raw Tweets or deletes of that day were last written (newest wins).'""",
        f"""CREATE TABLE IF NOT EXISTS `{db}`.`{MART_DAY_VERSIONS}{local}`{on_cluster} (
    `mart` LowCardinality(String),
    `day` Date,
    `raw_version` DateTime64(6, 'UTC'),
    `built_at` DateTime64(6, 'UTC') DEFAULT now64(6, 'UTC'),
    `invocation_id` String
) ENGINE = {_engine(settings, db, MART_DAY_VERSIONS + local, "built_at")}
ORDER BY (mart, day)
COMMENT 'Per mart and day: the raw_day_versions instant the mart was last built from (newest build wins).'""",
    ]
    if settings.clickhouse_cluster:
        for table, key in ((RAW_TWEETS, "cityHash64(tweet_id)"),
                           (TWEET_DELETES, "cityHash64(tweet_id)"),
                           (RAW_DAY_VERSIONS, "toUInt32(day)"),
                           (MART_DAY_VERSIONS, "toUInt32(day)")):
            statements.append(
                f"CREATE TABLE IF NOT EXISTS `{db}`.`{table}`{on_cluster} AS `{db}`.`{table}_local` "
                f"ENGINE = Distributed(`{settings.clickhouse_cluster}`, `{db}`, `{table}_local`, {key})"
            )
    for table in ((f"{RAW_TWEETS}_local", RAW_TWEETS) if local else (RAW_TWEETS,)):
        statements.extend(f"ALTER TABLE `{db}`.`{table}`{on_cluster} ADD COLUMN IF NOT EXISTS "
                          f"`{name}` {ctype}" for name, ctype in RAW_TWEET_DERIVED_COLUMNS)
    for base in (RAW_TWEETS, TWEET_DELETES):
        for table in ((f"{base}_local", base) if local else (base,)):
            statements.append(f"ALTER TABLE `{db}`.`{table}`{on_cluster} ADD COLUMN IF NOT EXISTS "
                              f"`{PLATFORM_COLUMN[0]}` {PLATFORM_COLUMN[1]}")
    # parts written before the index have none (read whole) until merged or MATERIALIZE INDEX
    statements.append(f"ALTER TABLE `{db}`.`{RAW_TWEETS}{local}`{on_cluster} "
                      f"ADD INDEX IF NOT EXISTS {_CHAIN_INDEX}")
    return statements + _edits_statements(settings, db, on_cluster, local)


def _edits_statements(settings: Settings, db: str, on_cluster: str, local: str) -> list[str]:
    """raw_tweet_edits, and the materialized view filling it from raw_tweets (on each shard)."""
    edits = f"{RAW_TWEET_EDITS}{local}"
    statements = [
        f"""CREATE TABLE IF NOT EXISTS `{db}`.`{edits}`{on_cluster} (
    `chain_root_id` UInt64,
    `tweet_id` UInt64,
    `edit_history_tweet_ids` Array(UInt64)
) ENGINE = {_engine(settings, db, edits, "")}
ORDER BY (chain_root_id, tweet_id)
COMMENT 'The rows of raw_tweets that are versions of edited Tweets (kept by raw_tweet_edits_mv).'""",
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS `{db}`.`{RAW_TWEET_EDITS}_mv{local}`{on_cluster} "
        f"TO `{db}`.`{edits}` AS {_EDITS_SELECT.format(db=db, raw=RAW_TWEETS + local)}",
    ]
    if settings.clickhouse_cluster:
        statements.append(
            f"CREATE TABLE IF NOT EXISTS `{db}`.`{RAW_TWEET_EDITS}`{on_cluster} AS `{db}`.`{edits}` "
            f"ENGINE = Distributed(`{settings.clickhouse_cluster}`, `{db}`, `{edits}`, "
            f"cityHash64(chain_root_id))")
    return statements


def ensure_schema(settings: Settings | None = None, database: str | None = None) -> None:
    """Create the database and tables if missing, and bring a database of an earlier version up
    to date (columns added since, raw_tweet_edits filled from the rows it already holds)."""
    from tweetflow.clients import clickhouse_client

    settings = settings or get_settings()
    db = database or settings.clickhouse_database
    client = clickhouse_client(settings, database="default")
    try:
        had_edits = client.command(f"EXISTS TABLE `{db}`.`{RAW_TWEET_EDITS}`") == 1
        for statement in schema_statements(settings, database):
            client.command(statement)
        _version_existing_days(client, db)
        if not had_edits:  # a database from before edit chains: copy the edits it holds
            # after the view exists, so none is missed (one copied twice changes nothing)
            client.command(f"INSERT INTO `{db}`.`{RAW_TWEET_EDITS}` "
                           + _EDITS_SELECT.format(db=db, raw=RAW_TWEETS))
    finally:
        client.close()


def _version_existing_days(client: Any, db: str) -> None:
    """Give every day already in raw_tweets a raw version, once (a database from before
    raw_day_versions existed): otherwise no mart would ever count as covering those days."""
    if client.command(f"SELECT count() FROM `{db}`.`{RAW_DAY_VERSIONS}`") == 0:
        client.command(f"INSERT INTO `{db}`.`{RAW_DAY_VERSIONS}` (day) "
                       f"SELECT DISTINCT toDate(created_at) FROM `{db}`.`{RAW_TWEETS}`")
