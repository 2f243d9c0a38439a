"""Reads of the Redis hot aggregates (layout in `tweetflow/hot_keys.py`), one round trip each.

Every read is pipelined: a plan part names many buckets, and one round trip for all of them is
what keeps the hot path in the sub-millisecond range. Each read also verifies, in the same round
trip and after the data, that the hot tier is still the one the question was planned with (a
`Guard` set by query_service.hot_tier): a hole that appeared meanwhile (a FLUSHALL, an empty
restart, evictions) discards the data with HotTierChanged instead of answering from it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from query_service import bucket_sums, top_merge
from query_service.planner import HOUR, MINUTE, Part
from tweetflow import hot_keys
from tweetflow.clients import redis_async_client
from tweetflow.settings import Settings

GRAIN_LETTER = {MINUTE: "m", HOUR: "h"}
# Over several shards each returns its top limit * TOP_DEPTH. Deeper lists let top_merge.tput's
# stopping rule answer in one round trip more often, but each shard's script then sums more
# members: on a 6-shard cluster of 3 masters on this 2-core machine, 1 beat 2 (p50 2.7-2.9 ms
# against 3.2-3.3: three rounds of 300 of bench.hot_cluster_bench's questions over its data,
# each depth in turn, with bucket_sums' plans; before those plans 2 beat 1).
TOP_DEPTH = 1


class HotStoreUnavailable(Exception):
    """Redis did not answer (down, unreachable, or too slow)."""


class HotTierChanged(Exception):
    """The hot tier is not the one the question was planned with: plan it again."""


@dataclass(frozen=True)
class Guard:
    """What the hot reads of one question verify: the shards' history markers (`from` fields)
    still hold `markers`, and Redis's eviction counter is still `evicted` (None: not checked)."""

    keys: tuple[str, ...]
    markers: tuple[bytes | None, ...]
    evicted: int | None = None


GUARD: ContextVar[Guard | None] = ContextVar("tweetflow_hot_guard", default=None)


@dataclass(frozen=True)
class _Summed:
    """A sum's plan and, per shard, its keys."""

    plan: bucket_sums.SumPlan
    shards: list[list[str]]


@dataclass
class VolumeRow:
    """One bucket's Tweets, by language and by kind."""

    count: int = 0
    by_lang: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)


def connect(settings: Settings, **overrides: object) -> aioredis.Redis:
    """An asyncio Redis client (hiredis parser when installed) for the configured Redis.

    A RedisCluster client in cluster mode (tweetflow.clients.redis_async_client). Replies stay
    bytes (the result cache stores serialized
    protobufs). Short timeouts: a Redis that does not answer quickly is treated as down and the
    question goes to ClickHouse instead.
    """
    options: dict[str, object] = {"socket_connect_timeout": 0.5,
                                  "socket_timeout": 2.0, "health_check_interval": 30}
    options.update(overrides)
    return redis_async_client(settings, **options)


