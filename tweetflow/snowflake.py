"""X's Snowflake Tweet ids: the time each one carries, and minting one for a given time.

Why in the core: the parser refines `created_at` from the id, the hot aggregates bucket a Tweet's
contribution by it, and the synthetic source mints ids at its event times; all three must agree
on the epoch and the bit layout (41 bits of milliseconds, 10 of worker, 12 of sequence).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["MIN_SNOWFLAKE_ID", "SNOWFLAKE_EPOCH_MS", "snowflake_id", "snowflake_ms", "snowflake_time"]

SNOWFLAKE_EPOCH_MS = 1288834974657  # 2010-11-04T01:42:54.657Z, X's documented Snowflake epoch
MIN_SNOWFLAKE_ID = 1 << 35  # sequential (pre-Snowflake) Tweet ids ended near 3e10 < 2**35
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BELOW_PLATFORM_BIT = (1 << 63) - 1  # bit 63 marks another platform's id (tweetflow.platforms)


def snowflake_ms(tweet_id: int) -> int:
    """Creation time (epoch ms) encoded in a Snowflake Tweet id (ids since November 2010); also
    in a Bluesky post's platform-scoped id, whose bit 63 is masked (`tweetflow.platforms`)."""
    return ((tweet_id & _BELOW_PLATFORM_BIT) >> 22) + SNOWFLAKE_EPOCH_MS


def snowflake_time(tweet_id: int) -> datetime:
    """When a Snowflake id was minted (X ids carry their creation time in ms since 2010-11-04)."""
    return UNIX_EPOCH + timedelta(milliseconds=snowflake_ms(tweet_id))


def snowflake_id(ms: int, worker: int = 0, sequence: int = 0) -> int:
    """A Tweet id minted at `ms` (Unix ms): 41 bits of time, 10 of worker, 12 of sequence."""
    return ((ms - SNOWFLAKE_EPOCH_MS) << 22) | ((worker & 1023) << 12) | (sequence & 4095)
