"""Mart partitions materialized through Dagster: a two-day backfill in one dbt run, then a day."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from dagster import ExecuteInProcessResult, materialize
from raw_rows import INGESTED, insert, load_sample, query, tweet

from analytics_pipeline.automation import RANGE_END_TAG, RANGE_START_TAG
from analytics_pipeline.dbt_models import dbt_marts, dbt_staging
from tweetflow.settings import Settings

pytestmark = pytest.mark.integration
D1, D2 = date(2024, 3, 5), date(2024, 3, 6)


def materialized_partitions(result: ExecuteInProcessResult, asset: str) -> set[str]:
    return {e.partition for e in result.get_asset_materialization_events()
            if e.asset_key.to_user_string() == asset}


def test_two_partitions_backfill_then_one_partition(test_settings: Settings,
                                                    resources: dict) -> None:
    load_sample(test_settings)
    assert materialize([dbt_staging], resources=resources).success

    backfill = materialize([dbt_marts], resources=resources,
                           tags={RANGE_START_TAG: "2024-03-05", RANGE_END_TAG: "2024-03-06"})
    assert backfill.success
    assert materialized_partitions(backfill, "engagement_daily") == {"2024-03-05", "2024-03-06"}
    steps = {e.step_key for e in backfill.all_events if e.step_key}
    assert len(steps) == 1, steps  # one dbt invocation for the whole range
    assert query(test_settings, "SELECT day, count_tweets FROM engagement_daily ORDER BY day") == [
        (D1, 4), (D2, 1)]
    # dbt's tests ran as asset checks, and passed.
    checks = backfill.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)

    # A late Tweet on day 2: rebuilding that partition alone picks it up and leaves day 1 be.
    insert(test_settings, "raw_tweets", [
        tweet(109, "2024-03-06 09:00:00", author_id=1, author_handle="alice", hashtags=["ai"],
              like_count=4, ingested_at=INGESTED + timedelta(hours=2))])
    one_day = materialize([dbt_marts], resources=resources, partition_key="2024-03-06")
    assert one_day.success
    assert materialized_partitions(one_day, "engagement_daily") == {"2024-03-06"}
    assert query(test_settings, "SELECT day, count_tweets, sum_like_count FROM engagement_daily "
                                "ORDER BY day") == [(D1, 4, 20), (D2, 2, 5)]
    assert query(test_settings, "SELECT day, count_tweets FROM hashtag_counts_daily "
                                "WHERE hashtag = 'ai' ORDER BY day") == [(D1, 3), (D2, 2)]
