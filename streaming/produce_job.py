"""The synthetic and file sources at Kafka's pace: messages made ahead of the send loop
(`streaming.lookahead`), in one producer process or several, with one result.

Why several processes (`tweetflow produce --processes N`): one Python process makes ~50,000
synthetic messages/s (a core); N processes each make and send a share of the plan
(`RunPlan.share`: the rates divided, `count` split exactly, seeds seed..seed+N-1, hence distinct
Snowflake workers and Tweet ids; a file's lines split by Tweet id, so a Tweet and its delete stay
in order in one process). They are spawned by `tweetflow.supervisor` (which forwards Ctrl-C and
SIGTERM), make their messages ahead, then wait for each other (and the parent) at a barrier so
that the plan's clock, and its burst, start together; each reports its progress and result through a queue.

Event times (synthetic): message i carries the time the plan sends it (`RunPlan.offset_of`),
counted from when the run was asked for, so messages made ahead carry their planned times and a
burst's hashtag spike (`synthetic.Burst`) falls on exactly the burst's messages; unpaced messages
carry the time they were made. Sending starts once the messages are made, so appends trail event
times by that long (the summary's "made ahead" line).
"""

from __future__ import annotations

import itertools
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from streaming.lookahead import (
    AHEAD_BYTES,
    MESSAGE_OVERHEAD,
    Lookahead,
    ahead_needed,
    fill_target,
)
from streaming.pacing import RunPlan
from streaming.producer import (
    STOP,
    DeliveryStats,
    Message,
    Progress,
    RunResult,
    TweetProducer,
    file_messages,
    run_plan,
)
from tweetflow.settings import Settings

__all__ = ["Job", "SourceSpec", "run_job", "stop_on_signals"]

WARMUP = 2000  # messages made (and timed) first: the generation rate `ahead_needed` works with
BARRIER_SECONDS = 900.0  # how long a process waits for the others to have made their messages

Report = Callable[[str, Any], None]  # ("progress" | "burst" | "result", payload)


@dataclass(frozen=True)
class SourceSpec:
    """What each process makes its messages from (picklable: a spawned process builds its own)."""

    kind: str  # "synthetic" or "file"
    seed: int = 42
    path: str = ""
    delete_fraction: float | None = None  # synthetic: None = the source's default
    history: tuple[int, float] | None = None  # synthetic: (start_ms, events/s), an archive's
    # event times instead of the plan's schedule


@dataclass(frozen=True)
class Job:
    """One run: where to, from what, how (`plan`), in how many processes, how much ahead.

    `ahead`: messages made before the clock starts, all processes together; None = what the plan
    needs (`ahead_needed`, within `AHEAD_BYTES` of memory)."""

    settings: Settings
    topic: str
    source: SourceSpec
    plan: RunPlan
    processes: int = 1
    ahead: int | None = None
    producer_config: dict[str, Any] = field(default_factory=dict)
    flush_timeout: float = 60.0
    start_ms: int = 0  # set by run_job: when the run was asked for, the schedule's origin
    burst_hashtag: str | None = None  # set by run_job: one spiking hashtag for every process


def run_job(job: Job, *, progress: Callable[[Progress], None] | None = None,
            on_burst: Callable[[int, int], None] | None = None,
            before_start: Callable[[], object] | None = None) -> RunResult:
    """Run `job` to the end (every message acknowledged or failed); `progress` and `on_burst`
    as `run_plan`'s, for all processes together; `before_start()` once every process has made
    its messages, just before the plan's clock starts (the bench measures Kafka's own producer
    then, next to the run)."""
    job = replace(job, start_ms=int(time.time() * 1000), burst_hashtag=_burst_hashtag(job))
    if job.processes == 1:
        def report(kind: str, payload: Any) -> None:
            if kind == "progress" and progress:
                progress(payload)
            elif kind == "burst" and on_burst:
                on_burst(*payload)

        try:
            return run_share(job, 0, report, before_start or (lambda: None))
        except KeyboardInterrupt:  # while making messages ahead: nothing was sent
            return RunResult(0, 0, DeliveryStats(), 0.0, interrupted=True)
    return _run_processes(job, progress, on_burst, before_start)


def _burst_hashtag(job: Job) -> str | None:
    if job.source.kind != "synthetic" or job.plan.burst is None:
        return None
    from streaming.synthetic import SyntheticSource

    return SyntheticSource(job.source.seed).burst_hashtag


