"""dbt build over the hand-written sample gives exactly the expected mart rows."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pytest
from raw_rows import query, run_dbt, ts

from tweetflow.settings import Settings

pytestmark = pytest.mark.integration
H10, H11, H00 = ts("2024-03-05 10:00:00"), ts("2024-03-05 11:00:00"), ts("2024-03-06 00:00:00")
D1, D2 = date(2024, 3, 5), date(2024, 3, 6)


def rows(settings: Settings, table: str, order: str) -> list[tuple]:
    """Every column but `platform` (the sample is all X; test_platform_marts.py splits them)."""
    return query(settings, f"SELECT * EXCEPT (platform) FROM {table} ORDER BY {order}")


def naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)


def utc_rows(result: list[tuple]) -> list[tuple]:
    """Aware datetimes compared as naive UTC (clickhouse-connect returns tz-aware values)."""
    return [tuple(naive(v) if isinstance(v, datetime) else v for v in r) for r in result]


def test_staging_keeps_the_newest_version_of_each_live_tweet(built: Settings) -> None:
    got = query(built, "SELECT tweet_id, like_count, kafka_offset FROM stg_tweets "
                       "ORDER BY tweet_id")
    assert got == [(101, 12, 201), (102, 5, 102), (103, 0, 103), (104, 3, 104), (105, 1, 105)]


def test_entity_counts_hourly_count_a_tweet_once_per_distinct_entity(built: Settings) -> None:
    got = utc_rows(rows(built, "entity_counts_hourly", "hour, entity_type, entity"))
    h10, h11, h00 = naive(H10), naive(H11), naive(H00)
    assert got == [
        (h10, "cashtag", "tsla", 1),
        (h10, "domain", "example.com", 1),
        (h10, "hashtag", "ai", 2),
        (h10, "hashtag", "ml", 1),
        (h10, "mention", "alice", 1),
        (h10, "mention", "bob", 1),
        (h11, "domain", "example.com", 2),
        (h11, "domain", "news.org", 1),
        (h11, "hashtag", "ai", 1),
        (h11, "hashtag", "ml", 1),
        (h11, "mention", "alice", 1),
        (h11, "mention", "bob", 1),
        (h00, "domain", "news.org", 1),
        (h00, "hashtag", "ai", 1),
    ]


def test_entity_and_hashtag_counts_daily(built: Settings) -> None:
    assert rows(built, "entity_counts_daily", "day, entity_type, entity") == [
        (D1, "cashtag", "tsla", 1),
        (D1, "domain", "example.com", 3),
        (D1, "domain", "news.org", 1),
        (D1, "hashtag", "ai", 3),
        (D1, "hashtag", "ml", 2),
        (D1, "mention", "alice", 2),
        (D1, "mention", "bob", 2),
        (D2, "domain", "news.org", 1),
        (D2, "hashtag", "ai", 1),
    ]
    assert rows(built, "hashtag_counts_daily", "day, hashtag") == [
        (D1, "ai", 3), (D1, "ml", 2), (D2, "ai", 1)]
    assert utc_rows(rows(built, "hashtag_counts_hourly", "hour, hashtag")) == [
        (naive(H10), "ai", 2), (naive(H10), "ml", 1), (naive(H11), "ai", 1),
        (naive(H11), "ml", 1), (naive(H00), "ai", 1)]


def test_trending_hashtags_baselines(built: Settings) -> None:
    got = utc_rows(rows(built, "trending_hashtags", "hour, hashtag"))
    expected = [
        (naive(H10), "ai", 2, 0.0, 2.0, False),
        (naive(H10), "ml", 1, 0.0, 1.0, False),
        (naive(H11), "ai", 1, 2 / 24, 1.0, False),
        (naive(H11), "ml", 1, 1 / 24, 1.0, False),
        (naive(H00), "ai", 1, 3 / 24, 1.0, False),
    ]
    assert [(*r[:3], r[5]) for r in got] == [(*e[:3], e[5]) for e in expected]
    for (*_, base, vel, _t), (*_, e_base, e_vel, _e) in zip(got, expected, strict=True):
        assert base == pytest.approx(e_base) and vel == pytest.approx(e_vel)


def test_tweet_volume(built: Settings) -> None:
    assert utc_rows(rows(built, "tweet_volume_minutely", "minute, lang, kind")) == [
        (naive(ts("2024-03-05 10:15:00")), "en", "original", 1),
        (naive(ts("2024-03-05 10:45:00")), "en", "reply", 1),
        (naive(ts("2024-03-05 11:05:00")), "es", "retweet", 1),
        (naive(ts("2024-03-05 11:59:00")), "en", "quote", 1),
        (naive(H00), "en", "original", 1),
    ]
    assert utc_rows(rows(built, "tweet_volume_hourly", "hour, lang, kind")) == [
        (naive(H10), "en", "original", 1),
        (naive(H10), "en", "reply", 1),
        (naive(H11), "en", "quote", 1),
        (naive(H11), "es", "retweet", 1),
        (naive(H00), "en", "original", 1),
    ]


def test_user_activity_daily_leaves_out_authorless_tweets(built: Settings) -> None:
    assert rows(built, "user_activity_daily", "day, author_id") == [
        (D1, 1, "alice", 2, 1, 1, 0, 0),
        (D1, 2, "bob", 1, 0, 0, 1, 0),
        (D2, 2, "bob", 1, 1, 0, 0, 0),
    ]


def test_engagement_daily_sums_newest_versions(built: Settings) -> None:
    assert rows(built, "engagement_daily", "day") == [
        (D1, 4, 1, 1, 1, 20, 3, 1, 1),
        (D2, 1, 0, 0, 0, 1, 0, 0, 0),
    ]


def test_top_domains_daily_ranks(built: Settings) -> None:
    assert rows(built, "top_domains_daily", "day, rank") == [
        (D1, "example.com", 3, 1), (D1, "news.org", 1, 2), (D2, "news.org", 1, 1)]


def test_mention_graph_daily(built: Settings) -> None:
    assert rows(built, "mention_graph_daily", "day, source_handle, target_handle") == [
        (D1, "alice", "bob", 2), (D1, "bob", "alice", 1)]


def test_docs_generate_catalogs_every_model(built: Settings, tmp_path: Path) -> None:
    run_dbt(built, "docs", "generate", work_dir=tmp_path)
    catalog = json.loads((tmp_path / "dbt_target" / "catalog.json").read_text())
    manifest = json.loads((tmp_path / "dbt_target" / "manifest.json").read_text())
    models = {k for k, v in manifest["nodes"].items() if v["resource_type"] == "model"}
    assert models <= set(catalog["nodes"])
    trending = manifest["nodes"]["model.tweetflow.trending_hashtags"]
    assert "Grain: (hour, platform, hashtag)" in trending["description"]
    assert set(catalog["nodes"]["model.tweetflow.trending_hashtags"]["columns"]) == {
        "hour", "platform", "hashtag", "count_tweets", "baseline_avg", "velocity", "is_trending"}
