"""ClickHouse reads: the dbt marts at their grain, and raw `stg_tweets` for what they cannot answer.

Every value that comes from a request travels as a server-side parameter (`{name:Type}`
placeholders, clickhouse-connect `parameters=`); the only text formatted into SQL is table and
column names from the constants below. One plan's ClickHouse parts become one query: a
`UNION ALL` of one SELECT per part, aggregated once, so a split range costs one round trip.
Every builder takes `platform` (None: every platform's rows); the marts and `stg_tweets` all have
a `platform` column, so one predicate serves both.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from query_service.planner import (
    AUTHORS,
    DAY,
    ENGAGEMENT,
    ENTITIES,
    HOUR,
    MINUTE,
    USER_ACTIVITY,
    VOLUME,
    Capability,
    Coverage,
    Part,
    Source,
)
from tweetflow.schema import MART_DAY_VERSIONS, RAW_DAY_VERSIONS
from tweetflow.settings import Settings

STG_TWEETS = "stg_tweets"
# Array column of stg_tweets per entity type.
RAW_ENTITY_COLUMNS = {"hashtag": "hashtags", "mention": "mentions", "cashtag": "cashtags",
                      "domain": "domains"}
ENTITY_MARTS = {DAY: ("entity_counts_daily", "day"), HOUR: ("entity_counts_hourly", "hour")}
VOLUME_MARTS = {HOUR: ("tweet_volume_hourly", "hour"), MINUTE: ("tweet_volume_minutely", "minute")}
USER_ACTIVITY_MART = ("user_activity_daily", "day")
ENGAGEMENT_MART = ("engagement_daily", "day")
# The marts each question reads, per grain (for their freshness).
MARTS_BY_CAPABILITY: dict[Capability, dict[int, tuple[str, str]]] = {
    ENTITIES: ENTITY_MARTS,
    AUTHORS: {DAY: USER_ACTIVITY_MART},
    VOLUME: VOLUME_MARTS,
    USER_ACTIVITY: {DAY: USER_ACTIVITY_MART},
    ENGAGEMENT: {DAY: ENGAGEMENT_MART},
}
# How long a mart's coverage is reused: data consumed for an old day is answered from raw at most
# this long after it was written (the lookup costs one small query per mart).
COVERAGE_TTL_SECONDS = 1.0
# ClickHouse error codes meaning "that table (or database) does not exist".
_MISSING_CODES = ("Code: 60.", "Code: 81.", "UNKNOWN_TABLE", "UNKNOWN_DATABASE")


class ClickHouseUnavailable(Exception):
    """ClickHouse did not answer (down, unreachable, or too slow)."""


class MissingRelation(Exception):
    """A mart or `stg_tweets` does not exist yet (dbt has not built it)."""


@dataclass
class Query:
    """SQL text with `{name:Type}` placeholders and the values bound to them."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)


# --- time filters and bucket expressions -----------------------------------------------------

def _range(part: Part, i: int, column: str, params: dict[str, Any]) -> str:
    """`column` within the part's [start, end); Date columns compare as dates."""
    params[f"a{i}"], params[f"b{i}"] = part.start, part.end
    if part.source is Source.MART and part.grain == DAY:
        return (f"{column} >= toDate(toDateTime({{a{i}:UInt32}}, 'UTC')) "
                f"AND {column} < toDate(toDateTime({{b{i}:UInt32}}, 'UTC'))")
    return (f"{column} >= toDateTime({{a{i}:UInt32}}, 'UTC') "
            f"AND {column} < toDateTime({{b{i}:UInt32}}, 'UTC')")


def _epoch(part: Part, column: str) -> str:
    """The bucket (or Tweet) time as epoch seconds."""
    if part.source is Source.MART and part.grain == DAY:
        return f"toUInt32({column}) * 86400"  # a Date is days since the epoch
    return f"toUInt32(toUnixTimestamp({column}))"


def _union(selects: list[str]) -> str:
    return "\nUNION ALL\n".join(selects)


