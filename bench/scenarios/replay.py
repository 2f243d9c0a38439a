"""Replay: `tweetflow replay --to earliest --execute` after a live ingest leaves every count identical, and a
full rebuild from earliest into a fresh database and key prefix reproduces every count too.

Rates compared: live ingest, the replay through the same group (each offset is recognised as
applied by the watermarks and skipped), and the rebuild (a new group doing the whole work again).
"""

from __future__ import annotations

import subprocess
import sys
import time

from bench import harness
from bench.report import ScenarioResult, pyplot, rate_between, save
from bench.scenarios import Context
from streaming.offsets import TopicProbe, group_lag
from tweetflow.clients import ensure_topics
from tweetflow.hot_keys import is_dedup_key
from tweetflow.schema import ensure_schema
from tweetflow.settings import PROJECT_ROOT, Settings

NAME = "replay"
TITLE = "Full replay from earliest: counts identical; replay and rebuild rates vs live ingest"


def snapshot(settings: Settings) -> dict:
    """Every count the pipeline produced: ClickHouse row counts and checksum, every hot key."""
    return {"clickhouse": harness.clickhouse_counts(settings), "redis": harness.redis_state(settings)}


def compare(a: dict, b: dict, *, same_group: bool = True) -> list[str]:
    """Differences between two snapshots (first few). `same_group=False` (a rebuild by another
    consumer group) compares the counts only: not the insert times (see clickhouse_counts), nor
    the hot tier's dedup state, laid out by how the ids arrived (hot_keys.is_dedup_key)."""
    problems = [f"clickhouse {k}: {v} != {b['clickhouse'].get(k)}"
                for k, v in a["clickhouse"].items() if b["clickhouse"].get(k) != v
                and (same_group or k not in harness.STORED_ROW_COUNTS)]
    ra, rb = a["redis"], b["redis"]
    keys = {k for k in set(ra) | set(rb) if same_group or not is_dedup_key(k)}
    problems += [f"redis {k}: {str(ra.get(k))[:60]} != {str(rb.get(k))[:60]}"
                 for k in sorted(keys) if ra.get(k) != rb.get(k)]
    return problems[:6] + ([f"... {len(problems) - 6} more"] if len(problems) > 6 else [])


