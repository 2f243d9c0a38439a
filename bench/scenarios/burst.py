"""Burst: a steady rate, a burst, the steady rate again; consumer lag per partition and worker
throughput over time, peak lag and time to drain, then the all-time-record profile.

The record (143,199 Tweets/s for 10 s, Twitter's all-time high) is played at full scale on the
full suite: two load-generator processes (`bench.loadgen --processes 2`, `streaming.produce_job`)
make the burst's messages ahead and wait (`--go-file`); Kafka's own producer
(`bench.kafka_ceiling`, ProducerPerformance appending as many of the same payloads) is measured
then, and the generator plays 2,000/s, the record for 10 s, 2,000/s right after, so the achieved
rate reads against what the broker took on this machine moments before. During that burst the
consumers run at the lowest CPU priority (nice 19), and at their own again once it is over
(where the bench may raise a priority back, as root; it says so where it may not): the load
generator stands in for the firehose, which in a deployment does not share the workers' cores,
so the workers get what the burst leaves and drain the lag after it. The quick suite plays the
record at 1/10 of its rate for 3 s and says so.

Lag is sampled every 0.5 s with streaming.offsets.group_lag; the broker's append rate comes from
the high watermarks' deltas and the workers' throughput from the committed offsets' deltas. The
lag counts as drained once it is back under one second of steady traffic (or twice the steady
state's own 95th percentile, when that is higher).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import harness, kafka_ceiling
from bench.report import ScenarioResult, percentile, pyplot, rate_between, rates, save
from bench.scenarios import Context

NAME = "burst"
TITLE = "Steady → 10x burst → steady, and the all-time-record burst: lag, throughput, drain time"
RECORD_RATE = 143_199  # Tweets/s, the all-time record (10 s)
RECORD_TARGET = 140_000  # the rate the full record profile must be appended at, or at least...
CEILING_SHARE = 0.8  # ... this share of Kafka's own producer in the same run, where that is lower
BURST_NICE = 19  # the consumers' CPU priority during the record's burst


@dataclass
class Profile:
    name: str
    steady: float  # messages/s
    duration: float  # seconds of the whole run
    burst_rate: float
    burst_seconds: float
    scale: str = ""  # how it relates to the record
    processes: int = 1  # load-generator processes
    record: bool = False  # the record at full scale: Kafka's ceiling beside it, the rate gated


def profiles(quick: bool) -> list[Profile]:
    if quick:
        return [Profile("10x burst", 1000, 20, 10_000, 4),
                Profile("record, scaled 1/10 (quick)", 1000, 12, RECORD_RATE / 10, 3,
                        scale=f"1/10 of the record's {RECORD_RATE:,}/s, for 3 s of its 10 s")]
    return [Profile("10x burst", 2000, 60, 20_000, 10),
            Profile("all-time record", 2000, 30, RECORD_RATE, 10,
                    scale=f"full: {RECORD_RATE:,}/s for 10 s", processes=2, record=True)]


def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(NAME, TITLE)
    plan = profiles(ctx.quick)
    with harness.namespace(ctx.base, NAME) as ns:
        s = ns.settings
        consumers = harness.Consumers(s, ctx.path("burst-consumers.log"))
        consumers.start(2)
        consumers.wait_ready(2)
        with harness.LagSampler(s, 0.5) as sampler:
            for i, profile in enumerate(plan):
                lo, hi = i / len(plan), (i + 1) / len(plan)
                _profile(ctx, ns, sampler, profile, result, lo, hi,
                         consumers if profile.record else None)
        codes = consumers.stop()
        ctx.progress(0.97, "checking counts")
        truth = harness.Truth.of(harness.read_topic(s))
        verdict = harness.verify(s, truth)
        result.check("nothing lost or double-counted (ClickHouse and Redis = unique input)",
                     verdict.ok, "; ".join(verdict.problems) or
                     f"{len(truth.tweets):,} Tweets, {len(truth.deleted):,} deletes")
        result.check("no worker crashed", consumers.tracebacks() == 0 and all(c == 0 for c in codes),
                     f"exit codes {codes}, {consumers.tracebacks()} tracebacks")
    return result


def _ceiling(ctx: Context, ns: harness.Namespace, result: ScenarioResult,
             profile: Profile) -> float:
    """Kafka's own producer ceiling (msg/s), measured now."""
    ctx.progress(0.5, f"{profile.name}: Kafka's own producer (ProducerPerformance)")
    records = int(profile.burst_rate * profile.burst_seconds)
    with tempfile.TemporaryDirectory(prefix="burst-ceiling-") as tmp:
        payloads = kafka_ceiling.payload_file(Path(tmp) / "payloads.txt")
        ceiling = kafka_ceiling.producer_performance(ns.settings, records, payloads)
    result.add(f"{profile.name}: Kafka's own producer, same run (ProducerPerformance, "
               f"{records:,} of the same payloads, unpaced)", ceiling.per_second, "msg/s")
    result.note(f"Kafka's producer ceiling: `{ceiling.command}`")
    return ceiling.per_second


