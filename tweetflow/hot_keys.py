"""The Redis key layout of the hot aggregates, shared by the consumers (writers) and the query
service (reader) so both agree on names, grains, shards and bucket boundaries.

Every key carries the hash tag of its *shard* (`shard_tag`: `{s0}`, then `{sN}` or `{sN.j}`):
Redis Cluster hashes only the tag, so the keys of one shard share a slot and every atomic apply
(one Lua script) touches one slot. The tags spread the shards evenly over the slot space, so the
equal slot ranges of `redis-cli --cluster create` give each master its share of them. There are
`Settings.hot_shard_count` shards: one standalone (every key in `{s0}`), the raw topic's partition
count in cluster mode. Partition p's counters and watermark live in shard `p % shards`; an edit
chain's dedup state lives in the shard of the partition its root's messages land in
(`home_shard`), so a Tweet and its copies are decided where they arrive. Readers sum a bucket over
every shard (query_service/hot_store.py).

Layout (prefix `tf` by default, `{sN}` = shard N's tag, `bucket` = epoch seconds of the
bucket start, UTC):
- `tf:{sN}:n:{grain}:{bucket}`        string  X's Tweets the shard counted in the bucket
- `tf:{sN}:z:{dim}:{grain}:{bucket}`  zset    member -> count, for dim in DIMENSIONS (X)
- `tf:{sN}:u:{grain}:{bucket}`        HLL     unique authors (approximate; deletes cannot lower it)
- `tf:{sN}:{platform}:n|z:{dim}|u:...` the same three per bucket for every other platform of
                                       tweetflow.platforms (`tf:{s0}:bluesky:n:m:1764900000`)
- `tf:{sN}:seen:{k}:{window}`         hash    an id's low bits (dedup_slot) -> its dedup state
                                              (streaming/sinks/hot_state.py): ~11 bytes an id
- `tf:{sN}:dk`                        hash    `k<hour>` -> the window exponent k of the ids of that
                                              hour; `n<hour>` -> ids counted of that hour
- `tf:{sN}:wm:{topic}`                hash    Kafka partition -> last offset applied; `topic_id`
- `tf:{sN}:sync`                      string  a counter the consumers bump before WAIT
Grains: `m` (minute) and `h` (hour). Every bucket key expires `hot_horizon_hours` after its end.

Platforms: a chain counts under `platform_of` its root's id, and whatever subtracts it (a delete,
an edit or update replacing the version counted) subtracts under the same root, so each
platform's counters are exact on their own. X keeps the names it had before there were platforms
(existing data and deployments stay valid); the others add a segment after the hash tag, so a
shard's apply still touches one slot, and a reader sums a bucket over the platforms asked for in
the same per-shard read (a missing key reads as empty; unique authors: PFCOUNT of several HLLs is
their union). The dedup state (`seen`, `dk`) is keyed by ids, which never collide across
platforms, so it stays one per shard.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from itertools import count
from typing import Literal

from tweetflow.partitioner import id_key, partition_of
from tweetflow.platforms import PLATFORMS, X

Grain = Literal["m", "h"]
GRAIN_SECONDS: dict[str, int] = {"m": 60, "h": 3600}
# Dimensions counted per bucket; members are lower-cased (hashtags and handles are case-insensitive).
DIMENSIONS: tuple[str, ...] = ("hashtag", "mention", "cashtag", "domain", "lang", "kind", "author")
# A Snowflake id is 41 bits of milliseconds over 22 of worker and sequence. A dedup window holds
# the ids of 2**k milliseconds: the key names id >> (22 + k), the hash's fields are the low
# 22 + k bits (small integers, 5 bytes in a listpack up to k = 9).
ID_LOW_BITS = 22


def bucket_start(epoch_seconds: float, grain: str) -> int:
    size = GRAIN_SECONDS[grain]
    return int(epoch_seconds // size) * size


SLOTS = 16384  # Redis Cluster's hash slots
# How close (in slots) a shard's tag lands to its place in the spread (see shard_tag): well inside
# the 1/48 of the slot space between two places of the first 48 shards.
SLOT_TOLERANCE = 64


@functools.cache
def shard_tag(shard: int) -> str:
    """The hash tag of a shard's keys: `{s0}` for shard 0 (one Redis's only shard), else the
    first of `{sN}`, `{sN.1}`, `{sN.2}`... whose slot lies within SLOT_TOLERANCE of the shard's
    place.

    Why: with `{sN}` the six shards of a 6-partition topic hashed to slots 11097, 15224, 2843,
    6970, 11229 and 15356, four of them on the third of three masters with the equal ranges
    `redis-cli --cluster create` gives, so that master did two thirds of the hot tier's work. On
    this one host the 1 h trending question gained in a one-off A/B while a test suite ran (p50
    12.0-15.2 ms against 10.4-12.1) but not in `python -m bench.hot_cluster_bench` near half past
    the hour (p50/p99 7.09/10.92 ms before, 7.48/12.49 after, 2026-12-05): all nodes share two
    cores here; on separate hosts each master carries its share.

    Places: shard 0's slot plus, as a share of the slot space, the van der Corput sequence in
    mixed radix 2, 3, 2, 2, ... (0, 1/2, 1/6, 2/3, 1/3, 5/6, 1/12, ...): any 6, 12, 24 or 48
    first shards fall one per sixth, twelfth... of the space, so equal ranges over 2, 3, 4 or 6
    masters hold the same number of shards each.
    """
    if shard == 0:
        return "{s0}"
    target = (_slot("s0") + round(_spread(shard) * SLOTS)) % SLOTS
    for j in count():
        name = f"s{shard}" if j == 0 else f"s{shard}.{j}"
        distance = abs(_slot(name) - target)
        if min(distance, SLOTS - distance) <= SLOT_TOLERANCE:
            return f"{{{name}}}"
    raise AssertionError("unreachable")


def _spread(n: int) -> float:
    """The n-th term of the van der Corput sequence in mixed radix 2, 3, 2, 2, ... (in [0, 1))."""
    place, scale = 0.0, 1.0
    for radix in (2, 3):
        scale /= radix
        n, digit = divmod(n, radix)
        place += digit * scale
    while n:
        scale /= 2
        n, digit = divmod(n, 2)
        place += digit * scale
    return place


def _slot(tag: str) -> int:
    """Redis Cluster's slot of a hash tag's keys, as redis-py computes it (redis.crc.key_slot)."""
    from redis.crc import key_slot  # imported here: only cluster shards' tags need it, once each

    return key_slot(f"{{{tag}}}".encode())


def _scope(platform: str) -> str:
    """The key segment of a platform's counters: none for X (see the docstring)."""
    return "" if platform == X else f":{platform}"


