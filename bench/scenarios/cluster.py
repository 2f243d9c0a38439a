"""The cluster profile (three KRaft brokers with replication factor 3 and min.insync.replicas 2, a
six-node Redis Cluster, REDIS_MODE=cluster): its ingest throughput beside single nodes, then four
faults under steady ingest, each in a namespace of its own:

(a) kill -9 the broker leading the most partitions of the topic (restarted after the phase),
(b) kill -9 the Redis master serving the most hot shards (its replica takes over; the node comes
    back as a replica after the phase),
(c) scale the consumer group 2 -> 4 -> 1 (static members, cooperative-sticky),
(d) kill -9 a worker and restart it under its member id.

For each: the time from the event until every partition has applied (Redis watermarks) what the
topic held at the event, and until the group's lag is back under a threshold (twice the baseline's
p95, at least one second of the offered rate), the largest lag, and whether ClickHouse and the hot
tier equal the truth computed from the topic's bytes (bench/harness/recovery.py).

Throughput: bench/streaming_bench.py's measurement (`timed_ingest`), on a private single-node stack
and then on a private cluster profile, the same messages and workers, start-ups reported apart.
Both stacks run on free ports under temporary directories (bench/private_stack.py), started by the
code `tweetflow stack up [--profile cluster]` runs; the shared stack is never touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bench import harness
from bench.private_stack import PrivateStack
from bench.report import ScenarioResult, pyplot, save
from bench.scenarios import Context
from bench.streaming_bench import SPEC_MB_S, STACKS, IngestRun, add_ingest, timed_ingest
from streaming.consume_cli import default_workers
from tweetflow.settings import Settings

NAME = "cluster"
TITLE = ("Cluster profile: ingest beside single nodes; a broker, a Redis master and a worker "
         "killed, the group scaled 2 -> 4 -> 1, under steady ingest")
WITHIN = 0.85  # the target: cluster throughput within 15% of single nodes
FAULTS = {"broker": "kill -9 the broker leading the most partitions",
          "redis": "kill -9 the Redis master serving the most hot shards",
          "scale": "scale the consumer group 2 → 4 → 1",
          "worker": "kill -9 a worker, restart it under its member id"}


@dataclass
class Phase:
    """One fault under steady ingest: its events (monotonic time, label) and what followed."""

    fault: str
    rate: int
    began: float = 0.0
    ended: float = 0.0
    threshold: float = 0.0
    events: list[tuple[float, str]] = field(default_factory=list)
    recoveries: list[harness.Recovery] = field(default_factory=list)
    lag: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, total lag)
    extra: list[tuple[str, float, str]] = field(default_factory=list)  # figures of the fault
    notes: list[str] = field(default_factory=list)
    produced_ok: bool = False
    produced: str = ""
    exact: bool = False
    verdict: str = ""
    clean_exit: bool = False
    exits: str = ""


@dataclass
class Group:
    """`tweetflow consume --workers 1` processes, each with a fixed metrics port: its worker's
    static member id (streaming/consume_cli.py), so a restarted one rejoins as itself."""

    consumers: harness.Consumers
    procs: dict[str, tuple[int, subprocess.Popen]] = field(default_factory=dict)  # the latest

    def start(self, name: str) -> None:
        port = self.procs[name][0] if name in self.procs else harness.free_ports(1)
        self.procs[name] = (port, self.consumers.start(1, metrics_port=port))

    def stop(self, names: list[str]) -> None:
        """SIGTERM once each (a second one can land after the process restored its default
        handlers on the way out, and kill it), then wait; SIGKILL only one that lingers."""
        for name in names:
            self.procs[name][1].send_signal(signal.SIGTERM)
        for name in names:
            try:
                self.procs[name][1].wait(60)
            except subprocess.TimeoutExpired:
                harness.stop_process(self.procs[name][1], 1)

    def exit_codes(self) -> dict[str, int | None]:
        """Every process stopped; the exit codes of the latest of each name (not of one killed
        on purpose and started again)."""
        self.consumers.stop(60)
        return {n: p.returncode for n, (_, p) in self.procs.items()}


def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(NAME, TITLE)
    messages = int(ctx.options.get("messages") or (200_000 if ctx.quick else 300_000))
    workers = int(ctx.options.get("workers") or default_workers())
    runs: dict[str, IngestRun] = {}
    phases: list[Phase] = []
    for i, profile in enumerate(("single", "cluster")):
        stack = PrivateStack(ctx.base, profile)
        try:
            ctx.progress(0.01 + 0.2 * i, f"starting a private stack ({STACKS[profile]})")
            began = time.monotonic()
            stack.up()
            result.add(f"{profile}: start-up: private stack ({STACKS[profile]})",
                       time.monotonic() - began, "s")
            runs[profile] = _throughput(ctx, stack, result, profile, messages, workers,
                                        (0.02 + 0.2 * i, 0.2 + 0.2 * i))
            if profile == "cluster":
                phases = _faults(ctx, stack, result)
        finally:
            ctx.progress(0.99, "stopping the private stack")
            stack.down()
    single, cluster = runs["single"].sustained_mb, runs["cluster"].sustained_mb
    result.add("cluster / single nodes, sustained", cluster / single * 100, "%",
               f">= {WITHIN * 100:.0f}% (and >= {SPEC_MB_S:g} MB/s)",
               cluster >= WITHIN * single and cluster >= SPEC_MB_S)
    result.note(f"Throughput: {messages:,} messages a stack, `tweetflow consume --workers "
                f"{workers}` from earliest, sustained = 10%→90% of the messages applied "
                "(bench/streaming_bench.py); each private stack is started, measured and stopped "
                "in turn, so neither shares the cores with the other. CPU from /proc as in the "
                "throughput scenario; on the cluster, 'Kafka broker' and 'Redis' sum its three "
                "brokers (512 MiB heaps, the single broker's 1 GiB) and six Redis nodes.")
    result.plots.append(_plot_throughput(ctx, runs))
    if phases:
        result.plots.append(_plot_lag(ctx, phases))
    return result


def _throughput(ctx: Context, stack: PrivateStack, result: ScenarioResult, profile: str,
                messages: int, workers: int, span: tuple[float, float]) -> IngestRun:
    with harness.namespace(stack.settings, f"tput_{profile}") as ns:
        run = timed_ingest(ctx, ns.settings, messages, workers, log=f"cluster-{profile}-tput",
                           span=span, cluster=stack.cluster)
        verdict = harness.verify(ns.settings, harness.Truth.of(run.records))
    add_ingest(result, run, f"{profile}: ")
    result.check(f"{profile}: counts = unique input (ClickHouse FINAL and the hot tier)",
                 verdict.ok, "; ".join(verdict.problems) or "exact")
    cpu = run.meter.per_message(0.1, 0.9) if len(run.meter.samples) > 2 else {}
    if cpu:
        result.add(f"{profile}: CPU per message, sustained: "
                   + " / ".join(role.split(" (")[0] for role in cpu) + " / all",
                   " / ".join(f"{v:.1f}" for v in cpu.values()) + f" / {sum(cpu.values()):.1f}",
                   "µs")
    return run


# --- the faults ---------------------------------------------------------------------------------


def _faults(ctx: Context, stack: PrivateStack, result: ScenarioResult) -> list[Phase]:
    rate = int(ctx.options.get("fault_rate") or (1000 if ctx.quick else 2000))
    steady, tail = (6.0, 3.0) if ctx.quick else (15.0, 10.0)
    actions: dict[str, Callable[[Phase, Settings, Group, harness.LagSampler], None]] = {
        "broker": lambda ph, s, _g, sampler: _kill_broker(ph, s, stack, sampler),
        "redis": lambda ph, s, _g, sampler: _kill_master(ph, s, stack, sampler),
        "scale": _scale,
        "worker": _kill_worker}
    phases = []
    for i, fault in enumerate(FAULTS):
        lo = 0.42 + 0.56 * i / len(FAULTS)
        ctx.progress(lo, f"fault ({'abcd'[i]}) {fault} under {rate:,} msg/s")
        with harness.namespace(stack.settings, f"fault_{fault}") as ns:
            phase = Phase(fault, rate)
            try:
                _phase(ctx, ns.settings, phase, actions[fault], steady, tail)
            finally:
                _restore(phase, stack)  # before the namespace's topics are deleted
        _report(result, phase, "abcd"[i])
        phases.append(phase)
    return phases


def _phase(ctx: Context, s: Settings, phase: Phase,
           action: Callable[[Phase, Settings, Group, harness.LagSampler], None],
           steady: float, tail: float) -> None:
    """Two workers, steady ingest, the fault (its events recorded by `action`, which waits for
    the recovery of each), `tail` more seconds of ingest; then drain and compare with the truth."""
    group = Group(harness.Consumers(s, ctx.path(f"cluster-{phase.fault}-consumers.log")))
    gen = None
    try:
        group.start("a")
        group.start("b")
        group.consumers.wait_ready(2, timeout=120)
        with harness.LagSampler(s, 0.5, applied=True) as sampler:
            gen = harness.LoadGen(s, "--rate", str(phase.rate), "--duration", "0",
                                  "--duplicates", "0.05",
                                  log_path=ctx.path(f"cluster-{phase.fault}-loadgen.log"))
            phase.began = time.monotonic()
            time.sleep(steady)
            phase.threshold = harness.lag_threshold(sampler, phase.began + steady / 3, phase.rate)
            action(phase, s, group, sampler)
            time.sleep(tail)
            final = gen.interrupt()
            done, _ = harness.wait_applied(s, timeout=300)
            phase.ended = time.monotonic()
        codes = group.exit_codes()
    finally:
        if gen is not None:
            gen.stop()
        group.consumers.stop(10)  # stopped already, unless the phase failed
    phase.lag = [(x.t, x.total_lag) for x in sampler.samples]
    ends = [t for t, _ in phase.events[1:]] + [phase.ended]
    phase.recoveries = [harness.recovery(sampler, t, phase.threshold, s.topic_partitions, until)
                        for (t, _), until in zip(phase.events, ends, strict=True)]
    phase.produced_ok = (final.get("failed") == 0 and final.get("undelivered") == 0
                         and final.get("attempted") == final.get("delivered"))
    phase.produced = (f"{final.get('delivered', 0):,}/{final.get('attempted', 0):,} "
                      f"acknowledged, errors {final.get('errors')}")
    truth = harness.Truth.of(harness.read_topic(s))
    verdict = harness.verify(s, truth)
    phase.exact = done and verdict.ok
    phase.verdict = "; ".join(verdict.problems) or (
        f"{len(truth.live()):,} live Tweets of {truth.messages:,} messages in both stores"
        if done else "not everything applied")
    phase.clean_exit = all(c == 0 for c in codes.values())
    phase.exits = ", ".join(f"{n}: {c}" for n, c in codes.items())


def _wait_recovered(phase: Phase, s: Settings, sampler: harness.LagSampler, at: float,
                    timeout: float = 180.0) -> None:
    deadline = at + timeout
    while time.monotonic() < deadline:
        if harness.recovery(sampler, at, phase.threshold, s.topic_partitions).recovered_at is not None:
            return
        time.sleep(0.5)
    phase.notes.append(f"{phase.fault}: not recovered within {timeout:.0f} s of the event")


def _kill_broker(phase: Phase, s: Settings, stack: PrivateStack,
                 sampler: harness.LagSampler) -> None:
    from tweetflow.clients import kafka_admin

    assert stack.cluster is not None
    meta = kafka_admin(s).list_topics(s.topic_raw, timeout=10).topics[s.topic_raw]
    node, led = Counter(p.leader for p in meta.partitions.values()).most_common(1)[0]
    broker = stack.cluster.brokers[node - 1]
    os.kill(broker.proc.pid() or 0, signal.SIGKILL)
    phase.events.append((time.monotonic(), f"kill -9 broker {node}"))
    phase.notes.append(f"broker {node} led {led} of the topic's {len(meta.partitions)} "
                       "partitions when it was killed")
    _wait_recovered(phase, s, sampler, phase.events[-1][0])


def _kill_master(phase: Phase, s: Settings, stack: PrivateStack,
                 sampler: harness.LagSampler) -> None:
    from tweetflow.clients import redis_client
    from tweetflow.hot_keys import shard_tag

    assert stack.cluster is not None
    redis = stack.cluster.redis
    r = redis_client(s)
    served = Counter(r.get_node_from_key(shard_tag(shard)).port
                     for shard in range(s.hot_shard_count))
    victim = max(redis.masters(but_url_node=True), key=lambda node: served.get(node.port, 0))
    replica = next(n for n in redis.nodes if n.port != victim.port
                   and int(n.info("replication").get("master_port", 0)) == victim.port)
    os.kill(victim.proc.pid() or 0, signal.SIGKILL)
    at = time.monotonic()
    phase.events.append((at, f"kill -9 Redis master :{victim.port}"))
    phase.notes.append(f"the Redis master killed served {served.get(victim.port, 0)} of the "
                       f"{s.hot_shard_count} hot shards")
    promoted = _until(lambda: replica.info("replication")["role"] == "master"
                      and redis.healthy(), 60)
    phase.extra.append(("its replica took over (promoted, every live node cluster_state ok)",
                        promoted - at if promoted else float("nan"), "s"))
    _wait_recovered(phase, s, sampler, at)


def _scale(phase: Phase, s: Settings, group: Group, sampler: harness.LagSampler) -> None:
    at = time.monotonic()
    group.start("c")
    group.start("d")
    phase.events.append((at, "2 → 4 workers"))
    four = _until(lambda: harness.wait_group(s, 4, timeout=1), 120)
    phase.extra.append(("2 → 4: four members holding partitions after",
                        four - at if four else float("nan"), "s"))
    _wait_recovered(phase, s, sampler, at)
    at = time.monotonic()
    phase.events.append((at, "4 → 1 worker"))
    group.stop(["b", "c", "d"])
    one = _until(lambda: harness.wait_group(s, 1, timeout=1), 120)
    phase.extra.append(("4 → 1: one member holding every partition after",
                        one - at if one else float("nan"), "s"))
    _wait_recovered(phase, s, sampler, at)


def _kill_worker(phase: Phase, s: Settings, group: Group, sampler: harness.LagSampler) -> None:
    _, proc = group.procs["a"]
    pids = group.consumers.worker_pids(proc)
    os.kill(pids[0], signal.SIGKILL)
    at = time.monotonic()
    phase.events.append((at, "kill -9 a worker (restarted)"))
    proc.wait(60)  # its `tweetflow consume` exits with it
    group.start("a")  # the same metrics port: the same static member id
    phase.extra.append(("restarted under its member id after", time.monotonic() - at, "s"))
    _wait_recovered(phase, s, sampler, at)


def _until(condition: Callable[[], bool], timeout: float) -> float | None:
    """The monotonic time `condition()` first held, or None after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return time.monotonic()
        except Exception:
            pass
        time.sleep(0.2)
    return None


