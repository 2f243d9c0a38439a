"""Reads of the Redis hot aggregates (layout in `tweetflow/hot_keys.py`), one round trip each.

Every read is pipelined: a plan part names many buckets, and one round trip for all of them is
what keeps the hot path in the sub-millisecond range. Each read also verifies, in the same round
trip and after the data, that the hot tier is still the one the question was planned with (a
`Guard` set by query_service.hot_tier): a hole that appeared meanwhile (a FLUSHALL, an empty
restart, evictions) discards the data with HotTierChanged instead of answering from it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from query_service import top_merge
from query_service.planner import HOUR, MINUTE, Part
from tweetflow import hot_keys
from tweetflow.clients import redis_async_client
from tweetflow.settings import Settings

GRAIN_LETTER = {MINUTE: "m", HOUR: "h"}
# Over several shards each returns its top limit * TOP_DEPTH. Deeper lists let top_merge.tput's
# stopping rule answer in one round trip more often, but each shard's script then reads more of
# the long tail: on a 6-shard cluster of 3 masters on this 2-core machine, depth 2 beat 1 and 3
# (p50 5.1-5.5 ms against 6.2-6.7 and 5.5-6.6: three rounds of 300 of bench.hot_cluster_bench's
# questions over its data, each depth in turn).
TOP_DEPTH = 2
# A shard's top reads every member that can still reach the K-th best sum: those counting at
# least (K-th sum) / (number of bounds) in some bound key (`_SHARD_TOP`). Over an hour of minute
# keys, each its own bound, that floor reaches the long tail of count-1 members; an hour key
# bounds its minutes (each event counts in both, in the same script), so the minute keys of an
# hour read for BOUNDED_MINUTES or more minutes are bounded by it instead. For 1 h trending on a
# 6-shard cluster a shard's script went from 2.5-3.7 ms of its master's time to ~0.3 ms, and the
# question from p50 / p99 34.9 / 51.4 ms to 5.4 / 7.7 (with tweetflow.clients' slot cache;
# `python -m bench.hot_cluster_bench`). Fewer minutes: their own tails are cheaper than the hour's.
BOUNDED_MINUTES = 15


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
class _Bounded:
    """The keys `_SHARD_TOP` reads on each shard: the `exact` first ones are summed, the rest are
    only bounds; `bound_of[i]` is the 1-based index of the bound of key i + 1 (itself or an hour
    key holding at least its counts)."""

    shards: list[list[str]]
    exact: int
    bound_of: list[int]


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
        cells = [(GRAIN_LETTER[p.grain], b, platform)
                 for p in parts for b in p.buckets() for platform in platforms]
        return self._keys(dim, cells)

    def _keys(self, dim: str, cells: Sequence[tuple[str, int, str]]) -> list[list[str]]:
        """Per shard, the keys of `cells` (grain letter, bucket, platform)."""
        return [[hot_keys.dimension_key(self.prefix, dim, g, b, n, platform)
                 for g, b, platform in cells] for n in range(self.shards)]

    def _bounded_keys(self, dim: str, parts: Sequence[Part],
                      platforms: tuple[str, ...]) -> _Bounded:
        """The parts' keys per shard, then their bounds' (`_SHARD_TOP`'s KEYS), and which bound
        each key has: an hour key for the minute keys of an hour that the parts read
        BOUNDED_MINUTES of or more, else the key itself."""
        cells = [(GRAIN_LETTER[p.grain], b, platform)
                 for p in parts for b in p.buckets() for platform in platforms]
        hours = Counter(hot_keys.bucket_start(b, "h") for g, b, _ in cells if g == "m")
        bounds: list[tuple[str, int, str]] = []
        bound_of: list[int] = []
        for i, (g, b, platform) in enumerate(cells):
            hour = hot_keys.bucket_start(b, "h")
            if g != "m" or hours[hour] < BOUNDED_MINUTES * len(platforms):
                bound_of.append(i + 1)  # Lua's 1-based index of the key itself
                continue
            if (cell := ("h", hour, platform)) not in bounds:
                bounds.append(cell)
            bound_of.append(len(cells) + bounds.index(cell) + 1)
        return _Bounded(self._keys(dim, cells + bounds), len(cells), bound_of)

    async def top(self, dim: str, parts: Sequence[Part], limit: int | None, *,
                  platforms: Sequence[str] | None = None) -> list[tuple[str, int]]:
        """Members of `dim` by summed count over the parts' buckets, highest first, ties by member
        ascending (byte order, as ClickHouse sorts strings); all of them when `limit` is None.
        `platforms`: those counted (None: all, tweetflow.hot_keys.selected_platforms); their keys
        of a shard are read together by its script, as if they were more buckets.

        A shard's top is found server-side by one script (`_SHARD_TOP`, Fagin's threshold
        algorithm over the bounds of the shard's bucket keys (an hour key for most of its
        minutes, BOUNDED_MINUTES): the bounds' own tops, then every member that can still reach
        the K-th sum found, summed exactly over the buckets), reading a few hundred counts where a
        ZUNIONSTORE of an hour of minute buckets merged ~40,000 (4 ms of the server's time).
        Over several shards the top `limit` is merged exactly with TPUT (query_service.top_merge).
        """
        selected = hot_keys.selected_platforms(platforms)
        if limit is None:  # every member: every count must be read anyway, bounds would add more
            keys = self._shard_keys(dim, parts, selected)
            unbounded = _Bounded(keys, len(keys[0]), list(range(1, len(keys[0]) + 1)))
            return top_merge.exact(await self._shard_calls(unbounded, "atleast", 1), None)
        bounded = self._bounded_keys(dim, parts, selected)
        if not bounded.exact:
            return []
        if self.shards == 1:
            return top_merge.ranked((await self._shard_calls(bounded, "top", limit))[0], limit)
        depth = limit * TOP_DEPTH
        tops = await self._shard_calls(bounded, "top", depth)
        return await top_merge.tput(tops, limit, lambda fetch: self._phase(bounded, fetch), depth)

    async def _phase(self, keys: _Bounded, fetch: top_merge.Fetch) -> list[dict[str, int]]:
        """One round trip of TPUT: per shard, members at or above a count, or given members."""
        if fetch.at_least is not None:
            return await self._shard_calls(keys, "atleast", fetch.at_least)
        return await self._shard_calls(keys, "sums", *fetch.members)

    async def _shard_calls(self, keys: _Bounded, mode: str, *args) -> list[dict[str, int]]:
        """`_SHARD_TOP` on every shard in one pipeline; `args` one list per shard for `sums`."""
        if not keys.exact:
            return [{} for _ in keys.shards]
        async with self.client.pipeline(transaction=False) as pipe:
            for n, shard_keys in enumerate(keys.shards):
                extra = args[n] if mode == "sums" else args
                pipe.eval(_SHARD_TOP, len(shard_keys), *shard_keys, mode, keys.exact,
                          *keys.bound_of, *extra)
            replies = await _execute(pipe)
        return [{reply[i].decode(): int(reply[i + 1]) for i in range(0, len(reply), 2)}
                for reply in replies]

    async def scores(self, dim: str, members: Sequence[str], parts: Sequence[Part], *,
                     platforms: Sequence[str] | None = None) -> dict[str, int]:
        """Each member's count in `dim`, summed over the parts' buckets, the platforms (None: all)
        and the shards: one script per shard sums its keys' ZMSCORE server-side (a command per
        key and shard would cost ~15 µs each to send and parse)."""
        totals = dict.fromkeys(members, 0)
        keys = self._shard_keys(dim, parts, hot_keys.selected_platforms(platforms))
        if not members or not keys[0]:
            return totals
        async with self.client.pipeline(transaction=False) as pipe:
            for shard_keys in keys:
                pipe.eval(_SUM_SCORES, len(shard_keys), *shard_keys, *members)
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


# KEYS: one shard's bucket keys (a bucket's platforms are more keys), then bound keys; those
# missing are left out (they hold nothing: a platform without data costs one EXISTS a key and
# does not lower the floor tau / n).
# ARGV: a mode, E (the first E keys are summed), each of those E keys' bound (the 1-based index
# of a key whose every count is at least the key's own: itself, or its hour's key), then the
# mode's arguments; replies member, sum, ...
# - top K: the members whose sum over the E keys is at least the K-th best (so the shard's top K,
#   ties included), found with Fagin's threshold algorithm over the n bounds (a missing bound:
#   its keys bound themselves): their own top K, summed exactly, give a K-th sum tau that is at
#   most the true one; a member summing tau or more counts tau / n or more in some bound, so those
#   members, summed exactly, hold the answer.
# - atleast T: every member whose sum is at least T (the same bound: T / n in some bound).
# - sums m...: the sums of these members (absent: left out).
_SHARD_TOP = """
local mode, E = ARGV[1], tonumber(ARGV[2])
local present = {}
for i = 1, #KEYS do present[i] = redis.call('EXISTS', KEYS[i]) == 1 end
local keys, bounds, bounding = {}, {}, {}
for i = 1, E do
  if present[i] then
    keys[#keys + 1] = KEYS[i]
    local b = tonumber(ARGV[2 + i])
    if not present[b] then b = i end
    if not bounding[b] then bounding[b] = true; bounds[#bounds + 1] = KEYS[b] end
  end
end
local n, first = #bounds, 3 + E
if n == 0 then return {} end
local function sums(members)
  local total = {}
  for i = 1, #members do total[i] = 0 end
  for _, key in ipairs(keys) do
    for j = 1, #members, 500 do
      local got = redis.call('ZMSCORE', key, unpack(members, j, math.min(j + 499, #members)))
      for i = 1, #got do
        if got[i] then total[j + i - 1] = total[j + i - 1] + tonumber(got[i]) end
      end
    end
  end
  return total
end
local function union(lists, seen, out)
  for _, list in ipairs(lists) do
    for _, m in ipairs(list) do
      if not seen[m] then seen[m] = true; out[#out + 1] = m end
    end
  end
  return out
end
local function above(floor, seen, out)  -- members counting `floor` or more in some bound
  local lists = {}
  for _, key in ipairs(bounds) do
    lists[#lists + 1] = redis.call('ZREVRANGEBYSCORE', key, '+inf', floor)
  end
  return union(lists, seen, out)
end
local function reply(members, at_least)
  local total, out = sums(members), {}
  for i = 1, #members do
    if total[i] > 0 and total[i] >= at_least then
      out[#out + 1] = members[i]; out[#out + 1] = total[i]
    end
  end
  return out
end
if mode == 'sums' then
  local members = {}
  for i = first, #ARGV do members[#members + 1] = ARGV[i] end
  return reply(members, 0)
end
local seen, members = {}, {}
local at_least = tonumber(ARGV[first])
if mode == 'top' then
  local k, lists = at_least, {}
  for _, key in ipairs(bounds) do lists[#lists + 1] = redis.call('ZREVRANGE', key, 0, k - 1) end
  union(lists, seen, members)
  local total = sums(members)
  table.sort(total, function(a, b) return a > b end)
  at_least = total[k] or 0
end
above(math.max(at_least / n, 1), seen, members)
return reply(members, at_least)
"""


# KEYS: one shard's bucket keys. ARGV: members. Each member's count summed over the keys.
_SUM_SCORES = """
local sums = {}
for i = 1, #ARGV do sums[i] = 0 end
for _, key in ipairs(KEYS) do
  local scores = redis.call('ZMSCORE', key, unpack(ARGV))
  for i = 1, #ARGV do if scores[i] then sums[i] = sums[i] + tonumber(scores[i]) end end
end
return sums
"""
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
