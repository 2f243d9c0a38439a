"""The planner's routing rules: pure functions, no stack needed."""

from __future__ import annotations

from datetime import UTC, datetime

from query_service.planner import (
    AUTHORS,
    DAY,
    ENGAGEMENT,
    ENTITIES,
    HOUR,
    MINUTE,
    VOLUME,
    Part,
    Source,
    hot_boundary,
    plan,
)

HORIZON = 48 * HOUR
NOW = int(datetime(2025, 6, 10, 12, 30, 15, tzinfo=UTC).timestamp())
BOUNDARY = hot_boundary(NOW, HORIZON)  # 2025-06-08 13:00 (12:30:15 + 5 min safety, rounded up)
FRESH = {DAY: int(datetime(2025, 6, 10, tzinfo=UTC).timestamp()),
         HOUR: int(datetime(2025, 6, 10, 12, tzinfo=UTC).timestamp()),
         MINUTE: int(datetime(2025, 6, 10, 12, 30, tzinfo=UTC).timestamp())}


def t(day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return int(datetime(2025, 6, day, hour, minute, second, tzinfo=UTC).timestamp())


def test_boundary_is_the_first_whole_hour_every_hot_key_still_covers() -> None:
    assert t(8, 13) == BOUNDARY
    assert BOUNDARY >= NOW - HORIZON


def test_inside_the_horizon_redis_answers_with_hours_and_minute_edges() -> None:
    p = plan(ENTITIES, t(10, 9, 45), t(10, 11, 15), now=NOW, hot_horizon_seconds=HORIZON)
    assert p.source is Source.HOT
    assert p.parts == (Part(Source.HOT, t(10, 9, 45), t(10, 10), MINUTE),
                       Part(Source.HOT, t(10, 10), t(10, 11), HOUR),
                       Part(Source.HOT, t(10, 11), t(10, 11, 15), MINUTE))


def test_a_range_ending_now_reads_the_current_hour_bucket() -> None:
    p = plan(ENTITIES, t(10, 11, 31), NOW, now=NOW, hot_horizon_seconds=HORIZON)
    assert p.parts == (Part(Source.HOT, t(10, 11, 31), t(10, 12), MINUTE),
                       Part(Source.HOT, t(10, 12), t(10, 13), HOUR))


def test_a_minute_series_ending_now_reads_minutes_only() -> None:
    p = plan(ENTITIES, t(10, 11, 31), NOW, now=NOW, hot_horizon_seconds=HORIZON,
             max_grain=MINUTE)
    assert p.parts == (Part(Source.HOT, t(10, 11, 31), t(10, 12, 31), MINUTE),)


def test_older_ranges_go_to_the_marts_at_their_largest_grain() -> None:
    p = plan(ENTITIES, t(1, 22), t(5, 3), now=NOW, hot_horizon_seconds=HORIZON,
             marts_through=FRESH)
    assert p.source is Source.MART
    assert p.parts == (Part(Source.MART, t(1, 22), t(2), HOUR),
                       Part(Source.MART, t(2), t(5), DAY),
                       Part(Source.MART, t(5), t(5, 3), HOUR))


def test_an_hourly_series_never_reads_daily_marts() -> None:
    p = plan(ENTITIES, t(1), t(3), now=NOW, hot_horizon_seconds=HORIZON, max_grain=HOUR,
             marts_through=FRESH)
    assert p.parts == (Part(Source.MART, t(1), t(3), HOUR),)


def test_unaligned_old_edges_are_read_raw() -> None:
    p = plan(ENTITIES, t(1, 22, 10, 30), t(2, 1, 20), now=NOW, hot_horizon_seconds=HORIZON,
             marts_through=FRESH)
    assert p.source is Source.MIXED
    assert p.parts == (Part(Source.RAW, t(1, 22, 10, 30), t(1, 23), 0),
                       Part(Source.MART, t(1, 23), t(2, 1), HOUR),
                       Part(Source.RAW, t(2, 1), t(2, 1, 20), 0))


def test_minutes_come_from_a_mart_only_for_volume() -> None:
    entities = plan(ENTITIES, t(1, 22, 10), t(1, 23), now=NOW, hot_horizon_seconds=HORIZON,
                    marts_through=FRESH)
    volume = plan(VOLUME, t(1, 22, 10), t(1, 23), now=NOW, hot_horizon_seconds=HORIZON,
                  marts_through=FRESH)
    assert entities.parts == (Part(Source.RAW, t(1, 22, 10), t(1, 23), 0),)
    assert volume.parts == (Part(Source.MART, t(1, 22, 10), t(1, 23), MINUTE),)


def test_a_range_across_the_horizon_is_split_at_the_boundary() -> None:
    p = plan(ENTITIES, t(6), t(9, 6), now=NOW, hot_horizon_seconds=HORIZON, marts_through=FRESH)
    assert p.source is Source.MIXED
    assert p.parts == (Part(Source.MART, t(6), t(8), DAY),
                       Part(Source.MART, t(8), t(8, 13), HOUR),
                       Part(Source.HOT, t(8, 13), t(9, 6), HOUR))


def test_without_redis_everything_goes_to_clickhouse_and_stale_marts_are_skipped() -> None:
    p = plan(ENTITIES, t(9, 22), NOW, now=NOW, hot_horizon_seconds=HORIZON, hot_available=False,
             marts_through=FRESH)
    assert p.parts == (Part(Source.MART, t(9, 22), t(10, 12), HOUR),
                       Part(Source.RAW, t(10, 12), NOW, 0))


def test_missing_marts_mean_raw() -> None:
    p = plan(ENTITIES, t(1), t(2), now=NOW, hot_horizon_seconds=HORIZON, marts_through={})
    assert p.parts == (Part(Source.RAW, t(1), t(2), 0),)


def test_a_stale_daily_mart_leaves_later_days_to_the_hourly_mart() -> None:
    stale = {DAY: t(3), HOUR: FRESH[HOUR]}
    p = plan(ENTITIES, t(1), t(5), now=NOW, hot_horizon_seconds=HORIZON, marts_through=stale)
    assert p.parts == (Part(Source.MART, t(1), t(3), DAY), Part(Source.MART, t(3), t(5), HOUR))


def test_questions_redis_does_not_hold_skip_it_even_inside_the_horizon() -> None:
    p = plan(ENGAGEMENT, t(9), NOW, now=NOW, hot_horizon_seconds=HORIZON, marts_through=FRESH)
    assert p.parts == (Part(Source.MART, t(9), t(10), DAY), Part(Source.RAW, t(10), NOW, 0))


def test_top_authors_older_than_the_horizon_use_whole_days_then_raw() -> None:
    p = plan(AUTHORS, t(1, 12), t(3), now=NOW, hot_horizon_seconds=HORIZON, marts_through=FRESH)
    assert p.parts == (Part(Source.RAW, t(1, 12), t(2), 0), Part(Source.MART, t(2), t(3), DAY))


def test_an_empty_range_reads_nothing() -> None:
    assert plan(ENTITIES, t(2), t(2), now=NOW, hot_horizon_seconds=HORIZON).parts == ()


# --- a hot tier that is complete only from some instant (Redis lost data and is healing) ---------


def test_hot_range_before_the_hot_tier_is_complete_goes_to_clickhouse() -> None:
    # the hot tier holds every Tweet from 10:20 on June 10: earlier hot-range hours come from the
    # marts, the hour holding 10:20 too (the hot part starts on the next whole hour)
    p = plan(ENTITIES, t(10, 8), t(10, 12), now=NOW, hot_horizon_seconds=HORIZON,
             marts_through=FRESH, hot_complete_from=t(10, 10, 20))
    assert p.source is Source.MIXED
    assert p.parts == (Part(Source.MART, t(10, 8), t(10, 11), HOUR),
                       Part(Source.HOT, t(10, 11), t(10, 12), HOUR))


def test_a_range_wholly_before_the_hot_tier_is_complete_is_never_hot() -> None:
    p = plan(VOLUME, t(10, 8, 30), t(10, 9, 45), now=NOW, hot_horizon_seconds=HORIZON,
             marts_through=FRESH, hot_complete_from=t(10, 10))
    assert Source.HOT not in {part.source for part in p.parts}
    assert p.parts[0].start == t(10, 8, 30) and p.parts[-1].end == t(10, 9, 45)


def test_a_hot_tier_complete_from_before_the_horizon_changes_nothing() -> None:
    kwargs = {"now": NOW, "hot_horizon_seconds": HORIZON, "marts_through": FRESH}
    for capability, start, end in ((ENTITIES, t(7, 3), NOW), (VOLUME, t(10, 9, 45), t(10, 11))):
        assert (plan(capability, start, end, hot_complete_from=BOUNDARY - 7 * HOUR, **kwargs)
                == plan(capability, start, end, **kwargs))


def test_a_hot_tier_complete_from_nowhere_answers_all_from_clickhouse() -> None:
    p = plan(ENTITIES, t(10, 9, 45), NOW, now=NOW, hot_horizon_seconds=HORIZON,
             marts_through=FRESH, hot_complete_from=None)
    assert p.parts and Source.HOT not in {part.source for part in p.parts}
    assert p == plan(ENTITIES, t(10, 9, 45), NOW, now=NOW, hot_horizon_seconds=HORIZON,
                     marts_through=FRESH, hot_available=False)
