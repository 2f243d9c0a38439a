"""Raw Tweets and deletes into ClickHouse, one INSERT per table per batch (JSONCompactEachRow).

Why JSON lines rather than clickhouse-connect's `insert` (Native format): that serializes the
columns value by value in Python (~17 µs of consumer CPU per Tweet, and its first call imports
pandas, ~1 s), while msgspec writes each row as one JSON array in C and the server parses it in
C++. Measured on 2,000-Tweet batches: ~2.4 µs per Tweet in the consumer; the server's CPU is
about the same (~10 µs, mostly writing the part; parsing JSON adds ~1 µs). Each row tuple is
encoded as soon as it is built and then freed, so a batch leaves no new objects behind for the
garbage collector to trace (keeping them until the end cost more than the encoding itself).

Every value keeps its exact meaning on the way: integers are JSON integers (UInt64 up to 2**64-1),
strings UTF-8 with JSON escapes, datetimes RFC 3339 with offset and microseconds, read with
`date_time_input_format='best_effort'` (DateTime64(3) truncates to the millisecond, as the Native
path did). The body goes uncompressed by default: over loopback lz4 cost CPU on both sides.

Archives: a server refuses an INSERT block touching more than `max_partitions_per_insert_block` (100)
partitions of raw_tweets (one a month; one a day in tables created before). So the Tweets of a batch
are grouped by partition and sent in INSERTs of at most `clickhouse_max_partitions_per_insert`
partitions each: a live batch stays one INSERT, a 10,000-Tweet slice of a ten-year archive two.
Each partition a batch touches is one new part either way, so splitting costs round trips, not parts.

Trust, but verify: an acknowledged INSERT must be readable. After each INSERT the sink reads back the
last row of every partition it wrote (by `tweet_id`, the primary key, so a few granules per row) and raises
`RowsNotStored`, so the batch is retried and no offset is committed past rows that are not there.
The embedded endpoint once acknowledged inserts it had dropped (docs/embedded-clickhouse.md, Inserts).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime

import lz4.frame
import msgspec

from streaming import metrics
from streaming.normalize import lowered
from streaming.sinks.rejections import rejection
from tweetflow.clients import clickhouse_client
from tweetflow.model import EDIT_WINDOW, Event, Tweet
from tweetflow.schema import (
    COUNT_LIMIT,
    RAW_DAY_VERSIONS,
    RAW_TWEET_COLUMNS,
    RAW_TWEETS,
    TWEET_DELETE_COLUMNS,
    TWEET_DELETES,
    partition_of,
    utc_day,
)
from tweetflow.settings import Settings
from tweetflow.snowflake import MIN_SNOWFLAKE_ID, snowflake_time

RAW_NAMES = [name for name, _ in RAW_TWEET_COLUMNS]
DELETE_NAMES = [name for name, _ in TWEET_DELETE_COLUMNS]
INSERT_FORMAT = "JSONCompactEachRow"
# Explicit because servers differ in their default (chDB: best_effort; server: basic).
INSERT_SETTINGS = {"date_time_input_format": "best_effort"}
log = logging.getLogger(__name__)


class RowsNotStored(RuntimeError):
    """ClickHouse acknowledged an INSERT, but rows it should hold cannot be read back."""


class ClickHouseSink:
    """Writes the events of a batch; a failed write raises and the batch is retried as a whole,
    unless the server refused the rows themselves (`RowsRejected`: the batch is split).

    Duplicated rows (a replayed offset range, a Tweet published twice) are harmless here: the
    tables are ReplacingMergeTree keyed by tweet_id and readers deduplicate.
    """

    def __init__(self, settings: Settings, *, compression: str | None = None) -> None:
        """`compression="lz4"` compresses each INSERT body, for a server across a slow link."""
        if compression not in (None, "lz4"):
            raise ValueError(f"unsupported compression {compression!r} (None or 'lz4')")
        self.settings = settings
        self.compression = compression
        self._client = None
        self._encode_into = msgspec.json.Encoder().encode_into
        self._partition: Callable[[datetime], date] | None = None

    @property
    def client(self):
        if self._client is None:
            self._client = clickhouse_client(self.settings, compress=False)
        return self._client

    def write(self, located: list[tuple[int, int, Event]]) -> int:
        """Insert (partition, offset, event) triples; returns rows written."""
        now = datetime.now(UTC)
        encode_into = self._encode_into
        group_of = self._partition_of()
        parts: dict[date, _Part] = {}  # raw_tweets rows by partition, JSONCompactEachRow bodies
        days: set[date] = set()
        deletes, deleted, chain_days = _Part(), [], set()
        for partition, offset, event in located:
            if event.kind == "tweet" and event.tweet is not None:
                t = event.tweet
                key = group_of(t.created_at)
                part = parts.get(key) or parts.setdefault(key, _Part())
                encode_into(_tweet_row(t, partition, offset, now), part.body, -1)
                part.add(t.tweet_id)
                days.add(utc_day(t.created_at))
                if t.chain_root_id != t.tweet_id:  # an edit changes its chain's day (its root's)
                    chain_days.add(utc_day(t.chain_created_at))
            elif event.kind == "delete":
                encode_into(_delete_row(event, partition, offset, now), deletes.body, -1)
                deletes.add(event.tweet_id)
                deleted.append(event.tweet_id)
        try:
            for group in _groups(list(parts.values()), self.settings.clickhouse_max_partitions_per_insert):
                self._insert(RAW_TWEETS, RAW_NAMES, group)
            if deletes.rows:
                self._insert(TWEET_DELETES, DELETE_NAMES, [deletes])
            if days or deleted:  # after the rows: a version never runs ahead of what it covers
                self.record_days(days | chain_days | self.days_of(deleted))
        except Exception as exc:
            self.close()  # reconnect on the next attempt
            if (refused := rejection(exc)) is not None:  # the rows, not the server: not retried
                raise refused from exc
            raise
        return sum(part.rows for part in parts.values()) + deletes.rows

    def _insert(self, table: str, names: list[str], parts: list[_Part]) -> None:
        body: bytes | bytearray = parts[0].body if len(parts) == 1 else b"".join(p.body for p in parts)
        if self.compression:
            body = lz4.frame.compress(body)
        self.client.raw_insert(table, names, body, settings=self._insert_settings, fmt=INSERT_FORMAT,
                               compression=self.compression)
        if self.settings.clickhouse_verify_inserts:
            self._verify(table, [part.last_id for part in parts])

    def _partition_of(self) -> Callable[[datetime], date]:
        """How this database's raw_tweets is partitioned (months; days for tables made before)."""
        if self._partition is None:
            table = RAW_TWEETS + ("_local" if self.settings.clickhouse_cluster else "")
            key = self.client.query(
                "SELECT partition_key FROM system.tables WHERE database = {db:String} "
                "AND name = {t:String}", parameters={"db": self.settings.clickhouse_database,
                                                     "t": table}).result_rows
            self._partition = partition_of(key[0][0] if key else "")
        return self._partition

    def record_days(self, days: Iterable[date]) -> None:
        """Move the raw version of each event day the batch touched (the server stamps it).

        Why a row per day and batch: "which days changed since X" must stay a cheap query on a
        small table, whatever the size of raw_tweets (docs/marts-coverage.md).
        """
        body = b"".join(b'["%s"]\n' % d.isoformat().encode() for d in sorted(days))
        self.client.raw_insert(RAW_DAY_VERSIONS, ["day"], body, settings=self._insert_settings,
                               fmt=INSERT_FORMAT)

    def days_of(self, tweet_ids: list[int]) -> set[date]:
        """The event days of deleted Tweets: from a Snowflake id itself, else from raw_tweets. A
        deleted edit removes its chain, counted on its root's day, up to an edit window earlier."""
        days = {utc_day(moment) for i in tweet_ids if i >= MIN_SNOWFLAKE_ID
                for moment in (snowflake_time(i), snowflake_time(i) - EDIT_WINDOW)}
        older = sorted(i for i in tweet_ids if i < MIN_SNOWFLAKE_ID)
        if older:
            found = self.client.query(
                f"SELECT DISTINCT toDate(created_at) FROM `{RAW_TWEETS}` "
                "WHERE tweet_id IN {ids:Array(UInt64)}", parameters={"ids": older}).result_columns
            days.update(found[0] if found else ())
        return days

    @property
    def _insert_settings(self) -> dict[str, str]:
        if self.settings.clickhouse_cluster:  # acknowledged only once the shards hold the rows
            return {**INSERT_SETTINGS, "insert_distributed_sync": "1"}
        return INSERT_SETTINGS

    def _verify(self, table: str, ids: list[int]) -> None:
        """Read back one row of each part just written; raise if any is missing."""
        expected = set(ids)
        found = self.client.query(
            f"SELECT DISTINCT tweet_id FROM `{table}` WHERE tweet_id IN {{ids:Array(UInt64)}}",
            parameters={"ids": sorted(expected)},
            settings={"select_sequential_consistency": "1"} if self.settings.clickhouse_cluster
            else None).result_columns
        missing = expected.difference(found[0] if found else ())
        metrics.INSERT_ROWS_VERIFIED.labels(table).inc(len(expected))
        if missing:
            metrics.INSERT_ROWS_MISSING.labels(table).inc(len(missing))
            log.error("ClickHouse acknowledged an INSERT into %s but %d of %d rows read back are "
                      "missing (e.g. tweet_id %d); not committing", table, len(missing),
                      len(expected), min(missing))
            raise RowsNotStored(f"{len(missing)} of {len(expected)} rows acknowledged by ClickHouse "
                                f"are not in {table} (e.g. tweet_id {min(missing)})")

    def flush(self) -> None:
        """Nothing to do: each write is a synchronous INSERT, read back before it returns."""

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None