def _mart(table_by_grain: Mapping[int, tuple[str, str]], part: Part) -> tuple[str, str]:
    return table_by_grain[part.grain]


def _on(platform: str | None, params: dict[str, Any]) -> str:
    """` AND` the row is of `platform` (a parameter); nothing for every platform (None)."""
    if platform is None:
        return ""
    params["platform"] = platform
    return " AND platform = {platform:String}"


# --- the queries, one per kind of answer ------------------------------------------------------

def top_entities(entity_type: str, parts: Sequence[Part], limit: int | None, *,
                 platform: str | None = None) -> Query:
    """Entity -> Tweets over the parts, highest first, ties by entity ascending."""
    params: dict[str, Any] = {}
    selects = []
    for i, p in enumerate(parts):
        if p.source is Source.MART:
            table, col = _mart(ENTITY_MARTS, p)
            params["et"] = entity_type
            selects.append(f"SELECT entity AS k, toUInt64(count_tweets) AS c FROM {table} "
                           f"WHERE entity_type = {{et:String}} AND {_range(p, i, col, params)}"
                           f"{_on(platform, params)}")
        else:
            arr = RAW_ENTITY_COLUMNS[entity_type]
            selects.append(f"SELECT e AS k, toUInt64(1) AS c FROM {STG_TWEETS} "
                           f"ARRAY JOIN arrayDistinct({arr}) AS e "
                           f"WHERE {_range(p, i, 'created_at', params)}{_on(platform, params)}")
    return _ranked(selects, params, limit)


def top_authors(parts: Sequence[Part], limit: int | None, *,
                platform: str | None = None) -> Query:
    """Author -> Tweets over the parts. Authors are named as in Redis's `author` dimension
    (streaming.normalize.author_member): the lower-cased handle, `id:<author_id>` when the handle
    is unknown; Tweets without an author (author_id 0) are not counted."""
    params: dict[str, Any] = {}
    selects = []
    for i, p in enumerate(parts):
        if p.source is Source.MART:
            table, col = USER_ACTIVITY_MART
            selects.append(f"SELECT {_AUTHOR} AS k, toUInt64(count_tweets) AS c FROM {table} "
                           f"WHERE author_id != 0 AND {_range(p, i, col, params)}"
                           f"{_on(platform, params)}")
        else:
            selects.append(f"SELECT {_AUTHOR} AS k, toUInt64(1) AS c FROM {STG_TWEETS} "
                           f"WHERE author_id != 0 AND {_range(p, i, 'created_at', params)}"
                           f"{_on(platform, params)}")
    return _ranked(selects, params, limit)


_AUTHOR = "if(author_handle = '', concat('id:', toString(author_id)), lower(author_handle))"


def _ranked(selects: list[str], params: dict[str, Any], limit: int | None) -> Query:
    sql = f"SELECT k, sum(c) AS n FROM (\n{_union(selects)}\n) GROUP BY k ORDER BY n DESC, k ASC"
    if limit is not None:
        params["limit"] = limit
        sql += " LIMIT {limit:UInt32}"
    return Query(sql, params)


def entity_scores(entity_type: str, members: Sequence[str], parts: Sequence[Part], *,
                  platform: str | None = None) -> Query:
    """Each of `members` -> its Tweets over the parts (members with none are absent)."""
    params: dict[str, Any] = {"members": list(members)}
    selects = []
    for i, p in enumerate(parts):
        if p.source is Source.MART:
            table, col = _mart(ENTITY_MARTS, p)
            params["et"] = entity_type
            selects.append(f"SELECT entity AS k, toUInt64(count_tweets) AS c FROM {table} "
                           f"WHERE entity_type = {{et:String}} "
                           f"AND has({{members:Array(String)}}, entity) "
                           f"AND {_range(p, i, col, params)}{_on(platform, params)}")
        else:
            arr = RAW_ENTITY_COLUMNS[entity_type]
            selects.append(f"SELECT e AS k, toUInt64(1) AS c FROM {STG_TWEETS} "
                           f"ARRAY JOIN arrayDistinct({arr}) AS e "
                           f"WHERE {_range(p, i, 'created_at', params)} "
                           f"AND has({{members:Array(String)}}, e){_on(platform, params)}")
    return Query(f"SELECT k, sum(c) FROM (\n{_union(selects)}\n) GROUP BY k", params)


