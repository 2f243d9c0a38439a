"""The hot tier's history: from which instant Redis holds every Tweet the consumers applied, shared
by the consumers (who record it and heal it) and the query service (who plans by it). The full
argument is in docs/effectively-once.md#when-redis-loses-data.

Why a marker at all: Redis can lose data without the consumers noticing (a FLUSHALL, a restart
without persistence or onto an empty replica, keys evicted under `maxmemory`). The offset
watermarks go with the counters, so after a loss the consumers simply resume at their committed
offsets and the counters of everything before are missing. The marker is a hash beside each
shard's watermarks, with no expiry, written only when the tier is known complete (by a rebuild,
streaming.healer): whatever empties Redis empties it too, and a marker that is gone means "the
history is lost", which nothing has to notice in time for answers to stay exact.

Layout (prefix `tf`, N = shard as in tweetflow.hot_keys, one shard when Redis is standalone):
- `tf:{sN}:history:{topic}`   hash  the fields below
- `tf:{sN}:heal:{topic}`      hash  the current or last rebuild of the shard: its plan, per
                                    partition the offsets it re-applies; and how far it got, kept
                                    as the offset watermarks of its own sink (`heal_topic`)
- `tf:{s0}:heal-lease:{topic}` hash who runs the rebuilds now (expires unless renewed)

History fields:
- `from`     the shard holds every Tweet from this epoch second on; `pending` while a hole is
             healed; absent when its history was lost and nobody has noticed yet
- `hole`     a token that changes with every hole found (a rebuild finishes only for its own)
- `f:{p}`    the first offset of partition p that the state holds (recorded when its watermark
             is created: after a loss, the offsets below it are the ones to re-apply)
- `g:{p}`    `start end`: offsets of partition p missing from the state (a watermark behind)
- `was`      the `from` before such a gap, restored once it is healed
- `ev`       `run_id evicted_keys` of the Redis server when the tier was last planned complete
- `rebuild`  `1` when the state must be wiped and rebuilt (hot keys were evicted)
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from tweetflow.hot_keys import shard_tag

FROM, HOLE, WAS, EVICTIONS, REBUILD = "from", "hole", "was", "ev", "rebuild"
FIRST, GAP = "f:", "g:"
HEALING = "pending"
HEAL_TOPIC_SUFFIX = ".heal"

# Exported by each process that watches the hot tier (a consumer, the query service).
COMPLETE = Gauge("tweetflow_hot_complete", "1 when Redis holds the hot tier's whole history (every "
                 "shard): the hot horizon is answered from Redis; 0 while a hole is healed")
COMPLETE_FROM = Gauge("tweetflow_hot_complete_from_seconds", "The instant from which the hot tier "
                      "holds every Tweet (0 while it is incomplete)")
HOLES = Counter("tweetflow_hot_holes", "Holes this process found in the hot tier, by cause: lost "
                "(history gone), gap (a watermark behind), evicted", ["cause"])


def history_key(prefix: str, topic: str, shard: int = 0) -> str:
    return f"{prefix}:{shard_tag(shard)}:history:{topic}"


def heal_key(prefix: str, topic: str, shard: int = 0) -> str:
    return f"{prefix}:{shard_tag(shard)}:heal:{topic}"


def heal_lease_key(prefix: str, topic: str) -> str:
    return f"{prefix}:{shard_tag(0)}:heal-lease:{topic}"


def heal_topic(topic: str) -> str:
    """The topic name whose watermark hashes (tweetflow.hot_keys.watermark_key) hold how far a
    rebuild got: the rebuild applies through the hot sink with offset watermarks of its own, so
    it re-applies the offsets below the consumers' exactly once without touching theirs."""
    return topic + HEAL_TOPIC_SUFFIX


def history_start(value: str | bytes | None) -> int | None:
    """The instant (epoch seconds) from which the hot tier holds every Tweet, from a `from`
    field's value; None when it holds no complete history (a hole being healed, or lost)."""
    if isinstance(value, bytes):
        value = value.decode()
    return int(value) if value and value.isdigit() else None


def combined_start(values: list[str | bytes | None]) -> int | None:
    """The instant from which every shard is complete: the latest of theirs (None if any is
    not complete)."""
    starts = [history_start(v) for v in values]
    return None if not starts or None in starts else max(s for s in starts if s is not None)


def evictions_since(baseline: str | bytes | None, run_id: str, evicted: int) -> bool:
    """Whether the Redis server (`run_id`, its `evicted_keys` counter) evicted keys since the
    `ev` baseline; unknown (no baseline, or another server run: a restart resets the counter)
    counts as no."""
    if isinstance(baseline, bytes):
        baseline = baseline.decode()
    if not baseline:
        return False
    base_run, _, base_count = baseline.partition(" ")
    return base_run == run_id and base_count.isdigit() and evicted > int(base_count)