class HotStore:
    """The hot aggregates of one key prefix, summed over its shards (tweetflow/hot_keys.py): one
    round trip per read (the shards' commands in one pipeline, which a cluster client sends to
    every node at once), two or three for an exact top-K over several shards."""

    def __init__(self, client: aioredis.Redis, prefix: str, shards: int = 1) -> None:
        self.client = client
        self.prefix = prefix
        self.shards = shards

    def _shard_keys(self, dim: str, parts: Sequence[Part],
                    platforms: tuple[str, ...]) -> list[list[str]]:
        """Per shard, the keys of every bucket of the parts, each bucket's platforms in a row."""
        return bucket_sums.shard_keys(bucket_sums.SumPlan(_cells(parts, platforms)),
                                      self._key_of(dim), self.shards)

    def _key_of(self, dim: str) -> Callable[[bucket_sums.Cell, int], str]:
        """A cell's key of `dim` on shard n."""
        prefix = self.prefix
        return lambda cell, n: hot_keys.dimension_key(prefix, dim, cell[0], cell[1], n, cell[2])

    def _summed(self, dim: str, parts: Sequence[Part], platforms: tuple[str, ...],
                bounded: bool = True) -> _Summed:
        """The plan of a sum over the parts' buckets (query_service.bucket_sums), per shard."""
        plan = bucket_sums.plan(_cells(parts, platforms), bounded=bounded)
        return _Summed(plan, bucket_sums.shard_keys(plan, self._key_of(dim), self.shards))

    async def top(self, dim: str, parts: Sequence[Part], limit: int | None, *,
                  platforms: Sequence[str] | None = None) -> list[tuple[str, int]]:
        """Members of `dim` by summed count over the parts' buckets, highest first, ties by member
        ascending (byte order, as ClickHouse sorts strings); all of them when `limit` is None.
        `platforms`: those counted (None: all, tweetflow.hot_keys.selected_platforms); their keys
        of a shard are read together by its script, as if they were more buckets.

        A shard's top is found server-side by one script (bucket_sums.SHARD_TOP, Fagin's
        threshold algorithm over the bounds of the keys the sum reads, bucket_sums.plan: the
        bounds' own tops, then every member that can still reach the K-th sum found, summed
        exactly), reading a few hundred counts where a ZUNIONSTORE of an hour of minute buckets
        merged ~40,000 (4 ms of the server's time).
        Over several shards the top `limit` is merged exactly with TPUT (query_service.top_merge).
        """
        selected = hot_keys.selected_platforms(platforms)
        if limit is None:  # every member: every count must be read anyway, bounds would add more
            every = self._summed(dim, parts, selected, bounded=False)
            return top_merge.exact(await self._shard_calls(every, "atleast", 1), None)
        bounded = self._summed(dim, parts, selected)
        if not bounded.plan.added:
            return []
        if self.shards == 1:
            return top_merge.ranked((await self._shard_calls(bounded, "top", limit))[0], limit)
        depth = limit * TOP_DEPTH
        tops = await self._shard_calls(bounded, "top", depth)
        return await top_merge.tput(tops, limit, lambda fetch: self._phase(bounded, fetch), depth)

    async def _phase(self, keys: _Summed, fetch: top_merge.Fetch) -> list[dict[str, int]]:
        """One round trip of TPUT: per shard, members at or above a count, or given members."""
        if fetch.at_least is not None:
            return await self._shard_calls(keys, "atleast", fetch.at_least)
        return await self._shard_calls(keys, "sums", *fetch.members)

    async def _shard_calls(self, keys: _Summed, mode: str, *args) -> list[dict[str, int]]:
        """bucket_sums.SHARD_TOP on every shard in one pipeline; `args` one list per shard for
        `sums`."""
        if not keys.plan.added:
            return [{} for _ in keys.shards]
        plan_args = keys.plan.top_args()
        async with self.client.pipeline(transaction=False) as pipe:
            for n, shard_keys in enumerate(keys.shards):
                extra = args[n] if mode == "sums" else args
                pipe.eval(bucket_sums.SHARD_TOP, len(shard_keys), *shard_keys, mode, *plan_args,
                          *extra)
            replies = await _execute(pipe)
        return [{reply[i].decode(): int(reply[i + 1]) for i in range(0, len(reply), 2)}
                for reply in replies]

    async def scores(self, dim: str, members: Sequence[str], parts: Sequence[Part], *,
                     platforms: Sequence[str] | None = None) -> dict[str, int]:
        """Each member's count in `dim`, summed over the parts' buckets, the platforms (None: all)
        and the shards: one script per shard sums its keys' ZMSCORE server-side (a command per
        key and shard would cost ~15 µs each to send and parse)."""
        totals = dict.fromkeys(members, 0)
        summed = self._summed(dim, parts, hot_keys.selected_platforms(platforms), bounded=False)
        if not members or not summed.plan.added:
            return totals
        subtracted = len(summed.plan.subtracted)
        async with self.client.pipeline(transaction=False) as pipe:
            for shard_keys in summed.shards:
                pipe.eval(bucket_sums.SUM_SCORES, len(shard_keys), *shard_keys, subtracted,
                          *members)
            replies = await _execute(pipe)
        for reply in replies:
            for member, score in zip(members, reply, strict=True):
                totals[member] += int(score)
        return totals

    async def series(self, dim: str, member: str, parts: Sequence[Part], *,
                     platforms: Sequence[str] | None = None) -> dict[int, int]:
        """Bucket start -> the member's count in `dim` (summed over `platforms`, None: all), for
        every bucket of the parts."""
        selected = hot_keys.selected_platforms(platforms)
        buckets = [b for p in parts for b in p.buckets()]
        if not buckets:
            return {}
        async with self.client.pipeline(transaction=False) as pipe:
            for shard_keys in self._shard_keys(dim, parts, selected):
                pipe.eval(_SCORE_PER_KEY, len(shard_keys), *shard_keys, member)
            replies = await _execute(pipe)
        width = len(selected)
        return {b: sum(int(score) for reply in replies
                       for score in reply[i * width:(i + 1) * width])
                for i, b in enumerate(buckets)}

    async def volume(self, parts: Sequence[Part], *,
                     platforms: Sequence[str] | None = None) -> dict[int, VolumeRow]:
        """Bucket start -> Tweets, by language and by kind, summed over `platforms` (None: all),
        for every bucket of the parts: one script per shard (`_VOLUME`) sums a bucket's
        platforms server-side."""
        selected = hot_keys.selected_platforms(platforms)
        buckets = [(GRAIN_LETTER[p.grain], b) for p in parts for b in p.buckets()]
        if not buckets:
            return {}
        async with self.client.pipeline(transaction=False) as pipe:
            for n in range(self.shards):
                keys = [key for g, b in buckets for platform in selected for key in (
                    hot_keys.tweets_key(self.prefix, g, b, n, platform),
                    hot_keys.dimension_key(self.prefix, "lang", g, b, n, platform),
                    hot_keys.dimension_key(self.prefix, "kind", g, b, n, platform))]
                pipe.eval(_VOLUME, len(keys), *keys, len(selected))
            replies = await _execute(pipe)
        rows = {b: VolumeRow() for _, b in buckets}
        for reply in replies:
            for i, (_, bucket) in enumerate(buckets):
                count, lang, kind = reply[3 * i:3 * i + 3]
                row = rows[bucket]
                row.count += int(count)
                for target, flat in ((row.by_lang, lang), (row.by_kind, kind)):
                    for j in range(0, len(flat), 2):
                        m = flat[j].decode()
                        target[m] = target.get(m, 0) + round(float(flat[j + 1]))
        return rows

    async def newest_minute(self, now: float, lookback: int = HOUR, *,
                            platforms: Sequence[str] | None = None) -> int | None:
        """The start of the newest minute within `lookback` seconds of `now` that counts Tweets
        of `platforms` (None: any; one MGET of the minute keys per shard), or None."""
        selected = hot_keys.selected_platforms(platforms)
        newest = int(now) // MINUTE * MINUTE
        buckets = list(range(newest, newest - lookback - 1, -MINUTE))
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for n in range(self.shards):  # MGET needs its keys in one slot: one per shard
                    pipe.execute_command(  # (a cluster pipeline refuses the mget() helper)
                        "MGET", *(hot_keys.tweets_key(self.prefix, "m", b, n, platform)
                                  for b in buckets for platform in selected))
                replies = await pipe.execute()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise HotStoreUnavailable(str(exc) or type(exc).__name__) from exc
        width = len(selected)
        return next((b for i, b in enumerate(buckets)
                     if sum(int(c or 0) for counts in replies
                            for c in counts[i * width:(i + 1) * width]) > 0), None)


