"""Crash: workers are killed with SIGKILL at random moments while Tweets (with 5% duplicates and
compliance deletes) stream in; each dead worker is replaced, as an orchestrator would. The final
counts in ClickHouse and Redis must equal the unique input exactly.
"""

from __future__ import annotations

import os
import random
import signal
import time

from bench import harness
from bench.report import ScenarioResult, pyplot, save
from bench.scenarios import Context

NAME = "crash"
TITLE = "kill -9 random workers during a run: final counts equal the unique input exactly"


def run(ctx: Context) -> ScenarioResult:
    rate, seconds, kills = ((600, 10, 1) if ctx.options.get("tiny") else
                            (1500, 24, 3) if ctx.quick else (2500, 90, 8))
    result = ScenarioResult(NAME, TITLE)
    rng = random.Random(7)
    with harness.namespace(ctx.base, NAME) as ns:
        s = ns.settings
        consumers = harness.Consumers(s, ctx.path("crash-consumers.log"))
        consumers.start(2)
        consumers.wait_ready(2)
        killed: list[tuple[float, int]] = []
        with harness.LagSampler(s, 0.5) as sampler:
            gen = harness.LoadGen(s, "--rate", str(rate), "--duration", str(seconds),
                                  "--duplicates", "0.05", log_path=ctx.path("crash-loadgen.log"))
            began = time.monotonic()
            due = sorted(rng.uniform(0.1, 0.9) * seconds for _ in range(kills))
            while gen.running or due:
                elapsed = time.monotonic() - began
                ctx.progress(0.7 * min(1.0, elapsed / seconds),
                             f"{len(killed)}/{kills} workers killed")
                if due and elapsed >= due[0]:
                    due.pop(0)
                    victims = consumers.worker_pids()
                    if victims:
                        victim = rng.choice(victims)
                        os.kill(victim, signal.SIGKILL)
                        killed.append((time.monotonic(), victim))
                        consumers.start(1)  # the replacement
                if not gen.running and not due:
                    break
                time.sleep(0.1)
            final = gen.wait()
            ctx.progress(0.7, "draining")
            drain_began = time.monotonic()
            done, _ = harness.wait_applied(s, timeout=900, on_poll=lambda _t, n, tot:
                                           ctx.progress(0.7 + 0.2 * n / max(tot, 1), "draining"))
            drain_s = time.monotonic() - drain_began
        consumers.stop()
        ctx.progress(0.92, "checking counts")
        truth = harness.Truth.of(harness.read_topic(s))
        verdict = harness.verify(s, truth)
        result.add("workers killed with SIGKILL (each replaced)", len(killed), "", f"{kills}",
                   len(killed) == kills)
        result.add("messages published", truth.messages, "",
                   f"{final.get('attempted', 0):,} acknowledged",
                   final.get("failed", 1) == 0 and truth.messages == final.get("attempted"))
        result.add("unique Tweets / deletes / duplicate copies in the input",
                   f"{len(truth.tweets):,} / {len(truth.deleted):,} / "
                   f"{truth.tweet_events - len(truth.tweets):,}")
        result.check("all applied after the last kill", done, f"drained in {drain_s:.1f} s")
        result.check("final counts = unique input exactly (ClickHouse FINAL, deletes, Redis "
                     "per-minute counts, hourly hashtags, seen ids)", verdict.ok,
                     "; ".join(verdict.problems) or
                     f"{verdict.clickhouse['live_tweets']:,} live Tweets everywhere")
        result.note("A killed worker's partitions move to the survivors after the session timeout "
                    "(10 s); the batch it had in hand is processed again from the last commit: "
                    "ClickHouse receives those rows twice and collapses them, the Redis watermarks "
                    "and `seen` hashes keep the counters from moving twice.")
        result.plots.append(_plot(ctx, sampler.samples, killed))
    return result


def _plot(ctx: Context, samples: list[harness.LagSample], killed) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4))
    if samples:
        t0 = samples[0].t
        for p in sorted(samples[0].lag):
            ax.plot([x.t - t0 for x in samples], [x.lag.get(p, 0) for x in samples], label=f"p{p}")
        for i, (t, _) in enumerate(killed):
            ax.axvline(t - t0, color="red", linestyle="--", label="kill -9" if i == 0 else None)
    ax.set_xlabel("seconds")
    ax.set_ylabel("consumer lag (messages)")
    ax.legend(ncol=4, fontsize=8)
    ax.set_title("lag per partition; red: a worker killed (and replaced)")
    return save(fig, ctx.out_dir, "crash.png")