def entity_series(entity_type: str, entity: str, parts: Sequence[Part], grain: int, *,
                  platform: str | None = None) -> Query:
    """Bucket start (epoch seconds, width `grain`) -> Tweets with the entity."""
    params: dict[str, Any] = {"e": entity, "g": grain}
    selects = []
    for i, p in enumerate(parts):
        if p.source is Source.MART:
            table, col = _mart(ENTITY_MARTS, p)
            params["et"] = entity_type
            selects.append(f"SELECT {_epoch(p, col)} AS t, toUInt64(count_tweets) AS c "
                           f"FROM {table} WHERE entity_type = {{et:String}} "
                           f"AND entity = {{e:String}} AND {_range(p, i, col, params)}"
                           f"{_on(platform, params)}")
        else:
            arr = RAW_ENTITY_COLUMNS[entity_type]
            selects.append(f"SELECT {_epoch(p, 'created_at')} AS t, toUInt64(1) AS c "
                           f"FROM {STG_TWEETS} WHERE has({arr}, {{e:String}}) "
                           f"AND {_range(p, i, 'created_at', params)}{_on(platform, params)}")
    return Query(f"SELECT intDiv(t, {{g:UInt32}}) * {{g:UInt32}} AS b, sum(c) "
                 f"FROM (\n{_union(selects)}\n) GROUP BY b", params)


def volume(parts: Sequence[Part], grain: int, *, platform: str | None = None) -> Query:
    """(bucket start, lang, kind) -> Tweets."""
    params: dict[str, Any] = {"g": grain}
    selects = []
    for i, p in enumerate(parts):
        if p.source is Source.MART:
            table, col = _mart(VOLUME_MARTS, p)
            selects.append(f"SELECT {_epoch(p, col)} AS t, toString(lang) AS l, "
                           f"toString(kind) AS k, toUInt64(count_tweets) AS c FROM {table} "
                           f"WHERE {_range(p, i, col, params)}{_on(platform, params)}")
        else:
            selects.append(f"SELECT {_epoch(p, 'created_at')} AS t, toString(lang) AS l, "
                           f"toString(kind) AS k, toUInt64(1) AS c FROM {STG_TWEETS} "
                           f"WHERE {_range(p, i, 'created_at', params)}{_on(platform, params)}")
    return Query(f"SELECT intDiv(t, {{g:UInt32}}) * {{g:UInt32}} AS b, l, k, sum(c) "
                 f"FROM (\n{_union(selects)}\n) GROUP BY b, l, k", params)


def user_activity(parts: Sequence[Part], grain: int, *, handle: str | None = None,
                  author_id: int | None = None, platform: str | None = None) -> Query:
    """Bucket start -> the author's (tweets, originals, retweets, replies, quotes)."""
    params: dict[str, Any] = {"g": grain}
    if author_id:
        params["uid"] = author_id
        who = "author_id = {uid:UInt64}"
    else:
        params["h"] = handle or ""
        who = "lower(author_handle) = {h:String}"
    who += _on(platform, params)
    selects = []
    for i, p in enumerate(parts):
        if p.source is Source.MART:
            table, col = USER_ACTIVITY_MART
            selects.append(
                f"SELECT {_epoch(p, col)} AS t, toUInt64(count_tweets) AS c, "
                f"toUInt64(count_originals) AS o, toUInt64(count_retweets) AS rt, "
                f"toUInt64(count_replies) AS rp, toUInt64(count_quotes) AS q FROM {table} "
                f"WHERE {who} AND {_range(p, i, col, params)}")
        else:
            selects.append(
                f"SELECT {_epoch(p, 'created_at')} AS t, toUInt64(1) AS c, "
                f"toUInt64(kind = 'original') AS o, toUInt64(kind = 'retweet') AS rt, "
                f"toUInt64(kind = 'reply') AS rp, toUInt64(kind = 'quote') AS q "
                f"FROM {STG_TWEETS} WHERE {who} AND {_range(p, i, 'created_at', params)}")
    return Query(f"SELECT intDiv(t, {{g:UInt32}}) * {{g:UInt32}} AS b, sum(c), sum(o), sum(rt), "
                 f"sum(rp), sum(q) FROM (\n{_union(selects)}\n) GROUP BY b", params)


