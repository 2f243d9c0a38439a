"""The plan of a hot sum (query_service.bucket_sums): which keys it adds, subtracts and bounds by."""

from __future__ import annotations

from query_service.bucket_sums import BOUNDED_MINUTES, plan

H = 7 * 3600


def _minutes(first: int, last: int, platform: str = "x") -> list[tuple[str, int, str]]:
    return [("m", H + m * 60, platform) for m in range(first, last + 1)]


def test_a_few_minutes_are_read_as_they_are_each_its_own_bound() -> None:
    cells = [*_minutes(50, 59), ("h", H + 3600, "x")]
    p = plan(cells)
    assert sorted(p.added) == sorted(cells) and not p.subtracted and not p.bounds
    assert list(p.bound_of) == list(range(1, len(cells) + 1))


def test_a_quarter_of_an_hour_or_more_is_bounded_by_its_hour() -> None:
    cells = _minutes(60 - BOUNDED_MINUTES, 59)
    p = plan(cells)
    assert sorted(p.added) == sorted(cells) and not p.subtracted
    assert p.bounds == (("h", H, "x"),)
    assert set(p.bound_of) == {len(cells) + 1}  # every minute bounded by the hour (last key)
    assert plan(cells, bounded=False).bounds == ()


def test_most_of_an_hour_is_the_hour_minus_its_other_minutes_per_platform() -> None:
    cells = _minutes(0, 40) + _minutes(0, 40, "bluesky")
    p = plan(cells)
    assert sorted(p.added) == [("h", H, "bluesky"), ("h", H, "x")]
    assert sorted(p.subtracted) == sorted(_minutes(41, 59) + _minutes(41, 59, "bluesky"))
    keys = p.cells()
    assert [keys[i - 1] for i in p.bound_of] == list(p.added)  # an hour bounds itself
    assert len(plan(_minutes(0, 29)).added) == 30  # half an hour: read as it is
