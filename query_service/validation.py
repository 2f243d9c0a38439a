"""Request validation: every field checked, defaults applied, values normalized.

Pure functions from a request message (and `now`) to plain values; anything wrong raises
InvalidArgument with a message that names the field, which the servicer returns as
INVALID_ARGUMENT.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from query_service.planner import DAY, HOUR, MINUTE
from tweetflow.platforms import PLATFORMS
from tweetflow.v1 import analytics_pb2 as pb

EARLIEST = 1136073600  # 2006-01-01: no Tweet is older
MAX_RANGE_SECONDS = 366 * DAY
MAX_FUTURE_SECONDS = DAY
MAX_BUCKETS = 10_000
DEFAULT_LIMIT, MAX_LIMIT = 10, 1000
DEFAULT_WINDOW, MAX_WINDOW = HOUR, DAY
MAX_ENTITY_CHARS = 280
HANDLE = re.compile(r"[a-z0-9_]{1,50}")

GRAIN_SECONDS = {pb.GRANULARITY_MINUTE: MINUTE, pb.GRANULARITY_HOUR: HOUR, pb.GRANULARITY_DAY: DAY}
GRAIN_ENUM = {v: k for k, v in GRAIN_SECONDS.items()}
ENTITY_TYPES = {pb.ENTITY_TYPE_HASHTAG: "hashtag", pb.ENTITY_TYPE_MENTION: "mention",
                pb.ENTITY_TYPE_CASHTAG: "cashtag", pb.ENTITY_TYPE_DOMAIN: "domain"}


class InvalidArgument(ValueError):
    """A request field is missing or out of range; the message names the field."""


@dataclass(frozen=True)
class TimeRange:
    """[start, end) in epoch seconds."""

    start: int
    end: int


def time_range(request, now: float) -> TimeRange:
    """The request's [start, end): start required, end defaulting to now, whole seconds."""
    if not request.HasField("start"):
        raise InvalidArgument("start is required")
    start = _seconds(request.start, "start")
    end = _seconds(request.end, "end") if request.HasField("end") else int(now)
    if start < EARLIEST:
        raise InvalidArgument("start is before 2006-01-01; there are no Tweets that old")
    if end <= start:
        raise InvalidArgument("end must be after start")
    if end > now + MAX_FUTURE_SECONDS:
        raise InvalidArgument("end is more than a day in the future")
    if end - start > MAX_RANGE_SECONDS:
        raise InvalidArgument("the range from start to end is longer than 366 days")
    return TimeRange(start, end)


def _seconds(ts, name: str) -> int:
    if not 0 <= ts.nanos < 1_000_000_000:
        raise InvalidArgument(f"{name}.nanos must be in [0, 999999999]")
    return int(ts.seconds)


def limit(value: int) -> int:
    if value == 0:
        return DEFAULT_LIMIT
    if value > MAX_LIMIT:
        raise InvalidArgument(f"limit must be at most {MAX_LIMIT} (0 means {DEFAULT_LIMIT})")
    return value


def granularity(value: int, rng: TimeRange, *, default: int = HOUR,
                allowed: tuple[int, ...] = (MINUTE, HOUR, DAY)) -> int:
    """The bucket width in seconds; also bounds the number of buckets an answer holds."""
    if value == pb.GRANULARITY_UNSPECIFIED:
        grain = default
    elif value in GRAIN_SECONDS:
        grain = GRAIN_SECONDS[value]
    else:
        raise InvalidArgument(f"granularity {value} is not a known Granularity")
    if grain not in allowed:
        names = ", ".join(pb.Granularity.Name(GRAIN_ENUM[g]) for g in allowed)
        raise InvalidArgument(f"granularity must be one of {names}")
    buckets = -(-rng.end // grain) - rng.start // grain
    if buckets > MAX_BUCKETS:
        raise InvalidArgument(f"the range holds {buckets} buckets at this granularity; at most "
                              f"{MAX_BUCKETS} are allowed, use a coarser granularity")
    return grain


def window(request: pb.TrendingHashtagsRequest) -> int:
    """The trending window in seconds: whole minutes, 1 minute to 24 hours, default 1 hour."""
    if not request.HasField("window"):
        return DEFAULT_WINDOW
    w = request.window
    if w.nanos != 0 or w.seconds % MINUTE != 0:
        raise InvalidArgument("window must be a whole number of minutes")
    if not MINUTE <= w.seconds <= MAX_WINDOW:
        raise InvalidArgument("window must be between 1 minute and 24 hours")
    return int(w.seconds)


def entity_type(value: int) -> str:
    if value not in ENTITY_TYPES:
        raise InvalidArgument("entity_type is required: HASHTAG, MENTION, CASHTAG or DOMAIN")
    return ENTITY_TYPES[value]


def entity(value: str) -> str:
    """Lower case, without a leading '#', '@' or '$' (as the aggregates store entities)."""
    text = value.strip()
    if text[:1] in ("#", "@", "$"):
        text = text[1:]
    text = text.lower()
    if not text:
        raise InvalidArgument("entity is required")
    if len(text) > MAX_ENTITY_CHARS or any(c.isspace() or not c.isprintable() for c in text):
        raise InvalidArgument(f"entity must be at most {MAX_ENTITY_CHARS} printable characters "
                              "without spaces")
    return text


def user(request: pb.UserActivityRequest) -> tuple[str | None, int | None]:
    """(handle, author_id), exactly one of them set."""
    which = request.WhichOneof("user")
    if which is None:
        raise InvalidArgument("one of handle or author_id is required")
    if which == "author_id":
        if request.author_id == 0:
            raise InvalidArgument("author_id must be non-zero")
        return None, int(request.author_id)
    handle = request.handle.strip().removeprefix("@").lower()
    if not HANDLE.fullmatch(handle):
        raise InvalidArgument("handle must be 1 to 50 letters, digits or '_'")
    return handle, None


def platform(value: str) -> str | None:
    """The one platform a request asks about, or None for every platform (an empty field)."""
    if not value:
        return None
    if value not in PLATFORMS:
        accepted = " or ".join(f'"{p}"' for p in PLATFORMS)
        raise InvalidArgument(f"platform must be {accepted}, or empty for every platform "
                              f"(got {value[:40]!r})")
    return value


def hot_platforms(one: str | None) -> tuple[str, ...] | None:
    """A request's platform (`platform`'s value) as the hot store's `platforms` argument."""
    return None if one is None else (one,)
