"""The Redis key layout of the hot aggregates, shared by the consumers (writers) and the query
service (reader) so both agree on names, grains and bucket boundaries.

Layout (prefix `tf` by default, `bucket` = epoch seconds of the bucket start, UTC):
- `tf:n:{grain}:{bucket}`            string  Tweets in the bucket
- `tf:z:{dim}:{grain}:{bucket}`      zset    member -> count, for dim in DIMENSIONS (top-K and counts)
- `tf:u:{grain}:{bucket}`            HLL     unique authors (approximate; deletes cannot lower it)
- `tf:seen:{hour}`                   hash    edit chain root id -> the chain's encoded contribution,
                                             "D" once deleted; an edit's id -> "r<root>"
                                             (streaming/sinks/hot_state.py)
- `tf:wm:{topic}`                    hash    Kafka partition -> last offset applied; `topic_id`
Grains: `m` (minute) and `h` (hour). Every bucket key expires `hot_horizon_hours` after its end.
"""

from __future__ import annotations

from typing import Literal

Grain = Literal["m", "h"]
GRAIN_SECONDS: dict[str, int] = {"m": 60, "h": 3600}
# Dimensions counted per bucket; members are lower-cased (hashtags and handles are case-insensitive).
DIMENSIONS: tuple[str, ...] = ("hashtag", "mention", "cashtag", "domain", "lang", "kind", "author")


def bucket_start(epoch_seconds: float, grain: str) -> int:
    size = GRAIN_SECONDS[grain]
    return int(epoch_seconds // size) * size


def tweets_key(prefix: str, grain: str, bucket: int) -> str:
    return f"{prefix}:n:{grain}:{bucket}"


def dimension_key(prefix: str, dim: str, grain: str, bucket: int) -> str:
    return f"{prefix}:z:{dim}:{grain}:{bucket}"


def authors_key(prefix: str, grain: str, bucket: int) -> str:
    return f"{prefix}:u:{grain}:{bucket}"


def seen_key(prefix: str, hour_bucket: int) -> str:
    return f"{prefix}:seen:{hour_bucket}"


def watermark_key(prefix: str, topic: str) -> str:
    return f"{prefix}:wm:{topic}"

