"""A mart's day is replaced in one step: a reader never sees it missing or doubled while dbt rebuilds
it, alone or twice at once (issue 15, item 4).

The reader asks, over and over while the rebuilds run, how many rows every mart holds for the day;
the raw data does not change, so every answer must equal the one before: fewer rows is a hole (the
old rows gone before the new are in), more is a double (two rebuilds' rows at once).
"""

from __future__ import annotations

import json
import threading
from datetime import date, timedelta
from pathlib import Path

import pytest
from raw_rows import delete, insert, load_sample, query, run_dbt, tweet
from test_incremental import TIME_COLUMN, window

from analytics_pipeline.shadow_comparison import MARTS
from tweetflow.clients import clickhouse_client
from tweetflow.settings import Settings

pytestmark = pytest.mark.integration
DAY = "2024-03-05"


def day_counts(settings: Settings) -> tuple[int, ...]:
    """Rows of DAY in every mart, read in one query (one moment for all marts)."""
    counts = ", ".join(f"(SELECT count() FROM {mart} WHERE toDate({TIME_COLUMN.get(mart, 'day')}) "
                       f"= '{DAY}')" for mart in MARTS)
    return tuple(query(settings, f"SELECT {counts}")[0])


class Reader(threading.Thread):
    """Reads `day_counts` until stopped; every distinct reading is kept, with how many reads."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="mart-reader", daemon=True)
        self.settings, self.seen, self.reads = settings, set(), 0
        self.error: BaseException | None = None
        self._stop_reading = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_reading.is_set():
                self.seen.add(day_counts(self.settings))
                self.reads += 1
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self._stop_reading.set()
        self.join(60)
        if self.error is not None:
            raise self.error


def test_a_rebuilt_day_is_never_missing_nor_doubled(test_settings: Settings, tmp_path: Path) -> None:
    s = test_settings
    load_sample(s)
    run_dbt(s, "run", work_dir=tmp_path / "first")
    before = day_counts(s)
    assert all(before), f"every mart must hold rows of {DAY}: {dict(zip(MARTS, before, strict=True))}"

    reader = Reader(s)
    reader.start()
    try:
        run_dbt(s, "run", *window(DAY), work_dir=tmp_path / "alone")
        rebuilds = [threading.Thread(target=run_dbt, args=(s, "run", *window(DAY)),
                                     kwargs={"work_dir": tmp_path / f"concurrent{i}"})
                    for i in range(2)]
        for rebuild in rebuilds:
            rebuild.start()
        for rebuild in rebuilds:
            rebuild.join(600)
    finally:
        reader.stop()

    assert reader.reads > 20, "too few reads to have seen the rebuilds"
    odd = {mart: sorted({reading[i] for reading in reader.seen} - {before[i]})
           for i, mart in enumerate(MARTS)}
    assert reader.seen == {before}, (
        f"rows of {DAY} per mart: {dict(zip(MARTS, before, strict=True))}, but readers also saw "
        f"{ {mart: counts for mart, counts in odd.items() if counts} } (fewer: a hole; more: doubles)")
    assert day_counts(s) == before


def test_a_mart_partitioned_by_month_moves_to_days_and_keeps_its_other_days(
        test_settings: Settings, tmp_path: Path) -> None:
    """A mart built before the marts had day partitions is moved over by its next windowed run."""
    s = test_settings
    load_sample(s)
    run_dbt(s, "run", work_dir=tmp_path / "first")
    other_day = sorted(query(s, "SELECT * FROM tweet_volume_hourly WHERE toDate(hour) != "
                                f"'{DAY}'"), key=repr)
    assert other_day
    client = clickhouse_client(s)
    try:
        client.command("CREATE TABLE tweet_volume_hourly_months AS tweet_volume_hourly "
                       "ENGINE = MergeTree PARTITION BY toYYYYMM(hour) ORDER BY (hour, lang, kind)")
        client.command("INSERT INTO tweet_volume_hourly_months SELECT * FROM tweet_volume_hourly")
        client.command("EXCHANGE TABLES tweet_volume_hourly_months AND tweet_volume_hourly")
        client.command("DROP TABLE tweet_volume_hourly_months")
    finally:
        client.close()
    before = day_counts(s)

    run_dbt(s, "run", *window(DAY), work_dir=tmp_path / "window")

    ((key,),) = query(s, "SELECT partition_key FROM system.tables WHERE database = "
                         "currentDatabase() AND name = 'tweet_volume_hourly'")
    assert key in ("toYYYYMMDD(hour)", "(toYYYYMMDD(hour))")
    assert sorted(query(s, "SELECT * FROM tweet_volume_hourly WHERE toDate(hour) != "
                           f"'{DAY}'"), key=repr) == other_day
    assert day_counts(s) == before


def test_a_window_of_many_days_is_replaced_whole(test_settings: Settings, tmp_path: Path) -> None:
    """A backfill's window of 600 days (ALTERs of at most 500 days each) leaves the mart as a full
    rebuild would, a day whose Tweet was deleted meanwhile included."""
    s = test_settings
    first = date(2022, 1, 1)
    insert(s, "raw_tweets", [tweet(10_000 + i, f"{first + timedelta(days=i)} 12:00:00",
                                   hashtags=["daily"]) for i in range(600)])
    selection = ["--select", "+tweet_volume_hourly"]  # and staging, the minutely mart
    run_dbt(s, "run", *selection, work_dir=tmp_path / "first")
    insert(s, "tweet_deletes", [delete(10_100, offset=1)])  # day 101's only Tweet
    end = (first + timedelta(days=600)).isoformat()

    run_dbt(s, "run", *selection, "--vars", json.dumps({"start": first.isoformat(), "end": end}),
            work_dir=tmp_path / "window")

    days = query(s, "SELECT toDate(hour), sum(count_tweets) FROM tweet_volume_hourly GROUP BY 1")
    assert len(days) == 599 and {n for _, n in days} == {1}
    assert (first + timedelta(days=100), 1) not in days
    parts = query(s, "SELECT uniqExact(partition_id) FROM system.parts WHERE active AND "
                     "database = currentDatabase() AND table = 'tweet_volume_hourly'")
    assert parts == [(599,)]

