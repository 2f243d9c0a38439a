"""Publish Tweets to Kafka: an accounted, idempotent producer and the paced run loop around it.

Why these producer settings:

* `enable.idempotence` (implies acks=all, bounded in-flight requests, retries): the broker drops
  the producer's own retries, so the only duplicates in the topic are the ones we inject on
  purpose (`--duplicates`) to exercise the consumers' deduplication.
* `partitioner=murmur2_random`: Java-compatible key hashing (data contract), so a Tweet, its
  duplicates and its delete share a partition whichever client produced them; unkeyed messages
  (unparseable file lines) go to a random partition.
* lz4: the cheapest codec to decompress on the consumer side, and ~2x smaller JSON batches.
* linger 20 ms / 1 MB batches: throughput over latency; 20 ms is invisible next to the
  consumers' 500 ms flush cadence.
"""

from __future__ import annotations

import gzip
import heapq
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tweetflow.clients import kafka_config
from tweetflow.settings import Settings, get_settings

__all__ = [
    "PRODUCER_CONFIG",
    "BurstSpec",
    "DeliveryStats",
    "Message",
    "Progress",
    "RunPlan",
    "RunResult",
    "TokenBucket",
    "TweetProducer",
    "file_messages",
    "keyed",
    "run_plan",
]

Message = tuple[bytes | None, bytes, int]  # (key, value, Tweet id or 0)

PRODUCER_CONFIG: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "compression.type": "lz4",
    "partitioner": "murmur2_random",
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "batch.num.messages": 10_000,
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 512 * 1024,
    "message.timeout.ms": 120_000,  # a delivery still failing after 2 min is reported as failed
}


@dataclass
class DeliveryStats:
    """What the broker acknowledged. `bytes_delivered` counts message values."""

    attempted: int = 0
    delivered: int = 0
    failed: int = 0
    undelivered: int = 0  # still queued when flush() gave up
    bytes_delivered: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.undelivered == 0

    def snapshot(self) -> DeliveryStats:
        return replace(self, errors=Counter(self.errors))


class TweetProducer:
    """A confluent_kafka.Producer for one topic, with delivery accounting.

    Keys are Tweet ids as decimal ASCII (data contract); `None` keys are allowed for payloads
    without a usable id, which the consumers dead-letter.
    """

    def __init__(self, settings: Settings | None = None, topic: str | None = None,
                 **overrides: Any) -> None:
        from confluent_kafka import Producer

        settings = settings or get_settings()
        self.topic = topic or settings.topic_raw
        self.stats = DeliveryStats()
        self._producer = Producer(kafka_config(
            settings, **PRODUCER_CONFIG, on_delivery=self._on_delivery, **overrides))

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Connect and fetch the topic's metadata now, so a run's clock excludes the setup
        (~0.5 s with the idempotent producer's id handshake) and a missing broker fails fast."""
        self._producer.list_topics(self.topic, timeout=timeout)

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            self.stats.delivered += 1
            self.stats.bytes_delivered += len(msg)
        else:
            self.stats.failed += 1
            self.stats.errors[err.name()] += 1

    def produce(self, key: bytes | None, value: bytes) -> None:
        """Queue one message; waits for room when the local queue is full."""
        from confluent_kafka import KafkaException

        self.stats.attempted += 1
        while True:
            try:
                self._producer.produce(self.topic, value, key)
                return
            except BufferError:
                self._producer.poll(0.05)
            except KafkaException as exc:  # rejected locally, e.g. MSG_SIZE_TOO_LARGE
                self.stats.failed += 1
                self.stats.errors[exc.args[0].name()] += 1
                return

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery callbacks (waiting up to `timeout` seconds for one)."""
        try:
            self._producer.poll(timeout)
        except SystemError as exc:
            # A signal arriving inside librdkafka's poll surfaces as SystemError ("returned NULL
            # without setting an exception") instead of KeyboardInterrupt; treat it as the latter
            # so run_plan flushes and prints its summary.
            raise KeyboardInterrupt from exc

    def flush(self, timeout: float = 60.0) -> DeliveryStats:
        """Wait for every queued message's fate; what is still queued counts as undelivered."""
        self.stats.undelivered = self._producer.flush(timeout)
        return self.stats.snapshot()


class TokenBucket:
    """Paces calls to `rate` per second (0 = unlimited), allowing `slack` seconds of burst.

    Hand-written: twenty lines with an injectable sleep (the producer serves delivery callbacks
    while it waits), which the rate-limiter packages do not offer. Sleeps only once the debt
    exceeds a millisecond, so high rates cost no syscall per message.
    """

    def __init__(self, rate: float, slack: float = 0.05,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Any] = time.sleep) -> None:
        self._clock, self._sleep, self._slack = clock, sleep, slack
        self._tokens, self._last = 0.0, clock()
        self.rate = 0.0
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        self.rate = max(0.0, rate)
        self._capacity = max(1.0, self.rate * self._slack)

    def take(self) -> None:
        if self.rate <= 0:
            return
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self.rate) - 1.0
        self._last = now
        if self._tokens < 0:
            wait = -self._tokens / self.rate
            if wait >= 0.001:
                self._sleep(wait)


@dataclass(frozen=True)
class BurstSpec:
    """`RATE:SECONDS`: run at RATE messages/s for SECONDS in the middle of the run."""

    rate: float
    seconds: float

    @classmethod
    def parse(cls, text: str) -> BurstSpec:
        try:
            rate, seconds = (float(x) for x in text.split(":"))
        except ValueError:
            raise ValueError(f"burst {text!r} is not RATE:SECONDS") from None
        if rate < 0 or seconds <= 0:
            raise ValueError(f"burst {text!r}: RATE must be >= 0 and SECONDS > 0")
        return cls(rate, seconds)


