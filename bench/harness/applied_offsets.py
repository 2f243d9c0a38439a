"""How far the pipeline got: the offsets the hot sink has applied (its Redis watermarks, the
pipeline's last step: the ClickHouse rows and dead letters of those offsets are written before
it), waited for against the topic's high watermarks. Kafka's own offsets: `streaming.offsets`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from bench.harness.stores import redis_watermarks
from streaming.offsets import group_lag, watermarks
from tweetflow.settings import Settings

log = logging.getLogger("bench")


def applied(settings: Settings, high: dict[int, int], r=None) -> int:
    """Messages whose offsets the hot sink has applied (watermarks are the last offset + 0)."""
    wm = redis_watermarks(settings, r)
    return sum(min(wm.get(p, -1) + 1, hi) for p, hi in high.items())


def wait_applied(settings: Settings, *, timeout: float, low: dict[int, int] | None = None,
                 on_poll: Callable[[float, int, int], None] | None = None,
                 interval: float = 0.25) -> tuple[bool, list[tuple[float, int]]]:
    """Wait until the Redis watermarks reach every partition's high watermark (the pipeline's
    last step: the ClickHouse rows and dead letters of those offsets are written before it).

    Returns (done, [(monotonic time, messages applied)]); `low` (the low watermarks) turns
    offsets into message counts.
    """
    from tweetflow.clients import redis_client

    marks = watermarks(settings)
    high = {p: hi for p, (_, hi) in marks.items()}
    low = low or {p: lo for p, (lo, _) in marks.items()}
    total = sum(high[p] - low[p] for p in high)
    r = redis_client(settings)
    points: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    error = ""
    while True:
        now = time.monotonic()
        try:
            done_count = applied(settings, high, r) - sum(low.values())
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            done_count = points[-1][1] if points else 0
        points.append((now, done_count))
        if on_poll:
            on_poll(now, done_count, total)
        if done_count >= total:
            return True, points
        if now > deadline:
            log.warning("not applied within %.0f s: %d/%d; high %s, watermarks %s%s", timeout,
                        done_count, total, high, _safe(lambda: redis_watermarks(settings)),
                        f"; last error {error}" if error else "")
            return False, points
        time.sleep(interval)


def require_applied(settings: Settings, *, timeout: float, what: str) -> None:
    """wait_applied, raising with the state of the group when it times out."""
    done, points = wait_applied(settings, timeout=timeout)
    if not done:
        raise TimeoutError(f"{what}: only {points[-1][1]:,} messages applied after {timeout:.0f} s; "
                           f"group lag {_safe(lambda: group_lag(settings))}, "
                           f"watermarks {_safe(lambda: redis_watermarks(settings))}")


def _safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:
        return f"({type(exc).__name__}: {exc})"
