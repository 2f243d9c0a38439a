"""Rebuilding the hot tier after Redis lost data, while the consumers keep ingesting
(docs/effectively-once.md#when-redis-loses-data).

A shard whose history is not complete (tweetflow.hot_history: lost, a gap, evictions) is healed
in four steps, each guarded by the shard's hole token (streaming.hot_tier):
1. evicted keys first wipe the shard (which keys went, Redis does not say; the dedup state must
   not outlive the counts it describes);
2. plan: the hot tier will be complete from `now - horizon`; per partition, the offsets to
   re-apply run from the first one Kafka holds from that instant (less MARGIN_SECONDS for event
   times ahead of Kafka's clock) to the first one the consumers applied since the loss (`f:{p}`;
   for a partition they have not applied yet, its committed offset is claimed for it, and its
   watermark set just below, so they resume above it), and over any gap below a watermark;
3. re-apply those offsets through the hot sink with watermarks of its own, from Kafka, or from
   ClickHouse's raw tables when Kafka's retention is shorter than the horizon or for a gap
   (they hold exactly what the consumers applied; heal_sources); the
   consumers meanwhile apply what arrives, so nothing waits. The two never apply one offset
   twice, and where a race makes them overlap (a watermark created after the plan read it), the
   dedup state counts a repeated event once;
4. mark the shard complete from the planned instant, unless another hole appeared meanwhile (then
   plan again).
One process heals at a time (a lease in Redis, renewed every batch): any consumer that finds the
tier incomplete starts a Healer in a thread (HealMonitor), and `tweetflow heal --run` runs one.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from streaming import metrics
from streaming.heal_sources import kafka_batches, raw_batches, raw_first_offsets
from streaming.hot_tier import HotTier, ShardHistory, gap_text, note_hole, note_lost
from streaming.offsets import TopicProbe, committed_offsets
from streaming.sinks import HotAggregatesSink, PartitionBatch
from streaming.stopper import Stopper
from tweetflow import hot_history as hh
from tweetflow.settings import Settings

log = logging.getLogger(__name__)

MARGIN_SECONDS = 300  # how far an event's own time may run ahead of its Kafka timestamp
LEASE_MS = 30_000
BATCH_MESSAGES = 10_000
EVICTION_BACKOFF_SECONDS = 30.0  # between two wipes for evictions: the first may not have helped


class Superseded(Exception):
    """Another hole appeared, or another process took over: plan again."""


@dataclass(frozen=True)
class HealRange:
    partition: int
    start: int
    end: int
    gap: str = ""  # the `g:{p}` value this range heals, if any

    def as_args(self) -> tuple[int, int, int, str]:
        return self.partition, self.start, self.end, self.gap


@dataclass
class ShardPlan:
    shard: int
    id: str
    hole: str
    complete_from: int  # the shard is complete from this instant once the ranges are re-applied
    source: str  # "kafka" or "raw"
    since: int  # raw reads: events from this instant on
    ranges: list[HealRange] = field(default_factory=list)
    started: float = 0.0

    def fields(self) -> dict[str, str]:
        return {"id": self.id, "hole": self.hole, "complete_from": str(self.complete_from),
                "source": self.source, "since": str(self.since), "started": f"{self.started:.3f}",
                "ranges": " ".join(f"{r.partition}:{r.start}:{r.end}:{r.gap.replace(' ', '-')}"
                                   for r in self.ranges)}

    @classmethod
    def parse(cls, shard: int, fields: dict[str, str]) -> ShardPlan | None:
        if "id" not in fields:
            return None
        ranges = []
        for item in fields.get("ranges", "").split():
            p, start, end, gap = item.split(":", 3)
            ranges.append(HealRange(int(p), int(start), int(end), gap.replace("-", " ")))
        return cls(shard, fields["id"], fields["hole"], int(fields["complete_from"]),
                   fields["source"], int(fields["since"]), ranges, float(fields["started"]))

    @property
    def total(self) -> int:
        return sum(r.end - r.start for r in self.ranges)

    def done(self, marks: dict[int, int]) -> int:
        """Offsets re-applied so far, given the rebuild's watermarks."""
        return sum(max(0, min(marks.get(r.partition, -1) + 1, r.end) - r.start)
                   for r in self.ranges)