def _set_priority(consumers: harness.Consumers, nice: int) -> bool:
    """Every consumer process's CPU priority; False where the OS refuses (raising it back
    needs root)."""
    try:
        for proc in consumers.procs:  # started in sessions of their own: one process group each
            os.setpriority(os.PRIO_PGRP, proc.pid, nice)
    except PermissionError:
        return False
    return True


def _profile(ctx: Context, ns: harness.Namespace, sampler: harness.LagSampler, profile: Profile,
             result: ScenarioResult, lo: float, hi: float,
             yielding: harness.Consumers | None) -> None:
    """Play the profile; for the record, measure Kafka's own producer once the load generator
    has made its messages, just before it starts. `yielding`: consumers that yield the CPU
    during the burst."""
    s = ns.settings
    offset = time.time() - time.monotonic()
    go = ctx.path("burst-go")
    go.unlink(missing_ok=True)
    gen = harness.LoadGen(s, "--rate", str(profile.steady), "--duration", str(profile.duration),
                          "--burst", f"{profile.burst_rate:.0f}:{profile.burst_seconds}",
                          "--processes", str(profile.processes), "--go-file", str(go),
                          log_path=ctx.path("burst-loadgen.log"))
    while gen.running and not any(d.get("ready") for d in gen.progress):
        ctx.progress(lo, f"{profile.name}: making the messages ahead")
        time.sleep(0.25)
    ceiling = _ceiling(ctx, ns, result, profile) if profile.record else None
    if yielding is not None:
        _set_priority(yielding, BURST_NICE)
    go.touch()
    began = time.monotonic()
    while gen.running:
        if yielding is not None and gen.burst and time.time() > gen.burst[1] + 1.0:
            if not _set_priority(yielding, 0):
                result.note(f"{profile.name}: the consumers stayed at nice {BURST_NICE} after "
                            "the burst (raising a priority back needs root), which slows the "
                            "drain while anything else runs.")
            yielding = None
        ctx.progress(lo + (hi - lo) * 0.6 * min(1.0, (time.monotonic() - began) /
                                                profile.duration), f"{profile.name}: publishing")
        time.sleep(0.25)
    final = gen.wait()
    if gen.burst is None or not final.get("started"):
        raise RuntimeError(f"the load generator did not report its burst window: {final}")
    started = final["started"] - offset  # wall -> monotonic
    burst_start, burst_end = (w - offset for w in gen.burst)
    ok, _ = harness.wait_applied(s, timeout=600, on_poll=lambda _t, n, tot: ctx.progress(
        lo + (hi - lo) * (0.6 + 0.4 * n / max(tot, 1)), f"{profile.name}: draining"))
    time.sleep(1.5)  # a few samples of the drained state
    series = _Series([x for x in sampler.samples if x.t >= started - 1.0],
                     (burst_start, burst_end), profile)
    _figures(result, profile, series, final, gen, ceiling, ok)
    result.plots.append(_plot(ctx, profile, series, ceiling))


