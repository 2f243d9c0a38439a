"""Replay validation without Dagster: plan a Kafka range, load it into a shadow database through
the consumer code, and compare the shadow's tables with production's row for row.

What "exact" means here:
* raw tables: the distinct rows production holds for the replayed offsets equal the distinct
  rows the replay writes, ingested_at aside. A row altered, slipped in under those offsets or
  missing is a difference. An identical re-delivery is not: at-least-once delivery writes those
  by design, ReplacingMergeTree collapses them whenever it merges, and comparing them as a
  multiset would make the verdict depend on merge timing;
* staging and marts: equal as multisets on every *comparable* event day, i.e. a day whose every
  production raw row (and every delete of its Tweets) lies inside the replayed range. Days that
  production also fed from outside the range are listed as excluded rather than compared.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from tweetflow.schema import RAW_TWEETS, TWEET_DELETES
from tweetflow.settings import Settings

log = logging.getLogger(__name__)

OffsetRanges = dict[int, tuple[int, int]]  # Kafka partition -> [start, end) offsets

MARTS: tuple[str, ...] = (
    "entity_counts_hourly", "entity_counts_daily", "hashtag_counts_hourly",
    "hashtag_counts_daily", "trending_hashtags", "tweet_volume_minutely", "tweet_volume_hourly",
    "user_activity_daily", "engagement_daily", "top_domains_daily", "mention_graph_daily",
)
STAGING = "stg_tweets"
# Differs on every replay by construction, so never compared.
IGNORED_COLUMNS = frozenset({"ingested_at"})
SAMPLE_ROWS = 20


class ReplayInto(Protocol):
    """Consume `ranges` of the raw topic through the consumer code into the ClickHouse database
    `settings.clickhouse_database`; returns how many Kafka messages were applied."""

    def __call__(self, settings: Settings, ranges: Mapping[int, tuple[int, int]]) -> int: ...


def replay_function(production: Settings) -> tuple[ReplayInto, str]:
    """The streaming package's replay, or (until it exists) the SQL copy stand-in; and its name."""
    try:
        from streaming.replay import replay_into  # type: ignore[import-not-found]
    except ImportError:
        log.warning("streaming.replay.replay_into is missing: using the SQL copy stand-in, "
                    "which cannot see rows that never came from Kafka")
        return functools.partial(copy_from_production, production), "sql_copy_stand_in"
    return replay_into, "streaming.replay.replay_into"


def copy_from_production(production: Settings, shadow: Settings,
                         ranges: Mapping[int, tuple[int, int]]) -> int:
    """STAND-IN for the consumer replay: copy production's rows of the range, one per message.

    Keeps, per (partition, offset, tweet id), the earliest-ingested row: what one clean
    consumption of each message would have written. It cannot tell rows slipped in with fresh
    offsets or ids from real ones; the real replay (streaming.replay) can.
    """
    from tweetflow.clients import clickhouse_client

    client = clickhouse_client(shadow)
    where = ranges_predicate(ranges)
    src, dst = production.clickhouse_database, shadow.clickhouse_database
    try:
        for table in (RAW_TWEETS, TWEET_DELETES):
            client.command(
                f"INSERT INTO `{dst}`.`{table}` SELECT * FROM `{src}`.`{table}` WHERE {where} "
                f"ORDER BY ingested_at LIMIT 1 BY kafka_partition, kafka_offset, tweet_id")
        messages = client.query(
            f"SELECT uniqExact(kafka_partition, kafka_offset) FROM ("
            f"SELECT kafka_partition, kafka_offset FROM `{dst}`.`{RAW_TWEETS}` UNION ALL "
            f"SELECT kafka_partition, kafka_offset FROM `{dst}`.`{TWEET_DELETES}`)")
        return int(messages.result_rows[0][0])
    finally:
        client.close()