@dataclass
class KafkaView:
    """What Kafka says about the topic when a rebuild is planned."""

    marks: dict[int, tuple[int, int]]  # partition -> (low, high)
    starts: dict[int, int]  # partition -> first offset from the planned instant - margin
    committed: dict[int, int]


class Healer:
    """Heals every shard of one topic's hot tier that is not complete."""

    def __init__(self, settings: Settings, stopper: Stopper | None = None,
                 tier: HotTier | None = None) -> None:
        self.settings = settings
        self.stopper = stopper or Stopper()
        self.tier = tier or HotTier(settings)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.horizon = settings.hot_horizon_hours * 3600
        self._sink: HotAggregatesSink | None = None
        self._last_wipe = 0.0

    @property
    def sink(self) -> HotAggregatesSink:
        """The hot sink, with its watermarks under the rebuild's topic name (hh.heal_topic)."""
        if self._sink is None:
            self._sink = HotAggregatesSink(self.settings.model_copy(
                update={"topic_raw": hh.heal_topic(self.settings.topic_raw)}))
        return self._sink

    def run(self, *, wait: bool = False, retry: bool = True) -> bool:
        """Heal until every shard is complete (True) or stopped (False). Without `wait`, also
        return False when another process is healing; without `retry`, raise what fails."""
        delay = 1.0
        while not self.stopper.stopped:
            histories = self.tier.read()
            if self.tier.check_evictions(histories):
                histories = self.tier.read()
            if all(h.complete_from is not None for h in histories):
                return True
            if not self.tier.acquire(self.owner, LEASE_MS):
                if not wait:
                    return False
                self.stopper.wait(1.0)
                continue
            try:
                for plan in self._plans():
                    self._heal(plan)
                delay = 1.0
            except Superseded as exc:
                log.info("rebuild of the hot tier superseded (%s); planning again", exc)
            except Exception as exc:  # a store down: the consumers' retries report it too
                if not retry:
                    raise
                log.warning("rebuilding the hot tier failed (%s); retrying in %.0f s",
                            str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
                            delay)
                self.stopper.wait(delay)
                delay = min(delay * 2, 30.0)
            finally:
                self.tier.release(self.owner)
        return False

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()

    # --- planning -----------------------------------------------------------------------------

    def _plans(self) -> list[ShardPlan]:
        histories = [h for h in self.tier.read() if h.complete_from is None]
        for h in histories:
            if h.lost and self.tier.note_loss(h.shard):
                note_lost(self.settings, h.shard)
        found = self.tier.evictions()
        baseline = f"{found[0]} {found[1]}" if found else ""
        if any(h.rebuild for h in histories):
            self._wipe([h for h in histories if h.rebuild], baseline)
        histories = [h for h in self.tier.read() if h.complete_from is None]
        existing = self.tier.plans()
        plans, to_plan = [], []
        for h in histories:
            old = ShardPlan.parse(h.shard, existing[h.shard][0])
            if old and old.hole == h.hole and "done" not in existing[h.shard][0]:
                plans.append(old)  # resumed where the last rebuild stopped
            else:
                to_plan.append(h)
        if to_plan:
            plans += self._new_plans(to_plan, baseline)
        return plans

    def _wipe(self, histories: list[ShardHistory], baseline: str) -> None:
        wait = self._last_wipe + EVICTION_BACKOFF_SECONDS - time.monotonic()
        if wait > 0:
            log.warning("Redis evicted hot keys again soon after a rebuild: raise its maxmemory "
                        "or set maxmemory-policy noeviction; rebuilding in %.0f s", wait)
        while (left := self._last_wipe + EVICTION_BACKOFF_SECONDS - time.monotonic()) > 0:
            if self.stopper.wait(min(left, 5.0)) or not self.tier.acquire(self.owner, LEASE_MS):
                raise Superseded("stopped, or another process took over")
        for h in histories:
            self.tier.wipe(h.shard, h.hole, baseline)
        self._last_wipe = time.monotonic()

    def _new_plans(self, histories: list[ShardHistory], baseline: str) -> list[ShardPlan]:
        now = time.time()
        complete_from = int(now) - self.horizon
        view = self._kafka_view(complete_from - MARGIN_SECONDS)
        plans = []
        for h in histories:
            parts = [p for p in view.marks if self.tier.shard_of(p) == h.shard]
            claims = {p: max(view.committed.get(p, -1), view.marks[p][0])
                      for p in parts if p not in h.watermarks}
            if claims and not self.tier.claim(h.shard, h.hole, claims):
                continue  # another hole meanwhile: the next round plans it
            h = self.tier.read()[h.shard]
            plan = self._shard_plan(h, view, parts, complete_from, now)
            if self.tier.begin(h.shard, h.hole, baseline, plan.fields()):
                log.info("rebuilding shard %d of the hot tier from %s: %d offsets of %d "
                         "partitions, complete from %s once done", h.shard, _source(plan.source),
                         plan.total, len(plan.ranges), _iso(plan.complete_from))
                plans.append(plan)
        return plans

    def _kafka_view(self, since: int) -> KafkaView:
        with TopicProbe(self.settings) as probe:
            marks = probe.watermarks()
            starts = probe.offsets_at(datetime.fromtimestamp(since, UTC))
        return KafkaView(marks, starts, committed_offsets(self.settings))

    def _shard_plan(self, h: ShardHistory, view: KafkaView, parts: list[int],
                    complete_from: int, now: float) -> ShardPlan:
        """Per partition: the offsets from the planned instant on that the state lacks (below
        `f:{p}`, the first it holds since the loss), and its gap; from Kafka when it still holds
        them all and there is no gap, else from the raw tables (they also hold what Kafka's
        retention deleted)."""
        firsts, gaps = h.firsts(), h.gaps()
        ends = {p: firsts.get(p, h.watermarks[p] + 1 if p in h.watermarks else 0) for p in parts}
        since = complete_from - MARGIN_SECONDS
        # Kafka falls short where its first retained offset is already inside the window (some
        # before it may have been too). A gap comes from the raw tables, which hold exactly what
        # the consumers applied: offsets an operator skipped (`replay --to latest`) look like a
        # gap too, and must stay skipped.
        kafka = not gaps and not any(low > 0 and view.starts[p] == low and ends[p] > 0
                                     for p, (low, _) in view.marks.items() if p in ends)
        starts = view.starts if kafka else raw_first_offsets(
            self.settings, datetime.fromtimestamp(since, UTC))
        ranges: list[HealRange] = []
        lost = False
        for p in parts:
            lo, hi = starts.get(p, ends[p]), ends[p]
            lost |= hi > lo  # the state lacks what was applied before the loss
            gap = gaps.get(p)
            if gap:
                lo, hi = (min(gap[0], lo), max(gap[1], hi)) if hi > lo else gap[:2]
            if hi > lo:
                ranges.append(HealRange(p, lo, hi, gap[2] if gap else ""))
        was = hh.history_start(h.fields.get(hh.WAS))
        target = complete_from if lost or was is None else was
        return ShardPlan(h.shard, uuid.uuid4().hex[:12], h.hole, target,
                         "kafka" if kafka else "raw", since, ranges, now)

    # --- re-applying ----------------------------------------------------------------------------

    def _heal(self, plan: ShardPlan) -> None:
        began, cpu = time.monotonic(), time.thread_time()
        applied = 0
        marks = self.tier.plans()[plan.shard][1]
        ranges = {r.partition: (max(r.start, marks.get(r.partition, -1) + 1), r.end)
                  for r in plan.ranges}
        for batches in self._batches(plan, ranges):
            self._checkpoint(plan)
            done = self.sink.watermarks()
            self.sink.apply_all(batches, done)
            applied += sum(len(b.events) for b in batches)
            metrics.HEAL_MESSAGES.labels(plan.source).inc(sum(len(b.events) for b in batches))
            metrics.HEAL_PROGRESS.set(plan.done(self.sink.watermarks()) / max(plan.total, 1))
        self._checkpoint(plan)
        found = self.tier.evictions()
        if found and any(hh.evictions_since(h.fields.get(hh.EVICTIONS), *found)
                         for h in self.tier.read()):
            self.tier.note_evictions(f"{found[0]} {found[1]}")
            raise Superseded("Redis evicted keys during the rebuild")
        if not self.tier.finish(plan.shard, plan.hole, plan.id, plan.complete_from,
                                [r.as_args() for r in plan.ranges]):
            raise Superseded("another hole appeared during the rebuild")
        seconds, cpu = time.monotonic() - began, time.thread_time() - cpu
        self.tier.redis.hset(self.tier.plan_key(plan.shard), mapping={  # for the bench
            "events": applied, "cpu": f"{cpu:.3f}"})
        metrics.HEALS.labels(plan.source).inc()
        metrics.HEAL_SECONDS.set(seconds)
        metrics.HEAL_PROGRESS.set(1.0)
        log.info("shard %d of the hot tier rebuilt from %s: %d events in %.1f s (%.1f s of this "
                 "thread's CPU); complete from %s", plan.shard, _source(plan.source), applied,
                 seconds, cpu, _iso(plan.complete_from))

    def _batches(self, plan: ShardPlan, ranges: dict[int, tuple[int, int]]
                 ) -> Iterator[list[PartitionBatch]]:
        ranges = {p: r for p, r in ranges.items() if r[1] > r[0]}
        if plan.source == "kafka":
            return kafka_batches(self.settings, ranges, BATCH_MESSAGES)
        return raw_batches(self.settings, ranges, datetime.fromtimestamp(plan.since, UTC),
                           BATCH_MESSAGES)

    def _checkpoint(self, plan: ShardPlan) -> None:
        """Between batches: still ours to heal, and still the same hole."""
        if self.stopper.stopped:
            raise Superseded("stopped")
        if not self.tier.acquire(self.owner, LEASE_MS):
            raise Superseded("another process took over the rebuild")
        if self.tier.read()[plan.shard].hole != plan.hole:
            raise Superseded("another hole appeared")