ENGAGEMENT_COLUMNS = ("count_tweets", "count_replies", "count_retweets", "count_quotes",
                      "sum_like_count", "sum_retweet_count", "sum_reply_count", "sum_quote_count")
# The same numbers computed from raw Tweets, in ENGAGEMENT_COLUMNS order.
_RAW_ENGAGEMENT = ("1", "kind = 'reply'", "kind = 'retweet'", "kind = 'quote'", "like_count",
                   "retweet_count", "reply_count", "quote_count")


def engagement(parts: Sequence[Part], *, platform: str | None = None) -> Query:
    """One row: the ENGAGEMENT_COLUMNS summed over the parts."""
    params: dict[str, Any] = {}
    selects = []
    for i, p in enumerate(parts):
        if p.source is Source.MART:
            table, col = ENGAGEMENT_MART
            cols = ", ".join(f"toUInt64({c}) AS {c}" for c in ENGAGEMENT_COLUMNS)
            selects.append(f"SELECT {cols} FROM {table} WHERE {_range(p, i, col, params)}"
                           f"{_on(platform, params)}")
        else:
            cols = ", ".join(f"toUInt64({e}) AS {c}"
                             for e, c in zip(_RAW_ENGAGEMENT, ENGAGEMENT_COLUMNS, strict=True))
            selects.append(f"SELECT {cols} FROM {STG_TWEETS} "
                           f"WHERE {_range(p, i, 'created_at', params)}{_on(platform, params)}")
    sums = ", ".join(f"sum({c})" for c in ENGAGEMENT_COLUMNS)
    return Query(f"SELECT {sums} FROM (\n{_union(selects)}\n)", params)


def uncovered_days(mart: str) -> Query:
    """The days (epoch seconds) whose raw data moved after `mart` was last built for them, and
    whether the mart has recorded any build at all (docs/marts-coverage.md).

    Reads only the two small version tables: a row per day and batch before merges, per day after.
    """
    return Query(f"""
SELECT toUInt32(r.day) * 86400, (SELECT count() > 0 FROM {MART_DAY_VERSIONS} WHERE mart = {{m:String}})
FROM (SELECT day, max(version) AS rv FROM {RAW_DAY_VERSIONS} GROUP BY day) AS r
LEFT JOIN (SELECT day, argMax(raw_version, built_at) AS mv FROM {MART_DAY_VERSIONS}
           WHERE mart = {{m:String}} GROUP BY day) AS m ON m.day = r.day
WHERE m.mv < r.rv
UNION ALL
SELECT 0, (SELECT count() > 0 FROM {MART_DAY_VERSIONS} WHERE mart = {{m:String}})""", {"m": mart})


def old_days_generation(horizon_seconds: int) -> Query:
    """The newest raw version of any day not wholly inside the hot horizon: it moves only when
    such a day receives data (an archive, a late Tweet, a delete of an old Tweet)."""
    return Query(f"SELECT toUInt64(toUnixTimestamp64Micro(max(version))) FROM {RAW_DAY_VERSIONS} "
                 "WHERE day < toDate(now() - {h:UInt32})", {"h": horizon_seconds})


# --- execution ------------------------------------------------------------------------------