def plan_ranges(settings: Settings, *, from_time: datetime | None = None,
                to_time: datetime | None = None, timeout: float = 10.0) -> OffsetRanges:
    """Offsets of the raw topic to replay, per partition: from the first message at or after
    `from_time` (default: the oldest retained) up to the first at or after `to_time`, but never
    past the consumer group's committed offset.

    Why the committed offset: the consumers commit only after ClickHouse has every row of a batch,
    so production is known to hold all messages below it; messages above may still be in flight,
    and comparing them would fail on lag rather than on wrong data.
    """
    from confluent_kafka import Consumer, TopicPartition

    # The production group's id, to read its committed offsets; this consumer never subscribes,
    # so it does not join the group or move its offsets.
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers,
                         "group.id": settings.consumer_group, "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(settings.topic_raw, timeout=timeout).topics[settings.topic_raw]
        if meta.error is not None:
            raise RuntimeError(f"topic {settings.topic_raw}: {meta.error}")
        partitions = [TopicPartition(settings.topic_raw, p) for p in sorted(meta.partitions)]
        committed = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout)}
        ranges: OffsetRanges = {}
        for p in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(settings.topic_raw, p),
                                                       timeout=timeout)
            high = min(high, max(committed.get(p, -1), low))  # -1: nothing committed yet

            def at(moment: datetime | None, default: int, p: int = p, high: int = high) -> int:
                if moment is None:
                    return default
                tp = TopicPartition(settings.topic_raw, p, int(moment.timestamp() * 1000))
                found = consumer.offsets_for_times([tp], timeout=timeout)[0].offset
                return high if found < 0 else min(found, high)  # -1: none at/after `moment`

            ranges[p] = (at(from_time, low), at(to_time, high))
        return ranges
    finally:
        consumer.close()


def ranges_predicate(ranges: Mapping[int, tuple[int, int]]) -> str:
    """SQL keeping rows whose Kafka coordinates fall in `ranges` (false when there are none)."""
    terms = [f"(kafka_partition = {int(p)} AND kafka_offset >= {int(a)} "
             f"AND kafka_offset < {int(b)})" for p, (a, b) in sorted(ranges.items()) if b > a]
    return " OR ".join(terms) if terms else "0"


def days_predicate(column: str, days: Iterable[date]) -> str:
    listed = ", ".join(f"'{d.isoformat()}'" for d in sorted(days))
    return f"toDate({column}) IN ({listed})" if listed else "0"


@dataclass
class TableDiff:
    """Rows of one table found on one side only (as multisets), with a sample of each."""

    table: str
    compared_on: str
    production_only: int = 0
    shadow_only: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        return self.production_only == 0 and self.shadow_only == 0


@dataclass
class Comparison:
    production_database: str
    shadow_database: str
    ranges: OffsetRanges
    comparable_days: list[date]
    excluded_days: list[date]
    tables: list[TableDiff]

    @property
    def passed(self) -> bool:
        return all(t.matches for t in self.tables)

    @property
    def differing(self) -> list[TableDiff]:
        return [t for t in self.tables if not t.matches]


class _Client(Protocol):  # the part of clickhouse-connect's Client used here
    def query(self, query: str, parameters: Any = None) -> Any: ...


def _days(client: _Client, sql: str) -> set[date]:
    return {row[0] for row in client.query(sql).result_rows}


def comparable_days(client: _Client, production_db: str, shadow_db: str,
                    ranges: Mapping[int, tuple[int, int]]) -> tuple[list[date], list[date]]:
    """(days to compare, days excluded because production also has data from outside the range)."""
    inside = ranges_predicate(ranges)
    prod, shadow = f"`{production_db}`", f"`{shadow_db}`"
    seen = _days(client, f"SELECT DISTINCT toDate(created_at) FROM {prod}.{RAW_TWEETS} "
                         f"WHERE {inside}")
    seen |= _days(client, f"SELECT DISTINCT toDate(created_at) FROM {shadow}.{RAW_TWEETS}")
    outside = _days(client, f"SELECT DISTINCT toDate(created_at) FROM {prod}.{RAW_TWEETS} "
                            f"WHERE NOT ({inside})")
    outside |= _days(client, f"SELECT DISTINCT toDate(created_at) FROM {prod}.{RAW_TWEETS} "
                             f"WHERE tweet_id IN (SELECT tweet_id FROM {prod}.{TWEET_DELETES} "
                             f"WHERE NOT ({inside}))")
    return sorted(seen - outside), sorted(seen & outside)


