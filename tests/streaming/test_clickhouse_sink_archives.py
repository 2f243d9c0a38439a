"""The ClickHouse sink on batches that span many day partitions, and its read-back guard.

A batch of an archive touches far more days than a server takes in one INSERT block
(`max_partitions_per_insert_block`, 100); the sink splits it by day. And an INSERT that ClickHouse
acknowledges without storing its rows (as the embedded endpoint once did) must fail the write, so
the worker never commits offsets past rows that are not there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from streaming_support import StopAfter, ch_rows

from streaming.pipeline import BatchProcessor, Record
from streaming.sinks.clickhouse import ClickHouseSink, RowsNotStored
from tweetflow.clients import clickhouse_client
from tweetflow.model import Event, Tweet
from tweetflow.schema import RAW_TWEETS
from tweetflow.settings import Settings

DAY_ONE = datetime(2016, 1, 1, 12, tzinfo=UTC)


def _tweets(days: int) -> list[tuple[int, int, Event]]:
    """One Tweet a day for `days` days, as (partition, offset, event)."""
    located = []
    for i in range(days):
        t = Tweet(tweet_id=1_000 + i, author_id=1, author_handle="a", text=f"day {i}", lang="en",
                  kind="original", created_at=DAY_ONE + timedelta(days=i))
        located.append((0, i, Event("tweet", t.tweet_id, tweet=t)))
    return located


@pytest.mark.parametrize("limit", [100, 7])
def test_ten_years_in_one_batch_are_all_stored(test_settings: Settings, limit: int) -> None:
    s = test_settings.model_copy(update={"clickhouse_max_partitions_per_insert": limit})
    sink = ClickHouseSink(s)
    try:
        assert sink.write(_tweets(3_653)) == 3_653
    finally:
        sink.close()
    ((rows, days, partitions),) = ch_rows(
        s, "SELECT count(), uniqExact(toDate(created_at)), uniqExact(_partition_id) "
           "FROM raw_tweets FINAL")
    assert (rows, days, partitions) == (3_653, 3_653, 120)  # 2016-01 .. 2025-12


def test_a_table_made_with_day_partitions_takes_ten_years_too(test_settings: Settings) -> None:
    """raw_tweets created before it was partitioned by month keeps its day partitions: the sink
    reads the table's own key and groups the batch by day."""
    _swap_raw_tweets(test_settings, "ReplacingMergeTree(ingested_at) PARTITION BY "
                                    "toYYYYMMDD(created_at) ORDER BY tweet_id")
    sink = ClickHouseSink(test_settings)
    try:
        assert sink.write(_tweets(1_000)) == 1_000
    finally:
        sink.close()
    ((rows, partitions),) = ch_rows(test_settings, "SELECT count(), uniqExact(_partition_id) "
                                                   "FROM raw_tweets FINAL")
    assert (rows, partitions) == (1_000, 1_000)


def _swap_raw_tweets(settings: Settings, engine: str) -> None:
    """Replace raw_tweets by a table of the same columns and another engine."""
    client = clickhouse_client(settings)
    try:
        client.command(f"CREATE TABLE `{RAW_TWEETS}_other` AS `{RAW_TWEETS}` ENGINE = {engine}")
        client.command(f"EXCHANGE TABLES `{RAW_TWEETS}` AND `{RAW_TWEETS}_other`")
    finally:
        client.close()


def _null_raw_tweets(settings: Settings) -> None:
    """Swap raw_tweets for a Null-engine table: INSERTs are acknowledged and nothing is stored."""
    _swap_raw_tweets(settings, "Null")


def _missing() -> float:
    return REGISTRY.get_sample_value("tweetflow_clickhouse_rows_missing_total",
                                     {"table": RAW_TWEETS}) or 0.0


def test_acknowledged_rows_that_are_not_stored_fail_the_write(test_settings: Settings) -> None:
    _null_raw_tweets(test_settings)
    before = _missing()
    sink = ClickHouseSink(test_settings)
    with pytest.raises(RowsNotStored, match="are not in raw_tweets"):
        sink.write(_tweets(250))
    # A Null table has no partition key: the sink groups by day, the finest it knows, so the first
    # INSERT holds 100 days and one row of each is read back.
    assert _missing() - before == 100
    sink.close()


def test_the_worker_commits_nothing_past_rows_that_are_not_stored(test_settings: Settings) -> None:
    """The processor retries the batch (never returning offsets to commit) until told to stop."""
    _null_raw_tweets(test_settings)
    records = [Record(0, i, str(1_000 + i).encode(), _payload(1_000 + i)) for i in range(20)]
    stopper = StopAfter(backoffs=3)
    processor = BatchProcessor(test_settings, stopper=stopper)
    try:
        with pytest.raises(RowsNotStored):
            processor.process(records)
    finally:
        processor.close()
    assert stopper.waits == 3
    assert processor.hot.watermarks() == {}  # the hot store did not move either


def _payload(tweet_id: int) -> bytes:
    return (b'{"data":{"id":"%d","text":"hello","author_id":"1","created_at":'
            b'"2016-01-01T00:00:00.000Z","lang":"en","edit_history_tweet_ids":["%d"]}}'
            % (tweet_id, tweet_id))