def _source(source: str) -> str:
    return "Kafka" if source == "kafka" else "the raw tables"


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


class HealMonitor:
    """A consumer's watch over the hot tier: every second (between batches) it reads every
    shard's history, notices a lost one, evictions and watermarks behind the offsets committed
    for its partitions, exports the state as metrics, and runs a Healer in a thread while the
    tier is incomplete."""

    CHECK_SECONDS = 1.0  # also for the committed offsets: one look-up at the group coordinator

    def __init__(self, settings: Settings,
                 committed: Callable[[], dict[int, int]] | None = None) -> None:
        self.settings = settings
        self.committed = committed
        self.tier = HotTier(settings)
        self.stopper = Stopper()
        self.healer = Healer(settings, self.stopper, HotTier(settings))
        self.thread: threading.Thread | None = None
        self._next = 0.0

    @property
    def busy(self) -> bool:
        """A rebuild is running in this process."""
        return self.thread is not None and self.thread.is_alive()

    def poll(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.CHECK_SECONDS
        try:
            self._check(now)
        except Exception as exc:  # Redis or Kafka down: the batches' retries report it
            log.debug("hot tier check failed: %s", exc)

    def _check(self, now: float) -> None:
        # before the watermarks, which only move forward
        committed = self.committed() if self.committed is not None else None
        histories = self.tier.read()
        if self.tier.check_evictions(histories):
            note_hole("evicted", "every shard")
        if committed:
            gaps = {p: (wm + 1, committed[p]) for h in histories for p, wm in h.watermarks.items()
                    if committed.get(p, -1) > wm + 1}
            if gaps and self.tier.note_offsets({}, gaps):
                note_hole("gap", gap_text(gaps))
        for h in histories:
            if h.lost and self.tier.note_loss(h.shard):
                note_lost(self.settings, h.shard)
        self._export(self.tier.read())

    def _export(self, histories: list[ShardHistory]) -> None:
        start = hh.combined_start([h.fields.get(hh.FROM) if not h.rebuild else None
                                   for h in histories])
        hh.COMPLETE.set(start is not None)
        hh.COMPLETE_FROM.set(start or 0)
        if start is None and not self.busy:
            self.thread = threading.Thread(target=self.healer.run, name="hot-tier-healer",
                                           daemon=True)
            self.thread.start()

    def close(self) -> None:
        self.stopper.stop()
        if self.thread is not None:
            self.thread.join(30)
        self.healer.close()
