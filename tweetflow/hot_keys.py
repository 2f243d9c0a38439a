"""The Redis key layout of the hot aggregates, shared by the consumers (writers) and the query
service (reader) so both agree on names, grains, shards and bucket boundaries.

Every key carries the hash tag of its *shard*, `{sN}`: Redis Cluster hashes only the tag, so the
keys of one shard share a slot and every atomic apply (one Lua script) touches one slot. There are
`Settings.hot_shard_count` shards: one standalone (every key in `{s0}`), the raw topic's partition
count in cluster mode. Partition p's counters and watermark live in shard `p % shards`; an edit
chain's dedup state lives in the shard of the partition its root's messages land in
(`home_shard`), so a Tweet and its copies are decided where they arrive. Readers sum a bucket over
every shard (query_service/hot_store.py).

Layout (prefix `tf` by default, N = shard, `bucket` = epoch seconds of the bucket start, UTC):
- `tf:{sN}:n:{grain}:{bucket}`        string  Tweets the shard counted in the bucket
- `tf:{sN}:z:{dim}:{grain}:{bucket}`  zset    member -> count, for dim in DIMENSIONS
- `tf:{sN}:u:{grain}:{bucket}`        HLL     unique authors (approximate; deletes cannot lower it)
- `tf:{sN}:seen:{k}:{window}`         hash    an id's low bits (dedup_slot) -> its dedup state
                                              (streaming/sinks/hot_state.py): ~11 bytes an id
- `tf:{sN}:dk`                        hash    `k<hour>` -> the window exponent k of the ids of that
                                              hour; `n<hour>` -> ids counted of that hour
- `tf:{sN}:wm:{topic}`                hash    Kafka partition -> last offset applied; `topic_id`
- `tf:{sN}:sync`                      string  a counter the consumers bump before WAIT
Grains: `m` (minute) and `h` (hour). Every bucket key expires `hot_horizon_hours` after its end.
"""

from __future__ import annotations

from typing import Literal

from tweetflow.partitioner import id_key, partition_of

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


def shard_tag(shard: int) -> str:
    return f"{{s{shard}}}"


def tweets_key(prefix: str, grain: str, bucket: int, shard: int = 0) -> str:
    return f"{prefix}:{{s{shard}}}:n:{grain}:{bucket}"


def dimension_key(prefix: str, dim: str, grain: str, bucket: int, shard: int = 0) -> str:
    return f"{prefix}:{{s{shard}}}:z:{dim}:{grain}:{bucket}"


def authors_key(prefix: str, grain: str, bucket: int, shard: int = 0) -> str:
    return f"{prefix}:{{s{shard}}}:u:{grain}:{bucket}"


def watermark_key(prefix: str, topic: str, shard: int = 0) -> str:
    return f"{prefix}:{{s{shard}}}:wm:{topic}"


def sync_key(prefix: str, shard: int) -> str:
    return f"{prefix}:{{s{shard}}}:sync"


def dedup_meta_key(prefix: str, shard: int) -> str:
    return f"{prefix}:{{s{shard}}}:dk"


def seen_key(prefix: str, shard: int, k: int, window: int) -> str:
    return f"{prefix}:{{s{shard}}}:seen:{k}:{window}"


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
