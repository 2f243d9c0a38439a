"""Windowed (incremental) runs stay exact under late events, late deletes and emptied days."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from raw_rows import INGESTED, delete, insert, load_sample, query, run_dbt, tweet

from analytics_pipeline.shadow_comparison import MARTS
from tweetflow.settings import Settings

pytestmark = pytest.mark.integration
TIME_COLUMN = {"tweet_volume_minutely": "minute", "entity_counts_hourly": "hour",
               "hashtag_counts_hourly": "hour", "trending_hashtags": "hour",
               "tweet_volume_hourly": "hour"}


def day_rows(settings: Settings, day: str) -> dict[str, list[tuple]]:
    """Every mart's rows of one day, order-independent."""
    out = {}
    for mart in MARTS:
        column = TIME_COLUMN.get(mart, "day")
        sql = f"SELECT * FROM {mart} WHERE toDate({column}) = '{day}'"
        out[mart] = sorted(query(settings, sql), key=repr)
    return out


def window(day: str) -> list[str]:
    end = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    return ["--vars", json.dumps({"start": day, "end": end})]


def test_window_run_equals_full_rebuild_and_leaves_other_days(test_settings: Settings,
                                                              tmp_path: Path) -> None:
    load_sample(test_settings)
    run_dbt(test_settings, "run", work_dir=tmp_path)
    d2_before = day_rows(test_settings, "2024-03-06")

    later = INGESTED + timedelta(hours=1)
    insert(test_settings, "raw_tweets", [
        # A late event on day 1, with an entity already counted that hour ...
        tweet(107, "2024-03-05 10:20:00", author_id=3, author_handle="carol", hashtags=["ai"],
              mentions=["alice"], domains=["example.com"], ingested_at=later),
        # ... and one on day 2, which a day-1 run must not pick up.
        tweet(108, "2024-03-06 08:00:00", author_id=1, author_handle="alice", hashtags=["ml"],
              ingested_at=later),
    ])
    insert(test_settings, "tweet_deletes", [delete(102, offset=400, ingested_at=later)])

    run_dbt(test_settings, "build", *window("2024-03-05"), work_dir=tmp_path)
    d1_windowed = day_rows(test_settings, "2024-03-05")
    assert day_rows(test_settings, "2024-03-06") == d2_before
    # 101, 104, late 107; 102 deleted late
    assert query(test_settings, "SELECT count_tweets FROM hashtag_counts_daily "
                                "WHERE day = '2024-03-05' AND hashtag = 'ai'") == [(3,)]

    run_dbt(test_settings, "run", work_dir=tmp_path)  # everything, no window
    assert day_rows(test_settings, "2024-03-05") == d1_windowed
    assert day_rows(test_settings, "2024-03-06") != d2_before


def test_window_run_removes_rows_of_a_day_that_lost_every_tweet(test_settings: Settings,
                                                                tmp_path: Path) -> None:
    load_sample(test_settings)
    run_dbt(test_settings, "run", work_dir=tmp_path)
    assert all(day_rows(test_settings, "2024-03-06")[m] for m in
               ("engagement_daily", "entity_counts_daily", "tweet_volume_hourly"))

    insert(test_settings, "tweet_deletes", [delete(105, offset=500)])  # day 2's only Tweet
    run_dbt(test_settings, "build", *window("2024-03-06"), work_dir=tmp_path)

    assert day_rows(test_settings, "2024-03-06") == {m: [] for m in MARTS}
    assert day_rows(test_settings, "2024-03-05")["engagement_daily"] != []
