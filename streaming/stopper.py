"""How a worker tells its batch processor to stop: one flag that can be waited on.

The processor backs off on it between tries of a sink that is down, so a SIGTERM during an outage
ends the back-off at once (within 0.1 s) instead of after it (up to 10 s).

Why a plain sleep while a sink is down (rather than consuming while paused): librdkafka heartbeats
from its own thread, and consuming while paused could advance positions past messages not yet
processed; an outage longer than max.poll.interval.ms only moves the partitions to another worker,
which the watermarks make safe.
Why a flag polled every 0.1 s rather than a `threading.Event`: `stop` is called from signal
handlers, which run in the main thread between two bytecodes, possibly while that thread holds the
Event's internal lock inside `wait`; `Event.set` would then wait for that lock forever.
"""

from __future__ import annotations

import time

POLL_SECONDS = 0.1


class Stopper:
    def __init__(self) -> None:
        self._stopped = False

    @property
    def stopped(self) -> bool:
        return self._stopped

    def stop(self, *_: object) -> None:
        """Ask to stop; takes (and ignores) a signal handler's arguments."""
        self._stopped = True

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, less once stopped; returns whether stopped."""
        deadline = time.monotonic() + seconds
        while not self._stopped and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(POLL_SECONDS, left))
        return self._stopped
