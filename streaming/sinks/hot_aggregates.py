"""Hot aggregates in Redis, applied exactly once per Kafka offset and once per Tweet (edit chain),
on one Redis or a Redis Cluster.

Why this shape (docs/effectively-once.md has the full argument):
- Counters are not idempotent, so each partition keeps an offset *watermark* in Redis, beside its
  counters in the partition's shard (tweetflow/hot_keys.py), and a batch's counter updates and new
  watermarks are applied by one Lua script per shard, atomically, only if every watermark is still
  the one the batch was planned against (compare-and-set). A replay, a retry or a second consumer
  of a partition (a zombie after a rebalance) therefore applies nothing twice.
- A Tweet published twice arrives at two offsets of one partition (the key is the Tweet id), so
  the watermark alone cannot catch it: each event becomes operations on the dedup state of its
  edit chain (streaming.sinks.hot_state), decided at the chain's home shard, which for a Tweet is
  its own partition's: nearly every batch touches only its partitions' shards. An edit (whose root
  lands elsewhere), a delete of an edit and what they imply are applied to the other shards
  first, each by that shard's script, and only then does the batch's own script move the
  watermark: those operations are facts, so applying one again after a crash changes nothing.
- Every script re-checks each state its plan read, so a plan made in Python cannot race another
  writer; then the batch's writes wait for the shards' replicas (WAIT) before the caller commits
  offsets, so a failover cannot lose what Kafka no longer re-delivers.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from streaming.sinks.hot_shard import APPLY_SCRIPT, LISTPACK_ENTRIES, HotShard, Outcome
from streaming.sinks.hot_state import (
    ApplyResult,
    Op,
    Plan,
    Planner,
    VersionKey,
    chain_members,
    event_ops,
    fingerprint,
    seen_hour,
)
from streaming.sinks.versions import RawVersions
from tweetflow.clients import redis_client
from tweetflow.hot_keys import home_shard, partition_shard, sync_key
from tweetflow.model import Event, Tweet
from tweetflow.partitioner import id_key
from tweetflow.settings import Settings

__all__ = ["ApplyResult", "HotAggregatesSink", "PartitionBatch"]
log = logging.getLogger(__name__)
TOPIC_ID_FIELD = "topic_id"  # in the watermark hash: which incarnation of the topic it describes
HOME_CHECK_EVERY = 64  # a message's own partition stands for its home shard; verified this often
REPLICAS_TTL_S = 5.0  # how long a master's count of connected replicas is trusted


class PartitionerMismatch(RuntimeError):
    """A message's partition is not the one Kafka's default partitioner gives its key."""


class ReplicasBehind(RuntimeError):
    """A shard's replicas did not confirm a batch's writes in time (the batch is retried)."""


@dataclass
class PartitionBatch:
    """The fresh messages of one partition in a batch: (offset, event) in offset order."""

    partition: int
    last_offset: int  # becomes the watermark: the batch's last offset, parsed or dead-lettered
    events: list[tuple[int, Event]] = field(default_factory=list)
    keys: dict[int, bytes | None] = field(default_factory=dict)  # offset -> the message's key


class HotAggregatesSink:
    """Per-minute and per-hour counts, top-K sorted sets and author HLLs within the hot horizon."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time,
                 versions: RawVersions | None = None) -> None:
        self.settings = settings
        self.prefix = settings.redis_prefix
        self.horizon = settings.hot_horizon_hours * 3600
        self.clock = clock
        self.shards = settings.hot_shard_count
        self.redis = redis_client(settings, decode_responses=True, socket_timeout=10,
                                  health_check_interval=30)
        script = self.redis.register_script(APPLY_SCRIPT)
        per_window = max(16, self._listpack_entries() // 4)
        self.shard = [HotShard(self.redis, script, self.prefix, n, settings.topic_raw,
                               self.horizon, clock, per_window) for n in range(self.shards)]
        self.versions = versions or RawVersions(settings)
        self.wait_replicas = settings.hot_wait_replicas
        self._own_partition_is_home: bool | None = None
        self._home_checks = 0
        self._replica_counts: dict[str, tuple[int, float]] = {}  # master -> (count, when)

    def _listpack_entries(self) -> int:
        """The server's hash-max-listpack-entries (the dedup hashes stay below it)."""
        try:
            reply = self.redis.config_get("hash-max-listpack-entries")
        except Exception:  # CONFIG may be renamed or refused (managed services)
            return LISTPACK_ENTRIES
        values = reply.values() if isinstance(reply, dict) else ()
        counts = [int(v) for value in values
                  for v in (value.values() if isinstance(value, dict) else [value])]
        return min(counts) if counts else LISTPACK_ENTRIES

    # --- watermarks --------------------------------------------------------------------------

    def watermarks(self) -> dict[int, int]:
        """Last applied offset per partition (absent: none)."""
        pipe = self.redis.pipeline(transaction=False)
        for shard in self.shard:
            pipe.hgetall(shard.wm_key)
        return {int(p): int(o) for values in pipe.execute() for p, o in values.items()
                if p != TOPIC_ID_FIELD}

    def bind_topic(self, topic_id: str) -> bool:
        """Tie the watermarks to this incarnation of the topic; True if old ones were dropped.

        Why: offsets start again at 0 when a topic is deleted and created anew (or the broker's
        data is wiped); watermarks of the old topic would then skip every new message up to them.
        The dedup state stays, so Tweets re-sent into the new topic still count once.
        """
        dropped = False
        for shard in self.shard:
            stored = self.redis.hget(shard.wm_key, TOPIC_ID_FIELD)
            if stored == topic_id:
                continue
            pipe = self.redis.pipeline(transaction=True)  # one key: one slot
            pipe.delete(shard.wm_key)
            pipe.hset(shard.wm_key, TOPIC_ID_FIELD, topic_id)
            pipe.execute()
            dropped |= stored is not None
        return dropped

    def flush(self) -> None:
        """Nothing to do: each apply has run its scripts (and waited for replicas) on return."""

    def close(self) -> None:
        self.redis.close()
        self.versions.close()

    # --- applying ----------------------------------------------------------------------------

    def apply(self, batch: PartitionBatch, expected: int) -> ApplyResult:
        """Apply one partition's batch on top of watermark `expected` (see apply_all)."""
        return self.apply_all([batch], {batch.partition: expected})

    def apply_all(self, batches: list[PartitionBatch], expected: dict[int, int]) -> ApplyResult:
        """Apply the batches of several partitions, each on top of its watermark in `expected`
        (-1 when absent); replans when another writer got there first."""
        expected = {b.partition: expected.get(b.partition, -1) for b in batches}
        result, touched, applied = ApplyResult(), set(), False
        while True:
            pending = [b for b in batches if b.last_offset > expected[b.partition]]
            if not pending:
                break
            local, remote = self._ops(pending, expected, result)
            touched |= self._settle(remote, result)
            moved: dict[int, int] = {}
            for shard, (ops, marks) in local.items():
                outcome = self._apply_local(shard, ops, marks, result, touched)
                moved.update(outcome.moved)
                if outcome.applied:
                    applied = True
                    touched.add(shard)
                    expected.update((p, new) for p, _, new in marks)
            if not moved:
                break
            expected.update(moved)
            result.retries += 1
        result.already_applied = not applied
        # What an earlier attempt applied may not be on the replicas yet (its WAIT is why it is
        # retried): the batch's own shards always wait, and every shard when nothing was applied.
        own = {partition_shard(b.partition, self.shards) for b in batches}
        self._sync(touched | own if applied else set(range(self.shards)))
        return result

    def _ops(self, pending: list[PartitionBatch], expected: dict[int, int], result: ApplyResult
             ) -> tuple[dict[int, tuple[list[Op], list]], dict[int, list[Op]]]:
        """The batch's operations: per wm shard (its own ops, its partitions' watermark moves),
        and per other shard."""
        oldest = self.clock() - self.horizon
        local: dict[int, tuple[list[Op], list]] = {}
        remote: dict[int, list[Op]] = defaultdict(list)
        result.cold = 0
        for b in pending:
            own = partition_shard(b.partition, self.shards)
            ops, marks = local.setdefault(own, ([], []))
            marks.append((b.partition, expected[b.partition], b.last_offset))
            for offset, event in b.events:
                if offset <= expected[b.partition]:
                    continue
                if _cold(event, oldest):
                    result.cold += 1
                    continue
                key = b.keys.get(offset)
                for op in event_ops(event):
                    home = self._home(op.tweet_id, b.partition, key)
                    (ops if home == own else remote[home]).append(op)
        return local, remote

    def _apply_local(self, shard: int, ops: list[Op], marks: list, result: ApplyResult,
                     touched: set[int]) -> Outcome:
        """Apply a wm shard's operations with its watermark moves, after what they imply for
        other shards."""
        while True:
            plan = self._plan(shard, ops)
            touched |= self._settle(self._group(plan.remote), result)
            outcome = self.shard[shard].apply(plan, marks)
            if outcome.applied:
                result.add(plan.result)
            if outcome.applied or outcome.moved:
                return outcome
            result.retries += 1

    def _settle(self, remote: dict[int, list[Op]], result: ApplyResult) -> set[int]:
        """Apply operations to shards without moving watermarks, and what they imply in turn (a
        link or delete can imply a kill elsewhere); returns the shards written."""
        touched: set[int] = set()
        while remote:
            implied: list[Op] = []
            for shard, ops in remote.items():
                while True:
                    plan = self._plan(shard, ops)
                    if self.shard[shard].apply(plan, []).applied:
                        break
                    result.retries += 1
                result.add(plan.result)
                implied += plan.remote
                touched.add(shard)
            remote = self._group(implied)
        return touched

    def _plan(self, shard: int, ops: list[Op]) -> Plan:
        """Plan operations against the shard's states, looking up what the plan finds it needs
        (a chain a pointer names, a counted version's content) until it has all."""
        states = self.shard[shard]
        found = states.lookup({op.tweet_id for op in ops})
        versions: dict[VersionKey, Tweet] = {}
        while True:
            plan = Planner(found, versions, lambda i: self._home(i) == shard).run(ops)
            if plan.complete:
                return plan
            if plan.missing_states:
                found.update(states.lookup(plan.missing_states))
            if plan.missing_versions:
                versions.update(self._stored_versions(plan.missing_versions))

    def _stored_versions(self, wanted: set[VersionKey]) -> dict[VersionKey, Tweet]:
        """The contents counted, read back from the raw store (streaming/sinks/versions.py)."""
        rows = self.versions.fetch(sorted({version for version, _ in wanted}))
        found = {(t.tweet_id, fingerprint(*chain_members(t))): t
                 for tweets in rows.values() for t in tweets}
        for version, content in wanted - found.keys():
            log.warning("the row of Tweet %d with the content the hot tier counted is gone (merged "
                        "away); subtracting its newest row instead", version)
            found[(version, content)] = rows[version][-1]
        return found

    def _group(self, ops: Iterable[Op]) -> dict[int, list[Op]]:
        grouped: dict[int, list[Op]] = defaultdict(list)
        for op in ops:
            grouped[self._home(op.tweet_id)].append(op)
        return grouped

    def _home(self, tweet_id: int, partition: int | None = None, key: bytes | None = None) -> int:
        """The home shard of an id; a message keyed by the id arrived at it already (when the
        shards divide the topic's partitions), which saves hashing its key (~3.8 µs)."""
        if self.shards == 1:
            return 0
        if partition is None or key is None or key != id_key(tweet_id) or not self._fast_home():
            return home_shard(tweet_id, self.shards)
        home = partition % self.shards
        self._home_checks += 1
        if self._home_checks % HOME_CHECK_EVERY == 0 and home != home_shard(tweet_id, self.shards):
            raise PartitionerMismatch(
                f"the message keyed {key!r} is on partition {partition}, not where Kafka's default "
                "(murmur2) partitioner puts it: Redis Cluster mode needs keyed messages produced "
                "with it (librdkafka: partitioner=murmur2_random)")
        return home

    def _fast_home(self) -> bool:
        if self._own_partition_is_home is None:
            from tweetflow.clients import kafka_admin

            topic = self.settings.topic_raw
            meta = kafka_admin(self.settings).list_topics(topic, timeout=10).topics.get(topic)
            count = len(meta.partitions) if meta is not None and meta.error is None else 0
            self._own_partition_is_home = count > 0 and count % self.shards == 0
        return self._own_partition_is_home

    # --- durability --------------------------------------------------------------------------

    def _sync(self, shards: set[int]) -> None:
        """Wait until each shard's replicas hold everything written to it so far (WAIT counts the
        writes of its own connection, hence the INCR on the same one first).

        Which replicas: those the cluster lists for the master, connected or not, because any of
        them may be promoted if the master dies; a replica that fell behind or away makes the
        batch fail here, uncommitted, and the pipeline retries it (on the new master if there was
        a failover). A master listing none (its replica was just promoted away from it) has
        nothing to wait for. The list is re-read every REPLICAS_TTL_S and when a WAIT falls short.
        """
        if self.wait_replicas <= 0:
            return
        timeout = self.settings.redis_wait_timeout_ms
        for shard in sorted(shards):
            key = sync_key(self.prefix, shard)
            node = self._node(key)
            try:
                wanted = min(self.wait_replicas, self._replicas(node))
                if wanted == 0:
                    continue
                pipe = node.pipeline(transaction=False)
                pipe.incr(key)
                pipe.wait(wanted, timeout)
                acked = int(pipe.execute()[1])
                if acked < wanted and acked < min(wanted, self._replicas(node, fresh=True)):
                    raise ReplicasBehind(f"shard {shard}: {acked} of {wanted} replicas confirmed "
                                         f"the batch's writes within {timeout} ms")
            except ReplicasBehind:
                raise
            except Exception:
                self._refresh()
                raise

    def _replicas(self, node, fresh: bool = False) -> int:
        """Replicas the cluster lists for a master (connected ones, standalone), cached
        REPLICAS_TTL_S; says when there are fewer than REDIS_WAIT_REPLICAS asks for."""
        where = node.get_connection_kwargs()
        name = f"{where.get('host')}:{where.get('port')}"
        count, at = self._replica_counts.get(name, (0, -REPLICAS_TTL_S))
        if fresh or time.monotonic() - at >= REPLICAS_TTL_S:
            previous = self._replica_counts.get(name, (None, 0.0))[0]
            if self.settings.redis_mode == "cluster":
                me = node.execute_command("CLUSTER", "MYID")
                count = len(node.execute_command("CLUSTER", "REPLICAS", me) or [])
            else:
                count = int(node.info("replication").get("connected_slaves", 0))
            self._replica_counts[name] = (count, time.monotonic())
            if count < self.wait_replicas and previous != count:
                log.warning("the Redis master %s has %d replicas, fewer than the %d "
                            "REDIS_WAIT_REPLICAS asks for: its writes are waited for by those",
                            name, count, self.wait_replicas)
        return count

    def _node(self, key: str):
        """The client of the master serving `key` (the client itself when standalone)."""
        get_node = getattr(self.redis, "get_node_from_key", None)
        return self.redis if get_node is None else get_node(key).redis_connection

    def _refresh(self) -> None:
        """Re-read the cluster's topology after a node failed us (a failover moves masters)."""
        manager = getattr(self.redis, "nodes_manager", None)
        if manager is not None:
            try:
                manager.initialize()
            except Exception as exc:  # the retry will find out; keep the original error
                log.warning("could not refresh the Redis Cluster topology: %s", exc)


def _cold(event: Event, oldest: float) -> bool:
    """Older than the hot horizon (ClickHouse only): by its chain's root for a Tweet."""
    tweet = event.tweet
    if tweet is None:
        return seen_hour(event.tweet_id) + 3600 <= oldest
    return (seen_hour(tweet.chain_root_id) + 3600 <= oldest
            or tweet.chain_created_at.timestamp() < oldest)
