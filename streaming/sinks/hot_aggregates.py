"""Hot aggregates in Redis, applied exactly once per Kafka offset and once per Tweet id.

Why this shape (docs/effectively-once.md has the full argument):
- Counters are not idempotent, so each partition keeps an offset *watermark* in Redis, and a batch's
  counter updates and its new watermark are applied by one Lua script, atomically, only if the
  watermark is still the one the batch was planned against (compare-and-set). A replay, a retry or a
  second consumer of the same partition (a zombie after a rebalance) therefore applies nothing twice.
- A Tweet published twice arrives at two offsets of the same partition (the key is the Tweet id), so
  the watermark alone cannot catch it: `seen` hashes map each counted Tweet id to the contribution
  it made. A second copy finds its id there and counts nothing; a delete finds the contribution and
  subtracts exactly it. The script re-checks every id it relies on, so the plan made in Python
  cannot race with another writer.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from streaming.normalize import author_member, distinct_lowered
from tweetflow.clients import redis_client
from tweetflow.hot_keys import (
    GRAIN_SECONDS,
    authors_key,
    bucket_start,
    dimension_key,
    seen_key,
    snowflake_ms,
    tweets_key,
    watermark_key,
)
from tweetflow.model import Event, Tweet
from tweetflow.settings import Settings

DELETED = "D"
TOPIC_ID_FIELD = "topic_id"  # in the watermark hash: which incarnation of the topic it describes
_FIELD, _ITEM = "\x1f", "\x1e"

_APPLY = """
local wm_key, partition, expected, new_wm = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3]
local cur = tonumber(redis.call('HGET', wm_key, partition) or '-1')
if cur ~= expected then return {0, cur} end
local i = 4
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local got = redis.call('HGET', ARGV[i], ARGV[i + 1])
  local want = ARGV[i + 2]
  if (want == '' and got) or (want ~= '' and got ~= want) then return {0, cur} end
  i = i + 3
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HSET', ARGV[i], ARGV[i + 1], ARGV[i + 2]); i = i + 3 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('INCRBY', ARGV[i], ARGV[i + 1]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local score = tonumber(redis.call('ZINCRBY', ARGV[i], ARGV[i + 2], ARGV[i + 1]))
  if score <= 0 then redis.call('ZREM', ARGV[i], ARGV[i + 1]) end
  i = i + 3
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('PFADD', ARGV[i], ARGV[i + 1]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('EXPIREAT', ARGV[i], ARGV[i + 1]); i = i + 2 end
redis.call('HSET', wm_key, partition, new_wm)
return {1, tonumber(new_wm)}
"""


@dataclass
class PartitionBatch:
    """The fresh messages of one partition in a batch: (offset, event) in offset order."""

    partition: int
    last_offset: int  # becomes the watermark: the batch's last offset, parsed or dead-lettered
    events: list[tuple[int, Event]] = field(default_factory=list)


@dataclass
class ApplyResult:
    counted: int = 0
    updated: int = 0  # new versions of Tweets already counted
    duplicates: int = 0
    deletes: int = 0
    cold: int = 0  # older than the hot horizon: ClickHouse only
    already_applied: bool = False
    retries: int = 0


@dataclass
class _Plan:
    checks: list[tuple[str, str, str]] = field(default_factory=list)
    hsets: list[tuple[str, str, str]] = field(default_factory=list)
    incr: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    zincr: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    pfadd: set[tuple[str, str]] = field(default_factory=set)
    expire: dict[str, int] = field(default_factory=dict)
    result: ApplyResult = field(default_factory=ApplyResult)

    def args(self) -> list:
        out: list = [len(self.checks)]
        for triple in self.checks:
            out.extend(triple)
        out.append(len(self.hsets))
        for triple in self.hsets:
            out.extend(triple)
        out.append(len(self.incr))
        for key, delta in self.incr.items():
            out.extend((key, delta))
        out.append(len(self.zincr))
        for (key, member), delta in self.zincr.items():
            out.extend((key, member, delta))
        out.append(len(self.pfadd))
        for pair in self.pfadd:
            out.extend(pair)
        out.append(len(self.expire))
        for key, at in self.expire.items():
            out.extend((key, at))
        return out


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

    def apply(self, batch: PartitionBatch, expected: int) -> ApplyResult:
        """Apply one partition's batch on top of watermark `expected`; replans on a conflict."""
        retries = 0
        while True:
            events = [(o, e) for o, e in batch.events if o > expected]
            if batch.last_offset <= expected:
                return ApplyResult(already_applied=True, retries=retries)
            plan = self._plan(events)
            ok, current = self._apply(keys=[self.wm_key],
                                      args=[batch.partition, expected, batch.last_offset,
                                            *plan.args()])
            if ok:
                plan.result.retries = retries
                return plan.result
            expected, retries = int(current), retries + 1

    def _plan(self, events: list[tuple[int, Event]]) -> _Plan:
        plan = _Plan()
        now = self.clock()
        oldest = now - self.horizon
        ids = [e.tweet_id for _, e in events if _seen_hour(e.tweet_id) + 3600 > oldest]
        remote = self._lookup(ids)
        local: dict[int, str] = {}
        for _, event in events:
            tweet_id = event.tweet_id
            hour = _seen_hour(tweet_id)
            if hour + 3600 <= oldest or (event.tweet is not None
                                         and event.tweet.created_at.timestamp() < oldest):
                plan.result.cold += 1
                continue
            key = seen_key(self.prefix, hour)
            plan.expire[key] = max(hour, bucket_start(now, "h")) + 3600 + self.horizon
            if tweet_id in local:
                state = local[tweet_id]
            else:
                state = remote.get(tweet_id)
                plan.checks.append((key, str(tweet_id), state or ""))
            if event.kind == "tweet" and event.tweet is not None:
                contribution = _contribution(event.tweet)
                if state in (DELETED, contribution):
                    plan.result.duplicates += 1
                    continue
                if state is not None:
                    # A newer version of a counted Tweet (other entities, say): the latest
                    # version wins, as in ClickHouse, so replace what the old one contributed.
                    self._count(plan, state, -1, 0)
                    plan.result.updated += 1
                else:
                    plan.result.counted += 1
                self._count(plan, contribution, +1, event.tweet.author_id)
                local[tweet_id] = contribution
            else:
                if state == DELETED:
                    plan.result.duplicates += 1
                    continue
                if state is not None:
                    self._count(plan, state, -1, 0)
                    plan.result.deletes += 1
                local[tweet_id] = DELETED
            plan.hsets.append((key, str(tweet_id), local[tweet_id]))
        return plan

    def _lookup(self, ids: list[int]) -> dict[int, str]:
        """Current `seen` state of these ids, one HMGET per hour key, pipelined."""
        by_key: dict[str, list[int]] = defaultdict(list)
        for tweet_id in dict.fromkeys(ids):
            by_key[seen_key(self.prefix, _seen_hour(tweet_id))].append(tweet_id)
        if not by_key:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for key, key_ids in by_key.items():
            pipe.hmget(key, [str(i) for i in key_ids])
        found: dict[int, str] = {}
        for key_ids, values in zip(by_key.values(), pipe.execute(), strict=True):
            found.update((i, v) for i, v in zip(key_ids, values, strict=True) if v is not None)
        return found

    def _count(self, plan: _Plan, contribution: str, sign: int, author_id: int) -> None:
        minute, members = _decode(contribution)
        for grain in ("m", "h"):
            bucket = bucket_start(minute, grain)
            expire_at = bucket + GRAIN_SECONDS[grain] + self.horizon
            n_key = tweets_key(self.prefix, grain, bucket)
            plan.incr[n_key] += sign
            plan.expire[n_key] = expire_at
            for dim, member in members:
                z_key = dimension_key(self.prefix, dim, grain, bucket)
                plan.zincr[(z_key, member)] += sign
                plan.expire[z_key] = expire_at
            if sign > 0 and author_id:
                u_key = authors_key(self.prefix, grain, bucket)
                plan.pfadd.add((u_key, str(author_id)))
                plan.expire[u_key] = expire_at


def _seen_hour(tweet_id: int) -> int:
    return bucket_start(snowflake_ms(tweet_id) / 1000, "h")


def _contribution(tweet: Tweet) -> str:
    """What one Tweet adds to the counters, encoded so a delete can subtract exactly that."""
    members: list[str] = [f"lang{_ITEM}{tweet.lang}", f"kind{_ITEM}{tweet.kind}"]
    author = author_member(tweet)
    if author:
        members.append(f"author{_ITEM}{author}")
    for dim, values in (("hashtag", tweet.hashtags), ("mention", tweet.mentions),
                        ("cashtag", tweet.cashtags), ("domain", tweet.domains)):
        members.extend(f"{dim}{_ITEM}{v}" for v in distinct_lowered(values))
    minute = bucket_start(tweet.created_at.timestamp(), "m")
    return _FIELD.join([str(minute), *members])


def _decode(contribution: str) -> tuple[int, list[tuple[str, str]]]:
    minute, *members = contribution.split(_FIELD)
    return int(minute), [tuple(m.split(_ITEM, 1)) for m in members]  # type: ignore[misc]
