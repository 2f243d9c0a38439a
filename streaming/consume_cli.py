"""`tweetflow consume --workers N`: N worker processes in one consumer group."""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import signal

from streaming.worker import Worker, WorkerOptions
from tweetflow.settings import get_settings

log = logging.getLogger(__name__)


def _worker_main(options: WorkerOptions) -> None:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s")
    totals = Worker(get_settings(), options).run()
    log.info("worker done: %s", totals)


def default_workers() -> int:
    """One worker per core, plus one. Why the extra one: a worker waits for ClickHouse and Redis to
    answer for about 40% of each batch, and another worker's parsing fills that wait (on 2 cores,
    3 workers sustained 20-30% more than 2 in `python -m bench.streaming_bench`)."""
    return (os.cpu_count() or 1) + 1


def run(args: argparse.Namespace) -> int:
    workers = []
    ctx = mp.get_context("spawn")  # librdkafka and redis clients must not be shared across fork
    for i in range(args.workers or default_workers()):
        options = WorkerOptions(batch_size=args.batch_size, batch_ms=args.batch_ms,
                                idle_exit_s=args.until_idle,
                                metrics_port=args.metrics_port + i if args.metrics_port else 0)
        proc = ctx.Process(target=_worker_main, args=(options,), name=f"worker-{i}")
        proc.start()
        workers.append(proc)
    print(f"{len(workers)} workers consuming; metrics on 127.0.0.1:{args.metrics_port}"
          f"..{args.metrics_port + len(workers) - 1}; Ctrl-C or SIGTERM stops them gracefully",
          flush=True)

    def forward(signum: int, _frame: object) -> None:
        for proc in workers:
            if proc.is_alive() and proc.pid:
                proc.terminate()  # SIGTERM: each finishes its batch in hand

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for proc in workers:
        proc.join()
    failed = [p.name for p in workers if p.exitcode not in (0, -signal.SIGTERM)]
    if failed:
        print(f"workers failed: {failed}")
    return 1 if failed else 0
