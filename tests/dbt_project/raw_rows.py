"""Hand-written rows for the raw tables, as the consumers would write them, and a dbt runner
(the bench's `bench.harness.dbt`, failing as an assertion).

The sample (a day and a half of Tweets) exercises what the marts must get right: versions of one
Tweet (newest wins), an exact duplicate, a deleted Tweet, a Tweet repeating an entity, one
without an author, a handle changing case, an hour's last millisecond and a day's first.

Shared by tests/dbt_project and tests/analytics_pipeline (whose conftest puts this folder on
sys.path): both insert a handful of rows with clickhouse-connect and check exact results.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.harness import clickhouse_rows, dbt
from tweetflow.schema import RAW_TWEET_COLUMNS, TWEET_DELETE_COLUMNS
from tweetflow.settings import Settings

INGESTED = datetime(2024, 3, 7, 12, 0, tzinfo=UTC)


def ts(text: str) -> datetime:
    """'2024-03-05 10:15:00[.123]' as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def tweet(tweet_id: int, created_at: str, *, author_id: int = 0, author_handle: str = "",
          lang: str = "en", kind: str = "original", hashtags: Sequence[str] = (),
          mentions: Sequence[str] = (), cashtags: Sequence[str] = (),
          domains: Sequence[str] = (), like_count: int = 0, retweet_count: int = 0,
          reply_count: int = 0, quote_count: int = 0, partition: int = 0,
          offset: int | None = None, ingested_at: datetime | None = None) -> dict[str, Any]:
    """One raw_tweets row; unnamed columns get the consumers' empty values."""
    row: dict[str, Any] = {
        "tweet_id": tweet_id, "author_id": author_id, "author_handle": author_handle,
        "created_at": ts(created_at), "lang": lang, "text": f"tweet {tweet_id}", "kind": kind,
        "conversation_id": tweet_id, "replied_to_id": 0, "retweeted_id": 0, "quoted_id": 0,
        "in_reply_to_user_id": 0, "hashtags": list(hashtags), "mentions": list(mentions),
        "cashtags": list(cashtags), "urls": [f"https://{d}/x" for d in domains],
        "domains": list(domains), "retweet_count": retweet_count, "reply_count": reply_count,
        "like_count": like_count, "quote_count": quote_count, "impression_count": 0,
        "source": "test", "country": "", "possibly_sensitive": False,
        "edit_history_tweet_ids": [tweet_id], "matching_rules": [],
        "kafka_partition": partition, "kafka_offset": tweet_id if offset is None else offset,
        "ingested_at": ingested_at or INGESTED,
    }
    assert list(row) == [name for name, _ in RAW_TWEET_COLUMNS], "raw_tweets columns changed"
    return row


def delete(tweet_id: int, *, partition: int = 0, offset: int,
           ingested_at: datetime | None = None) -> dict[str, Any]:
    row = {"tweet_id": tweet_id, "user_id": 0, "deleted_at": INGESTED, "kafka_partition": partition,
           "kafka_offset": offset, "ingested_at": ingested_at or INGESTED + timedelta(minutes=1)}
    assert list(row) == [name for name, _ in TWEET_DELETE_COLUMNS], "tweet_deletes columns changed"
    return row


def insert(settings: Settings, table: str, rows: Iterable[dict[str, Any]]) -> None:
    from tweetflow.clients import clickhouse_client

    rows = list(rows)
    if not rows:
        return
    client = clickhouse_client(settings)
    try:
        names = list(rows[0])
        client.insert(table, [[r[n] for n in names] for r in rows], column_names=names)
    finally:
        client.close()
    _stamp_days(settings, table, rows)


def _stamp_days(settings: Settings, table: str, rows: list[dict[str, Any]]) -> None:
    """Move the raw versions of the rows' days, as the consumers do after every batch."""
    from streaming.sinks.clickhouse import ClickHouseSink

    sink = ClickHouseSink(settings)
    try:
        if table == "raw_tweets":
            sink.record_days({_created(r["created_at"]).date() for r in rows})
        elif table == "tweet_deletes":
            sink.record_days(sink.days_of([r["tweet_id"] for r in rows]))
    finally:
        sink.close()


def _created(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


query = clickhouse_rows  # the rows of one query against `settings`' database


def run_dbt(settings: Settings, *args: str, work_dir: Path) -> subprocess.CompletedProcess:
    """dbt against `settings`' database, artifacts in work_dir (the project's target/ holds
    Dagster's manifest and must not be overwritten by tests); raises with the log on failure."""
    result = dbt(settings, *args, work_dir=work_dir)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout[-6000:]}")
    return result


def sample_tweets() -> list[dict]:
    later = INGESTED + timedelta(minutes=5)
    return [
        tweet(101, "2024-03-05 10:15:00", author_id=1, author_handle="Alice",
              hashtags=["ai", "ai", "ml"], mentions=["bob"], cashtags=["tsla"],
              domains=["example.com"], like_count=10, retweet_count=2, reply_count=1),
        # A newer version of 101 (metrics grew): it wins.
        tweet(101, "2024-03-05 10:15:00", author_id=1, author_handle="Alice",
              hashtags=["ai", "ai", "ml"], mentions=["bob"], cashtags=["tsla"],
              domains=["example.com"], like_count=12, retweet_count=2, reply_count=1,
              offset=201, ingested_at=later),
        tweet(102, "2024-03-05 10:45:30", author_id=2, author_handle="Bob", kind="reply",
              hashtags=["ai"], mentions=["alice"], like_count=5, quote_count=1),
        # An exact duplicate delivery of 102.
        tweet(102, "2024-03-05 10:45:30", author_id=2, author_handle="Bob", kind="reply",
              hashtags=["ai"], mentions=["alice"], like_count=5, quote_count=1),
        tweet(103, "2024-03-05 11:05:00", author_id=1, author_handle="alice", lang="es",
              kind="retweet", hashtags=["ml"], mentions=["bob", "bob"],
              domains=["news.org", "example.com"]),
        # No author (v2 default fields), on the hour's last millisecond.
        tweet(104, "2024-03-05 11:59:59.999", kind="quote", hashtags=["ai"],
              mentions=["alice"], domains=["example.com"], like_count=3, retweet_count=1),
        tweet(105, "2024-03-06 00:00:00", author_id=2, author_handle="BOB", hashtags=["ai"],
              domains=["news.org"], like_count=1),
        # Deleted below: never counted.
        tweet(106, "2024-03-05 10:30:00", author_id=3, author_handle="carol", hashtags=["ai"],
              mentions=["bob"], domains=["example.com"], like_count=100),
    ]


def sample_deletes() -> list[dict]:
    return [delete(106, offset=300)]


def load_sample(settings: Settings) -> None:
    """The sample, one insert per row: as separate consumer batches, each its own part, so
    duplicates stay apart until a merge (one block would be deduplicated on insert)."""
    for row in sample_tweets():
        insert(settings, "raw_tweets", [row])
    insert(settings, "tweet_deletes", sample_deletes())
