"""A graceful stop: the requests in flight, counted so that shutting the engine down waits for them.

Why: closing chDB's last connection shuts the embedded engine down beneath any statement still
running on another connection, and chDB 26.9 then died with SIGSEGV (seen on SIGTERM under
concurrent inserts). So each request counts from its first byte read to its answer's last byte
written; once closing, new statements are refused with an error; the engine waits for the count
to reach zero, cancels what outlives the drain time (its client is answered QUERY_WAS_CANCELLED),
and is shut down only when nothing runs. Measured on this VM (tests/tweetflow/
test_embedded_clickhouse_shutdown.py): four clients inserting 5,000-row batches, SIGTERM, exit 0
and every acknowledged batch readable after a restart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tweetflow.embedded_clickhouse.errors import STD_EXCEPTION, ClickHouseError

log = logging.getLogger("tweetflow.embedded_clickhouse")

# On close, how long running requests may finish. Below the 30 s after which `tweetflow stack down`
# sends SIGKILL (tweetflow/app/stack/process.py), so a stop under load still ends gracefully.
DRAIN_SECONDS = 15.0
CANCEL_SECONDS = 5.0  # then, how long cancelled statements may take to stop


class InFlight:
    """The requests being served now; `drain` waits for them when the endpoint stops."""

    def __init__(self) -> None:
        self._idle = threading.Condition()
        self._count = 0
        self._closing = False

    @contextmanager
    def request(self) -> Iterator[None]:
        """Count one request, answer included, as in flight."""
        with self._idle:
            self._count += 1
        try:
            yield
        finally:
            with self._idle:
                self._count -= 1
                self._idle.notify_all()

    @property
    def closing(self) -> bool:
        return self._closing

    def admit(self) -> None:
        """Refuse a new statement once the endpoint is stopping."""
        if self._closing:
            raise ClickHouseError(STD_EXCEPTION, "the server is shutting down")

    def drain(self, timeout: float, cancel: Callable[[], None]) -> bool:
        """Refuse new statements, wait up to `timeout` for running requests, `cancel` what is
        left and wait for it to stop; True when nothing runs any more."""
        with self._idle:
            self._closing = True
            if self._idle.wait_for(lambda: self._count == 0, timeout=timeout):
                return True
            log.warning("%d requests still running after %.0f s: cancelling them", self._count,
                        timeout)
        cancel()
        with self._idle:
            if self._idle.wait_for(lambda: self._count == 0, timeout=CANCEL_SECONDS):
                return True
            log.error("%d requests still running after cancelling them", self._count)
            return False
