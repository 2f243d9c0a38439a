"""A synthetic load generator process for the scenarios: `tweetflow produce`'s producer and pacing
(streaming.producer.run_plan) with the knobs the scenarios need and `produce` does not expose.

    python -m bench.loadgen --rate 2000 --duration 20 [--burst 20000:5] [--deletes 0]

Settings (topic, broker) come from the environment like every tweetflow process. Prints one JSON
line per second ({"t", "sent", "delivered", "failed"}) and a final one with "done": true, so the
scenario driving it can plot the achieved rate and check that every message was acknowledged.

Why a separate process: the generator is pure Python and needs a core of its own; in the bench's
process it would compete (GIL) with the samplers whose timings it is supposed to drive.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator

from streaming.producer import BurstSpec, Message, Progress, RunPlan, TweetProducer, run_plan
from streaming.synthetic import DELETE_FRACTION, Burst, SyntheticSource
from tweetflow.settings import get_settings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=1000.0, help="messages/s (0 = unthrottled)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds (0 = no limit)")
    p.add_argument("--count", type=int, default=None)
    p.add_argument("--burst", default=None, help="RATE:SECONDS in the middle of the run")
    p.add_argument("--duplicates", type=float, default=0.0)
    p.add_argument("--deletes", type=float, default=DELETE_FRACTION, help="share of deletes")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--history-hours", type=float, default=0.0,
                   help="event times spread over the last H hours instead of 'now'")
    p.add_argument("--max-message-bytes", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    overrides = {"message.max.bytes": args.max_message_bytes} if args.max_message_bytes else {}
    producer = TweetProducer(settings, settings.topic_raw, **overrides)
    producer.wait_ready()
    if args.history_hours > 0:
        count = args.count or int(args.rate * args.duration)
        source = SyntheticSource(args.seed, int((time.time() - args.history_hours * 3600) * 1000),
                                 count / (args.history_hours * 3600),  # may be < 1/s: an archive
                                 delete_fraction=args.deletes)
    else:
        source = SyntheticSource(args.seed, delete_fraction=args.deletes)
    plan = RunPlan(rate=args.rate, duration=args.duration, count=args.count,
                   duplicates=args.duplicates,
                   burst=BurstSpec.parse(args.burst) if args.burst else None, seed=args.seed)

    def progress(p: Progress) -> None:
        print(json.dumps({"t": round(p.elapsed, 3), "sent": p.sent, "duplicates": p.duplicates,
                          "delivered": p.stats.delivered, "failed": p.stats.failed,
                          "wall": time.time()}), flush=True)

    def on_burst(start_ms: int, end_ms: int) -> None:
        source.add_burst(Burst(start_ms, end_ms))
        print(json.dumps({"burst_start": start_ms / 1000, "burst_end": end_ms / 1000}), flush=True)

    # SIGTERM ends the run cleanly: the flag empties the message iterator, so run_plan stops and
    # flushes. (A KeyboardInterrupt raised inside Producer.poll surfaces as a SystemError from
    # confluent-kafka and skips the flush, so SIGINT is handled the same way.)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())

    def messages() -> Iterator[Message]:
        for message in source:
            if stopping.is_set():
                return
            yield message

    started = time.time()
    result = run_plan(producer, messages(), plan, on_burst=on_burst, progress=progress,
                      flush_timeout=180)
    s = result.stats
    print(json.dumps({"done": True, "started": started, "sent": result.sent,
                      "duplicates": result.duplicates, "attempted": s.attempted,
                      "delivered": s.delivered, "failed": s.failed, "undelivered": s.undelivered,
                      "errors": dict(s.errors), "bytes": s.bytes_delivered,
                      "elapsed": result.elapsed}), flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
