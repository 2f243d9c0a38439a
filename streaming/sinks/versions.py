"""What a counted version of a Tweet added to the hot aggregates, read back from `raw_tweets`.

Why: the hot tier's dedup state keeps only ids (about 6 bytes each: streaming/sinks/hot_state.py),
not the members each Tweet counted (60-120 bytes each, 123 MiB per million ids before). A delete,
or a newer version replacing a counted one, needs those members to subtract them exactly; the raw
store has every version's entities, and the pipeline writes a message's rows there before Redis
counts it (streaming/pipeline.py), so every counted version is found. Rebuilt into a `Tweet`,
`hot_state.chain_members` derives the very members it derived when counting.

Which row: the one whose content has the fingerprint the dedup state kept (an id re-sent with other
content has two rows until ClickHouse merges them). Should that row be merged away before the
hot tier subtracts it (a re-fetch whose batch crashed between its ClickHouse and Redis writes and
was retried after a merge), the newest row stands in and a warning says so.

Cost: one parameterized SELECT per batch that deletes or replaces counted Tweets (a primary-key
lookup: raw_tweets is ordered by tweet_id); nothing for batches without.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tweetflow.clients import clickhouse_client
from tweetflow.model import Tweet
from tweetflow.schema import RAW_TWEETS
from tweetflow.settings import Settings

_COLUMNS = ("tweet_id", "author_id", "author_handle", "created_at", "lang", "kind", "hashtags",
            "mentions", "cashtags", "domains", "edit_history_tweet_ids")
# Every row of the ids (not FINAL): the one counted is found by its content's fingerprint.
_SELECT = (f"SELECT {', '.join(_COLUMNS)} FROM `{RAW_TWEETS}` "
           "WHERE tweet_id IN {ids:Array(UInt64)} ORDER BY ingested_at")


# Ids per query: longer parameters go in a multipart form body, which the embedded endpoint
# rejects (a syntax error at the end of the query, seen with 300 ids).
IDS_PER_QUERY = 150


class MissingVersions(RuntimeError):
    """Counted versions whose rows the raw store does not have (the batch is retried)."""


class RawVersions:
    """Reads versions back from the configured ClickHouse database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client = None

    def fetch(self, ids: list[int]) -> dict[int, list[Tweet]]:
        """Every stored row of these ids, oldest first; raises MissingVersions when an id has
        none."""
        if self._client is None:
            self._client = clickhouse_client(self.settings)
        found: dict[int, list[Tweet]] = {}
        wanted = sorted(set(ids))
        for i in range(0, len(wanted), IDS_PER_QUERY):
            chunk = wanted[i:i + IDS_PER_QUERY]
            for row in self._client.query(_SELECT, parameters={"ids": chunk}).result_rows:
                found.setdefault(row[0], []).append(_tweet(row))
        missing = set(ids) - found.keys()
        if missing:
            raise MissingVersions(
                f"{len(missing)} counted Tweet versions are not in {RAW_TWEETS} "
                f"(e.g. {sorted(missing)[:5]}): the hot tier cannot subtract them exactly")
        return found

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _tweet(row: tuple) -> Tweet:
    (tweet_id, author_id, handle, created_at, lang, kind, hashtags, mentions, cashtags, domains,
     edits) = row
    return Tweet(tweet_id=tweet_id, author_id=author_id, author_handle=handle,
                 created_at=_utc(created_at), lang=lang, text="", kind=kind,
                 hashtags=tuple(hashtags), mentions=tuple(mentions), cashtags=tuple(cashtags),
                 domains=tuple(domains), edit_history_tweet_ids=tuple(edits))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
