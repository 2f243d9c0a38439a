"""Raw Tweets and deletes into ClickHouse, one INSERT per table per batch (Native format)."""

from __future__ import annotations

from datetime import UTC, datetime

from streaming.normalize import lowered
from tweetflow.clients import clickhouse_client
from tweetflow.model import Event
from tweetflow.schema import RAW_TWEET_COLUMNS, RAW_TWEETS, TWEET_DELETE_COLUMNS, TWEET_DELETES
from tweetflow.settings import Settings

RAW_NAMES = [name for name, _ in RAW_TWEET_COLUMNS]
DELETE_NAMES = [name for name, _ in TWEET_DELETE_COLUMNS]


class ClickHouseSink:
    """Writes the events of a batch; a failed write raises and the batch is retried as a whole.

    Duplicated rows (a replayed offset range, a Tweet published twice) are harmless here: the
    tables are ReplacingMergeTree keyed by tweet_id and readers deduplicate.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = clickhouse_client(self.settings, compress="lz4")
        return self._client

    def write(self, located: list[tuple[int, int, Event]]) -> int:
        """Insert (partition, offset, event) triples; returns rows written."""
        now = datetime.now(UTC)
        tweets, deletes = [], []
        for partition, offset, event in located:
            if event.kind == "tweet" and event.tweet is not None:
                tweets.append(_tweet_row(event, partition, offset, now))
            elif event.kind == "delete":
                deletes.append(_delete_row(event, partition, offset, now))
        try:
            if tweets:
                self.client.insert(RAW_TWEETS, tweets, column_names=RAW_NAMES)
            if deletes:
                self.client.insert(TWEET_DELETES, deletes, column_names=DELETE_NAMES)
        except Exception:
            self.close()  # reconnect on the next attempt
            raise
        return len(tweets) + len(deletes)

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None


def _tweet_row(event: Event, partition: int, offset: int, now: datetime) -> list:
    t = event.tweet
    assert t is not None
    return [
        t.tweet_id, t.author_id, t.author_handle, t.created_at, t.lang, t.text, t.kind,
        t.conversation_id, t.replied_to_id, t.retweeted_id, t.quoted_id, t.in_reply_to_user_id,
        lowered(t.hashtags), lowered(t.mentions), lowered(t.cashtags), list(t.urls),
        lowered(t.domains), t.retweet_count, t.reply_count, t.like_count, t.quote_count,
        t.impression_count, t.source, t.country, t.possibly_sensitive,
        list(t.edit_history_tweet_ids), list(t.matching_rules), partition, offset, now,
    ]


def _delete_row(event: Event, partition: int, offset: int, now: datetime) -> list:
    return [event.tweet_id, event.user_id, event.event_at or now, partition, offset, now]