def _restore(phase: Phase, stack: PrivateStack) -> None:
    """The killed broker or Redis node started again (`ClusterProfile.up` starts what is down),
    so the next fault meets a whole cluster."""
    if phase.fault not in ("broker", "redis") or stack.cluster is None:
        return
    began = time.monotonic()
    stack.cluster.up()
    what = "the broker restarted, three answer" if phase.fault == "broker" else (
        "the node restarted, back as a replica")
    phase.extra.append((f"after the phase: {what}", time.monotonic() - began, "s"))


# --- the report ---------------------------------------------------------------------------------


def _report(result: ScenarioResult, phase: Phase, letter: str) -> None:
    label = f"({letter}) {phase.fault}"
    for (_, event), rec in zip(phase.events, phase.recoveries, strict=True):
        result.add(f"({letter}) {event}: every partition applied what it held at the event",
                   rec.progress_s, "s")
        result.add(f"({letter}) {event}: recovery (lag back under {phase.threshold:,.0f})",
                   rec.recovery_s, "s", "recovers", rec.recovered_at is not None)
        result.add(f"({letter}) {event}: max lag (longest time without a reading: "
                   f"{rec.blind_s:.1f} s)", rec.max_lag, "messages")
    for name, value, unit in phase.extra:
        result.add(f"{label}: {name}", value, unit)
    result.check(f"{label}: producer lost nothing", phase.produced_ok, phase.produced)
    result.check(f"{label}: ClickHouse and the hot tier = truth of the topic", phase.exact,
                 phase.verdict)
    result.check(f"{label}: workers stopped cleanly (the killed one aside)", phase.clean_exit,
                 phase.exits)
    result.note(f"({letter}) {FAULTS[phase.fault]}, {phase.rate:,} msg/s offered: "
                + "; ".join(phase.notes or ["as planned"]))