def tweets_key(prefix: str, grain: str, bucket: int, shard: int = 0, platform: str = X) -> str:
    return f"{prefix}:{shard_tag(shard)}{_scope(platform)}:n:{grain}:{bucket}"


def dimension_key(prefix: str, dim: str, grain: str, bucket: int, shard: int = 0,
                  platform: str = X) -> str:
    return f"{prefix}:{shard_tag(shard)}{_scope(platform)}:z:{dim}:{grain}:{bucket}"


def authors_key(prefix: str, grain: str, bucket: int, shard: int = 0, platform: str = X) -> str:
    return f"{prefix}:{shard_tag(shard)}{_scope(platform)}:u:{grain}:{bucket}"


def selected_platforms(platforms: Sequence[str] | None) -> tuple[str, ...]:
    """The platforms a read covers: every one for None, else those named (in PLATFORMS' order,
    once each); ValueError for an unknown name or an empty selection."""
    if platforms is None:
        return PLATFORMS
    if isinstance(platforms, str):
        platforms = (platforms,)
    unknown = set(platforms) - set(PLATFORMS)
    if unknown or not platforms:
        raise ValueError(f"unknown platform {sorted(unknown)[0]!r}: expected one of "
                         f"{', '.join(PLATFORMS)}" if unknown else "no platform selected")
    return tuple(p for p in PLATFORMS if p in platforms)


def split_platform(name: str) -> tuple[str, str]:
    """(platform, the rest) of a bucket key's name after its shard tag: `bluesky:n:m:60` ->
    ("bluesky", "n:m:60"); `n:m:60` -> ("x", "n:m:60")."""
    head, _, rest = name.partition(":")
    return (head, rest) if head != X and head in PLATFORMS else (X, name)


def watermark_key(prefix: str, topic: str, shard: int = 0) -> str:
    return f"{prefix}:{shard_tag(shard)}:wm:{topic}"


def sync_key(prefix: str, shard: int) -> str:
    return f"{prefix}:{shard_tag(shard)}:sync"


def dedup_meta_key(prefix: str, shard: int) -> str:
    return f"{prefix}:{shard_tag(shard)}:dk"


def seen_key(prefix: str, shard: int, k: int, window: int) -> str:
    return f"{prefix}:{shard_tag(shard)}:seen:{k}:{window}"


def is_dedup_key(key: str) -> bool:
    """Whether a key, whole (`tf:{s0}:dk`) or after its shard tag (`seen:17:42`), holds dedup
    state rather than counts: how it is laid out (each hour's window exponent k) depends on how
    the ids arrived, so a rebuild holds the same counts in other `seen` and `dk` keys."""
    name = key.split("}:", 1)[1] if "}:" in key else key
    return name == "dk" or name.startswith("seen:")


def dedup_slot(tweet_id: int, k: int) -> tuple[int, int]:
    """(window, field) of an id in the `seen` hashes of exponent k."""
    bits = ID_LOW_BITS + k
    return tweet_id >> bits, tweet_id & ((1 << bits) - 1)


def partition_shard(partition: int, shards: int) -> int:
    """The shard holding a Kafka partition's counters and watermark."""
    return partition % shards


def home_shard(tweet_id: int, shards: int) -> int:
    """The shard deciding the edit chain rooted at `tweet_id`: that of the partition Kafka's
    default partitioner puts the id's messages in (equal when `shards` divides the partitions)."""
    return partition_of(id_key(tweet_id), shards) if shards > 1 else 0