class _Part:
    """The rows of one INSERT part: their JSON lines and the last id, which is read back."""

    __slots__ = ("body", "last_id", "rows")

    def __init__(self) -> None:
        self.body, self.rows, self.last_id = bytearray(), 0, 0

    def add(self, tweet_id: int) -> None:
        self.body.append(10)  # "\n" ends the row just encoded into body
        self.rows += 1
        self.last_id = tweet_id


def _groups(parts: list[_Part], size: int) -> Iterator[list[_Part]]:
    """`parts` in lists of at most `size`: one INSERT each."""
    for start in range(0, len(parts), size):
        yield parts[start:start + size]


def _tweet_row(t: Tweet, partition: int, offset: int, now: datetime) -> tuple:
    """The raw_tweets row of a Tweet, in RAW_TWEET_COLUMNS order."""
    if (t.retweet_count | t.reply_count | t.like_count | t.quote_count) >= COUNT_LIMIT:
        # The server would wrap such a value silently; refuse it, as the Native path did.
        raise ValueError(f"Tweet {t.tweet_id}: a count does not fit the UInt32 columns")
    return (
        t.tweet_id, t.author_id, t.author_handle, t.created_at, t.lang, t.text, t.kind,
        t.conversation_id, t.replied_to_id, t.retweeted_id, t.quoted_id, t.in_reply_to_user_id,
        _lowered(t.hashtags), _lowered(t.mentions), _lowered(t.cashtags), t.urls,
        _lowered(t.domains), t.retweet_count, t.reply_count, t.like_count, t.quote_count,
        t.impression_count, t.source, t.country, t.possibly_sensitive,
        t.edit_history_tweet_ids, t.matching_rules, partition, offset, now,
    )


def _delete_row(event: Event, partition: int, offset: int, now: datetime) -> tuple:
    return (event.tweet_id, event.user_id, event.event_at or now, partition, offset, now)


def _lowered(values: tuple[str, ...]) -> list[str] | tuple[str, ...]:
    """`lowered`, but an empty tuple stays as it is: no new list for the common case."""
    return lowered(values) if values else values