class ClickHouseStore:
    """Runs queries on ClickHouse from asyncio, with deadlines and error classification.

    Why a thread pool: clickhouse-connect's client is synchronous (its async client needs aiohttp,
    which tweetflow does not depend on); one shared client without a session is thread-safe.
    """

    def __init__(self, settings: Settings, *, max_workers: int = 8,
                 client_factory: Callable[[], Any] | None = None) -> None:
        self.settings = settings
        self._factory = client_factory or self._default_factory
        self._client: Any = None
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="clickhouse")
        self._freshness: dict[str, tuple[float, Coverage | None]] = {}
        self._generation, self._generation_expires = 0, 0.0
        self._generation_task: asyncio.Future | None = None

    def _default_factory(self) -> Any:
        from tweetflow.clients import clickhouse_client

        # No session: queries from many threads share the client. No retries: an unreachable
        # ClickHouse should be reported at once, not after a back-off.
        return clickhouse_client(self.settings, autogenerate_session_id=False, connect_timeout=2,
                                 send_receive_timeout=60, query_retries=0)

    def _run(self, query: Query, timeout: float) -> list[tuple]:
        from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

        try:
            if self._client is None:
                self._client = self._factory()
            settings = {"max_execution_time": max(1, int(timeout))}
            result = self._client.query(query.sql, parameters=query.params, settings=settings)
            return list(result.result_rows)
        except OperationalError as exc:
            raise ClickHouseUnavailable(_first_line(exc)) from exc
        except DatabaseError as exc:
            if any(code in str(exc) for code in _MISSING_CODES):
                raise MissingRelation(_missing_message(exc, self.settings)) from exc
            raise
        except OSError as exc:  # refused before clickhouse-connect wrapped it
            raise ClickHouseUnavailable(str(exc)) from exc

    async def rows(self, query: Query, timeout: float) -> list[tuple]:
        """The query's rows; ClickHouseUnavailable if no answer within `timeout` seconds."""
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(self._pool, self._run, query, timeout), timeout)
        except TimeoutError as exc:
            raise ClickHouseUnavailable(f"no answer within {timeout:.1f}s") from exc

    async def marts_through(self, capability: Capability, timeout: float) -> dict[int, Coverage | None]:
        """Per grain, where the question's mart answers exactly (None: not built, or missing)."""
        through: dict[int, Coverage | None] = {}
        for grain, (table, _column) in MARTS_BY_CAPABILITY[capability].items():
            through[grain] = await self._coverage(table, timeout)
        return through

    async def _coverage(self, table: str, timeout: float) -> Coverage | None:
        cached = self._freshness.get(table)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            rows = await self.rows(uncovered_days(table), timeout)
            built = any(row[1] for row in rows)
            value = Coverage(gaps=frozenset(r[0] for r in rows if r[0])) if built else None
        except MissingRelation:  # no mart built yet (dbt creates mart_day_versions)
            value = None
        self._freshness[table] = (time.monotonic() + COVERAGE_TTL_SECONDS, value)
        return value

    async def generation(self, horizon_seconds: int) -> int:
        """`old_days_generation`, at most about a second old. Only the first call waits for it;
        afterwards a stale value starts a refresh in the background (a failed one keeps the last
        value), so the hot path never waits for ClickHouse."""
        if self._generation_expires < time.monotonic() and self._generation_task is None:
            self._generation_task = asyncio.ensure_future(self._refresh_generation(horizon_seconds))
            if not self._generation_expires:
                await asyncio.shield(self._generation_task)
        return self._generation

    async def _refresh_generation(self, horizon_seconds: int) -> None:
        try:
            rows = await self.rows(old_days_generation(horizon_seconds), 2.0)
            self._generation = int(rows[0][0]) if rows and rows[0][0] else 0
        except Exception:  # ClickHouse down or the table missing: keep what we had
            pass
        finally:
            self._generation_expires = time.monotonic() + COVERAGE_TTL_SECONDS
            self._generation_task = None

    def close(self) -> None:
        if self._generation_task is not None:
            self._generation_task.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._client is not None:
            self._client.close()


def _missing_message(exc: BaseException, settings: Settings) -> str:
    found = _MISSING_NAME.search(str(exc))
    name = (found.group(1) or found.group(2)) if found else "a table this question reads"
    return f"{name} does not exist in ClickHouse database {settings.clickhouse_database}"


_MISSING_NAME = re.compile(r"identifier '([\w.]+)'|Table ([\w.]+) does not exist")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
