"""Hot aggregates in Redis, applied exactly once per Kafka offset and once per Tweet (edit chain).

Why this shape (docs/effectively-once.md has the full argument):
- Counters are not idempotent, so each partition keeps an offset *watermark* in Redis, and a batch's
  counter updates and its new watermarks are applied by one Lua script, atomically, only if every
  watermark is still the one the batch was planned against (compare-and-set). A replay, a retry or
  a second consumer of a partition (a zombie after a rebalance) therefore applies nothing twice.
- A Tweet published twice arrives at two offsets (the key is the Tweet id), so the watermark alone
  cannot catch it: `seen` hashes map each counted Tweet's edit chain to the contribution it made
  (streaming.sinks.hot_state). A second copy, or an older version of an edited Tweet, counts
  nothing; a newer version replaces what the chain counted; a delete subtracts exactly it. The
  script re-checks every id it relies on, so the plan made in Python cannot race with another
  writer, even one applying another version of the chain from another partition.
- Cost: the plan is aggregated in Python (one entry per distinct key and member, not per Tweet) and
  travels as one JSON argument that the script decodes with Redis' built-in cjson: packing tens of
  thousands of separate arguments cost more CPU than everything else the sink does.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from streaming.sinks.hot_state import (
    DIM,
    ApplyResult,
    Plan,
    SeenStates,
    account,
    chain_ids,
    pointed_root,
    seen_hour,
)
from tweetflow.clients import redis_client
from tweetflow.hot_keys import (
    GRAIN_SECONDS,
    authors_key,
    bucket_start,
    dimension_key,
    seen_key,
    tweets_key,
    watermark_key,
)
from tweetflow.model import Event
from tweetflow.settings import Settings

__all__ = ["ApplyResult", "HotAggregatesSink", "PartitionBatch"]
TOPIC_ID_FIELD = "topic_id"  # in the watermark hash: which incarnation of the topic it describes

# ARGV[1] is the JSON plan (see HotAggregatesSink._encode): flat lists ([key, value, key, ...])
# or objects from a key to the flat list of its fields and values.
# Returns {1} when applied, {0, {partition, current, ...}} when a watermark moved, {0, {}} when a
# `seen` entry the plan relied on changed: the caller replans either way.
_APPLY = """
local wm_key = KEYS[1]
local CHUNK = 500  -- arguments per variadic command: Lua's unpack has a stack limit
local plan = cjson.decode(ARGV[1])
local wm, call = plan.wm, redis.call
local moved = {}
for i = 1, #wm, 3 do
  local cur = tonumber(call('HGET', wm_key, wm[i]) or '-1')
  if cur ~= wm[i + 1] then moved[#moved + 1] = wm[i]; moved[#moved + 1] = cur end
end
if #moved > 0 then return {0, moved} end
for key, ids in pairs(plan.check) do
  local fields = {}
  for i = 1, #ids, 2 do fields[#fields + 1] = ids[i] end
  for i = 1, #fields, CHUNK do
    local got = call('HMGET', key, unpack(fields, i, math.min(i + CHUNK - 1, #fields)))
    for j = 1, #got do
      local want = ids[2 * (i + j - 1)]
      if (want == '' and got[j]) or (want ~= '' and got[j] ~= want) then return {0, {}} end
    end
  end
end
local function variadic(cmd, key, args)
  for i = 1, #args, CHUNK do call(cmd, key, unpack(args, i, math.min(i + CHUNK - 1, #args))) end
end
for key, pairs_ in pairs(plan.seen) do variadic('HSET', key, pairs_) end
local incr, zincr, expire = plan.incr, plan.zincr, plan.expire
for i = 1, #incr, 2 do call('INCRBY', incr[i], incr[i + 1]) end
for key, list in pairs(zincr) do
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


@dataclass
class PartitionBatch:
    """The fresh messages of one partition in a batch: (offset, event) in offset order."""

    partition: int
    last_offset: int  # becomes the watermark: the batch's last offset, parsed or dead-lettered
    events: list[tuple[int, Event]] = field(default_factory=list)


class HotAggregatesSink:
    """Per-minute and per-hour counts, top-K sorted sets and author HLLs within the hot horizon."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.prefix = settings.redis_prefix
        self.horizon = settings.hot_horizon_hours * 3600
        self.clock = clock
        self.redis = redis_client(settings, decode_responses=True, socket_timeout=10,
                                  health_check_interval=30)
        self._apply = self.redis.register_script(_APPLY)
        self.wm_key = watermark_key(self.prefix, settings.topic_raw)

    def watermarks(self) -> dict[int, int]:
        """Last applied offset per partition (-1 when none)."""
        return {int(p): int(o) for p, o in self.redis.hgetall(self.wm_key).items()
                if p != TOPIC_ID_FIELD}

    def bind_topic(self, topic_id: str) -> bool:
        """Tie the watermarks to this incarnation of the topic; True if old ones were dropped.

        Why: offsets start again at 0 when a topic is deleted and created anew (or the broker's
        data is wiped); watermarks of the old topic would then skip every new message up to them.
        The `seen` hashes stay, so Tweets re-sent into the new topic still count once.
        """
        stored = self.redis.hget(self.wm_key, TOPIC_ID_FIELD)
        if stored == topic_id:
            return False
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.wm_key)
        pipe.hset(self.wm_key, TOPIC_ID_FIELD, topic_id)
        pipe.execute()
        return stored is not None

    def flush(self) -> None:
        """Nothing to do: each apply is one atomic script call that has run when it returns."""

    def close(self) -> None:
        self.redis.close()

    def apply(self, batch: PartitionBatch, expected: int) -> ApplyResult:
        """Apply one partition's batch on top of watermark `expected` (see apply_all)."""
        return self.apply_all([batch], {batch.partition: expected})

    def apply_all(self, batches: list[PartitionBatch], expected: dict[int, int]) -> ApplyResult:
        """Apply the batches of several partitions in one atomic step, each on top of its
        watermark in `expected` (-1 when absent); replans when another writer got there first."""
        expected = {b.partition: expected.get(b.partition, -1) for b in batches}
        retries = 0
        while True:
            pending = [b for b in batches if b.last_offset > expected[b.partition]]
            if not pending:
                return ApplyResult(already_applied=True, retries=retries)
            plan = self._plan([pair for b in pending for pair in b.events
                               if pair[0] > expected[b.partition]])
            marks = [v for b in pending for v in (str(b.partition), expected[b.partition],
                                                   b.last_offset)]
            ok, *moved = self._apply(keys=[self.wm_key], args=[self._encode(plan, marks)])
            if ok:
                plan.result.retries = retries
                return plan.result
            moved = moved[0] if moved else []
            for i in range(0, len(moved), 2):
                expected[int(moved[i])] = int(moved[i + 1])
            retries += 1

    def _plan(self, events: list[tuple[int, Event]]) -> Plan:
        plan = Plan()
        oldest = self.clock() - self.horizon
        hot = [e for _, e in events if not _cold(e, oldest)]
        plan.result.cold = len(events) - len(hot)
        asked = {i for e in hot for i in chain_ids(e)}
        found = self._lookup(list(asked))
        # A delete of an edit names its chain's root through a pointer: a second round trip for
        # those roots (only in a batch that deletes an edit).
        roots = {r for e in hot if e.kind != "tweet" or e.tweet is None  # as `account` does
                 if (r := pointed_root(found.get(e.tweet_id))) is not None} - asked
        if roots:
            found.update(self._lookup(list(roots)))
            asked |= roots
        states = SeenStates(plan, self.prefix, asked, found)
        for event in hot:
            account(plan, states, event)
        return plan

    def _encode(self, plan: Plan, marks: list) -> bytes:
        """The plan as the script's JSON argument, with per-minute and per-hour keys and expiries."""
        now_hour = bucket_start(self.clock(), "h")
        expire = {key: max(hour, now_hour) + 3600 + self.horizon
                  for key, hour in plan.seen_hours.items()}
        incr: Counter[str] = Counter()
        for minute, delta in plan.tweets.items():
            for grain, bucket in _buckets(minute):
                key = tweets_key(self.prefix, grain, bucket)
                incr[key] += delta
                expire[key] = self._expiry(grain, bucket)
        zincr = self._zincr(plan, expire)
        pfadd: dict[str, set[str]] = defaultdict(set)
        for minute, author in plan.authors:
            for grain, bucket in _buckets(minute):
                key = authors_key(self.prefix, grain, bucket)
                pfadd[key].add(author)
                expire[key] = self._expiry(grain, bucket)
        return orjson.dumps({
            "wm": marks, "check": plan.checks, "seen": plan.seen,
            "incr": [v for pair in incr.items() for v in pair], "zincr": zincr,
            "pfadd": {key: list(authors) for key, authors in pfadd.items()},
            "expire": [v for pair in expire.items() for v in pair]})

    def _expiry(self, grain: str, bucket: int) -> int:
        """When a bucket's key expires: the hot horizon after the bucket ends."""
        return bucket + GRAIN_SECONDS[grain] + self.horizon

    def _zincr(self, plan: Plan, expire: dict[str, int]) -> dict[str, list]:
        """Sorted-set increments per key, [member, delta, ...]: each key travels once."""
        groups: dict[tuple[str, str, int], list] = defaultdict(list)
        hourly: Counter[tuple[int, str]] = Counter()
        for (minute, member), delta in plan.members.items():
            hourly[(minute - minute % 3600, member)] += delta
            if delta:  # zero: added and removed within the batch, no change
                groups[(DIM[member[0]], "m", minute)].extend((member[1:], delta))
        for (hour, member), delta in hourly.items():
            if delta:
                groups[(DIM[member[0]], "h", hour)].extend((member[1:], delta))
        out: dict[str, list] = {}
        for (dim, grain, bucket), pairs in groups.items():
            key = dimension_key(self.prefix, dim, grain, bucket)
            out[key] = pairs
            expire[key] = self._expiry(grain, bucket)
        return out

    def _lookup(self, ids: list[int]) -> dict[int, str]:
        """Current `seen` state of these ids, one HMGET per hour key, pipelined."""
        by_key: dict[str, list[int]] = defaultdict(list)
        for tweet_id in dict.fromkeys(ids):
            by_key[seen_key(self.prefix, seen_hour(tweet_id))].append(tweet_id)
        if not by_key:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for key, key_ids in by_key.items():
            pipe.hmget(key, [str(i) for i in key_ids])
        found: dict[int, str] = {}
        for key_ids, values in zip(by_key.values(), pipe.execute(), strict=True):
            found.update((i, v) for i, v in zip(key_ids, values, strict=True) if v is not None)
        return found


def _buckets(minute: int) -> tuple[tuple[str, int], tuple[str, int]]:
    """The minute's bucket at each grain: ("m", minute), ("h", its hour)."""
    return ("m", minute), ("h", minute - minute % 3600)


def _cold(event: Event, oldest: float) -> bool:
    """Older than the hot horizon (ClickHouse only): by its chain's root for a Tweet."""
    tweet = event.tweet
    if tweet is None:
        return seen_hour(event.tweet_id) + 3600 <= oldest
    return (seen_hour(tweet.chain_root_id) + 3600 <= oldest
            or tweet.chain_created_at.timestamp() < oldest)