def wait_committed(settings: Settings, timeout: float) -> tuple[bool, float]:
    """Until the group's committed offsets reach the high watermarks; (done, monotonic time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if sum(r.lag for r in group_lag(settings)) == 0:
                return True, time.monotonic()
        except Exception:
            pass
        time.sleep(0.25)
    return False, time.monotonic()


def _ingest(ctx: Context, settings: Settings, label: str, lo: float, hi: float):
    """Consume the topic from earliest into `settings`; (rate 10-90%, wall seconds, progress)."""
    consumers = harness.Consumers(settings, ctx.path(f"replay-{label}-consumers.log"))
    began = time.monotonic()
    consumers.start(2)
    done, points = harness.wait_applied(settings, timeout=900, on_poll=lambda _t, n, tot:
                                        ctx.progress(lo + (hi - lo) * n / max(tot, 1), label))
    codes = consumers.stop()
    rel = [(t - began, n) for t, n in points]
    return done and all(c == 0 for c in codes), rate_between(rel, 0.1, 0.9), rel[-1][0], rel


def run(ctx: Context) -> ScenarioResult:
    messages = 6_000 if ctx.options.get("tiny") else 20_000 if ctx.quick else 150_000
    result = ScenarioResult(NAME, TITLE)
    with harness.namespace(ctx.base, NAME) as ns:
        s = ns.settings
        ctx.progress(0.02, f"publishing {messages:,} messages (5% duplicates)")
        harness.produce(s, "--rate", "0", "--duration", "0", "--count", str(messages // 2),
                        "--duplicates", "0.05", "--history-hours", "1", processes=2,
                        log_path=ctx.path("replay-loadgen.log"))
        with TopicProbe(s) as probe:
            total = probe.total()
        ok, live_rate, live_s, live_points = _ingest(ctx, s, "live", 0.1, 0.4)
        result.check("live ingest complete", ok, f"{total:,} messages in {live_s:.1f} s")
        before = snapshot(s)
        truth = harness.Truth.of(harness.read_topic(s))
        verdict = harness.verify(s, truth)
        result.check("live counts = unique input", verdict.ok, "; ".join(verdict.problems) or
                     f"{len(truth.tweets):,} Tweets, {len(truth.deleted):,} deletes, "
                     f"{truth.tweet_events - len(truth.tweets):,} duplicate copies")

        ctx.progress(0.45, "tweetflow replay --to earliest --execute")
        replay = subprocess.run([sys.executable, "-m", "tweetflow.app.cli", "replay", "--to", "earliest",
                                 "--execute"],
                                cwd=PROJECT_ROOT, env=harness.child_env(s), capture_output=True,
                                text=True, check=False)
        result.check("`tweetflow replay --to earliest --execute` succeeded", replay.returncode == 0,
                     replay.stdout.strip().splitlines()[-1] if replay.returncode == 0
                     else (replay.stdout + replay.stderr)[-300:])
        consumers = harness.Consumers(s, ctx.path("replay-replay-consumers.log"))
        began = time.monotonic()
        consumers.start(2)
        done, finished = wait_committed(s, 600)
        codes = consumers.stop()
        replay_s = finished - began
        after = snapshot(s)
        differences = compare(before, after)
        result.check("every count identical after the replay", done and not differences,
                     "; ".join(differences) or
                     f"{len(after['redis']):,} hot keys and {len(after['clickhouse'])} ClickHouse "
                     "figures compared")
        result.check("replay consumers exited cleanly", all(c == 0 for c in codes), f"{codes}")

        ctx.progress(0.55, "rebuild into a fresh database and prefix")
        rebuilt_settings = ns.with_group("rebuild")
        ensure_topics(rebuilt_settings)
        ensure_schema(rebuilt_settings)
        ok, rebuild_rate, _rebuild_s, rebuild_points = _ingest(ctx, rebuilt_settings, "rebuild",
                                                              0.55, 0.95)
        rebuilt = snapshot(rebuilt_settings)
        differences = compare(before, rebuilt, same_group=False)
        result.check("rebuild from earliest reproduces every count", ok and not differences,
                     "; ".join(differences) or "identical (collapsed rows and every hot count)")
        result.note("ClickHouse is compared as readers see it (FINAL); the replay must also insert "
                    "nothing (its newest ingested_at unchanged). Rows as stored are not compared: "
                    "a batch re-processed after a rebalance is stored twice until a merge "
                    "collapses it.")

        result.add("live ingest rate (sustained, 10%→90%)", live_rate, "msg/s")
        result.add("live ingest wall time, incl. start-up", live_s, "s")
        result.add("replay through the same group (skipping applied offsets), incl. start-up",
                   total / replay_s, "msg/s")
        result.add("replay wall time, incl. start-up", replay_s, "s")
        result.add("rebuild into a fresh namespace (sustained)", rebuild_rate, "msg/s")
        result.add("rebuild / live rate", rebuild_rate / live_rate, "x")
        result.add("replay (skip) / live rate", total / replay_s / live_rate, "x")
        result.note(f"{total:,} messages; the replay re-reads every offset and the Redis watermarks "
                    "make the workers skip them without parsing, so its rate is bounded by the "
                    "fetch and the commit, and its wall time is mostly the workers' start-up.")
        result.plots.append(_plot(ctx, live_points, rebuild_points, total, replay_s))
    return result


def _plot(ctx: Context, live, rebuild, total: int, replay_s: float) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot([t for t, _ in live], [n for _, n in live], label="live ingest")
    ax.plot([t for t, _ in rebuild], [n for _, n in rebuild], label="rebuild (fresh namespace)")
    ax.plot([0, replay_s], [0, total], "--", label="replay, same group (start → end)")
    ax.set_xlabel("seconds since the consumers started")
    ax.set_ylabel("messages applied")
    ax.legend()
    return save(fig, ctx.out_dir, "replay.png")