class _Series:
    """The profile's samples and what is derived from them."""

    def __init__(self, samples: list[harness.LagSample], burst: tuple[float, float],
                 profile: Profile) -> None:
        self.samples, self.burst = samples, burst
        self.t0 = samples[0].t
        self.appended = [(x.t, x.total_high) for x in samples]
        self.committed = [(x.t, x.total_committed) for x in samples]
        self.append_rate, self.consume_rate = rates(self.appended), rates(self.committed, span=4)
        # drained: back under one second of steady traffic, or twice the steady state's 95th
        # percentile of lag if that is higher (a lag never under the threshold never drains)
        pre_lag = [x.total_lag for x in samples if self.t0 + 2 < x.t < burst[0]]
        self.threshold = max(2 * percentile(pre_lag, 95) if pre_lag else 0, profile.steady)


def _figures(result: ScenarioResult, profile: Profile, series: _Series, final: dict,
             gen: harness.LoadGen, ceiling: float | None, applied: bool) -> None:
    name, (burst_start, burst_end) = profile.name, series.burst
    samples, threshold = series.samples, series.threshold
    steady = [r for t, r in series.append_rate if series.t0 + 2.5 < t < burst_start - 0.5]
    peak = max(samples, key=lambda x: x.total_lag)
    drained_at = next((x.t for x in samples if x.t > max(burst_end, peak.t)
                       and x.total_lag <= threshold), None)
    result.add(f"{name}: offered steady / burst rate",
               f"{profile.steady:,.0f} / {profile.burst_rate:,.0f} for {profile.burst_seconds:g} s",
               "msg/s", profile.scale)
    result.add(f"{name}: messages made ahead by the load generator",
               f"{final.get('ahead', 0):,} in {final.get('ahead_seconds', 0):.1f} s "
               f"({profile.processes} process{'es' if profile.processes > 1 else ''})")
    result.add(f"{name}: achieved steady append rate (median)", percentile(steady, 50), "msg/s")
    _burst_rates(result, profile, series, ceiling)
    result.add(f"{name}: load generator overall", gen.append_rate(), "msg/s")
    result.check(f"{name}: every message acknowledged",
                 final.get("failed") == 0 and final.get("undelivered") == 0
                 and final.get("attempted") == final.get("delivered"),
                 f"{final.get('delivered', 0):,}/{final.get('attempted', 0):,}")
    result.add(f"{name}: peak consumer lag (all partitions)", peak.total_lag, "messages")
    result.add(f"{name}: peak lag of one partition", max(max(x.lag.values()) for x in samples),
               "messages")
    result.add(f"{name}: peak worker throughput (committed offsets, 2 s window)",
               max((r for _, r in series.consume_rate), default=0.0), "msg/s")
    drain = (drained_at - burst_end) if drained_at is not None else float("nan")
    result.add(f"{name}: time to drain after the burst (lag <= {threshold:,.0f})", drain, "s",
               "drains before the run ends", drained_at is not None and applied)
    if drained_at is not None and drained_at > burst_end + 1:
        result.add(f"{name}: worker throughput during the drain (committed offsets)",
                   _between(series.committed, burst_end, drained_at) / (drained_at - burst_end),
                   "msg/s")


