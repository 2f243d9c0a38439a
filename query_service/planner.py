"""Which store answers which part of a time range: the cheapest one that answers it exactly.

Pure functions of (question, range, now, hot horizon, grain, what is available); no I/O, so the
routing rules are unit-tested on their own. Times are epoch seconds (UTC); ranges are half-open.

The rules, in order:
1. Inside the hot horizon (from the first whole hour that every hot key still covers) Redis
   answers, reading hour buckets where a whole hour fits and minute buckets at the edges. When
   Redis lost data and the hot tier is being rebuilt, it is complete only from some instant
   (`hot_complete_from`, docs/effectively-once.md#when-redis-loses-data): Redis answers from the
   first whole hour after it, and the earlier part of the range goes to the next rules.
   Redis does not hold every question (no per-author kind split, no engagement metrics); those
   questions skip this step.
2. Older ranges (and everything when Redis is down) go to the dbt marts at their grains, largest
   first (a whole day from a daily mart, whole hours from an hourly mart, ...), but only for the
   days each mart is known to be complete for (a `Coverage` per grain: the mart was built from at
   least the raw version of that day; docs/marts-coverage.md).
3. Whatever is left (edges not aligned to any grain, days a mart has not caught up with) is read
   from raw ClickHouse (`stg_tweets`), which answers any range exactly but costs the most.
A range crossing the horizon becomes several parts; the service merges their numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

MINUTE, HOUR, DAY = 60, 3600, 86400
# Hot keys expire `hot_horizon_hours` after their bucket ends; keep this much room for the clock
# moving on (and key expiry) while a request runs.
HOT_SAFETY_SECONDS = 300


class Source(StrEnum):
    """Where an answer (or a part of it) came from; values match the API's AnswerSource names."""

    HOT = "hot"
    MART = "mart"
    RAW = "raw"
    CACHE = "cache"
    MIXED = "mixed"


@dataclass(frozen=True)
class Capability:
    """The bucket widths each store keeps for one question (largest first)."""

    name: str
    hot_grains: tuple[int, ...]
    mart_grains: tuple[int, ...]


# Entity counts: Redis m/h zsets; entity_counts_daily / entity_counts_hourly.
ENTITIES = Capability("entities", hot_grains=(HOUR, MINUTE), mart_grains=(DAY, HOUR))
# Tweets per author handle: Redis `author` zsets; user_activity_daily.
AUTHORS = Capability("authors", hot_grains=(HOUR, MINUTE), mart_grains=(DAY,))
# Volume by lang and kind: Redis counters and zsets; tweet_volume_hourly / tweet_volume_minutely.
VOLUME = Capability("volume", hot_grains=(HOUR, MINUTE), mart_grains=(HOUR, MINUTE))
# Per-author split by kind: not in Redis; user_activity_daily.
USER_ACTIVITY = Capability("user_activity", hot_grains=(), mart_grains=(DAY,))
# Engagement metric sums: not in Redis; engagement_daily.
ENGAGEMENT = Capability("engagement", hot_grains=(), mart_grains=(DAY,))


@dataclass(frozen=True)
class Part:
    """One piece of a plan: read [start, end) from `source`; `grain` is the bucket width read
    (0 for RAW, which filters on the Tweet's own timestamp)."""

    source: Source
    start: int
    end: int
    grain: int

    def buckets(self) -> range:
        """Bucket starts this part reads (HOT and MART parts)."""
        return range(self.start, self.end, self.grain)


@dataclass(frozen=True)
class Plan:
    parts: tuple[Part, ...]

    @property
    def source(self) -> Source:
        sources = {p.source for p in self.parts}
        if len(sources) == 1:
            return sources.pop()
        return Source.MIXED if sources else Source.HOT  # an empty plan reads nothing at all

    @property
    def hot_parts(self) -> tuple[Part, ...]:
        return tuple(p for p in self.parts if p.source is Source.HOT)

    @property
    def clickhouse_parts(self) -> tuple[Part, ...]:
        return tuple(p for p in self.parts if p.source is not Source.HOT)