def run_share(job: Job, index: int, report: Report, ready: Callable[[], object]) -> RunResult:
    """Process `index`'s share of the job: connect, make messages ahead, `ready()` (the barrier),
    run the plan."""
    producer = TweetProducer(job.settings, job.topic, **job.producer_config)
    producer.wait_ready()
    plan = job.plan.share(index, job.processes)
    began = time.monotonic()
    ahead = Lookahead(messages(job, index), limit=WARMUP)
    total = plan.count if plan.count and plan.count > 0 else WARMUP
    made = ahead.fill(min(WARMUP, total))
    rate = made / max(time.monotonic() - began, 1e-6)
    size = ahead.buffered_bytes() / made if made else 0.0
    memory_limit = int(AHEAD_BYTES / job.processes / (size + MESSAGE_OVERHEAD))
    want = (ahead_needed(plan, rate, memory_limit) if job.ahead is None
            else job.ahead // job.processes + (index < job.ahead % job.processes))
    ahead.limit = max(fill_target(plan, rate, memory_limit), want)
    ahead.fill(want - len(ahead))
    made, seconds = len(ahead), time.monotonic() - began
    ready()
    result = run_plan(producer, ahead, plan, flush_timeout=job.flush_timeout,
                      progress=lambda p: report("progress", p),
                      on_burst=lambda a, b: report("burst", (a, b)))
    return replace(result, ahead=made, ahead_seconds=seconds, processes=job.processes)


def messages(job: Job, index: int) -> Iterator[Message]:
    """Process `index`'s messages (see the module docstring for their event times)."""
    spec, plan = job.source, job.plan.share(index, job.processes)
    if spec.kind == "file":
        return file_messages(spec.path, (index, job.processes))
    from streaming.synthetic import Burst, SyntheticSource

    kwargs: dict[str, Any] = {}
    if spec.delete_fraction is not None:
        kwargs["delete_fraction"] = spec.delete_fraction
    if spec.history is not None:
        start_ms, rate = spec.history
        return iter(SyntheticSource(spec.seed + index, start_ms, rate / job.processes, **kwargs))
    window = plan.burst_window()
    if window is not None:
        kwargs["bursts"] = [Burst(job.start_ms + int(window[0] * 1000),
                                  job.start_ms + int(window[1] * 1000), job.burst_hashtag)]
    source = SyntheticSource(spec.seed + index, **kwargs)
    return _scheduled(source.next_message, plan, job.start_ms)


def _scheduled(make: Callable[[int | None], Message], plan: RunPlan,
               start_ms: int) -> Iterator[Message]:
    for i in itertools.count():
        offset = plan.offset_of(i)
        yield make(None if offset is None else start_ms + int(offset * 1000))


# --- several processes ---------------------------------------------------------------------------


def _run_processes(job: Job, progress: Callable[[Progress], None] | None,
                   on_burst: Callable[[int, int], None] | None,
                   before_start: Callable[[], object] | None) -> RunResult:
    import multiprocessing as mp

    from tweetflow.supervisor import supervise

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    # every process and this one meet twice: all made their messages; all may start
    made, go = ctx.Barrier(job.processes + 1), ctx.Barrier(job.processes + 1)
    collector = _Collector(job.processes, progress, on_burst)
    reader = threading.Thread(target=collector.read, args=(queue,), daemon=True)
    reader.start()
    threading.Thread(target=_starter, args=(made, go, before_start), daemon=True).start()
    supervise("produce", _process_main,
              [(job, i, queue, (made, go)) for i in range(job.processes)])
    queue.put(None)
    reader.join()
    results = [collector.results.get(i) for i in range(job.processes)]
    lost = tuple(f"process {i} ended without a result" for i, r in enumerate(results)
                 if r is None)  # what it sent is unknown
    combined = RunResult.combine([r for r in results if r is not None] or
                                 [RunResult(0, 0, DeliveryStats(), 0.0)])
    return replace(combined, processes=job.processes, problems=combined.problems + lost)


def _starter(made: Any, go: Any, before_start: Callable[[], object] | None) -> None:
    try:
        made.wait(BARRIER_SECONDS)
        if before_start is not None:
            before_start()
        go.wait(BARRIER_SECONDS)
    except threading.BrokenBarrierError:  # a process failed or was stopped before the start
        pass


class _Collector:
    """The parent's side of the queue: the processes' progress summed, their results kept."""

    def __init__(self, n: int, progress: Callable[[Progress], None] | None,
                 on_burst: Callable[[int, int], None] | None) -> None:
        self.results: dict[int, RunResult] = {}
        self._latest: dict[int, Progress] = {}
        self._n, self._progress, self._on_burst = n, progress, on_burst
        self._burst_seen = False

    def read(self, queue: Any) -> None:
        while (item := queue.get()) is not None:
            kind, index, payload = item
            if kind == "result":
                self.results[index] = payload
            elif kind == "burst" and self._on_burst and not self._burst_seen:
                self._burst_seen = True
                self._on_burst(*payload)
            elif kind == "progress":
                self._latest[index] = payload
                if index == 0 and self._progress:
                    self._progress(self._total())

    def _total(self) -> Progress:
        parts = list(self._latest.values())
        return Progress(max(p.elapsed for p in parts), sum(p.sent for p in parts),
                        sum(p.duplicates for p in parts), sum(p.rate for p in parts),
                        DeliveryStats.total(p.stats for p in parts))


def _process_main(job: Job, index: int, queue: Any, barriers: tuple[Any, Any]) -> None:
    """A spawned producer process: its share, its result on the queue, its exit status."""
    stop_on_signals()

    def report(kind: str, payload: Any) -> None:
        queue.put((kind, index, payload))

    try:
        result = run_share(job, index, report,
                           lambda: [b.wait(BARRIER_SECONDS) for b in barriers])
    except KeyboardInterrupt:  # before the start: nothing was sent
        _abort(barriers)  # the others stop waiting for this one
        result = RunResult(0, 0, DeliveryStats(), 0.0, interrupted=True)
    except threading.BrokenBarrierError:
        result = RunResult(0, 0, DeliveryStats(), 0.0, problems=(
            f"process {index} did not start: another one failed or was stopped first",))
    except BaseException:
        _abort(barriers)
        raise
    report("result", result)
    queue.close()
    queue.join_thread()  # the result is in the pipe before the process ends
    sys.exit(130 if result.interrupted else 0 if result.ok else 1)


def _abort(barriers: tuple[Any, Any]) -> None:
    for b in barriers:
        b.abort()


def stop_on_signals() -> None:
    """SIGTERM and SIGINT end the run as Ctrl-C does (`run_plan` flushes and reports); once:
    a repeated signal (the supervisor forwards what the terminal also sent) is ignored."""
    def interrupt(_signum: int, _frame: object) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        STOP.interrupt()  # raised now, or once the producer's counts are whole (StopHold)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, interrupt)