def _burst_rates(result: ScenarioResult, profile: Profile, series: _Series,
                 ceiling: float | None) -> None:
    """How fast the broker appended the burst. Sustained: 80% of the burst's messages over the
    time from its 10% to its 90% mark (the broker appends a burst a fraction of a second after
    it is sent, and its edges are ramps, which a fixed window counts against it); that is the
    record's gate. Beside it the mean over the burst's window and the best 0.5 s."""
    name, (start, end) = profile.name, series.burst
    window_msgs = _between(series.appended, start, end)
    window = window_msgs / (end - start)
    base = _between(series.appended, series.t0, start)
    tail = [(t, v - series.appended[0][1] - base) for t, v in series.appended
            if start - 1.0 <= t <= end + 3.0]
    sustained = rate_between(tail, 0.1, 0.9)
    best = max((r for t, r in series.append_rate if start + 0.5 <= t <= end + 0.5), default=0.0)
    if profile.record and ceiling:
        # the burst is paced: it can reach Kafka's ceiling only where that is below the record
        target = min(RECORD_TARGET, CEILING_SHARE * ceiling)
        result.add(f"{name}: burst append rate, sustained (10%→90% of its messages)", sustained,
                   "msg/s", f">= {target:,.0f} (the lower of {RECORD_TARGET:,} and "
                   f"{CEILING_SHARE:.0%} of Kafka's {ceiling:,.0f}; {sustained / ceiling:.0%} "
                   "of it)", sustained >= target)
    else:
        result.add(f"{name}: burst append rate, sustained (10%→90% of its messages)", sustained,
                   "msg/s", f"offered {profile.burst_rate:,.0f}")
    result.add(f"{name}: burst append rate, mean over the burst's window", window, "msg/s")
    result.add(f"{name}: burst append rate, best 0.5 s", best, "msg/s")
    if sustained < 0.95 * profile.burst_rate:
        result.note(f"{name}: the burst was appended at {sustained:,.0f} msg/s of the "
                    f"{profile.burst_rate:,.0f} offered ({sustained / profile.burst_rate:.0%}); "
                    f"its window carried {window_msgs:,.0f} messages of "
                    f"{profile.burst_rate * profile.burst_seconds:,.0f}.")


def _between(points: list[tuple[float, int]], start: float, end: float) -> float:
    """Growth of a cumulative series between two times (linear interpolation)."""
    def at(t: float) -> float:
        prev = points[0]
        for p in points:
            if p[0] >= t:
                if p[0] == prev[0]:
                    return p[1]
                return prev[1] + (p[1] - prev[1]) * (t - prev[0]) / (p[0] - prev[0])
            prev = p
        return points[-1][1]

    return at(end) - at(start)


def _plot(ctx: Context, profile: Profile, series: _Series, ceiling: float | None) -> str:
    plt = pyplot()
    samples, t0, burst = series.samples, series.t0, series.burst
    fig, (a, b) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for p in sorted(samples[0].lag):
        a.plot([x.t - t0 for x in samples], [x.lag.get(p, 0) for x in samples], label=f"p{p}")
    a.plot([x.t - t0 for x in samples], [x.total_lag for x in samples], "k--", label="total")
    a.axhline(series.threshold, color="gray", linestyle=":", label="drained")
    a.set_ylabel("consumer lag (messages)")
    a.legend(ncol=4, fontsize=8)
    b.plot([t - t0 for t, _ in series.append_rate], [r for _, r in series.append_rate],
           label="appended (broker)")
    b.plot([t - t0 for t, _ in series.consume_rate], [r for _, r in series.consume_rate],
           label="committed (workers, 2 s window)")
    if ceiling:
        b.axhline(ceiling, color="tab:red", linestyle="--",
                  label=f"Kafka's own producer, same run ({ceiling:,.0f}/s)")
    b.set_ylabel("messages/s")
    b.set_xlabel("seconds")
    b.legend()
    for ax in (a, b):
        ax.axvspan(burst[0] - t0, burst[1] - t0, color="orange", alpha=0.15)
    a.set_title(f"{profile.name}: {profile.steady:,.0f}/s, burst {profile.burst_rate:,.0f}/s "
                f"for {profile.burst_seconds:g} s" + (f" ({profile.scale})" if profile.scale else ""))
    slug = "".join(c if c.isalnum() else "-" for c in profile.name.lower()).strip("-")
    return save(fig, ctx.out_dir, f"burst-{slug}.png")
