"""When the marts rebuild: a sensor for days whose raw data moved, and an hourly schedule.

The sensor keeps, per event day, a fingerprint of the raw tables (distinct Tweets and newest
ingestion time; likewise for the deletes of that day's Tweets) as its JSON cursor. A day whose
fingerprint changed (late events, replays, deletes) is requested again, whatever its age;
consecutive days go into one run, which the marts' single-run backfill policy builds with one
dbt invocation. The hourly schedule rebuilds yesterday and today regardless, so the marts stay
fresh even when nothing moved. The sensor looks every five minutes: minute-fresh numbers are
Redis's job (the hot path), the marts' is exactness.

Fingerprints are merge-invariant on purpose: ReplacingMergeTree merges drop duplicate rows, which
must not look like movement; uniqExact(tweet_id) and max(ingested_at) survive a merge.
"""

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from dagster import (
    DefaultScheduleStatus,
    DefaultSensorStatus,
    JobDefinition,
    RunRequest,
    ScheduleEvaluationContext,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    schedule,
    sensor,
)

from analytics_pipeline.partitions import daily_partitions
from analytics_pipeline.resources import TweetflowResource

# define_asset_job's result; its class is not exported by dagster.
AssetJob = JobDefinition | Any

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

_FINGERPRINTS_SQL = """
SELECT toString(day), toString(tweets), toString(newest) FROM (
    SELECT toDate(created_at) AS day, uniqExact(tweet_id) AS tweets, max(ingested_at) AS newest
    FROM raw_tweets GROUP BY day
)
"""
_DELETE_FINGERPRINTS_SQL = """
SELECT toString(day), toString(deletes), toString(newest) FROM (
    SELECT toDate(t.created_at) AS day, uniqExact(d.tweet_id) AS deletes,
           max(d.ingested_at) AS newest
    FROM tweet_deletes AS d
    INNER JOIN (SELECT DISTINCT tweet_id, created_at FROM raw_tweets) AS t USING (tweet_id)
    GROUP BY day
)
"""


def day_fingerprints(tweetflow: TweetflowResource) -> dict[str, str]:
    """Per event day (YYYY-MM-DD): a string that changes whenever the day's raw data moves."""
    client = tweetflow.clickhouse()
    try:
        tweets = client.query(_FINGERPRINTS_SQL).result_rows
        deletes = client.query(_DELETE_FINGERPRINTS_SQL).result_rows
    finally:
        client.close()
    prints = {day: f"t{n}@{newest}" for day, n, newest in tweets}
    for day, n, newest in deletes:
        prints[day] = f"{prints.get(day, 't0')}|d{n}@{newest}"
    return prints


def moved_days(previous: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """Days whose fingerprint is new or changed, in order."""
    return sorted(day for day, mark in current.items() if previous.get(day) != mark)


def day_ranges(days: Sequence[str]) -> list[tuple[str, str]]:
    """Consecutive days grouped into inclusive (first, last) ranges."""
    ranges: list[tuple[str, str]] = []
    for day in sorted(set(days)):
        if ranges and date.fromisoformat(day) - date.fromisoformat(ranges[-1][1]) == timedelta(1):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def range_run_request(first: str, last: str, run_key: str | None = None) -> RunRequest:
    """One run over the partitions first..last (a single dbt build under single-run backfill)."""
    if first == last:
        return RunRequest(run_key=run_key, partition_key=first)
    return RunRequest(run_key=run_key, tags={RANGE_START_TAG: first, RANGE_END_TAG: last})


def build_raw_change_sensor(job: AssetJob,
                            minimum_interval_seconds: int = 300) -> SensorDefinition:
    """A sensor requesting `job` for the day partitions whose raw data moved since its cursor."""

    @sensor(name="raw_data_moved", job=job, minimum_interval_seconds=minimum_interval_seconds,
            default_status=DefaultSensorStatus.RUNNING, description=(
                "Rebuilds the mart partitions (event days) whose raw Tweets or deletes changed."))
    def raw_data_moved(context: SensorEvaluationContext,
                       tweetflow: TweetflowResource) -> SensorResult:
        previous = json.loads(context.cursor).get("days", {}) if context.cursor else {}
        current = day_fingerprints(tweetflow)
        moved = moved_days(previous, current)
        valid = set(daily_partitions.get_partition_keys())
        outside = [d for d in moved if d not in valid]
        if outside:
            context.log.warning("raw data on days outside the partitions (%s..today): %s",
                                daily_partitions.start.date(), ", ".join(outside[:10]))
        requests = []
        for first, last in day_ranges([d for d in moved if d in valid]):
            marks = json.dumps([current[d] for d in moved if first <= d <= last])
            digest = hashlib.sha256(marks.encode()).hexdigest()[:12]
            requests.append(range_run_request(first, last, run_key=f"{first}..{last}:{digest}"))
        return SensorResult(run_requests=requests, cursor=json.dumps({"days": current}))

    return raw_data_moved


def recent_days(moment: datetime) -> tuple[str, str]:
    """Yesterday and today (UTC) of `moment`: the days still receiving late events."""
    today = moment.date()
    return (today - timedelta(days=1)).isoformat(), today.isoformat()


def build_hourly_schedule(job: AssetJob):
    """Rebuild yesterday's and today's marts every hour, five minutes past."""

    @schedule(name="marts_hourly", job=job, cron_schedule="5 * * * *",
              execution_timezone="UTC", default_status=DefaultScheduleStatus.RUNNING)
    def marts_hourly(context: ScheduleEvaluationContext) -> RunRequest:
        first, last = recent_days(context.scheduled_execution_time)
        return range_run_request(first, last)

    return marts_hourly
