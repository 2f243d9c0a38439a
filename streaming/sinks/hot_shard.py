"""One shard of the hot aggregates in Redis: reading its dedup states, and applying a plan to it
with one Lua script, atomically (every key of a shard shares its hash tag, so in Redis Cluster the
script touches one slot; tweetflow/hot_keys.py).

The dedup state is compact (~11 bytes an id where the previous layout took 123): each id's state
(streaming/sinks/hot_state.py; nearly always a 12-bit fingerprint) is a field of a `seen` hash of
the ids of 2**k milliseconds, named by the id's low 22 + k bits, so the hash stays a *listpack* of
small integers (a field of 5 bytes, a value of 2, and their lengths). A key costs ~90 bytes more,
so k is chosen per shard and hour of ids for a quarter of the server's `hash-max-listpack-entries`
ids a hash (`choose_k`, from the previous hour's count or the batch's own density): a listpack
above that limit converts to a hash table of ~5x the memory, so bursts up to 4x stay compact.

The script (ARGV[1] is the JSON plan of `encode`):
1. compares the watermarks of the shard's partitions in the batch with the ones planned against;
   any moved: applies nothing, returns {0, {partition, current, ...}};
2. checks the window exponents the plan used (sets them where absent) and every state it read; any
   changed: applies nothing, returns {0, {}} (the caller plans again);
3. writes the states, the counters, the expiries and the new watermarks; returns {1}.
Cost: the plan is aggregated in Python (one entry per key and member, not per Tweet) and travels
as one JSON argument that the script decodes with Redis' built-in cjson.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from streaming.sinks.hot_state import DIM, Counts, Plan, seen_hour
from tweetflow.hot_keys import (
    GRAIN_SECONDS,
    authors_key,
    bucket_start,
    dedup_meta_key,
    dedup_slot,
    dimension_key,
    seen_key,
    tweets_key,
    watermark_key,
)

LISTPACK_ENTRIES = 128  # Redis' default hash-max-listpack-entries, when CONFIG GET is refused
DEFAULT_K, MAX_K = 6, 20  # 64 ms when nothing says better; ~17 minutes at most
MIN_IDS_FOR_ESTIMATE = 32

APPLY_SCRIPT = """
local wm_key, call = KEYS[1], redis.call
local CHUNK = 500  -- arguments per variadic command: Lua's unpack has a stack limit
local plan = cjson.decode(ARGV[1])
local wm, moved = plan.wm, {}
for i = 1, #wm, 3 do
  local cur = tonumber(call('HGET', wm_key, wm[i]) or '-1')
  if cur ~= wm[i + 1] then moved[#moved + 1] = wm[i]; moved[#moved + 1] = cur end
end
if #moved > 0 then return {0, moved} end
local meta, ks, fresh = plan.meta, plan.k, false
for i = 1, #ks, 2 do
  local cur = call('HGET', meta, ks[i])
  if not cur then fresh = true elseif tonumber(cur) ~= ks[i + 1] then return {0, {}} end
end
local function check(key, list)  -- list: field, expected state ('' = none), ...
  for i = 1, #list, 2 * CHUNK do
    local fields = {}
    for j = i, math.min(i + 2 * CHUNK - 1, #list), 2 do fields[#fields + 1] = list[j] end
    local got = call('HMGET', key, unpack(fields))
    for j = 1, #got do
      if (got[j] or '') ~= list[i + 2 * j - 1] then return false end
    end
  end
  return true
end
for key, list in pairs(plan.check) do if not check(key, list) then return {0, {}} end end
local function variadic(cmd, key, args)
  for i = 1, #args, CHUNK do call(cmd, key, unpack(args, i, math.min(i + CHUNK - 1, #args))) end
end
if fresh then
  for i = 1, #ks, 2 do call('HSETNX', meta, ks[i], ks[i + 1]) end
  for _, f in ipairs(call('HKEYS', meta)) do
    if tonumber(string.sub(f, 2)) < plan.prune then call('HDEL', meta, f) end
  end
end
for i = 1, #plan.n, 2 do call('HINCRBY', meta, plan.n[i], plan.n[i + 1]) end
for key, list in pairs(plan.hset) do variadic('HSET', key, list) end
local incr, expire = plan.incr, plan.expire
for i = 1, #incr, 2 do call('INCRBY', incr[i], incr[i + 1]) end
for key, list in pairs(plan.zincr) do
  for i = 1, #list, 2 do
    local member, delta = list[i], list[i + 1]
    local score = call('ZINCRBY', key, delta, member)
    if delta < 0 and tonumber(score) <= 0 then call('ZREM', key, member) end
  end
end
for key, members in pairs(plan.pfadd) do variadic('PFADD', key, members) end
for i = 1, #expire, 2 do call('EXPIREAT', expire[i], expire[i + 1]) end
for i = 1, #wm, 3 do call('HSET', wm_key, wm[i], wm[i + 2]) end
return {1}
"""


def choose_k(ids_per_ms: float, per_window: int) -> int:
    """The smallest window exponent whose windows hold about `per_window` ids at this rate."""
    if ids_per_ms <= 0:
        return DEFAULT_K
    return max(0, min(MAX_K, math.ceil(math.log2(per_window / ids_per_ms))))


@dataclass
class Outcome:
    applied: bool
    moved: dict[int, int]  # partition -> current watermark, when a watermark moved


class HotShard:
    """The keys of one shard, and the script that changes them."""

    def __init__(self, redis, script, prefix: str, shard: int, topic: str, horizon: int,
                 clock: Callable[[], float], per_window: int) -> None:
        self.redis, self.script, self.prefix, self.shard = redis, script, prefix, shard
        self.horizon, self.clock, self.per_window = horizon, clock, per_window
        self.meta = dedup_meta_key(prefix, shard)
        self.wm_key = watermark_key(prefix, topic, shard)
        self.known_k: dict[int, int] = {}  # hour -> k: fixed once set, so cached
        self.previous_n: dict[int, int] = {}  # hour -> ids counted the hour before (choose_k)

    # --- reading ---------------------------------------------------------------------------

    def windows(self, hours: set[int]) -> dict[int, int]:
        """hour -> k for the hours that have one (one HMGET for hours not seen before)."""
        unknown = sorted(h for h in hours if h not in self.known_k)  # absent: someone may set it
        if unknown:
            fields = [f"k{h}" for h in unknown] + [f"n{h - 3600}" for h in unknown]
            values = self.redis.hmget(self.meta, fields)
            for i, hour in enumerate(unknown):
                if values[i] is not None:
                    self.known_k[hour] = int(values[i])
                self.previous_n[hour] = int(values[len(unknown) + i] or 0)
        return {h: self.known_k[h] for h in hours if h in self.known_k}

    def forget(self) -> None:
        """Drop cached window exponents (after a conflict, or a Redis that lost its data)."""
        self.known_k.clear()
        self.previous_n.clear()

    def lookup(self, ids: set[int]) -> dict[int, str | None]:
        """The state of each id (None: none), one pipelined round trip."""
        hours = {i: seen_hour(i) for i in ids}
        ks = self.windows(set(hours.values()))
        seen: dict[tuple[str, int], list[int]] = defaultdict(list)
        found: dict[int, str | None] = {}
        for tweet_id, hour in hours.items():
            k = ks.get(hour)
            if k is None:
                found[tweet_id] = None  # no id of that hour was ever written here
            else:
                seen[(self._seen_key(tweet_id, k), k)].append(tweet_id)
        if not seen:
            return found
        pipe = self.redis.pipeline(transaction=False)
        for (key, k), key_ids in seen.items():
            pipe.hmget(key, [dedup_slot(i, k)[1] for i in key_ids])
        for key_ids, values in zip(seen.values(), pipe.execute(), strict=True):
            found.update(zip(key_ids, values, strict=True))
        return found

    def _seen_key(self, tweet_id: int, k: int) -> str:
        return seen_key(self.prefix, self.shard, k, dedup_slot(tweet_id, k)[0])

    # --- applying --------------------------------------------------------------------------

    def apply(self, plan: Plan, marks: list[tuple[int, int, int]]) -> Outcome:
        """Run the script: `marks` are (partition, expected watermark, new watermark)."""
        args = [v for mark in marks for v in (str(mark[0]), mark[1], mark[2])]
        ks = self._exponents(plan)
        ok, *rest = self.script(keys=[self.wm_key], args=[self.encode(plan, args, ks)])
        if ok:
            self.known_k.update(ks)
            return Outcome(True, {})
        moved = rest[0] if rest else []
        if not moved:
            self.forget()  # a state or a window exponent changed: read them afresh
        return Outcome(False, {int(moved[i]): int(moved[i + 1]) for i in range(0, len(moved), 2)})

    def encode(self, plan: Plan, marks: list, ks: dict[int, int]) -> bytes:
        """The plan as the script's JSON argument; `ks`: hour -> k of every hour it touches."""
        now_hour = bucket_start(self.clock(), "h")
        checks: dict[str, list] = defaultdict(list)
        for tweet_id, state in plan.reads.items():  # under the exponent the script will verify
            k = ks[seen_hour(tweet_id)]
            checks[self._seen_key(tweet_id, k)].extend((str(dedup_slot(tweet_id, k)[1]), state or ""))
        writes = self._writes(plan, ks, now_hour)
        expire = writes.pop("expire")
        incr, zincr, pfadd = self._counters(plan, expire)
        return orjson.dumps({
            "wm": marks, "meta": self.meta, "k": [v for h, k in ks.items() for v in (f"k{h}", k)],
            "prune": now_hour - self.horizon - 7200, "check": checks, **writes,
            "incr": [v for pair in incr.items() for v in pair], "zincr": zincr, "pfadd": pfadd,
            "expire": [v for pair in expire.items() for v in pair]})

    def _exponents(self, plan: Plan) -> dict[int, int]:
        """hour -> k of every hour the plan touches: known, or chosen now for a new hour."""
        hours: dict[int, list[int]] = defaultdict(list)
        for tweet_id in plan.reads.keys() | plan.writes.keys():
            hours[seen_hour(tweet_id)].append(tweet_id)
        out = {}
        for hour, ids in hours.items():
            k = self.known_k.get(hour)
            if k is None:
                k = choose_k(_density(ids, self.previous_n.get(hour, 0)), self.per_window)
            out[hour] = k
        return out

    def _writes(self, plan: Plan, ks: dict[int, int], now_hour: int) -> dict:
        hset: dict[str, list[str]] = defaultdict(list)
        counted: Counter[str] = Counter()
        expire: dict[str, int] = {}
        for tweet_id, new in plan.writes.items():
            old = plan.reads.get(tweet_id)
            if new == old:
                continue
            hour = seen_hour(tweet_id)
            k = ks[hour]
            key = self._seen_key(tweet_id, k)
            hset[key].extend((str(dedup_slot(tweet_id, k)[1]), new))
            if old is None:
                counted[f"n{hour}"] += 1
            until = max(hour, now_hour) + 7200 + self.horizon  # a window may outlast its hour
            expire[key] = max(expire.get(key, 0), until)
        return {"hset": hset, "n": [v for pair in counted.items() for v in pair], "expire": expire}

    def _counters(self, plan: Plan, expire: dict[str, int]) -> tuple[Counter, dict, dict]:
        incr: Counter[str] = Counter()
        zincr: dict[str, list] = {}
        pfadd: dict[str, set[str]] = defaultdict(set)
        for platform, counts in plan.counts.items():
            self._platform_counters(platform, counts, expire, incr, zincr, pfadd)
        return incr, zincr, {key: list(authors) for key, authors in pfadd.items()}

    def _platform_counters(self, platform: str, counts: Counts, expire: dict[str, int],
                           incr: Counter[str], zincr: dict[str, list],
                           pfadd: dict[str, set[str]]) -> None:
        """One platform's share of the plan, under its keys (tweetflow/hot_keys.py)."""
        prefix, shard = self.prefix, self.shard
        for minute, delta in counts.tweets.items():
            for grain, bucket in _buckets(minute):
                key = tweets_key(prefix, grain, bucket, shard, platform)
                incr[key] += delta
                expire[key] = self._expiry(grain, bucket)
        groups: dict[tuple[str, str, int], list] = defaultdict(list)
        hourly: Counter[tuple[int, str]] = Counter()
        for (minute, member), delta in counts.members.items():
            hourly[(minute - minute % 3600, member)] += delta
            if delta:  # zero: added and removed within the batch, no change
                groups[(DIM[member[0]], "m", minute)].extend((member[1:], delta))
        for (hour, member), delta in hourly.items():
            if delta:
                groups[(DIM[member[0]], "h", hour)].extend((member[1:], delta))
        for (dim, grain, bucket), pairs in groups.items():
            key = dimension_key(prefix, dim, grain, bucket, shard, platform)
            zincr[key] = pairs
            expire[key] = self._expiry(grain, bucket)
        for minute, author in counts.authors:
            for grain, bucket in _buckets(minute):
                key = authors_key(prefix, grain, bucket, shard, platform)
                pfadd[key].add(author)
                expire[key] = self._expiry(grain, bucket)

    def _expiry(self, grain: str, bucket: int) -> int:
        """When a bucket's key expires: the hot horizon after the bucket ends."""
        return bucket + GRAIN_SECONDS[grain] + self.horizon


def _density(ids: list[int], previous_hour: int) -> float:
    """Ids per millisecond of id time: the higher of the previous hour's (a partial hour, or a
    rising stream, underestimates it: windows too wide convert to hash tables) and this batch's
    own, when it has enough ids of the hour to tell."""
    rate = previous_hour / 3_600_000
    if len(ids) >= MIN_IDS_FOR_ESTIMATE:
        times = sorted(i >> 22 for i in ids)
        rate = max(rate, len(ids) / max(times[-1] - times[0], 1))
    return rate


def _buckets(minute: int) -> tuple[tuple[str, int], tuple[str, int]]:
    """The minute's bucket at each grain: ("m", minute), ("h", its hour)."""
    return ("m", minute), ("h", minute - minute % 3600)