@dataclass(frozen=True)
class Coverage:
    """Where a mart answers exactly: before `through` (None: no limit), except the whole UTC days
    starting at `gaps` (epoch seconds), whose raw data moved after the mart's last build."""

    through: int | None = None
    gaps: frozenset[int] = field(default_factory=frozenset)

    def spans(self, start: int, end: int) -> list[tuple[int, int]]:
        """The covered sub-ranges of [start, end), in order."""
        if self.through is not None:
            end = min(end, self.through)
        spans, cursor = [], start
        for gap in sorted(g for g in self.gaps if g + DAY > start and g < end):
            if gap > cursor:
                spans.append((cursor, gap))
            cursor = max(cursor, gap + DAY)
        if cursor < end:
            spans.append((cursor, end))
        return spans


def floor_to(t: int, grain: int) -> int:
    return t // grain * grain


def ceil_to(t: int, grain: int) -> int:
    return -(-t // grain) * grain


def hot_boundary(now: int, hot_horizon_seconds: int) -> int:
    """The oldest instant from which every hot bucket (minute and hour) is still in Redis.

    Rounded up to a whole hour so the range before it ends on an hour, which the hourly marts
    answer without raw edges.
    """
    return ceil_to(now - hot_horizon_seconds + HOT_SAFETY_SECONDS, HOUR)


def plan(capability: Capability, start: int, end: int, *, now: int, hot_horizon_seconds: int,
         max_grain: int | None = None, hot_available: bool = True,
         marts_through: Mapping[int, Coverage | int | None] | None = None,
         hot_complete_from: int | None = 0) -> Plan:
    """Split [start, end) into parts, each read from the cheapest store that answers it exactly.

    :param max_grain: the answer's bucket width (series); no part reads coarser buckets. None for
        totals over the whole range.
    :param hot_available: False when Redis is down: everything goes to ClickHouse.
    :param hot_complete_from: the instant from which the hot tier holds every Tweet (0: always;
        None: from nowhere, as when Redis is down).
    :param marts_through: per mart grain, where that mart is complete: a Coverage, or an instant
        before which it is complete (None or absent: the mart cannot be used).
    """
    if start >= end:
        return Plan(())
    hot_available = hot_available and hot_complete_from is not None
    hot_grains = _allowed(capability.hot_grains, max_grain) if hot_available else ()
    mart_grains = _allowed(capability.mart_grains, max_grain)
    through = marts_through or {}
    parts: list[Part] = []
    old_end = end
    if hot_grains:
        boundary = max(start, hot_boundary(now, hot_horizon_seconds),
                       ceil_to(hot_complete_from or 0, HOUR))
        old_end = min(end, boundary)
        hot_end = end
        if end >= now:
            # Nothing exists after now, so the bucket holding now answers "up to now" exactly and
            # one current-hour bucket replaces up to 59 minute buckets.
            hot_end = ceil_to(now, hot_grains[0])
        parts += _cover(Source.HOT, boundary, hot_end, [(g, Coverage()) for g in hot_grains])
    marts = [(g, _coverage(through.get(g))) for g in mart_grains]
    parts = _cover(Source.MART, start, old_end, marts) + parts
    return Plan(tuple(_merge_adjacent(parts)))


def _coverage(value: Coverage | int | None) -> Coverage:
    if isinstance(value, Coverage):
        return value
    return Coverage(through=value if value is not None else -1)  # None: covers nothing


def _allowed(grains: tuple[int, ...], max_grain: int | None) -> tuple[int, ...]:
    return tuple(g for g in grains if max_grain is None or g <= max_grain)


def _cover(source: Source, start: int, end: int, grains: list[tuple[int, Coverage]]) -> list[Part]:
    """Cover [start, end) with the largest aligned buckets of `source` where its coverage allows,
    finer grains at the edges and around gaps; what no grain covers is RAW.

    `grains` is [(width, coverage)], largest first.
    """
    if start >= end:
        return []
    if not grains:
        return [Part(Source.RAW, start, end, 0)]
    (grain, coverage), finer = grains[0], grains[1:]
    parts: list[Part] = []
    cursor = start
    for a, b in coverage.spans(start, end):
        first, last = ceil_to(a, grain), floor_to(b, grain)
        if first >= last:
            continue
        parts += [*_cover(source, cursor, first, finer), Part(source, first, last, grain)]
        cursor = last
    return parts + _cover(source, cursor, end, finer)


def _merge_adjacent(parts: list[Part]) -> list[Part]:
    merged: list[Part] = []
    for p in parts:
        prev = merged[-1] if merged else None
        if prev and (prev.source, prev.grain, prev.end) == (p.source, p.grain, p.start):
            merged[-1] = Part(p.source, prev.start, p.end, p.grain)
        else:
            merged.append(p)
    return merged
