"""Heal: Redis loses the hot tier while Tweets keep arriving; how long until the consumers have
noticed, and until the hot tier is rebuilt, exact (docs/effectively-once.md#when-redis-loses-data).

Two sizes: the demo's data (its 100,000 Tweets of history over a day) and a larger run (quick:
300,000; full: 1,000,000; `options={"heal_sizes": [10_000_000]}` for more). Each: the history is
published and consumed by two workers, a live load of 300 Tweets/s (the current minutes) starts,
and every key of the namespace is deleted at once (one Lua script: on this shared Redis that is
what a FLUSHALL does to one namespace). Measured: from the loss to the consumers noticing it (the
history marker turns `pending`) and to the hot tier complete again, and the rebuild's rate.
Required: every counter and sorted set of the history's hours (those before the live load) equal
to what they were before the loss.
"""

from __future__ import annotations

import time

from bench import harness
from bench.report import ScenarioResult
from bench.scenarios import Context
from tweetflow import hot_history as hh
from tweetflow.clients import redis_client
from tweetflow.hot_keys import split_platform
from tweetflow.settings import Settings

NAME = "heal"
TITLE = "Redis loses the hot tier mid-ingest: time to notice, time to heal, counts exact"
DEMO_TWEETS = 100_000  # tweetflow/app/demo.py: HISTORY_TWEETS
LIVE_RATE = 300
# Deletes every key of a namespace in one step, as a FLUSHALL would (a SCAN-and-DEL from outside
# would interleave with the consumers' writes, which no real loss does).
_FLUSH_NAMESPACE = """
local cursor = '0'
repeat
  local reply = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
  cursor = reply[1]
  for _, key in ipairs(reply[2]) do redis.call('UNLINK', key) end
until cursor == '0'
return 0
"""


def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(NAME, TITLE)
    sizes = ctx.options.get("heal_sizes") or [DEMO_TWEETS, 300_000 if ctx.quick else 1_000_000]
    for i, size in enumerate(sizes):
        label = "the demo's data" if size == DEMO_TWEETS else f"{size:,} Tweets"
        lo, hi = i / len(sizes), (i + 1) / len(sizes)
        with harness.namespace(ctx.base, f"{NAME}{i}") as ns:
            _run(ctx, ns.settings, size, label, result, lo, hi)
    return result


def _run(ctx: Context, s: Settings, size: int, label: str, result: ScenarioResult,
         lo: float, hi: float) -> None:
    def progress(at: float, text: str) -> None:
        ctx.progress(lo + (hi - lo) * at, f"{label}: {text}")

    progress(0.0, f"publishing {size:,} Tweets over the last day")
    harness.produce(s, "--rate", "0", "--duration", "0", "--count", str(size),
                    "--history-hours", "24", log_path=ctx.path(f"heal-{size}-loadgen.log"),
                    timeout=3600)
    consumers = harness.Consumers(s, ctx.path(f"heal-{size}-consumers.log"))
    consumers.start(2)
    try:
        progress(0.2, "consuming the history")
        harness.require_applied(s, timeout=3600, what="the history")
        _wait(lambda: _history(s) is not None, 120, "the hot tier complete")
        live = harness.LoadGen(s, "--rate", str(LIVE_RATE), "--duration", "0", "--seed", "77",
                               log_path=ctx.path(f"heal-{size}-loadgen.log"))
        try:
            time.sleep(2)
            before = _old_buckets(s, time.time())
            progress(0.5, "deleting the namespace's keys; waiting for the rebuild")
            lost = time.monotonic()
            redis_client(s).eval(_FLUSH_NAMESPACE, 0, f"{s.redis_prefix}:*")
            noticed = _wait(lambda: _marker(s) is not None, 120, "the loss noticed")
            healed = _wait(lambda: _history(s) is not None, 7200, "the hot tier rebuilt")
        finally:
            live.stop()
        after = _old_buckets(s, time.time(), keys=set(before))
    finally:
        consumers.stop()
    plan = redis_client(s, decode_responses=True).hgetall(hh.heal_key(s.redis_prefix,
                                                                      s.topic_raw))
    rebuild = float(plan.get("done", 0)) - float(plan.get("started", 0))
    events = sum(int(r.split(":")[2]) - int(r.split(":")[1]) for r in plan.get("ranges", "").split())
    result.add(f"{label}: loss noticed after", noticed - lost, "s", "<= 5 s", noticed - lost <= 5)
    result.add(f"{label}: hot tier complete again after", healed - lost, "s", "minutes")
    result.add(f"{label}: rebuild ({plan.get('source', '?')}): offsets re-applied", events, "")
    if rebuild > 0:
        result.add(f"{label}: rebuild rate", events / rebuild, "msg/s")
    if float(plan.get("cpu", 0)) > 0:  # the rebuild thread's own CPU: its rate on an idle core
        cpu_us = float(plan["cpu"]) / max(events, 1) * 1e6
        result.add(f"{label}: rebuild CPU per message (its thread)", cpu_us, "µs")
        result.note(f"{label}: at {cpu_us:.0f} µs of CPU per message the rebuild alone would "
                    f"re-apply {1e6 / cpu_us:,.0f} msg/s on an idle core; 10 million in "
                    f"{1e7 * cpu_us / 1e6 / 60:.0f} min")
    differ = [k for k in before if before[k] != after.get(k)]
    result.check(f"{label}: history's counts after the rebuild equal those before the loss",
                 not differ, f"{len(before) - len(differ):,} of {len(before):,} keys equal"
                 + (f"; e.g. {differ[0]}: {before[differ[0]]} != {after.get(differ[0])}"
                    if differ else ""))
    progress(1.0, "done")


def _history(s: Settings) -> int | None:
    return hh.history_start(_marker(s))


def _marker(s: Settings) -> str | None:
    return redis_client(s, decode_responses=True).hget(hh.history_key(s.redis_prefix, s.topic_raw),
                                                       hh.FROM)


def _old_buckets(s: Settings, now: float, keys: set[str] | None = None) -> dict[str, object]:
    """Counters and sorted sets of the hours before the current one (the live load's Tweets are
    all in it), by key name."""
    state = harness.redis_state(s)
    hour = int(now) // 3600 * 3600 - 3600
    out = {}
    for name, value in state.items():
        parts = split_platform(name)[1].split(":")  # every platform's
        if parts[0] in ("n", "z") and int(parts[-1]) < hour:
            out[name] = value
    return out if keys is None else {k: out.get(k) for k in keys}


def _wait(condition, timeout: float, what: str) -> float:
    """Poll every 50 ms until `condition()`; the monotonic time it first held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.05)
    return time.monotonic()
