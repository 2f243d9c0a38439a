"""Outages: Redis, the ClickHouse endpoint and the Kafka broker are each stopped mid-run (30 s; quick:
10 s) and restarted with `Stack(settings).up()` while Tweets stream in and
the query service is asked about a closed window twice a second.

Requirements: nothing lost (every message applied exactly once, the producer lost nothing), the
pipeline catches up after each restart (time to recover), and the query service never answers a
wrong number: it falls back to the other store or fails with a clear error.

It runs on a private stack (bench/private_stack.py) so that stopping services does not disturb
anything else using the shared one.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bench import harness
from bench.private_stack import COMPONENTS, PrivateStack
from bench.report import ScenarioResult, percentile, pyplot, save
from bench.scenarios import Context

NAME = "outages"
TITLE = "Redis, the ClickHouse endpoint and Kafka each stopped mid-run: nothing lost, recovery, queries"
HISTORY_MINUTES = 15


@dataclass
class Probe:
    t: float  # monotonic
    start: int
    aligned: bool
    status: str  # "OK" or the gRPC status code name
    origin: str = ""
    total: int = -1
    message: str = ""
    expected: int = -1

    @property
    def verdict(self) -> str:
        if self.status != "OK":
            return "error"
        return "correct" if self.total == self.expected else "wrong"


@dataclass
class Phase:
    name: str
    down_at: float = 0.0
    restart_at: float = 0.0
    up_at: float = 0.0
    restart_s: float = 0.0
    recovered_at: float | None = None
    notes: list[str] = field(default_factory=list)


class Prober(threading.Thread):
    """TweetVolume over the closed window every 0.5 s, alternating a minute-aligned start (the hot
    path alone can answer it) and an unaligned one (its first seconds come from ClickHouse); every
    request unique (start.nanos), so the result cache never answers."""

    def __init__(self, settings, port: int, window: tuple[int, int]) -> None:
        super().__init__(daemon=True)
        self.port, self.window = port, window
        self.probes: list[Probe] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        import grpc

        from tweetflow.v1 import analytics_pb2 as pb
        from tweetflow.v1 import analytics_pb2_grpc as pb_grpc

        channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        stub = pb_grpc.AnalyticsServiceStub(channel)
        metadata = (("x-api-key", harness.BENCH_API_KEY),)
        k = 0
        while not self.stopped.is_set():
            k += 1
            aligned = k % 2 == 0
            start = self.window[0] if aligned else self.window[0] + 1 + k % 50
            request = pb.TweetVolumeRequest(granularity=pb.GRANULARITY_MINUTE)
            request.start.seconds, request.start.nanos = start, k
            request.end.seconds = self.window[1]
            probe = Probe(time.monotonic(), start, aligned, "OK")
            try:
                answer = stub.TweetVolume(request, metadata=metadata, timeout=5)
                probe.origin = pb.AnswerSource.Name(answer.origin).removeprefix("ANSWER_SOURCE_")
                probe.total = answer.total
            except grpc.RpcError as exc:
                probe.status = exc.code().name
                probe.message = (exc.details() or "")[:300]
            self.probes.append(probe)
            self.stopped.wait(max(0.0, 0.5 - (time.monotonic() - probe.t)))
        channel.close()


def run(ctx: Context) -> ScenarioResult:
    outage_s, rate = (10, 800) if ctx.quick else (30, 1500)
    result = ScenarioResult(NAME, TITLE)
    stack = PrivateStack(ctx.base)
    try:
        ctx.progress(0.01, "starting a private Kafka, Redis and ClickHouse endpoint")
        began = time.monotonic()
        stack.up()
        result.add("private stack start-up", time.monotonic() - began, "s")
        with harness.namespace(stack.settings, NAME) as ns:
            _run(ctx, ns, stack, result, outage_s, rate)
    finally:
        ctx.progress(0.98, "stopping the private stack")
        stack.down()
    return result


def _run(ctx: Context, ns: harness.Namespace, stack: PrivateStack, result: ScenarioResult,
         outage_s: float, rate: int) -> None:
    import tempfile
    from pathlib import Path

    s = ns.settings
    ctx.progress(0.1, "dbt: stg_tweets (the query service's fallback reads it)")
    with tempfile.TemporaryDirectory() as tmp:
        harness.run_dbt(s, "run", "--select", "path:models/staging", work_dir=Path(tmp))
    consumers = harness.Consumers(s, ctx.path("outages-consumers.log"))
    consumers.start(2)
    consumers.wait_ready(2)
    ctx.progress(0.15, f"history: {HISTORY_MINUTES} minutes of Tweets (the closed window)")
    history = 8 * HISTORY_MINUTES * 60
    harness.produce(s, "--rate", "0", "--duration", "0", "--count", str(history),
                    "--history-hours", str(HISTORY_MINUTES / 60), "--deletes", "0",
                    log_path=ctx.path("outages-loadgen.log"))
    harness.require_applied(s, timeout=180, what="the history before the outages")
    now = int(time.time())
    window = (now - HISTORY_MINUTES * 60 + 120) // 60 * 60, now // 60 * 60
    server, port = harness.start_query_server(s, ctx.path("outages-query.log"))
    prober = Prober(s, port, window)
    phases: list[Phase] = []
    try:
        with harness.LagSampler(s, 0.5) as sampler:
            gen = harness.LoadGen(s, "--rate", str(rate), "--duration", "0", "--deletes", "0",
                                  log_path=ctx.path("outages-loadgen.log"))
            prober.start()
            baseline_from = time.monotonic()
            harness.sleep_with_progress(6, ctx.bar, 0.2, 0.25, "baseline")
            base_lag = [x.total_lag for x in sampler.samples if x.t > baseline_from + 2]
            threshold = max(2 * percentile(base_lag, 95) if base_lag else 0.0, rate * 1.0)
            for i, name in enumerate(COMPONENTS):
                lo, hi = 0.25 + 0.6 * i / 3, 0.25 + 0.6 * (i + 1) / 3
                phases.append(_outage(ctx, stack, sampler, name, outage_s, threshold, lo, hi))
            ctx.progress(0.86, "stopping the load")
            final = gen.interrupt()
            prober.stopped.set()
            prober.join(10)
            done, _ = harness.wait_applied(s, timeout=600)
    finally:
        prober.stopped.set()
        harness.stop_process(server)
    codes = consumers.stop()
    ctx.progress(0.9, "checking counts")
    truth = harness.Truth.of(harness.read_topic(s))
    verdict = harness.verify(s, truth)
    _expected(prober.probes, truth, window[1])

    result.add("offered rate during the run", rate, "msg/s")
    result.add("outage length per component", outage_s, "s")
    result.check("producer lost nothing (every message acknowledged)",
                 final.get("failed") == 0 and final.get("undelivered") == 0
                 and final.get("attempted") == final.get("delivered"),
                 f"{final.get('delivered', 0):,}/{final.get('attempted', 0):,} acknowledged, "
                 f"errors {final.get('errors')}")
    result.check("nothing lost, nothing doubled (ClickHouse and Redis = unique input)",
                 done and verdict.ok, "; ".join(verdict.problems) or
                 f"{len(truth.tweets):,} Tweets in both stores")
    result.check("no worker crashed", all(c == 0 for c in codes) and consumers.tracebacks() == 0,
                 f"exit codes {codes}, {consumers.tracebacks()} tracebacks")
    wrong_total = 0
    for phase in phases:
        probes = [p for p in prober.probes if phase.down_at <= p.t <= phase.up_at]
        counts = {v: sum(p.verdict == v for p in probes) for v in ("correct", "wrong", "error")}
        wrong_total += counts["wrong"]
        origins = sorted({p.origin for p in probes if p.status == "OK"})
        errors = sorted({f"{p.status}: {p.message[:140]}" for p in probes if p.status != "OK"})
        recover = (phase.recovered_at - phase.up_at) if phase.recovered_at else float("nan")
        result.add(f"{phase.name}: restart until it answers", phase.restart_s, "s")
        result.add(f"{phase.name}: time to recover (lag back to <= {threshold:,.0f} after the "
                   "restart)", recover, "s", "recovers", phase.recovered_at is not None)
        result.add(f"{phase.name} down: queries correct / wrong / failed",
                   f"{counts['correct']} / {counts['wrong']} / {counts['error']}", "",
                   "0 wrong", counts["wrong"] == 0)
        aligned_ok = sum(p.verdict == "correct" for p in probes if p.aligned)
        unaligned_ok = sum(p.verdict == "correct" for p in probes if not p.aligned)
        result.note(f"{phase.name} down: {len(probes)} queries; answered from "
                    f"{', '.join(origins) or 'nowhere'} (aligned window correct {aligned_ok}, "
                    f"unaligned correct {unaligned_ok})"
                    + (f"; errors: {' | '.join(errors[:3])}" if errors else ""))
        result.notes.extend(phase.notes)
    outside = [p for p in prober.probes
               if not any(ph.down_at <= p.t <= ph.up_at for ph in phases)]
    bad_outside = [p for p in outside if p.verdict != "correct"]
    result.check("queries outside the outages all correct", not bad_outside and bool(outside),
                 f"{len(outside) - len(bad_outside)}/{len(outside)}"
                 + (f"; e.g. {bad_outside[0].status} {bad_outside[0].message[:100]} "
                    f"total {bad_outside[0].total} expected {bad_outside[0].expected}"
                    if bad_outside else ""))
    result.check("never a wrong number", wrong_total == 0 and not any(
        p.verdict == "wrong" for p in prober.probes), f"{len(prober.probes)} queries in all")
    result.note(f"Closed window {datetime.fromtimestamp(window[0], UTC):%H:%M}-"
                f"{datetime.fromtimestamp(window[1], UTC):%H:%M} UTC ({history:,} Tweets published "
                "beforehand with event times in it); queries alternate a minute-aligned start (the "
                "hot path alone can answer) and an unaligned one (its first seconds need ClickHouse).")
    result.plots.append(_plot(ctx, sampler.samples, prober.probes, phases))


def _outage(ctx: Context, stack: PrivateStack, sampler: harness.LagSampler, name: str,
            outage_s: float, threshold: float, lo: float, hi: float) -> Phase:
    phase = Phase(name)
    phase.down_at = time.monotonic()
    if name == "kafka":
        sampler.paused.set()  # lag cannot be read without the broker
    stack.stop(name)
    harness.sleep_with_progress(outage_s, ctx.bar, lo, lo + (hi - lo) * 0.4, f"{name} down")
    phase.restart_at = time.monotonic()
    ctx.progress(lo + (hi - lo) * 0.4, f"restarting {name}")
    phase.restart_s = stack.restart(name)
    phase.up_at = time.monotonic()
    sampler.paused.clear()
    deadline = phase.up_at + 300
    while time.monotonic() < deadline:
        ctx.progress(lo + (hi - lo) * 0.7, f"{name} back; waiting for the pipeline to catch up")
        recent = [x for x in sampler.samples if x.t > phase.up_at + 0.5]
        hit = next((x for x in recent if x.total_lag <= threshold), None)
        if hit is not None:
            phase.recovered_at = hit.t
            break
        time.sleep(0.5)
    return phase


def _expected(probes: list[Probe], truth: harness.Truth, end: int) -> None:
    """Fill in each probe's true answer: live Tweets created in [start, end)."""
    times = sorted(t.created_at.timestamp() for t in truth.live().values())
    from bisect import bisect_left

    for p in probes:
        p.expected = bisect_left(times, end) - bisect_left(times, p.start)


def _plot(ctx: Context, samples, probes: list[Probe], phases: list[Phase]) -> str:
    plt = pyplot()
    fig, (a, b) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    t0 = min([x.t for x in samples] + [p.t for p in probes])
    a.plot([x.t - t0 for x in samples], [x.total_lag for x in samples], "k-")
    a.set_ylabel("consumer lag (messages)")
    colors = {"correct": "tab:green", "wrong": "tab:red", "error": "tab:orange"}
    for verdict, color in colors.items():
        xs = [p.t - t0 for p in probes if p.verdict == verdict]
        ys = [(1 if p.aligned else 0) for p in probes if p.verdict == verdict]
        b.scatter(xs, ys, s=8, color=color, label=verdict)
    b.set_yticks([0, 1], ["unaligned", "aligned"])
    b.set_xlabel("seconds")
    b.legend(loc="center right")
    for ph in phases:
        for ax in (a, b):
            ax.axvspan(ph.down_at - t0, ph.up_at - t0, color="gray", alpha=0.2)
        a.text(ph.down_at - t0, a.get_ylim()[1] * 0.9, f" {ph.name} down", fontsize=8)
    a.set_title("lag and query answers; grey: the component is down (until it answers again)")
    return save(fig, ctx.out_dir, "outages.png")
