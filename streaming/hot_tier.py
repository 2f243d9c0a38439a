"""The consumers' side of the hot tier's history (tweetflow.hot_history): reading it, and the
atomic steps that record a hole, wipe the state for a rebuild, claim where the re-applied offsets
end, and mark a shard complete again (docs/effectively-once.md#when-redis-loses-data).

Every step that decides on a hole is one Lua script over the keys of one shard (its history,
watermarks and rebuild plan share the shard's hash tag), guarded by the shard's `hole` token: a
rebuild planned for one hole can never mark the shard complete after another one appeared (a
second FLUSHALL, a gap, evictions), it is planned again instead.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from streaming.offsets import committed_offsets
from tweetflow import hot_history as hh
from tweetflow.clients import redis_client
from tweetflow.hot_keys import partition_shard, shard_tag, watermark_key
from tweetflow.settings import Settings

log = logging.getLogger(__name__)

# KEYS: history. ARGV: token, number of first offsets, (partition, offset)..., (partition,
# start, end)... of gaps. Records where each partition's state begins, and merges the gaps.
_NOTE_OFFSETS = """
local h, token, nf = KEYS[1], ARGV[1], tonumber(ARGV[2])
for i = 3, 2 + 2 * nf, 2 do redis.call('HSETNX', h, 'f:' .. ARGV[i], ARGV[i + 1]) end
local gap = false
for i = 3 + 2 * nf, #ARGV, 3 do
  local field, a, b = 'g:' .. ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local oa, ob = string.match(redis.call('HGET', h, field) or '', '^(%d+) (%d+)$')
  if oa then a, b = math.min(a, tonumber(oa)), math.max(b, tonumber(ob)) end
  redis.call('HSET', h, field, string.format('%d %d', a, b))
  gap = true
end
if not gap then return 0 end
local from = redis.call('HGET', h, 'from')
if from and from ~= 'pending' then redis.call('HSET', h, 'was', from) end
redis.call('HSET', h, 'from', 'pending', 'hole', token)
return 1
"""
# KEYS: history. ARGV: token. A shard whose history is gone: a hole, noticed.
_NOTE_LOSS = """
if redis.call('HEXISTS', KEYS[1], 'from') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'from', 'pending', 'hole', ARGV[1])
return 1
"""
# KEYS: history. ARGV: token, eviction baseline. Evicted keys: wipe and rebuild.
_NOTE_EVICTIONS = """
redis.call('HDEL', KEYS[1], 'was')
redis.call('HSET', KEYS[1], 'from', 'pending', 'hole', ARGV[1], 'rebuild', '1', 'ev', ARGV[2])
return 1
"""
# KEYS: history, rebuild plan, watermarks, lease. ARGV: token, the shard's key pattern, eviction
# baseline, a new token. Deletes every key of the shard but the history, the plan and the lease
# (the topic's id stays with the watermarks); the shard then looks as after a FLUSHALL that was
# noticed, with a hole of its own (a rebuild planned before the wipe cannot finish).
_WIPE = """
local h = KEYS[1]
if redis.call('HGET', h, 'hole') ~= ARGV[1] then return 0 end
local keep = {[KEYS[1]] = true, [KEYS[2]] = true, [KEYS[4]] = true}
local topic_id = redis.call('HGET', KEYS[3], 'topic_id')
local cursor = '0'
repeat
  local reply = redis.call('SCAN', cursor, 'MATCH', ARGV[2], 'COUNT', 1000)
  cursor = reply[1]
  for _, key in ipairs(reply[2]) do
    if not keep[key] then redis.call('UNLINK', key) end
  end
until cursor == '0'
if topic_id then redis.call('HSET', KEYS[3], 'topic_id', topic_id) end
redis.call('DEL', h)
redis.call('HSET', h, 'from', 'pending', 'hole', ARGV[4], 'ev', ARGV[3])
return 1
"""
# KEYS: history, watermarks. ARGV: token, (partition, offset)... For partitions the consumers
# have not applied since the loss: the state begins at `offset` (their committed offset), below
# which the rebuild re-applies; the watermark says so, and the consumers resume above it.
_CLAIM = """
if redis.call('HGET', KEYS[1], 'hole') ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do
  local p, c = ARGV[i], tonumber(ARGV[i + 1])
  if redis.call('HEXISTS', KEYS[2], p) == 0 then
    redis.call('HSETNX', KEYS[1], 'f:' .. p, c)
    if c > 0 then redis.call('HSET', KEYS[2], p, c - 1) end
  end
end
return 1
"""
# KEYS: history, rebuild plan, the rebuild's watermarks. ARGV: token, eviction baseline, plan
# field/value pairs. A new plan starts from nothing re-applied.
_BEGIN = """
if redis.call('HGET', KEYS[1], 'hole') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'ev', ARGV[2]) end
return 1
"""
# KEYS: history, rebuild plan, watermarks. ARGV: token, plan id, complete-from, time, then
# (partition, start, end, gap)... re-applied. The shard is complete again, unless another hole
# appeared meanwhile.
_FINISH = """
local h, r, w = KEYS[1], KEYS[2], KEYS[3]
if redis.call('HGET', h, 'hole') ~= ARGV[1] or redis.call('HGET', r, 'id') ~= ARGV[2]
    or redis.call('HEXISTS', h, 'rebuild') == 1 then return 0 end
