"""`tweetflow consume --workers N`: N worker processes in one consumer group, supervised as one
(tweetflow.supervisor: SIGTERM or Ctrl-C lets each finish the batch in hand)."""

from __future__ import annotations

import argparse
import logging
import os
import socket

from streaming.worker import Worker, WorkerOptions
from tweetflow.settings import get_settings
from tweetflow.supervisor import supervise

log = logging.getLogger(__name__)


def _worker_main(options: WorkerOptions) -> None:
    totals = Worker(get_settings(), options).run()
    log.info("worker done: %s", totals)


def default_workers() -> int:
    """One worker per core, plus one. Why the extra one: a worker waits for ClickHouse and Redis to
    answer for about 40% of each batch, and another worker's parsing fills that wait (on 2 cores,
    3 workers sustained 20-30% more than 2 in `python -m bench.streaming_bench`)."""
    return (os.cpu_count() or 1) + 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: cores + 1)")
    parser.add_argument("--metrics-port", type=int, default=9400,
                        help="first worker's port; +1 each")
    parser.add_argument("--batch-size", type=int, default=10000,
                        help="most messages a worker applies in one batch")
    parser.add_argument("--batch-ms", type=int, default=500,
                        help="longest a worker waits to fill a batch, in milliseconds")
    parser.add_argument("--until-idle", type=float, default=None,
                        help="exit after this many seconds without new messages, for scripts "
                             "(default: run until stopped)")


def run(args: argparse.Namespace) -> int:
    """Entry point of `tweetflow consume`."""
    workers = args.workers or default_workers()
    host = socket.gethostname()
    options = [WorkerOptions(batch_size=args.batch_size, batch_ms=args.batch_ms,
                             idle_exit_s=args.until_idle,
                             metrics_port=args.metrics_port + i if args.metrics_port else 0,
                             # a worker's metrics port is its own on this host: so is the id
                             instance_id=f"{host}-{args.metrics_port + i}" if args.metrics_port
                             else None)
               for i in range(workers)]
    print(f"{workers} workers consuming; metrics on 127.0.0.1:{args.metrics_port}"
          f"..{args.metrics_port + workers - 1}; Ctrl-C or SIGTERM stops them gracefully",
          flush=True)
    return 1 if supervise("worker", _worker_main, [(o,) for o in options]) else 0
