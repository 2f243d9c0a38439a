"""`tweetflow produce`: publish synthetic Tweets or a file of payloads to Kafka, then report.

`--rate`, `--count` and `--duration` count original messages; `--duplicates` copies come on top.
The run stops at `--count` or `--duration`, whichever comes first; `--duration 0` means no time
limit (so `--count N --duration 0` publishes exactly N). Exit status: 0 when every message was
acknowledged, 1 when any delivery failed, 2 for bad arguments, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from streaming.producer import (
    BurstSpec,
    Message,
    Progress,
    RunPlan,
    RunResult,
    TweetProducer,
    file_messages,
    run_plan,
)
from tweetflow.clients import ensure_topics
from tweetflow.settings import get_settings

OnBurst = Callable[[int, int], None] | None


def _source(spec: str, seed: int) -> tuple[Iterator[Message], OnBurst]:
    """The message iterator for `--source`, and how to mark a burst in it (synthetic only)."""
    if spec == "synthetic":
        from streaming.synthetic import Burst, SyntheticSource

        source = SyntheticSource(seed)
        return iter(source), lambda start, end: source.add_burst(Burst(start, end))
    if spec.startswith("file:") and len(spec) > 5:
        if not Path(spec[5:]).is_file():
            raise ValueError(f"source file {spec[5:]!r} does not exist")
        return file_messages(spec[5:]), None
    raise ValueError(f"source {spec!r} is not 'synthetic' or 'file:PATH[.gz]'")


def _plan(args: argparse.Namespace) -> RunPlan:
    if args.rate < 0:
        raise ValueError("--rate must be >= 0")
    if not 0.0 <= args.duplicates <= 1.0:
        raise ValueError("--duplicates must be a fraction between 0 and 1")
    if args.count is not None and args.count < 0:
        raise ValueError("--count must be >= 0")
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
    lines += [
        f"duplicates published  {result.duplicates:,}",
        f"bytes                 {s.bytes_delivered:,}",
        f"throughput            {msg_s:,.0f} msg/s, "
        f"{result.mb_per_s:.2f} MB/s",
        f"elapsed               {result.elapsed:.2f} s" + (" (interrupted)" if result.interrupted
                                                          else ""),
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    topic = args.topic or settings.topic_raw
    try:
        plan = _plan(args)
        messages, on_burst = _source(args.source, args.seed)
    except (ValueError, OSError) as exc:
        print(f"tweetflow produce: {exc}", file=sys.stderr)
        return 2
    from confluent_kafka import KafkaException

    try:
        ensure_topics(settings, topic)
        producer = TweetProducer(settings, topic)
        producer.wait_ready()
    except KafkaException as exc:
        print(f"tweetflow produce: Kafka at {settings.kafka_bootstrap_servers} is not usable: "
              f"{exc}", file=sys.stderr)
        return 1
    result = run_plan(producer, messages, plan, on_burst=on_burst, progress=_print_progress)
    print(format_summary(topic, result), flush=True)
    if result.interrupted:
        return 130
    return 0 if result.stats.ok else 1
