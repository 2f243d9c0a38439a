"""Several processes doing the same work, started and stopped as one: the consumers
(`tweetflow consume --workers N`) and the gRPC services (`--processes N`).

Why processes: one Python process is bound to one core by the GIL, so a service scales on a machine
by running copies of itself (consumers as members of one group, servers on one port with
SO_REUSEPORT). Why `spawn` rather than fork: librdkafka, redis and grpc clients must not be shared
across fork, and a spawned child starts from a clean interpreter.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Sequence
from typing import Any

from tweetflow import logs

log = logging.getLogger(__name__)


def _child(target: Callable[..., object], args: tuple[Any, ...], component: str | None) -> None:
    logs.setup_logging(component=component)  # a spawned child starts with no logging set up
    target(*args)


def supervise(name: str, target: Callable[..., object], args: Sequence[tuple[Any, ...]]) -> int:
    """Run `target(*a)` for each `a` in `args`, each in a spawned process named `name-i`, until all
    exit; SIGTERM and SIGINT received meanwhile are forwarded to the children still running.

    Returns the worst exit code (0 when every child stopped cleanly). A child still starting when
    the signal was forwarded dies of it before its own handler exists: it did no work yet, so that
    counts as a clean stop too. `target` must be importable by name (a module-level function).
    """
    ctx = mp.get_context("spawn")
    children = [ctx.Process(target=_child, args=(target, a, logs.component()), name=f"{name}-{i}")
                for i, a in enumerate(args)]
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.is_alive() and child.pid:  # False for one not started yet
                with contextlib.suppress(ProcessLookupError):  # exited since is_alive()
                    os.kill(child.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    started = []
    for child in children:
        if not stopping:
            child.start()
            started.append(child)
    for child in started:
        child.join()
    stopped_by_us = {-signal.SIGTERM, -signal.SIGINT} if stopping else set()
    codes = {c.name: 0 if c.exitcode in stopped_by_us else (c.exitcode or 0) for c in started}
    failed = sorted(n for n, code in codes.items() if code)
    if failed:
        log.error("%s failed: %s", name, ", ".join(f"{n} (exit {codes[n]})" for n in failed))
    return max(codes.values(), key=abs, default=0)

