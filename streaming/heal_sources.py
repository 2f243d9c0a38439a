"""Where a rebuild of the hot tier reads the messages it re-applies: Kafka, or ClickHouse's raw
tables when Kafka no longer holds the whole hot horizon (its retention is shorter).

Both give the same events in each partition's offset order, as hot-sink batches whose last offset
becomes the rebuild's watermark. From Kafka they are the messages themselves, parsed again (the
dead letters among them were produced when first consumed, and are not produced again). From
ClickHouse they are the rows the consumers stored, which carry their Kafka partition and offset:
every version of a Tweet (raw_tweets) and every delete (tweet_deletes), read without FINAL (a
row stored twice is a copy, which the dedup state counts once) and only from the hot horizon on
(`chain_created_at`, indexed; a delete by the time it was stored, which is after its Tweet's).
Measured here (2 cores, shared): see docs/performance.md#rebuilding-the-hot-tier.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

from streaming.offsets import read_range
from streaming.pipeline import Record, _by_partition, parse_records
from streaming.sinks import PartitionBatch
from tweetflow.clients import clickhouse_client
from tweetflow.model import Event, Tweet
from tweetflow.partitioner import id_key
from tweetflow.schema import RAW_TWEETS, TWEET_DELETES
from tweetflow.settings import Settings

Ranges = Mapping[int, tuple[int, int]]  # partition -> [start, end) offsets still to re-apply

# One page of a partition's rows in offset order; WITH TIES keeps the rows of the page's last
# offset together (a message can hold several events), so the next page starts after it.
_ROWS = f"""
SELECT * FROM (
    SELECT kafka_offset, 'tweet' AS event, tweet_id, author_id, author_handle, created_at, lang,
           kind, hashtags, mentions, cashtags, domains, edit_history_tweet_ids
    FROM `{RAW_TWEETS}`
    WHERE kafka_partition = {{p:UInt16}} AND kafka_offset >= {{lo:UInt64}}
      AND kafka_offset < {{hi:UInt64}} AND chain_created_at >= {{since:DateTime64(3, 'UTC')}}
    UNION ALL
    SELECT kafka_offset, 'delete', tweet_id, user_id, '', deleted_at, '', '', [], [], [], [], []
    FROM `{TWEET_DELETES}`
    WHERE kafka_partition = {{p:UInt16}} AND kafka_offset >= {{lo:UInt64}}
      AND kafka_offset < {{hi:UInt64}} AND ingested_at >= {{since:DateTime64(3, 'UTC')}}
) ORDER BY kafka_offset LIMIT {{n:UInt64}} WITH TIES
"""
_FIRST_OFFSETS = f"""
SELECT kafka_partition, min(kafka_offset) FROM (
    SELECT kafka_partition, kafka_offset FROM `{RAW_TWEETS}`
    WHERE chain_created_at >= {{since:DateTime64(3, 'UTC')}}
    UNION ALL
    SELECT kafka_partition, kafka_offset FROM `{TWEET_DELETES}`
    WHERE ingested_at >= {{since:DateTime64(3, 'UTC')}}
) GROUP BY kafka_partition
"""


def kafka_batches(settings: Settings, ranges: Ranges, size: int) -> Iterator[list[PartitionBatch]]:
    """The ranges' messages, parsed, about `size` messages at a time."""
    pending: list[Record] = []
    for records in read_range(settings, ranges, batch=min(size, 5000)):
        pending += [Record(r.partition, r.offset, r.key, r.value) for r in records]
        if len(pending) >= size:
            yield _batches(pending)
            pending = []
    if pending:
        yield _batches(pending)


def _batches(records: list[Record]) -> list[PartitionBatch]:
    located, _ = parse_records(records)  # dead letters: produced when first consumed
    return _by_partition(records, located)


def raw_first_offsets(settings: Settings, since: datetime) -> dict[int, int]:
    """Per partition, the first offset of a stored row from `since` on (none: no range)."""
    client = clickhouse_client(settings)
    try:
        rows = client.query(_FIRST_OFFSETS, parameters={"since": since}).result_rows
    finally:
        client.close()
    return {int(p): int(o) for p, o in rows}


def raw_batches(settings: Settings, ranges: Ranges, since: datetime,
                size: int) -> Iterator[list[PartitionBatch]]:
    """The ranges' stored events from `since` on, a page of about `size` rows at a time."""
    client = clickhouse_client(settings)
    try:
        for partition, (start, end) in sorted(ranges.items()):
            cursor = start
            while cursor < end:
                rows = client.query(_ROWS, parameters={
                    "p": partition, "lo": cursor, "hi": end, "since": since, "n": size},
                ).result_rows
                last = rows[-1][0] if len(rows) >= size else end - 1
                yield [_batch(partition, last, rows)]
                cursor = last + 1
    finally:
        client.close()


def _batch(partition: int, last: int, rows: list[tuple]) -> PartitionBatch:
    batch = PartitionBatch(partition, last)
    for row in rows:
        offset, event = int(row[0]), _event(row)
        batch.events.append((offset, event))
        batch.keys[offset] = id_key(event.tweet_id)  # the consumers' key: the Tweet's id
    return batch


def _event(row: tuple) -> Event:
    (_, kind, tweet_id, author_id, handle, created_at, lang, tweet_kind, hashtags, mentions,
     cashtags, domains, edits) = row
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    if kind == "delete":
        return Event(kind="delete", tweet_id=tweet_id, user_id=author_id, event_at=created_at)
    tweet = Tweet(tweet_id=tweet_id, author_id=author_id, author_handle=handle,
                  created_at=created_at, lang=lang, text="", kind=tweet_kind,
                  hashtags=tuple(hashtags), mentions=tuple(mentions), cashtags=tuple(cashtags),
                  domains=tuple(domains), edit_history_tweet_ids=tuple(edits))
    return Event(kind="tweet", tweet_id=tweet_id, tweet=tweet)
