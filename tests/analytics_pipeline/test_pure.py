"""Pure functions of the pipeline: dbt arguments, sensor ranges, check verdicts, replay SQL."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from dagster import TimeWindow

from analytics_pipeline.automation import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    day_ranges,
    moved_days,
    range_run_request,
    recent_days,
)
from analytics_pipeline.checks import closed_minutes, count_mismatches, volume_verdict
from analytics_pipeline.dbt_models import dbt_build_args
from analytics_pipeline.shadow_comparison import days_predicate, ranges_predicate


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


class TestDbtBuildArgs:
    def test_no_window_rebuilds_everything(self) -> None:
        assert dbt_build_args() == ["build"]

    def test_one_day(self) -> None:
        args = dbt_build_args(TimeWindow(utc(2024, 3, 5), utc(2024, 3, 6)))
        assert args[:2] == ["build", "--vars"]
        assert json.loads(args[2]) == {"start": "2024-03-05 00:00:00",
                                       "end": "2024-03-06 00:00:00"}

    def test_a_backfill_range_is_one_window(self) -> None:
        args = dbt_build_args(TimeWindow(utc(2024, 3, 1), utc(2024, 3, 8)))
        assert json.loads(args[2]) == {"start": "2024-03-01 00:00:00",
                                       "end": "2024-03-08 00:00:00"}

    def test_other_timezones_are_converted_to_utc(self) -> None:
        cet = timezone(timedelta(hours=1))
        args = dbt_build_args(TimeWindow(datetime(2024, 3, 5, 1, tzinfo=cet),
                                         datetime(2024, 3, 6, 1, tzinfo=cet)))
        assert json.loads(args[2]) == {"start": "2024-03-05 00:00:00",
                                       "end": "2024-03-06 00:00:00"}

    def test_full_refresh_and_other_commands(self) -> None:
        assert dbt_build_args(full_refresh=True) == ["build", "--full-refresh"]
        assert dbt_build_args(command="run") == ["run"]

    def test_rejects_empty_windows_and_windowed_full_refresh(self) -> None:
        with pytest.raises(ValueError, match="empty window"):
            dbt_build_args(TimeWindow(utc(2024, 3, 5), utc(2024, 3, 5)))
        with pytest.raises(ValueError, match="full refresh"):
            dbt_build_args(TimeWindow(utc(2024, 3, 5), utc(2024, 3, 6)), full_refresh=True)


class TestSensorHelpers:
    def test_moved_days_are_new_or_changed(self) -> None:
        previous = {"2024-03-04": "t1@a", "2024-03-05": "t2@b"}
        current = {"2024-03-04": "t1@a", "2024-03-05": "t3@c", "2024-03-06": "t1@d"}
        assert moved_days(previous, current) == ["2024-03-05", "2024-03-06"]
        assert moved_days(current, current) == []

    def test_day_ranges_group_consecutive_days(self) -> None:
        days = ["2024-03-06", "2024-02-28", "2024-03-05", "2024-02-29", "2024-03-01", "2024-03-09"]
        assert day_ranges(days) == [("2024-02-28", "2024-03-01"), ("2024-03-05", "2024-03-06"),
                                    ("2024-03-09", "2024-03-09")]
        assert day_ranges([]) == []

    def test_run_requests(self) -> None:
        assert range_run_request("2024-03-05", "2024-03-05").partition_key == "2024-03-05"
        ranged = range_run_request("2024-03-05", "2024-03-06", run_key="k")
        assert ranged.tags[RANGE_START_TAG] == "2024-03-05"
        assert ranged.tags[RANGE_END_TAG] == "2024-03-06"
        assert ranged.run_key == "k"

    def test_recent_days(self) -> None:
        assert recent_days(utc(2024, 3, 1, 0, 5)) == ("2024-02-29", "2024-03-01")


class TestCheckVerdicts:
    def test_volume(self) -> None:
        assert volume_verdict(100, 90.0)[0]
        assert not volume_verdict(1000, 90.0)[0]
        assert not volume_verdict(10, 90.0)[0]
        assert volume_verdict(1000, 2.0)[0]  # too little history to judge

    def test_closed_minutes_end_before_the_grace_period(self) -> None:
        now = utc(2024, 3, 5, 12, 0, 30).timestamp()
        minutes = closed_minutes(now, minutes=3, grace=120)
        assert [datetime.fromtimestamp(m, UTC).strftime("%H:%M") for m in minutes] == [
            "11:55", "11:56", "11:57"]

    def test_count_mismatches_treat_missing_as_zero(self) -> None:
        assert count_mismatches({60: 2, 120: 3}, {60: 2, 120: 3}) == []
        got = count_mismatches({60: 2}, {60: 2, 120: 1})
        assert got == [{"minute": "1970-01-01T00:02:00+00:00", "redis": 0, "clickhouse": 1}]


class TestReplaySql:
    def test_ranges_predicate(self) -> None:
        assert ranges_predicate({1: (5, 9), 0: (0, 3), 2: (4, 4)}) == (
            "(kafka_partition = 0 AND kafka_offset >= 0 AND kafka_offset < 3) OR "
            "(kafka_partition = 1 AND kafka_offset >= 5 AND kafka_offset < 9)")
        assert ranges_predicate({}) == "0"

    def test_days_predicate(self) -> None:
        assert days_predicate("hour", [date(2024, 3, 6), date(2024, 3, 5)]) == (
            "toDate(hour) IN ('2024-03-05', '2024-03-06')")
        assert days_predicate("day", []) == "0"
