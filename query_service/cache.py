"""The result cache (Redis, with a short in-process front) and single-flight request collapsing.

How long an answer stays valid depends on how fresh its range is: a range touching the current
minute changes every second, so it is cached for a couple of seconds; a range that ended long ago
only changes through late Tweets and deletes, so it is cached for up to an hour. Cached values are
serialized responses, so a hit costs no protobuf work at all; the in-process front also keeps each
answer's Connect JSON once some client asked for it (`local_json`), so JSON hits cost no JSON work
either (encoding a 10-hashtag answer measured ~40 us, more than the rest of a hit).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from query_service.planner import MINUTE, floor_to

T = TypeVar("T")

CURRENT_MINUTE_TTL = 2.0  # a range touching the current minute
MIN_CLOSED_TTL = 5.0  # a range that ended in a closed minute
MAX_TTL = 3600.0  # a range that ended long ago
LOCAL_MAX_TTL = 1.0  # the in-process front never holds an answer longer than this
LOCAL_MAX_ENTRIES = 4096


def ttl_for(end: int, now: float) -> float:
    """Seconds an answer over a range ending at `end` (epoch seconds) may be served from cache.

    A tenth of the range's age, between MIN_CLOSED_TTL and MAX_TTL: an hour-old range is cached for
    6 minutes, a day-old one for an hour.
    """
    if end > floor_to(int(now), MINUTE):
        return CURRENT_MINUTE_TTL
    return min(MAX_TTL, max(MIN_CLOSED_TTL, (now - end) / 10))


class Breaker:
    """Remembers that Redis failed, so requests skip it (and its connect timeout) for a while."""

    def __init__(self, cooldown: float = 2.0) -> None:
        self.cooldown = cooldown
        self._down_until = 0.0
        self.last_error = ""

    @property
    def up(self) -> bool:
        return time.monotonic() >= self._down_until

    def trip(self, error: str) -> None:
        self._down_until = time.monotonic() + self.cooldown
        self.last_error = error


class Entry:
    """One in-process answer: when it expires, its wire bytes, and its JSON once encoded."""

    __slots__ = ("expires", "json", "value")

    def __init__(self, expires: float, value: bytes) -> None:
        self.expires = expires
        self.value = value
        self.json: bytes | None = None


class ResultCache:
    """Serialized answers by request, in Redis (shared by every server process) behind a small
    in-process LRU that absorbs repeated identical requests within LOCAL_MAX_TTL.

    Answers are keyed by the method and the request's wire bytes, so a hit costs one dict lookup
    (the in-process front) or one round trip (Redis), and no protobuf work at all.
    Why a hand-written LRU: it is a dozen lines, and a dependency (cachetools) would add nothing.
    Every Redis error is swallowed (the cache is an optimisation) but trips the breaker.
    """

    def __init__(self, client: aioredis.Redis, prefix: str, breaker: Breaker, *,
                 local_max_ttl: float = LOCAL_MAX_TTL) -> None:
        self.client = client
        self.prefix = prefix
        self.breaker = breaker
        self.local_max_ttl = local_max_ttl
        self._local: OrderedDict[tuple[str, bytes], Entry] = OrderedDict()

    def redis_key(self, method: str, request: bytes, generation: int = 0) -> str:
        """`generation` moves when days older than the hot horizon receive data, so answers
        cached for up to an hour are never served after their days changed."""
        digest = hashlib.blake2b(request, digest_size=16).hexdigest()
        return f"{self.prefix}:q:c1:{generation}:{method}:{digest}"

    def local(self, method: str, request: bytes) -> bytes | None:
        """The in-process answer, if still fresh (synchronous: the hottest path there is)."""
        entry = self._fresh(method, request)
        return None if entry is None else entry.value

    def local_json(self, method: str, request: bytes,
                   encode: Callable[[str, bytes], bytes]) -> bytes | None:
        """The in-process answer as JSON, encoded by `encode(method, wire bytes)` on the first
        ask and kept with the answer (so it expires with it)."""
        entry = self._fresh(method, request)
        if entry is None:
            return None
        if entry.json is None:
            entry.json = encode(method, entry.value)
        return entry.json

    def _fresh(self, method: str, request: bytes) -> Entry | None:
        entry = self._local.get((method, request))
        if entry is None:
            return None
        if entry.expires > time.monotonic():
            return entry
        del self._local[(method, request)]
        return None

    async def get(self, method: str, request: bytes, generation: int = 0) -> bytes | None:
        """The in-process answer, else Redis's (then kept in-process as long as Redis would)."""
        value = self.local(method, request)
        if value is not None or not self.breaker.up:
            return value
        key = self.redis_key(method, request, generation)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                value, pttl = await pipe.get(key).pttl(key).execute()
        except (RedisError, OSError) as exc:
            self.breaker.trip(str(exc) or type(exc).__name__)
            return None
        if value is not None:
            self._remember((method, request), value, max(0.0, pttl / 1000))
        return value

    async def put(self, method: str, request: bytes, value: bytes, ttl: float,
                  generation: int = 0) -> None:
        self._remember((method, request), value, ttl)
        if not self.breaker.up:
            return
        try:
            await self.client.set(self.redis_key(method, request, generation), value,
                                  px=max(1, int(ttl * 1000)))
        except (RedisError, OSError) as exc:
            self.breaker.trip(str(exc) or type(exc).__name__)

    def _remember(self, key: tuple[str, bytes], value: bytes, ttl: float) -> None:
        ttl = min(ttl, self.local_max_ttl)
        if ttl <= 0:
            return
        self._local[key] = Entry(time.monotonic() + ttl, value)
        self._local.move_to_end(key)
        while len(self._local) > LOCAL_MAX_ENTRIES:
            self._local.popitem(last=False)


class SingleFlight:
    """Collapses identical concurrent requests: the first computes, the others await its result.

    The computation runs in its own task, so a caller that gives up (deadline, cancellation) does
    not cancel it for the others still waiting.
    """

    def __init__(self) -> None:
        self._inflight: dict[Hashable, asyncio.Task] = {}

    def __len__(self) -> int:
        return len(self._inflight)

    async def run(self, key: Hashable, compute: Callable[[], Awaitable[T]],
                  timeout: float | None = None) -> T:
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(compute())
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._done(key, t))
        return await asyncio.wait_for(asyncio.shield(task), timeout)

    def _done(self, key: Hashable, task: asyncio.Task) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved here, so a failure every waiter gave up on is not logged
