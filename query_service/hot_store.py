"""Reads of the Redis hot aggregates (layout in `tweetflow/hot_keys.py`), one round trip each.

Every read is pipelined: a plan part names many buckets, and one round trip for all of them is
what keeps the hot path in the sub-millisecond range.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from query_service.planner import HOUR, MINUTE, Part
from tweetflow import hot_keys
from tweetflow.settings import Settings

GRAIN_LETTER = {MINUTE: "m", HOUR: "h"}
# How long a top-K scratch key may outlive a request that died between writing and deleting it.
SCRATCH_TTL_SECONDS = 10


class HotStoreUnavailable(Exception):
    """Redis did not answer (down, unreachable, or too slow)."""


@dataclass
class VolumeRow:
    """One bucket's Tweets, by language and by kind."""

    count: int = 0
    by_lang: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)


def connect(settings: Settings, **overrides: object) -> aioredis.Redis:
    """An asyncio Redis client (hiredis parser when installed) for the configured Redis.

    Why not `tweetflow.clients.redis_client`: that factory builds the synchronous client; the
    query service runs on asyncio. Replies stay bytes (the result cache stores serialized
    protobufs). Short timeouts: a Redis that does not answer quickly is treated as down and the
    question goes to ClickHouse instead.
    """
    options: dict[str, object] = {"socket_connect_timeout": 0.5,
                                  "socket_timeout": 2.0, "health_check_interval": 30}
    options.update(overrides)
    return aioredis.Redis.from_url(settings.redis_url, **options)


def bucket_keys(parts: Iterable[Part], key_of) -> list[tuple[int, str]]:
    """(bucket start, key) for every bucket of the HOT parts; `key_of(grain_letter, bucket)`."""
    return [(b, key_of(GRAIN_LETTER[p.grain], b)) for p in parts for b in p.buckets()]


class HotStore:
    """The hot aggregates of one key prefix."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def _dim_keys(self, dim: str, parts: Iterable[Part]) -> list[tuple[int, str]]:
        return bucket_keys(parts, lambda g, b: hot_keys.dimension_key(self.prefix, dim, g, b))

    async def top(self, dim: str, parts: Sequence[Part],
                  limit: int | None) -> list[tuple[str, int]]:
        """Members of `dim` by summed count over the parts' buckets, highest first, ties by member
        ascending (byte order, as ClickHouse sorts strings); all of them when `limit` is None.

        Summed server-side with ZUNIONSTORE into a scratch key; weights of -1 make the ascending
        ZRANGE order exactly "count desc, member asc".
        """
        keys = [k for _, k in self._dim_keys(dim, parts)]
        if not keys:
            return []
        scratch = f"{self.prefix}:q:tmp:{uuid.uuid4().hex}"
        stop = -1 if limit is None else limit - 1
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.zunionstore(scratch, dict.fromkeys(keys, -1))
            pipe.expire(scratch, SCRATCH_TTL_SECONDS)
            pipe.zrange(scratch, 0, stop, withscores=True)
            pipe.delete(scratch)
            replies = await _execute(pipe)
        return [(member.decode(), round(-score)) for member, score in replies[2]]

    async def scores(self, dim: str, members: Sequence[str],
                     parts: Sequence[Part]) -> dict[str, int]:
        """Each member's count in `dim`, summed over the parts' buckets."""
        totals = dict.fromkeys(members, 0)
        keys = self._dim_keys(dim, parts)
        if not members or not keys:
            return totals
        async with self.client.pipeline(transaction=False) as pipe:
            for _, key in keys:
                pipe.zmscore(key, list(members))
            replies = await _execute(pipe)
        for reply in replies:
            for member, score in zip(members, reply, strict=True):
                if score is not None:
                    totals[member] += round(score)
        return totals

    async def series(self, dim: str, member: str, parts: Sequence[Part]) -> dict[int, int]:
        """Bucket start -> the member's count in `dim`, for every bucket of the parts."""
        keys = self._dim_keys(dim, parts)
        if not keys:
            return {}
        async with self.client.pipeline(transaction=False) as pipe:
            for _, key in keys:
                pipe.zscore(key, member)
            replies = await _execute(pipe)
        return {b: round(s or 0) for (b, _), s in zip(keys, replies, strict=True)}

    async def volume(self, parts: Sequence[Part]) -> dict[int, VolumeRow]:
        """Bucket start -> Tweets, by language and by kind, for every bucket of the parts."""
        counts = bucket_keys(parts, lambda g, b: hot_keys.tweets_key(self.prefix, g, b))
        if not counts:
            return {}
        langs = self._dim_keys("lang", parts)
        kinds = self._dim_keys("kind", parts)
        async with self.client.pipeline(transaction=False) as pipe:
            for (_, n), (_, lang), (_, kind) in zip(counts, langs, kinds, strict=True):
                pipe.get(n)
                pipe.zrange(lang, 0, -1, withscores=True)
                pipe.zrange(kind, 0, -1, withscores=True)
            replies = await _execute(pipe)
        rows: dict[int, VolumeRow] = {}
        for i, (bucket, _) in enumerate(counts):
            n, lang, kind = replies[3 * i: 3 * i + 3]
            rows[bucket] = VolumeRow(int(n or 0), {m.decode(): round(s) for m, s in lang},
                                     {m.decode(): round(s) for m, s in kind})
        return rows


async def _execute(pipe) -> list:
    try:
        return await pipe.execute()
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise HotStoreUnavailable(str(exc) or type(exc).__name__) from exc