@dataclass(frozen=True)
class RunPlan:
    """How much to publish and how fast. `rate`, `count` and `duration` limit originals;
    duplicates come on top. The run stops at `count` or `duration`, whichever comes first
    (None or <= 0: no limit of that kind), or when the source is exhausted."""

    rate: float = 1000.0
    duration: float | None = 10.0
    count: int | None = None
    duplicates: float = 0.0
    burst: BurstSpec | None = None
    seed: int = 42
    duplicate_delay: tuple[float, float] = (0.05, 1.0)  # seconds after the original

    def burst_window(self) -> tuple[float, float] | None:
        """(start, end) of the burst in seconds from the start of the run: centred on the run's
        nominal length (`duration`, else `count / rate`)."""
        if self.burst is None:
            return None
        if self.duration and self.duration > 0:
            length = self.duration
        elif self.count and self.rate > 0:
            length = self.count / self.rate
        else:
            length = 0.0
        start = max(0.0, (length - self.burst.seconds) / 2)
        return start, start + self.burst.seconds


@dataclass(frozen=True)
class Progress:
    elapsed: float
    sent: int  # originals queued
    duplicates: int
    rate: float  # originals per second over the last interval
    stats: DeliveryStats


@dataclass(frozen=True)
class RunResult:
    sent: int  # originals queued
    duplicates: int  # extra copies queued
    stats: DeliveryStats
    elapsed: float
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return self.stats.ok and not self.interrupted

    @property
    def mb_per_s(self) -> float:
        return self.stats.bytes_delivered / 1e6 / self.elapsed if self.elapsed > 0 else 0.0


def run_plan(producer: TweetProducer, messages: Iterator[Message], plan: RunPlan, *,
             on_burst: Callable[[int, int], None] | None = None,
             progress: Callable[[Progress], None] | None = None,
             flush_timeout: float = 60.0) -> RunResult:
    """Publish `messages` to `producer` as `plan` says; returns once all are acknowledged.

    `on_burst(start_ms, end_ms)` is called at the start with the burst's wall-clock span (the
    synthetic source uses it to spike a hashtag). `progress` is called about once a second.
    """
    bucket = TokenBucket(plan.rate, sleep=producer.poll)
    dup_rng = random.Random(plan.seed ^ 0x5EED)
    pending: list[tuple[float, int, bytes | None, bytes]] = []  # (due, seq, key, value) heap
    count = plan.count if plan.count and plan.count > 0 else None
    duration = plan.duration if plan.duration and plan.duration > 0 else None
    window = plan.burst_window()
    start = time.monotonic()
    if window and on_burst:
        wall_ms = time.time() * 1000
        on_burst(int(wall_ms + window[0] * 1000), int(wall_ms + window[1] * 1000))
    sent = dups = 0
    in_burst = interrupted = False
    last_report, last_sent = start, 0
    try:
        while count is None or sent < count:
            now = time.monotonic()
            elapsed = now - start
            if duration is not None and elapsed >= duration:
                break
            if window is not None and in_burst != (window[0] <= elapsed < window[1]):
                in_burst = not in_burst
                bucket.set_rate(plan.burst.rate if in_burst and plan.burst else plan.rate)
            bucket.take()
            item = next(messages, None)
            if item is None:
                break
            key, value, _ = item
            producer.produce(key, value)
            sent += 1
            if plan.duplicates and dup_rng.random() < plan.duplicates:
                lo, hi = plan.duplicate_delay
                heapq.heappush(pending, (now + dup_rng.uniform(lo, hi), sent, key, value))
            while pending and pending[0][0] <= now:
                _, _, k, v = heapq.heappop(pending)
                producer.produce(k, v)
                dups += 1
            if sent % 512 == 0:
                producer.poll(0)
            if progress and now - last_report >= 1.0:
                rate = (sent - last_sent) / (now - last_report)
                progress(Progress(elapsed, sent, dups, rate, producer.stats.snapshot()))
                last_report, last_sent = now, sent
    except KeyboardInterrupt:
        interrupted = True
    for _, _, k, v in sorted(pending):  # copies not yet due still go out: the run owes them
        producer.produce(k, v)
        dups += 1
    stats = producer.flush(flush_timeout)
    return RunResult(sent, dups, stats, time.monotonic() - start, interrupted)


def file_messages(path: str | Path) -> Iterator[Message]:
    """JSON lines of payloads (gzip if the name ends in .gz), keyed by their Tweet id (`keyed`);
    blank lines are skipped."""
    path = Path(path)
    opener: Callable[..., Any] = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as lines:
        for raw in lines:
            line = raw.rstrip(b"\r\n")
            if line.strip():
                yield keyed(line)


def keyed(payload: bytes) -> Message:
    """A payload as it goes to Kafka, unchanged, keyed by the id `streaming.parsing.parse_payload`
    finds (the first event's, for a v2 `data` list; the deleted Tweet's, for a delete). One it
    rejects goes unkeyed, so that the consumers dead-letter it with the parser's reason."""
    from streaming.parsing import InvalidPayload, parse_payload

    try:
        tweet_id = parse_payload(payload)[0].tweet_id
    except InvalidPayload:
        return None, payload, 0
    return str(tweet_id).encode(), payload, tweet_id
