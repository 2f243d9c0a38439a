"""Which social platform an id belongs to, and the platform-scoped ids of Bluesky posts and users.

Why ids rather than a second key column: every exactly-once mechanism of the project is keyed by
one unsigned 64-bit id (Kafka keys and partitions, the hot `seen` hashes, ReplacingMergeTree's
sorting key, dbt's dedup). X's ids are below 2**63 (the parser rejects others), so a Bluesky id
with bit 63 set can never equal a Tweet id, and everything keyed by id stays exact across
platforms without a change. The platform is a function of the id (`platform_of`); raw_tweets and
tweet_deletes derive their `platform` column from it the same way.

A Bluesky post's id keeps the Snowflake layout below the platform bit, so everything that reads
an event's time from its id (the hot `seen` slots, the days a delete touches) works unchanged:

    bit 63        1 (Bluesky)
    bits 62..22   milliseconds since X's Snowflake epoch, from the post's record key (a TID:
                  microseconds since 1970 and a 10-bit clock id, base32-sortable)
    bits 21..0    22 bits of BLAKE2b of `did/rkey`

A post and its delete carry the same DID and record key, so they get the same id. Two different
posts collide only if created in the same millisecond with the same 22-bit hash: at Bluesky's
~50 posts/s that is about one pair a month (probability ~ n^2 / 2^23 per millisecond with n posts
in it), the price of fitting the UInt64 every sink is keyed by.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal

from tweetflow.snowflake import SNOWFLAKE_EPOCH_MS

__all__ = [
    "BLUESKY",
    "PLATFORMS",
    "PLATFORM_BIT",
    "Platform",
    "X",
    "bluesky_post_id",
    "bluesky_user_id",
    "platform_of",
    "platform_sql",
    "tid_time_us",
]

Platform = Literal["x", "bluesky"]
X: Platform = "x"
BLUESKY: Platform = "bluesky"
PLATFORMS: tuple[Platform, ...] = (X, BLUESKY)
PLATFORM_BIT = 1 << 63
_LOW_63 = PLATFORM_BIT - 1
_HASH_BITS = 22
_MAX_MS_OFFSET = 1 << 41
# A TID: 13 characters of base32-sortable, the first leaving the top bit zero (atproto spec).
_TID = re.compile(r"[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}", re.ASCII)
_S32 = {c: i for i, c in enumerate("234567abcdefghijklmnopqrstuvwxyz")}


def platform_of(any_id: int) -> Platform:
    """The platform of a Tweet, post or user id."""
    return BLUESKY if any_id & PLATFORM_BIT else X


def platform_sql(column: str) -> str:
    """`platform_of` in ClickHouse SQL, for a UInt64 column."""
    return f"if(bitTest({column}, 63), '{BLUESKY}', '{X}')"


def tid_time_us(rkey: str) -> int:
    """Microseconds since 1970 in a TID record key; ValueError if `rkey` is not a TID."""
    if not _TID.fullmatch(rkey):
        raise ValueError(f"record key {rkey[:40]!r} is not a TID")
    value = 0
    for c in rkey:
        value = value * 32 + _S32[c]
    return value >> 10


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def bluesky_post_id(did: str, rkey: str) -> int:
    """The platform-scoped id of the post `at://{did}/app.bsky.feed.post/{rkey}` (see above);
    ValueError if its record key is not a TID of a time between 2010 and 2080."""
    offset = tid_time_us(rkey) // 1000 - SNOWFLAKE_EPOCH_MS
    if not 0 <= offset < _MAX_MS_OFFSET:
        raise ValueError(f"record key {rkey!r} carries a time outside 2010-2080")
    return PLATFORM_BIT | (offset << _HASH_BITS) | (_hash(f"{did}/{rkey}") & ((1 << _HASH_BITS) - 1))


def bluesky_user_id(did: str) -> int:
    """The platform-scoped id of a Bluesky account: bit 63 and 63 bits of BLAKE2b of its DID."""
    return PLATFORM_BIT | (_hash(did) & _LOW_63)