def _plot_lag(ctx: Context, phases: list[Phase]) -> str:
    plt = pyplot()
    fig, axes = plt.subplots(len(phases), 1, figsize=(10, 2.4 * len(phases)))
    for ax, phase in zip(axes, phases, strict=True):
        ax.plot([t - phase.began for t, _ in phase.lag], [n for _, n in phase.lag], "k-", lw=1)
        ax.axhline(phase.threshold, color="tab:gray", linestyle=":", label="threshold")
        for i, ((t, event), rec) in enumerate(zip(phase.events, phase.recoveries, strict=True)):
            ax.axvline(t - phase.began, color="tab:red", linestyle="--")
            if rec.recovered_at is not None:
                ax.axvspan(t - phase.began, rec.recovered_at - phase.began, color="tab:red",
                           alpha=0.1)
            ax.text(t - phase.began, ax.get_ylim()[1] * (0.85 - 0.15 * i), f" {event}", fontsize=8)
        ax.set_ylabel("lag (messages)")
        ax.set_title(f"({'abcd'[list(FAULTS).index(phase.fault)]}) {FAULTS[phase.fault]}, "
                     f"{phase.rate:,} msg/s offered", fontsize=9)
    axes[-1].set_xlabel("seconds since the steady ingest began")
    fig.suptitle("consumer lag on the cluster profile; red: the event, shaded until recovered, "
                 "dotted: the threshold", fontsize=10)
    return save(fig, ctx.out_dir, "cluster-faults.png")


def _plot_throughput(ctx: Context, runs: dict[str, IngestRun]) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 2.8))
    names = list(runs)
    ax.barh(names, [runs[n].sustained_mb for n in names], color=["tab:gray", "tab:blue"])
    ax.axvline(SPEC_MB_S, color="tab:red", linestyle="--", label="2.5 TB/day")
    ax.set_xlabel("sustained MB/s of message JSON")
    ax.legend(loc="lower right")
    ax.set_title("ingest: single nodes vs the cluster profile, same workers")
    return save(fig, ctx.out_dir, "cluster-throughput.png")
