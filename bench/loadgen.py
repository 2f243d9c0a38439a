"""A synthetic load generator process for the scenarios: `tweetflow produce`'s producer, pacing
and processes (streaming.produce_job) with the knobs the scenarios need and `produce` does not
expose.

    python -m bench.loadgen --rate 2000 --duration 20 [--burst 20000:5] [--deletes 0]
                            [--processes 2] [--ahead auto]

Settings (topic, broker) come from the environment like every tweetflow process. Prints one JSON
line per second ({"t", "sent", "delivered", "failed"}), one with the burst's wall-clock window
once sending starts (after the messages made ahead; `{"ready": true}` just before, and with
`--go-file` it waits there for the file), and a final one with "done": true (and "started", when
the plan's clock started), so the scenario driving it can plot the achieved rate
and check that every message was acknowledged. SIGTERM (or SIGINT) stops it cleanly: it stops
publishing, waits for every acknowledgement and reports.

Why a separate process: the generator is pure Python and needs a core of its own; in the bench's
process it would compete (GIL) with the samplers whose timings it is supposed to drive.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from streaming.pacing import BurstSpec, RunPlan
from streaming.produce_job import Job, SourceSpec, run_job, stop_on_signals
from streaming.producer import Progress
from streaming.synthetic import DELETE_FRACTION
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
    p.add_argument("--processes", type=int, default=1, help="producer processes sharing the plan")
    p.add_argument("--ahead", default="auto",
                   help="messages made before the clock starts (default auto: what the plan needs)")
    p.add_argument("--go-file", default=None,
                   help="once the messages are made, print {\"ready\": true} and start only "
                        "when this file exists")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    overrides = {"message.max.bytes": args.max_message_bytes} if args.max_message_bytes else {}
    history = None
    if args.history_hours > 0:
        count = args.count or int(args.rate * args.duration)
        history = (int((time.time() - args.history_hours * 3600) * 1000),
                   count / (args.history_hours * 3600))  # may be < 1/s: an archive
    plan = RunPlan(rate=args.rate, duration=args.duration, count=args.count,
                   duplicates=args.duplicates,
                   burst=BurstSpec.parse(args.burst) if args.burst else None, seed=args.seed)
    job = Job(settings, settings.topic_raw,
              SourceSpec("synthetic", args.seed, delete_fraction=args.deletes, history=history),
              plan, args.processes, None if args.ahead == "auto" else int(args.ahead),
              overrides, flush_timeout=180)

    def progress(p: Progress) -> None:
        print(json.dumps({"t": round(p.elapsed, 3), "sent": p.sent, "duplicates": p.duplicates,
                          "delivered": p.stats.delivered, "failed": p.stats.failed,
                          "wall": time.time()}), flush=True)

    def on_burst(start_ms: int, end_ms: int) -> None:
        print(json.dumps({"burst_start": start_ms / 1000, "burst_end": end_ms / 1000}), flush=True)

    def before_start() -> None:
        print(json.dumps({"ready": True}), flush=True)
        while args.go_file and not os.path.exists(args.go_file):
            time.sleep(0.01)

    stop_on_signals()
    result = run_job(job, progress=progress, on_burst=on_burst, before_start=before_start)
    s = result.stats
    print(json.dumps({"done": True, "started": result.started, "sent": result.sent,
                      "duplicates": result.duplicates, "attempted": s.attempted,
                      "delivered": s.delivered, "failed": s.failed, "undelivered": s.undelivered,
                      "errors": dict(s.errors), "bytes": s.bytes_delivered,
                      "elapsed": result.elapsed, "ahead": result.ahead,
                      "ahead_seconds": result.ahead_seconds, "problems": list(result.problems)}),
          flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