for i = 5, #ARGV, 4 do
  local p, s, e, gap = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), ARGV[i + 3]
  local f = tonumber(redis.call('HGET', h, 'f:' .. p) or '-1')
  if f < 0 or s < f then redis.call('HSET', h, 'f:' .. p, s) end
  if tonumber(redis.call('HGET', w, p) or '-1') < e - 1 then redis.call('HSET', w, p, e - 1) end
  if gap ~= '' and redis.call('HGET', h, 'g:' .. p) == gap then redis.call('HDEL', h, 'g:' .. p) end
end
redis.call('HSET', h, 'from', ARGV[3])
redis.call('HDEL', h, 'was')
redis.call('HSET', r, 'done', ARGV[4])
return 1
"""
_ACQUIRE = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and owner ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
_RELEASE = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


def new_token() -> str:
    return uuid.uuid4().hex[:16]


@dataclass
class ShardHistory:
    """One shard's history fields and its consumers' watermarks, as read together."""

    shard: int
    fields: dict[str, str]
    watermarks: dict[int, int]

    @property
    def complete_from(self) -> int | None:
        return None if self.rebuild else hh.history_start(self.fields.get(hh.FROM))

    @property
    def lost(self) -> bool:
        return hh.FROM not in self.fields

    @property
    def rebuild(self) -> bool:
        return hh.REBUILD in self.fields

    @property
    def hole(self) -> str:
        return self.fields.get(hh.HOLE, "")

    def firsts(self) -> dict[int, int]:
        return {int(k[2:]): int(v) for k, v in self.fields.items() if k.startswith(hh.FIRST)}

    def gaps(self) -> dict[int, tuple[int, int, str]]:
        """partition -> (start, end, the field's value)."""
        out = {}
        for k, v in self.fields.items():
            if k.startswith(hh.GAP):
                a, b = v.split()
                out[int(k[2:])] = (int(a), int(b), v)
        return out


class HotTier:
    """The history of every shard of one topic's hot tier, and the steps on it."""

    def __init__(self, settings: Settings, redis: Any = None) -> None:
        self.settings = settings
        self.prefix, self.topic = settings.redis_prefix, settings.topic_raw
        self.shards = settings.hot_shard_count
        self.redis = redis or redis_client(settings, decode_responses=True, socket_timeout=30)
        register = self.redis.register_script
        self._note_offsets, self._note_loss = register(_NOTE_OFFSETS), register(_NOTE_LOSS)
        self._note_evictions, self._wipe = register(_NOTE_EVICTIONS), register(_WIPE)
        self._claim, self._begin, self._finish = (register(_CLAIM), register(_BEGIN),
                                                  register(_FINISH))
        self._acquire, self._release = register(_ACQUIRE), register(_RELEASE)
        self.lease_key = hh.heal_lease_key(self.prefix, self.topic)

    # --- keys ---------------------------------------------------------------------------------

    def shard_of(self, partition: int) -> int:
        return partition_shard(partition, self.shards)

    def history_key(self, shard: int) -> str:
        return hh.history_key(self.prefix, self.topic, shard)

    def plan_key(self, shard: int) -> str:
        return hh.heal_key(self.prefix, self.topic, shard)

    def watermark_key(self, shard: int) -> str:
        return watermark_key(self.prefix, self.topic, shard)

    def heal_watermark_key(self, shard: int) -> str:
        return watermark_key(self.prefix, hh.heal_topic(self.topic), shard)

    # --- reading ------------------------------------------------------------------------------

    def read(self) -> list[ShardHistory]:
        pipe = self.redis.pipeline(transaction=False)
        for shard in range(self.shards):
            pipe.hgetall(self.history_key(shard))
            pipe.hgetall(self.watermark_key(shard))
        replies = pipe.execute()
        return [ShardHistory(shard, replies[2 * shard],
                             {int(p): int(o) for p, o in replies[2 * shard + 1].items()
                              if p.isdigit()})
                for shard in range(self.shards)]

    def plans(self) -> list[tuple[dict[str, str], dict[int, int]]]:
        """Per shard: its rebuild plan's fields and how far the rebuild got (offset watermarks)."""
        pipe = self.redis.pipeline(transaction=False)
        for shard in range(self.shards):
            pipe.hgetall(self.plan_key(shard))
            pipe.hgetall(self.heal_watermark_key(shard))
        replies = pipe.execute()
        return [(replies[2 * s], {int(p): int(o) for p, o in replies[2 * s + 1].items()
                                  if p.isdigit()}) for s in range(self.shards)]

    def evictions(self) -> tuple[str, int] | None:
        """(run_id, evicted_keys) of the Redis server; None where INFO is not allowed."""
        try:
            server, stats = self.redis.info("server"), self.redis.info("stats")
        except Exception:  # an ACL or a managed Redis refusing INFO: evictions go unseen
            return None
        return str(server["run_id"]), int(stats["evicted_keys"])

    # --- recording holes ------------------------------------------------------------------------

    def note_offsets(self, firsts: dict[int, int], gaps: dict[int, tuple[int, int]]) -> bool:
        """Where partitions' states begin (their watermark is being created) and offsets missing
        below their watermarks; True if a gap was recorded (a hole)."""
        recorded = False
        for shard in sorted({self.shard_of(p) for p in (*firsts, *gaps)}):
            f = [v for p, o in firsts.items() if self.shard_of(p) == shard for v in (p, o)]
            g = [v for p, (a, b) in gaps.items() if self.shard_of(p) == shard for v in (p, a, b)]
            recorded |= bool(self._note_offsets(keys=[self.history_key(shard)],
                                                args=[new_token(), len(f) // 2, *f, *g]))
        return recorded

    def note_loss(self, shard: int) -> bool:
        """Mark a shard whose history is gone as healing; True if this call did."""
        return bool(self._note_loss(keys=[self.history_key(shard)], args=[new_token()]))

    def note_evictions(self, baseline: str) -> None:
        """Keys were evicted (which, Redis does not say): every shard is wiped and rebuilt."""
        for shard in range(self.shards):
            self._note_evictions(keys=[self.history_key(shard)], args=[new_token(), baseline])

    def check_evictions(self, histories: list[ShardHistory]) -> bool:
        """Compare the server's eviction counter with the shards' baselines; on evictions, note
        them (True)."""
        found = self.evictions()
        if found is None:
            return False
        run_id, evicted = found
        now = f"{run_id} {evicted}"
        for h in histories:  # a restart (its data kept) counts evictions from 0 again
            base = h.fields.get(hh.EVICTIONS, "")
            if base and not base.startswith(run_id + " ") and not h.lost:
                self.redis.hset(self.history_key(h.shard), hh.EVICTIONS, now)
        if not any(hh.evictions_since(h.fields.get(hh.EVICTIONS), run_id, evicted)
                   for h in histories if not h.rebuild):
            return False
        self.note_evictions(now)
        return True

    # --- rebuilding -----------------------------------------------------------------------------

    def wipe(self, shard: int, token: str, baseline: str) -> bool:
        pattern = f"{self.prefix}:{shard_tag(shard)}:*"
        return bool(self._wipe(keys=[self.history_key(shard), self.plan_key(shard),
                                     self.watermark_key(shard), self.lease_key],
                               args=[token, pattern, baseline, new_token()]))

    def claim(self, shard: int, token: str, offsets: dict[int, int]) -> bool:
        args = [v for p, c in sorted(offsets.items()) for v in (p, c)]
        return bool(self._claim(keys=[self.history_key(shard), self.watermark_key(shard)],
                                args=[token, *args]))

    def begin(self, shard: int, token: str, baseline: str, fields: dict[str, str]) -> bool:
        pairs = [v for item in fields.items() for v in item]
        return bool(self._begin(keys=[self.history_key(shard), self.plan_key(shard),
                                      self.heal_watermark_key(shard)],
                                args=[token, baseline, *pairs]))

    def finish(self, shard: int, token: str, plan_id: str, complete_from: int,
               ranges: list[tuple[int, int, int, str]]) -> bool:
        args = [v for r in ranges for v in r]
        return bool(self._finish(keys=[self.history_key(shard), self.plan_key(shard),
                                       self.watermark_key(shard)],
                                 args=[token, plan_id, complete_from, int(time.time()), *args]))

    def acquire(self, owner: str, ms: int) -> bool:
        """Take (or renew) the lease on rebuilding this topic's hot tier."""
        return bool(self._acquire(keys=[self.lease_key], args=[owner, ms]))

    def release(self, owner: str) -> None:
        self._release(keys=[self.lease_key], args=[owner])


def never_consumed(settings: Settings) -> bool:
    """Whether the consumer group has committed nothing (so Redis had nothing to lose)."""
    try:
        return all(c < 0 for c in committed_offsets(settings).values())
    except Exception:  # Kafka unreachable: unknown, so no
        return False


def note_lost(settings: Settings, shard: int) -> None:
    """Log and count a shard found without history: lost, or new (nothing consumed yet)."""
    if never_consumed(settings):
        log.info("shard %d: a new hot tier; its history starts now", shard)
    else:
        note_hole("lost", f"shard {shard}")


def note_hole(cause: str, detail: str) -> None:
    """Log and count a hole found in the hot tier (cause: lost, gap or evicted)."""
    hh.HOLES.labels(cause).inc()
    what = {"lost": "the hot store lost its history (its marker is gone: a FLUSHALL, a restart "
                    "without its data, or eviction)",
            "gap": "offsets are missing below a watermark (Redis restored from an older "
                   "snapshot?)",
            "evicted": "Redis evicted keys (maxmemory): the hot tier is wiped and rebuilt"}[cause]
    log.warning("%s (%s); answers for the hot horizon come from ClickHouse until it is rebuilt",
                what, detail)


def gap_text(gaps: dict[int, tuple[int, int]]) -> str:
    return ", ".join(f"partition {p} offsets {a}..{b - 1}" for p, (a, b) in sorted(gaps.items()))
