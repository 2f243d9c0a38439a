"""Burst: a steady rate, a burst, the steady rate again; consumer lag per partition and worker
throughput over time, peak lag and time to drain, then the all-time-record profile.

Lag is sampled every 0.5 s with streaming.offsets.group_lag; the broker's append rate comes from
the high watermarks' deltas and the workers' throughput from the committed offsets' deltas. The
burst rates are what the load generator offered; the rates it actually reached are reported from
the broker's side, since one Python producer on a shared two-core machine may not reach them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench import harness
from bench.report import ScenarioResult, percentile, pyplot, rates, save
from bench.scenarios import Context

NAME = "burst"
TITLE = "Steady → 10x burst → steady, and the all-time-record burst: lag, throughput, drain time"
RECORD_RATE = 143_199  # Tweets/s, the all-time record (10 s)


@dataclass
class Profile:
    name: str
    steady: float  # messages/s
    duration: float  # seconds of the whole run
    burst_rate: float
    burst_seconds: float


def profiles(quick: bool) -> list[Profile]:
    if quick:
        return [Profile("10x burst", 1000, 20, 10_000, 4),
                Profile("record, scaled 1/10 (quick)", 1000, 12, RECORD_RATE / 10, 3)]
    return [Profile("10x burst", 2000, 60, 20_000, 10),
            Profile("all-time record", 2000, 30, RECORD_RATE, 10)]


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
                _profile(ctx, ns, sampler, profile, result, lo, hi)
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


def _profile(ctx: Context, ns: harness.Namespace, sampler: harness.LagSampler, profile: Profile,
             result: ScenarioResult, lo: float, hi: float) -> None:
    s = ns.settings
    offset = time.time() - time.monotonic()
    first = len(sampler.samples)
    gen = harness.LoadGen(s, "--rate", str(profile.steady), "--duration", str(profile.duration),
                          "--burst", f"{profile.burst_rate:.0f}:{profile.burst_seconds}",
                          log_path=ctx.path("burst-loadgen.log"))
    began = time.monotonic()
    while gen.running:
        ctx.progress(lo + (hi - lo) * 0.6 * min(1.0, (time.monotonic() - began) / profile.duration),
                     f"{profile.name}: publishing")
        time.sleep(0.25)
    final = gen.wait()
    if gen.burst is None:
        raise RuntimeError(f"the load generator did not report its burst window: {final}")
    burst_start, burst_end = (w - offset for w in gen.burst)  # wall -> monotonic
    ok, _ = harness.wait_applied(s, timeout=600, on_poll=lambda _t, n, tot: ctx.progress(
        lo + (hi - lo) * (0.6 + 0.4 * n / max(tot, 1)), f"{profile.name}: draining"))
    time.sleep(1.5)  # a few samples of the drained state
    samples = sampler.samples[first:]
    t0 = samples[0].t
    appended = [(x.t, x.total_high) for x in samples]
    committed = [(x.t, x.total_committed) for x in samples]
    append_rate, consume_rate = rates(appended), rates(committed, span=4)
    in_burst = [r for t, r in append_rate if burst_start + 0.5 <= t <= burst_end + 0.5]
    burst_msgs = _between(appended, burst_start, burst_end)
    achieved_burst = burst_msgs / (burst_end - burst_start)
    steady = [r for t, r in append_rate if t < burst_start - 0.5 and t > t0 + 1.5]
    pre_lag = [x.total_lag for x in samples if t0 + 2 < x.t < burst_start]
    threshold = max(2 * percentile(pre_lag, 95) if pre_lag else 0, profile.steady * 1.0)
    peak = max(samples, key=lambda x: x.total_lag)
    drained_at = next((x.t for x in samples if x.t > max(burst_end, peak.t)
                       and x.total_lag <= threshold), None)
    name = profile.name
    result.add(f"{name}: offered steady / burst rate",
               f"{profile.steady:,.0f} / {profile.burst_rate:,.0f} for {profile.burst_seconds:g} s",
               "msg/s")
    result.add(f"{name}: achieved steady append rate (median)", percentile(steady, 50), "msg/s")
    result.add(f"{name}: achieved burst append rate (mean over the burst)", achieved_burst,
               "msg/s", f"offered {profile.burst_rate:,.0f}")
    result.add(f"{name}: achieved burst append rate (best 0.5 s)", max(in_burst, default=0.0),
               "msg/s")
    result.add(f"{name}: load generator overall", gen.append_rate(), "msg/s")
    result.add(f"{name}: peak consumer lag (all partitions)", peak.total_lag, "messages")
    result.add(f"{name}: peak lag of one partition", max(max(x.lag.values()) for x in samples),
               "messages")
    result.add(f"{name}: peak worker throughput (committed offsets, 2 s window)",
               max((r for _, r in consume_rate), default=0.0), "msg/s")
    drain = (drained_at - burst_end) if drained_at is not None else float("nan")
    result.add(f"{name}: time to drain after the burst (lag <= {threshold:,.0f})", drain, "s",
               "drains before the run ends", drained_at is not None and ok)
    if achieved_burst < 0.95 * profile.burst_rate:
        result.note(f"{name}: the load generator (one Python process, on the same two cores as "
                    f"the stack and the workers) reached {achieved_burst:,.0f} msg/s of the "
                    f"{profile.burst_rate:,.0f} offered ({achieved_burst / profile.burst_rate:.0%}), "
                    f"so the burst carried {burst_msgs:,.0f} messages instead of "
                    f"{profile.burst_rate * profile.burst_seconds:,.0f}.")
    result.plots.append(_plot(ctx, profile, samples, append_rate, consume_rate,
                              (burst_start, burst_end), threshold))


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


def _plot(ctx: Context, profile: Profile, samples, append_rate, consume_rate, burst,
          threshold: float) -> str:
    plt = pyplot()
    t0 = samples[0].t
    fig, (a, b) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for p in sorted(samples[0].lag):
        a.plot([x.t - t0 for x in samples], [x.lag.get(p, 0) for x in samples], label=f"p{p}")
    a.plot([x.t - t0 for x in samples], [x.total_lag for x in samples], "k--", label="total")
    a.axhline(threshold, color="gray", linestyle=":", label="drained")
    a.set_ylabel("consumer lag (messages)")
    a.legend(ncol=4, fontsize=8)
    b.plot([t - t0 for t, _ in append_rate], [r for _, r in append_rate], label="appended (broker)")
    b.plot([t - t0 for t, _ in consume_rate], [r for _, r in consume_rate],
           label="committed (workers, 2 s window)")
    b.set_ylabel("messages/s")
    b.set_xlabel("seconds")
    b.legend()
    for ax in (a, b):
        ax.axvspan(burst[0] - t0, burst[1] - t0, color="orange", alpha=0.15)
    a.set_title(f"{profile.name}: {profile.steady:,.0f}/s, burst {profile.burst_rate:,.0f}/s "
                f"for {profile.burst_seconds:g} s")
    slug = "".join(c if c.isalnum() else "-" for c in profile.name.lower()).strip("-")
    return save(fig, ctx.out_dir, f"burst-{slug}.png")