def _cells(parts: Sequence[Part], platforms: tuple[str, ...]) -> tuple[bucket_sums.Cell, ...]:
    """Every bucket of the parts, each bucket's platforms in a row."""
    return tuple((GRAIN_LETTER[p.grain], b, platform)
                 for p in parts for b in p.buckets() for platform in platforms)


async def _execute(pipe) -> list:
    guard = GUARD.get()
    if guard is not None:
        for key in guard.keys:
            pipe.hget(key, "from")
        if guard.evicted is not None:
            pipe.info("stats")
    try:
        replies = await pipe.execute()
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise HotStoreUnavailable(str(exc) or type(exc).__name__) from exc
    if guard is None:
        return replies
    if guard.evicted is not None and int(replies.pop()["evicted_keys"]) != guard.evicted:
        raise HotTierChanged("Redis evicted keys")
    markers = tuple(replies[len(replies) - len(guard.keys):])
    if markers != guard.markers:
        raise HotTierChanged(f"its history is now {markers!r}")
    return replies[:len(replies) - len(guard.keys)]


# KEYS: one shard's bucket keys. ARGV[1]: a member. Its count in each key (0: none).
_SCORE_PER_KEY = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = tonumber(redis.call('ZSCORE', key, ARGV[1]) or '0') end
return out
"""
# KEYS: per bucket, per platform, its Tweets', languages' and kinds' keys. ARGV[1]: platforms.
# Replies per bucket: its Tweets, then {lang, count, ...} and {kind, count, ...}, summed over the
# platforms (ZUNION; one key: ZRANGE).
_VOLUME = """
local call, width, out = redis.call, 3 * tonumber(ARGV[1]), {}
local function union(keys)
  if #keys == 1 then return call('ZRANGE', keys[1], 0, -1, 'WITHSCORES') end
  local args = {'ZUNION', #keys}
  for _, key in ipairs(keys) do args[#args + 1] = key end
  args[#args + 1] = 'WITHSCORES'
  return call(unpack(args))
end
for i = 1, #KEYS, width do
  local count, langs, kinds = 0, {}, {}
  for j = i, i + width - 1, 3 do
    count = count + tonumber(call('GET', KEYS[j]) or '0')
    langs[#langs + 1] = KEYS[j + 1]
    kinds[#kinds + 1] = KEYS[j + 2]
  end
  out[#out + 1] = count
  out[#out + 1] = union(langs)
  out[#out + 1] = union(kinds)
end
return out
"""
