"""The raw-change sensor requests exactly the moved days; the hourly schedule the recent two."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dagster import build_schedule_context, build_sensor_context
from raw_rows import INGESTED, delete, insert, load_sample, tweet

from analytics_pipeline.automation import RANGE_END_TAG, RANGE_START_TAG
from analytics_pipeline.definitions import defs
from tweetflow.settings import Settings

pytestmark = pytest.mark.integration


def requested(data: Any) -> list[tuple[str, str]]:
    """Each run request as its (first, last) partition."""
    out = []
    for request in data.run_requests:
        if request.partition_key:
            out.append((request.partition_key, request.partition_key))
        else:
            out.append((request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]))
    return out


def tick(resources: dict, cursor: str | None) -> Any:
    sensor = defs.get_sensor_def("raw_data_moved")
    context = build_sensor_context(cursor=cursor, definitions=defs,
                                   resources={"tweetflow": resources["tweetflow"]})
    return sensor.evaluate_tick(context)


def test_sensor_requests_partitions_whose_raw_data_moved(test_settings: Settings,
                                                         resources: dict) -> None:
    empty = tick(resources, None)
    assert requested(empty) == []
    assert json.loads(empty.cursor) == {"days": {}}

    load_sample(test_settings)
    first = tick(resources, empty.cursor)
    assert requested(first) == [("2024-03-05", "2024-03-06")]  # consecutive days: one run
    assert set(json.loads(first.cursor)["days"]) == {"2024-03-05", "2024-03-06"}

    quiet = tick(resources, first.cursor)
    assert requested(quiet) == []

    later = INGESTED + timedelta(hours=3)
    insert(test_settings, "raw_tweets", [
        tweet(110, "2024-03-05 23:59:59", hashtags=["late"], ingested_at=later),
        tweet(111, "2024-03-08 12:00:00", ingested_at=later),
        tweet(112, "2005-01-01 00:00:00", ingested_at=later),  # before the first partition
    ])
    moved = tick(resources, quiet.cursor)
    assert requested(moved) == [("2024-03-05", "2024-03-05"), ("2024-03-08", "2024-03-08")]
    assert len({r.run_key for r in moved.run_requests}) == 2

    insert(test_settings, "tweet_deletes", [delete(105, offset=900, ingested_at=later)])
    deleted = tick(resources, moved.cursor)
    assert requested(deleted) == [("2024-03-06", "2024-03-06")]  # the deleted Tweet's day


def test_hourly_schedule_rebuilds_yesterday_and_today() -> None:
    schedule = defs.get_schedule_def("marts_hourly")
    assert schedule.cron_schedule == "5 * * * *"
    context = build_schedule_context(scheduled_execution_time=datetime(2024, 3, 1, 0, 5,
                                                                       tzinfo=UTC))
    (request,) = schedule.evaluate_tick(context).run_requests
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == (
        "2024-02-29", "2024-03-01")
    assert schedule.job_name == "marts"