def _columns(client: _Client, database: str, table: str) -> list[tuple[str, str]]:
    return client.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} "
        "AND table = {t:String} ORDER BY position",
        parameters={"db": database, "t": table}).result_rows


def _select_list(columns: Sequence[tuple[str, str]]) -> str:
    """Compared columns; floats rounded so a last-bit difference in summation order is no diff."""
    out = []
    for name, ctype in columns:
        if name in IGNORED_COLUMNS:
            continue
        out.append(f"round(`{name}`, 9) AS `{name}`" if "Float" in ctype else f"`{name}`")
    return ", ".join(out)


def diff_table(client: _Client, production_db: str, shadow_db: str, table: str,
               where: str, compared_on: str, *, distinct: bool = False) -> TableDiff:
    """Rows of `table` on one side only, both sides filtered by `where`: as multisets, or as
    sets of distinct rows when `distinct`."""
    cols = _select_list(_columns(client, production_db, table))
    mode = "DISTINCT" if distinct else "ALL"
    diff = TableDiff(table, compared_on)
    for side, left, right in (("production", production_db, shadow_db),
                              ("shadow", shadow_db, production_db)):
        only = (f"SELECT {cols} FROM `{left}`.`{table}` WHERE {where} EXCEPT {mode} "
                f"SELECT {cols} FROM `{right}`.`{table}` WHERE {where}")
        count = int(client.query(f"SELECT count() FROM ({only})").result_rows[0][0])
        setattr(diff, f"{side}_only", count)
        if count:
            result = client.query(f"SELECT * FROM ({only}) LIMIT {SAMPLE_ROWS}")
            diff.samples += [{"side": f"{side}_only", **_jsonable(dict(zip(result.column_names,
                                                                          row, strict=True)))}
                             for row in result.result_rows]
    return diff


def _time_column(client: _Client, database: str, table: str) -> str:
    names = {name for name, _ in _columns(client, database, table)}
    return next(c for c in ("minute", "hour", "day", "created_at") if c in names)


def compare(client: _Client, production_db: str, shadow_db: str,
            ranges: Mapping[int, tuple[int, int]], marts: Sequence[str] = MARTS) -> Comparison:
    """Compare raw tables over the replayed offsets, staging and marts over comparable days."""
    inside = ranges_predicate(ranges)
    days, excluded = comparable_days(client, production_db, shadow_db, ranges)
    tables = [diff_table(client, production_db, shadow_db, t, inside,
                         "distinct rows of the replayed offsets", distinct=True)
              for t in (RAW_TWEETS, TWEET_DELETES)]
    for table in (STAGING, *marts):
        column = _time_column(client, production_db, table)
        tables.append(diff_table(client, production_db, shadow_db, table,
                                 days_predicate(column, days), f"comparable days ({column})"))
    return Comparison(production_db, shadow_db, dict(ranges), days, excluded, tables)


def _jsonable(row: Mapping[str, Any]) -> dict[str, Any]:
    def convert(v: Any) -> Any:
        if isinstance(v, datetime | date):
            return v.isoformat()
        if isinstance(v, list | tuple):
            return [convert(x) for x in v]
        if isinstance(v, int | float | str | bool) or v is None:
            return v
        return str(v)

    return {k: convert(v) for k, v in row.items()}


def shadow_settings(production: Settings, tag: str) -> Settings:
    """Settings writing to a shadow database (and no Redis keys of production's prefix)."""
    return production.model_copy(update={
        "clickhouse_database": f"{production.clickhouse_database}_shadow_{tag}",
        "redis_prefix": f"{production.redis_prefix}_shadow_{tag}",
    })


def summarize(comparison: Comparison) -> str:
    lines = [f"{t.table}: " + ("match" if t.matches else
                               f"{t.production_only} production-only, {t.shadow_only} shadow-only "
                               f"rows") + f" ({t.compared_on})" for t in comparison.tables]
    return "\n".join(lines)


