"""`tweetflow produce`: publish synthetic Tweets, a file of payloads or a live stream (X API v2,
Bluesky Jetstream: streaming/sources) to Kafka, then report.

`--rate`, `--count` and `--duration` count original messages; `--duplicates` copies come on top.
The run stops at `--count` or `--duration`, whichever comes first; `--duration 0` means no time
limit (so `--count N --duration 0` publishes exactly N). Live sources default to no time limit
and no pacing (pacing a live stream only builds a backlog at the provider) and stop on Ctrl-C.
The synthetic and file sources run at Kafka's pace (streaming.produce_job): messages the plan
needs faster than they can be made on the fly are made before the clock starts (`--ahead`, auto
by default; the summary says how many and how long that took), and `--processes N` shares the
plan among N producer processes.
Exit status: 0 when every message was acknowledged, 1 when any delivery failed or a live source
failed for good (a rejected token...), 2 for bad arguments, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from streaming.pacing import BurstSpec, RunPlan
from streaming.produce_job import Job, SourceSpec, run_job
from streaming.producer import Progress, RunResult, TweetProducer, run_plan
from streaming.sources.live import LiveSource
from tweetflow.clients import ensure_topics
from tweetflow.settings import Settings, get_settings

LIVE_SOURCES = ("x-stream", "x-sample", "x-compliance", "jetstream")
SOURCES_HELP = "synthetic | file:PATH[.gz] | " + " | ".join(LIVE_SOURCES)


def _live_source(args: argparse.Namespace, settings: Settings) -> LiveSource:
    """The live source `--source` names (not started)."""
    if args.partition and args.source != "x-compliance":
        raise ValueError("--partition is for --source x-compliance")
    if args.source == "jetstream":
        from streaming.sources.jetstream import Jetstream

        return Jetstream(settings)
    from streaming.sources.x_stream import COMPLIANCE_PARTITIONS, XStream

    return XStream(settings, args.source,
                   partitions=tuple(args.partition or COMPLIANCE_PARTITIONS))


def _source(spec: str, seed: int) -> SourceSpec:
    """What `--source` names, when it is not a live source."""
    if spec == "synthetic":
        return SourceSpec("synthetic", seed)
    if spec.startswith("file:") and len(spec) > 5:
        if not Path(spec[5:]).is_file():
            raise ValueError(f"source file {spec[5:]!r} does not exist")
        return SourceSpec("file", seed, spec[5:])
    raise ValueError(f"source {spec!r} is not one of {SOURCES_HELP}")


def _ahead(args: argparse.Namespace) -> int | None:
    """`--ahead` (None = auto), checked with `--processes`."""
    if args.processes < 1:
        raise ValueError("--processes must be >= 1")
    if args.processes > 1 and args.source in LIVE_SOURCES:
        raise ValueError("--processes is for the synthetic and file sources")
    if args.ahead == "auto":
        return None
    try:
        ahead = int(args.ahead)
    except ValueError:
        ahead = -1
    if ahead < 0:
        raise ValueError(f"--ahead {args.ahead!r} is neither auto nor a number of messages")
    return ahead


def _plan(args: argparse.Namespace) -> RunPlan:
    live = args.source in LIVE_SOURCES
    if args.rate is None:
        args.rate = 0.0 if live else 1000.0
    if args.duration is None:
        args.duration = 0.0 if live else 10.0
    if args.rate < 0:
        raise ValueError("--rate must be >= 0")
    if not 0.0 <= args.duplicates <= 1.0:
        raise ValueError("--duplicates must be a fraction between 0 and 1")
    if args.count is not None and args.count < 0:
        raise ValueError("--count must be >= 0")
    if args.count and args.count < args.processes:
        args.processes = args.count  # a process with nothing to send would send without limit
    return RunPlan(rate=args.rate, duration=args.duration, count=args.count,
                   duplicates=args.duplicates,
                   burst=BurstSpec.parse(args.burst) if args.burst else None, seed=args.seed)


def _print_progress(p: Progress) -> None:
    print(f"[{p.elapsed:6.1f}s] sent {p.sent:,} ({p.rate:,.0f}/s) duplicates {p.duplicates:,} "
          f"delivered {p.stats.delivered:,} failed {p.stats.failed:,}", flush=True)


def format_summary(topic: str, result: RunResult) -> str:
    s = result.stats
    msg_s = s.delivered / result.elapsed if result.elapsed else 0.0
    lines = [
        f"topic                 {topic}",
        f"messages attempted    {s.attempted:,} "
        f"({result.sent:,} + {result.duplicates:,} duplicates)",
        f"delivered             {s.delivered:,}",
        f"failed                {s.failed:,}"
        + (f" ({', '.join(f'{k}: {v}' for k, v in s.errors.most_common())})" if s.errors else ""),
    ]
    if s.undelivered:
        lines.append(f"undelivered           {s.undelivered:,} (flush timed out)")
    lines += [f"problem               {p}" for p in result.problems]
    lines += [
        f"duplicates published  {result.duplicates:,}",
        f"bytes                 {s.bytes_delivered:,}",
        f"throughput            {msg_s:,.0f} msg/s, "
        f"{result.mb_per_s:.2f} MB/s",
        f"elapsed               {result.elapsed:.2f} s" + (" (interrupted)" if result.interrupted
                                                          else ""),
    ]
    if result.processes > 1:
        lines.append(f"processes             {result.processes}")
    if result.ahead:
        lines.append(f"made ahead            {result.ahead:,} messages in "
                     f"{result.ahead_seconds:.1f} s, before the clock started")
    if s.attempted:
        lines.append(f"cpu                   {result.cpu_seconds / s.attempted * 1e6:.1f} µs per "
                     f"message, the producer's threads from the start to the last ack")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default="synthetic", help=SOURCES_HELP)
    parser.add_argument("--rate", type=float, default=None,
                        help="Tweets per second (0 = unthrottled; default 1000, live: 0)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds to run (0 = no limit; default 10, live: 0)")
    parser.add_argument("--seed", type=int, default=42,
                        help="seed of the synthetic generator (same seed, same Tweets)")
    parser.add_argument("--duplicates", type=float, default=0.0, help="fraction published twice")
    parser.add_argument("--burst", default=None, help="RATE:SECONDS burst in the middle of the run "
                        "(default: none)")
    parser.add_argument("--topic", default=None, help="default: settings.topic_raw")
    parser.add_argument("--count", type=int, default=None, help="stop after this many messages (default: "
                        "no limit)")
    parser.add_argument("--partition", type=int, action="append", choices=(1, 2, 3, 4),
                        help="x-compliance: a partition to read (repeatable; default all four)")
    parser.add_argument("--processes", type=int, default=1,
                        help="synthetic and file sources: producer processes sharing the plan "
                        "(seeds SEED..SEED+N-1; default 1)")
    parser.add_argument("--ahead", default="auto",
                        help="messages made before the clock starts, all processes together "
                        "(default auto: what the plan needs faster than they can be made)")
    parser.add_argument("--metrics-port", type=int, default=0,
                        help="serve the live source's Prometheus metrics on this port (0 = none)")


def run(args: argparse.Namespace) -> int:
    """Entry point of `tweetflow produce`."""
    settings = get_settings()
    topic = args.topic or settings.topic_raw
    live: LiveSource | None = None
    try:
        ahead = _ahead(args)
        plan = _plan(args)
        if args.source in LIVE_SOURCES:
            live = _live_source(args, settings)
        else:
            job = Job(settings, topic, _source(args.source, args.seed), plan, args.processes,
                      ahead)
    except (ValueError, OSError) as exc:
        print(f"tweetflow produce: {exc}", file=sys.stderr)
        return 2
    from confluent_kafka import KafkaException

    try:
        ensure_topics(settings, topic)
        if live is not None:
            producer = TweetProducer(settings, topic)
            producer.wait_ready()
            return _run_live(live, producer, plan, topic, args.metrics_port, settings)
        result = run_job(job, progress=_print_progress)
    except KafkaException as exc:
        print(f"tweetflow produce: Kafka at {settings.kafka_bootstrap_servers} is not usable: "
              f"{exc}", file=sys.stderr)
        return 1
    print(format_summary(topic, result), flush=True)
    return _status(result)


def _status(result: RunResult, source_failed: bool = False) -> int:
    if result.interrupted:
        return 130
    return 0 if result.ok and not source_failed else 1


def _run_live(source: LiveSource, producer: TweetProducer, plan: RunPlan, topic: str,
              metrics_port: int, settings: Settings) -> int:
    """Run a live source until --count, --duration, Ctrl-C or a failure no reconnect fixes;
    the summary adds its connections, reconnects and in-stream errors."""
    from streaming.metrics import serve_metrics

    serve_metrics(metrics_port, settings)
    if plan.duration:
        source.deadline = time.monotonic() + plan.duration
    source.bind(producer)
    source.start()
    try:
        result = run_plan(producer, source, replace(plan, duration=None),
                          progress=_print_progress)
    finally:
        source.close()
    source.finish(result.stats.ok)
    print(format_summary(topic, result) + "\n" + source.summary(), flush=True)
    return _status(result, source.error is not None)
