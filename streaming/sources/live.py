"""What every live source shares: reader threads feeding one bounded queue that `run_plan`
iterates like the synthetic and file sources, a log of what happened, and waiting between
reconnects.

Why a thread and a queue: X asks clients to keep a FIFO between reading the stream and processing
it, so that a slow consumer (here, Kafka pushing back) does not make the server drop the
connection as a `SlowReader`; the reader only splits lines and recognises control messages.
Why bounded (100,000 messages, ~0.5 GB of 5 KB Tweets at most): a Kafka outage must not exhaust
memory; the reader then waits and the server may cut it, which the reconnection rules handle.
Why the iterator ends itself at a deadline: a stream may say nothing for minutes, and `run_plan`
checks `--duration` only between messages.
A failure no reconnect can fix (a rejected token, a bad request) ends the iteration with
`error` set rather than raising, so `run_plan` still flushes what was read and prints its summary.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from streaming.metrics import SOURCE_RECONNECTS
from streaming.producer import Message, TweetProducer
from streaming.sources.backoff import Failure

log = logging.getLogger(__name__)
QUEUE_SIZE = 100_000
_POLL_SECONDS = 0.2


class _Fatal:
    def __init__(self, message: str) -> None:
        self.message = message


class LiveSource:
    """Base of the live sources: subclasses give `_readers()` (thread bodies that call `put`),
    `message(item)` (a queued item as a Kafka message) and `_disconnect()`."""

    def __init__(self, name: str, *, sleep: Callable[[float], Any] | None = None,
                 queue_size: int = QUEUE_SIZE) -> None:
        self.name = name
        self.log: list[tuple[str, str]] = []  # (what, detail), in order; tests read it
        self.counts: Counter[str] = Counter()
        self.error: str | None = None
        self.deadline: float | None = None  # time.monotonic() at which iteration ends
        self._sleep = sleep
        self._queue: queue.Queue[Any] = queue.Queue(queue_size)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- the reader side --------------------------------------------------------------------

    def _readers(self) -> list[Callable[[], None]]:
        raise NotImplementedError

    def _disconnect(self) -> None:
        """Close open connections so blocked readers return (called once on close)."""

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def note(self, what: str, detail: str = "") -> None:
        self.log.append((what, detail))
        log.info("%s: %s %s", self.name, what, detail)

    def put(self, item: Any) -> bool:
        """Queue an item for the run loop, waiting while the queue is full; False once stopped."""
        while not self.stopped:
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def wait(self, failure: Failure, delay: float, tag: str = "") -> bool:
        """Wait `delay` seconds before reconnecting after `failure`; False once stopped."""
        self.counts[f"reconnect {failure.value}"] += 1
        SOURCE_RECONNECTS.labels(self.name, failure.value).inc()
        self.note("wait", f"{tag}{failure.value} {delay:g}")
        if self._sleep is not None:
            self._sleep(delay)
            return not self.stopped
        return not self._stop.wait(delay)

    def fail(self, message: str) -> None:
        """A failure no reconnect can fix: the iteration ends and `error` says why."""
        self.note("fatal", message)
        log.error("%s: %s", self.name, message)
        self.put(_Fatal(message))

    # --- the run loop's side ----------------------------------------------------------------

    def start(self) -> LiveSource:
        for i, body in enumerate(self._readers()):
            thread = threading.Thread(target=body, name=f"{self.name}-reader-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __iter__(self) -> LiveSource:
        return self

    def __next__(self) -> Message:
        while self.error is None:
            timeout = _POLL_SECONDS
            if self.deadline is not None:
                timeout = min(timeout, self.deadline - time.monotonic())
                if timeout <= 0:
                    break
            self.idle()
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                continue
            if isinstance(item, _Fatal):
                self.error = item.message
                break
            return self.message(item)
        raise StopIteration

    def message(self, item: Any) -> Message:
        raise NotImplementedError

    def idle(self) -> None:
        """Called by the run loop before each wait for a message (checkpoints go here)."""

    def bind(self, producer: TweetProducer) -> None:
        """The producer the run publishes with (a source that checkpoints flushes it)."""

    def finish(self, delivered: bool) -> None:
        """After the run's final flush: `delivered` says whether every message was acknowledged
        (a source that checkpoints records its position then)."""

    def close(self) -> None:
        """Stop the readers and close their connections; safe to call twice."""
        if self.stopped:
            return
        self._stop.set()
        self._disconnect()
        for thread in self._threads:
            thread.join(5)

    def summary(self) -> str:
        """One line for the run's summary: connections, reconnects by cause, stream errors."""
        parts = [f"{self.counts['connected']:,} connections"]
        parts += [f"{k} {v:,}" for k, v in sorted(self.counts.items()) if k != "connected"]
        line = f"source {self.name:<14} " + ", ".join(parts)
        return line + (f"\nsource error          {self.error}" if self.error else "")
