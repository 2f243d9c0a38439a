"""The custom asset checks on real ClickHouse and Redis: pass on agreement, fail with reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from raw_rows import delete, insert, load_sample, query, run_dbt, tweet

from analytics_pipeline.checks import (
    matches_clickhouse_closed_minutes,
    no_duplicate_tweet_ids,
    volume_within_trailing_average,
)
from tweetflow.clients import clickhouse_client, redis_client
from tweetflow.hot_keys import bucket_start, tweets_key
from tweetflow.settings import Settings

pytestmark = pytest.mark.integration


def command(settings: Settings, sql: str) -> None:
    client = clickhouse_client(settings)
    try:
        client.command(sql)
    finally:
        client.close()


def test_duplicate_audit(test_settings: Settings, resources: dict, tmp_path: Path) -> None:
    # Keep the sample's duplicate rows unmerged, so a staging without dedup really sees them.
    command(test_settings, "SYSTEM STOP MERGES raw_tweets")
    load_sample(test_settings)
    run_dbt(test_settings, "run", "--select", "stg_tweets", work_dir=tmp_path)

    ok = no_duplicate_tweet_ids(tweetflow=resources["tweetflow"])
    assert ok.passed
    assert ok.metadata["duplicate_rows"].value == 0
    assert ok.metadata["raw_versions_not_yet_merged"].value == 2  # 101's old version, 102's copy

    command(test_settings, "CREATE OR REPLACE VIEW stg_tweets AS SELECT * FROM raw_tweets")
    broken = no_duplicate_tweet_ids(tweetflow=resources["tweetflow"])
    assert not broken.passed
    assert broken.metadata["duplicate_rows"].value == 2
    samples = {s["chain_root_id"] for s in broken.metadata["duplicate_samples"].value}
    assert samples == {101, 102}


def test_volume_anomaly(test_settings: Settings, resources: dict) -> None:
    command(test_settings, "CREATE TABLE tweet_volume_hourly (hour DateTime('UTC'), lang String, "
                           "kind String, count_tweets UInt64) ENGINE = MergeTree ORDER BY hour")
    last_closed = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    history = [(last_closed - timedelta(hours=h), "en", "original", 100) for h in range(1, 25)]

    def insert_hours(rows: list[tuple]) -> None:
        client = clickhouse_client(test_settings)
        try:
            client.insert("tweet_volume_hourly", rows,
                          column_names=["hour", "lang", "kind", "count_tweets"])
        finally:
            client.close()

    insert_hours([*history, (last_closed, "en", "original", 90), (last_closed, "ja", "reply", 30)])
    normal = volume_within_trailing_average(tweetflow=resources["tweetflow"])
    assert normal.passed, normal.metadata
    assert normal.metadata["count_tweets"].value == 120
    assert normal.metadata["trailing_24h_hourly_average"].value == 100

    insert_hours([(last_closed, "en", "original", 2000)])
    spike = volume_within_trailing_average(tweetflow=resources["tweetflow"])
    assert not spike.passed
    assert "spike" in spike.metadata["reason"].value


def test_redis_agrees_with_clickhouse_on_closed_minutes(test_settings: Settings,
                                                        resources: dict, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    five, ten = now - timedelta(minutes=5), now - timedelta(minutes=10)
    at = lambda moment: moment.strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731
    insert(test_settings, "raw_tweets", [
        tweet(1, at(five)), tweet(2, at(five)), tweet(3, at(ten)),
        tweet(4, at(ten)),  # deleted below: the consumers take it out of Redis too
        tweet(5, at(now + timedelta(minutes=1))),  # not closed yet: not compared
    ])
    insert(test_settings, "tweet_deletes", [delete(4, offset=50)])
    run_dbt(test_settings, "run", "--select", "stg_tweets", work_dir=tmp_path)

    r = redis_client(test_settings)
    prefix = test_settings.redis_prefix
    r.set(tweets_key(prefix, "m", bucket_start(five.timestamp(), "m")), 2)
    r.set(tweets_key(prefix, "m", bucket_start(ten.timestamp(), "m")), 1)
    agree = matches_clickhouse_closed_minutes(tweetflow=resources["tweetflow"])
    assert agree.passed, agree.metadata["differences"]
    assert agree.metadata["tweets_redis"].value == agree.metadata["tweets_clickhouse"].value == 3

    r.incr(tweets_key(prefix, "m", bucket_start(ten.timestamp(), "m")))
    disagree = matches_clickhouse_closed_minutes(tweetflow=resources["tweetflow"])
    assert not disagree.passed
    (difference,) = disagree.metadata["differences"].value
    assert (difference["redis"], difference["clickhouse"]) == (2, 1)
    assert query(test_settings, "SELECT count() FROM stg_tweets") == [(4,)]
