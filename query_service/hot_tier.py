"""The query service's view of the hot tier's history (tweetflow.hot_history): from which instant
Redis answers exactly. Read at most once a second, and verified again by every hot read, so no
answer ever comes from a hole (docs/effectively-once.md#when-redis-loses-data).

Why both: the view plans (the planner answers the part of a range before `complete_from` from
ClickHouse), and the check makes the plan safe: each hot read's pipeline ends with the shards'
`from` fields (and, when Redis may evict, its eviction counter), read after the data in the same
round trip; if they are not what the plan was made with, the data is discarded and the question
re-planned (HotTierChanged). A FLUSHALL or an empty restart empties the marker with the data, so
the check sees it whenever it happens. Cost: one HGET per shard in the pipeline (lost in the
noise of a 24-bucket read here, ~0.8 ms with or without it); the eviction counter (INFO stats,
~150 µs more a request) only while `maxmemory-policy` evicts. Watermarks behind the committed
offsets (Redis restored from an older snapshot) are looked for every few seconds in a thread
(Kafka's client is synchronous), consumers running or not: such answers can be wrong for those
seconds, until the check or a consumer notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from query_service import hot_store
from streaming.offsets import committed_offsets
from tweetflow import hot_history as hh
from tweetflow.hot_keys import partition_shard, watermark_key
from tweetflow.settings import Settings

log = logging.getLogger(__name__)

CHECK_SECONDS, BEHIND_SECONDS = 1.0, 5.0
CAUSES = {"lost": "lost", "evicted": "evicted", "behind": "gap"}  # states counted as holes


@dataclass(frozen=True)
class TierView:
    """The hot tier as last read: `complete_from` None means Redis answers nothing."""

    state: str  # complete | new (nothing consumed yet) | healing | lost | evicted | behind
    complete_from: int | None = None
    markers: tuple[bytes | None, ...] = ()  # each shard's `from`, as read
    evicted: int | None = None  # the eviction counter to verify, while Redis may evict
    plans: tuple[dict[bytes, bytes], ...] = field(default=(), compare=False)


class HotTierMonitor:
    def __init__(self, settings: Settings, client: Any) -> None:
        self.settings, self.client = settings, client
        prefix, topic = settings.redis_prefix, settings.topic_raw
        shards = range(settings.hot_shard_count)
        self.keys = [hh.history_key(prefix, topic, s) for s in shards]
        self.plan_keys = [hh.heal_key(prefix, topic, s) for s in shards]
        self.wm_keys = [watermark_key(prefix, topic, s) for s in shards]
        self.view = TierView("unknown")
        self._checked = 0.0
        self._lock = asyncio.Lock()
        self._behind: dict[int, tuple[int, int]] = {}
        self._committed: dict[int, int] | None = None  # the group's, as last looked up
        self._behind_at = 0.0
        self._behind_task: asyncio.Future | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hot-tier")

    async def current(self) -> TierView:
        """The view, re-read when older than CHECK_SECONDS (Redis down: the last one)."""
        if time.monotonic() - self._checked >= CHECK_SECONDS:
            async with self._lock:
                if time.monotonic() - self._checked >= CHECK_SECONDS:
                    self._checked = time.monotonic()
                    with contextlib.suppress(Exception):  # Redis down: the reads say so
                        self._set(await self._read())
                    self._look_behind()
        return self.view

    def changed(self) -> None:
        """A hot read found the tier changed: re-read it on the next question."""
        self._checked = 0.0

    @contextlib.contextmanager
    def guarding(self, view: TierView) -> Iterator[None]:
        """Hot reads inside verify that the tier is still `view` (see the module docstring)."""
        token = hot_store.GUARD.set(hot_store.Guard(tuple(self.keys), view.markers, view.evicted))
        try:
            yield
        finally:
            hot_store.GUARD.reset(token)

    async def _read(self) -> TierView:
        async with self.client.pipeline(transaction=False) as pipe:
            for key in self.keys:
                pipe.hgetall(key)
            for key in self.plan_keys:
                pipe.hgetall(key)
            pipe.info("stats")
            pipe.info("server")
            pipe.config_get("maxmemory-policy")
            replies = await pipe.execute(raise_on_error=False)
        n = len(self.keys)
        histories, plans = replies[:n], tuple(replies[n:2 * n])
        stats, server, policy = replies[2 * n:]
        if isinstance(stats, Exception) or isinstance(server, Exception):
            run_id, evicted = "", None  # INFO refused: evictions go unseen
        else:
            run_id, evicted = str(server["run_id"]), int(stats["evicted_keys"])
        evicting = _evicting(policy)
        markers = tuple(h.get(hh.FROM.encode()) for h in histories)
        start = hh.combined_start(list(markers))
        state = "complete"
        evictions = any(hh.REBUILD.encode() in h or (evicted is not None and hh.evictions_since(
            h.get(hh.EVICTIONS.encode()), run_id, evicted)) for h in histories)
        if evictions:
            state, start = "evicted", None
        elif any(m is None for m in markers):
            state = "lost"
            if await self._never_consumed():  # nothing was ever applied: nothing to lose
                state, start = "new", 0
        elif start is None:
            state = "healing"
        elif self._behind:
            state, start = "behind", None
        return TierView(state, start, markers, evicted if evicting else None, plans)

    def _set(self, view: TierView) -> None:
        if view.state != self.view.state:
            if view.state == "complete":
                log.info("the hot tier is complete from %s: Redis answers the hot horizon",
                         _iso(view.complete_from))
            elif view.state == "new":
                log.info("the hot tier is new (nothing consumed yet): Redis answers the hot horizon")
            else:
                log.warning("the hot tier is %s: answers for the hot horizon come from ClickHouse "
                            "until it is rebuilt", view.state)
                if view.state in CAUSES:
                    hh.HOLES.labels(CAUSES[view.state]).inc()
        self.view = view
        hh.COMPLETE.set(view.complete_from is not None)
        hh.COMPLETE_FROM.set(view.complete_from or 0)

    async def _never_consumed(self) -> bool:
        """Whether the consumer group has committed nothing (looked up now if not known)."""
        if self._committed is None:
            loop = asyncio.get_running_loop()
            with contextlib.suppress(Exception):  # Kafka down: unknown, so lost
                self._committed = await asyncio.wait_for(loop.run_in_executor(
                    self._pool, committed_offsets, self.settings), CHECK_SECONDS * 2)
        return self._committed is not None and all(c < 0 for c in self._committed.values())

    def _look_behind(self) -> None:
        """Every BEHIND_SECONDS, in a thread: partitions whose watermark is behind the offset
        the consumers committed (the committed offsets first: watermarks only move forward)."""
        if time.monotonic() - self._behind_at < BEHIND_SECONDS or (
                self._behind_task is not None and not self._behind_task.done()):
            return
        self._behind_at = time.monotonic()
        loop = asyncio.get_running_loop()
        self._behind_task = asyncio.ensure_future(self._behind_check(loop))

    async def _behind_check(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            committed = await loop.run_in_executor(self._pool, committed_offsets, self.settings)
            self._committed = committed
            async with self.client.pipeline(transaction=False) as pipe:
                for key in self.wm_keys:
                    pipe.hgetall(key)
                marks = await pipe.execute()
        except Exception:  # Kafka or Redis down: nothing to say
            return
        shards = len(self.wm_keys)
        behind = {}
        for p, c in committed.items():
            wm = marks[partition_shard(p, shards)].get(str(p).encode())
            if wm is not None and c > int(wm) + 1:
                behind[p] = (int(wm) + 1, c)
        if behind != self._behind:
            self._behind = behind
            self.changed()

    async def describe(self) -> dict[str, Any]:
        """The hot tier's state for /readyz: complete from when, or how far its rebuild got."""
        view = await self.current()
        out: dict[str, Any] = {"state": view.state}
        if view.complete_from is not None:
            out["complete_from"] = _iso(view.complete_from)
        if self._behind:
            out["behind"] = {str(p): f"{a}..{b - 1}" for p, (a, b) in sorted(self._behind.items())}
        rebuilds = [{k.decode(): v.decode() for k, v in plan.items() if k != b"ranges"}
                    for plan in view.plans if plan]
        if rebuilds:
            out["rebuilds"] = rebuilds
        return out

    def close(self) -> None:
        if self._behind_task is not None:
            self._behind_task.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _evicting(policy: Any) -> bool:
    """Whether CONFIG GET maxmemory-policy names a policy that evicts (refused: assume not)."""
    if isinstance(policy, Exception) or not policy:
        return False
    value = next(iter(policy.values()))
    return (value.decode() if isinstance(value, bytes) else str(value)) != "noeviction"


def _iso(epoch: int | None) -> str:
    return datetime.fromtimestamp(epoch or 0, UTC).isoformat(timespec="seconds")
