"""Replay validation without Dagster: plan a Kafka range, and compare the shadow database it was
re-consumed into (streaming.shadow_replay) with production's tables row for row. The Dagster job
that runs the steps is analytics_pipeline.replay_validation.

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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from streaming.offsets import OffsetRanges, group_lag, offsets_at
from tweetflow.schema import RAW_TWEETS, TWEET_DELETES
from tweetflow.settings import Settings

MARTS: tuple[str, ...] = (
    "entity_counts_hourly", "entity_counts_daily", "hashtag_counts_hourly",
    "hashtag_counts_daily", "trending_hashtags", "tweet_volume_minutely", "tweet_volume_hourly",
    "user_activity_daily", "engagement_daily", "top_domains_daily", "mention_graph_daily",
)
STAGING = "stg_tweets"
# Differs on every replay by construction, so never compared.
IGNORED_COLUMNS = frozenset({"ingested_at"})
SAMPLE_ROWS = 20


def plan_ranges(settings: Settings, *, from_time: datetime | None = None,
                to_time: datetime | None = None) -> OffsetRanges:
    """Offsets of the raw topic to replay, per partition: from the first message at or after
    `from_time` (default: the oldest retained) up to the first at or after `to_time`, but never
    past the consumer group's committed offset. A time without a zone is UTC.

    Why the committed offset: the consumers commit only after ClickHouse has every row of a batch,
    so production is known to hold all messages below it; messages above may still be in flight,
    and comparing them would fail on lag rather than on wrong data.
    """
    lags = group_lag(settings)
    end = {r.partition: min(r.high, max(r.committed, r.low)) for r in lags}  # -1: none committed
    start = {r.partition: r.low for r in lags}
    if from_time is not None:
        start = {p: min(o, end[p]) for p, o in offsets_at(settings, from_time).items()}
    if to_time is not None:
        end = {p: min(o, end[p]) for p, o in offsets_at(settings, to_time).items()}
    return {p: (start[p], end[p]) for p in sorted(end)}


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


