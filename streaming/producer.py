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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from streaming.lookahead import Lookahead
from streaming.pacing import BurstSpec, RunPlan, TokenBucket  # the plan's home; re-exported
from tweetflow.clients import kafka_config, kafka_metadata
from tweetflow.settings import Settings, get_settings

__all__ = [
    "CATCH_UP_SECONDS",
    "PRODUCER_CONFIG",
    "STOP",
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

    @classmethod
    def total(cls, parts: Iterable[DeliveryStats]) -> DeliveryStats:
        """The sum of several producers' stats."""
        out = cls()
        for p in parts:
            out.attempted += p.attempted
            out.delivered += p.delivered
            out.failed += p.failed
            out.undelivered += p.undelivered
            out.bytes_delivered += p.bytes_delivered
            out.errors.update(p.errors)
        return out


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
        config = {**PRODUCER_CONFIG, **overrides}
        # `produce_many` queues a batch only while the local queue is at most half full
        self._room = (int(config["queue.buffering.max.messages"]) // 2,
                      int(config["queue.buffering.max.kbytes"]) * 1024 // 2)
        self._bytes_attempted = self._bytes_failed = 0
        self._producer = Producer(kafka_config(settings, **config,
                                               on_delivery=self._on_delivery))

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Connect and fetch the topic's metadata now, so a run's clock excludes the setup
        (~0.5 s with the idempotent producer's id handshake) and a missing broker or refused
        credentials fail fast (tweetflow.clients.kafka_metadata)."""
        kafka_metadata(self._producer, self.topic, timeout)

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            self.stats.delivered += 1
            self.stats.bytes_delivered += len(msg)
        else:
            self.stats.failed += 1
            self.stats.errors[err.name()] += 1
            self._bytes_failed += len(msg)

    def produce(self, key: bytes | None, value: bytes | None) -> None:
        """Queue one message (a None value is a tombstone); waits for room when the local queue
        is full."""
        from confluent_kafka import KafkaException

        with STOP.held():
            self.stats.attempted += 1
            self._bytes_attempted += len(value or b"")
            while True:
                try:
                    self._producer.produce(self.topic, value, key)
                    return
                except BufferError:
                    self.poll(0.05)
                except KafkaException as exc:  # rejected locally, e.g. MSG_SIZE_TOO_LARGE
                    self.stats.failed += 1
                    self.stats.errors[exc.args[0].name()] += 1
                    return

    def produce_many(self, messages: list[Message]) -> None:
        """`produce` the messages in one call into librdkafka (`produce_batch`: ~0.8 µs a message
        where `produce` calls cost 1.1-2.2 µs, measured here), each with its delivery report.
        The batch goes in only while the local queue is at most half full, so that librdkafka
        never refuses part of it for room (which would put the rest out of order); a message it
        rejects for good (too large...) counts as failed with librdkafka's reason."""
        if not messages:
            return
        stats, size = self.stats, sum(len(m[1]) for m in messages)
        while (queued := stats.attempted - stats.delivered - stats.failed) and (
                queued + len(messages) > self._room[0]
                or self._bytes_attempted - stats.bytes_delivered - self._bytes_failed + size
                > self._room[1]):
            self.poll(0.05)
        batch = [{"key": key, "value": value} for key, value, _ in messages]
        with STOP.held():
            stats.attempted += len(batch)
            self._bytes_attempted += size
            if self._producer.produce_batch(self.topic, batch) < len(batch):
                for m in batch:
                    if (err := m.get("_error")) is not None:
                        stats.failed += 1
                        stats.errors[err.name()] += 1
                        self._bytes_failed += len(m["value"])

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery callbacks (waiting up to `timeout` seconds for one)."""
        try:
            with STOP.held():
                self._producer.poll(timeout)
        except SystemError as exc:
            # A signal arriving inside librdkafka's poll surfaces as SystemError ("returned NULL
            # without setting an exception") instead of KeyboardInterrupt; treat it as the latter
            # so run_plan flushes and prints its summary.
            raise KeyboardInterrupt from exc

    def flush(self, timeout: float = 60.0) -> DeliveryStats:
        """Wait for every queued message's fate; what is still queued counts as undelivered."""
        with STOP.held():
            self.stats.undelivered = self._producer.flush(timeout)
            return self.stats.snapshot()


class StopHold:
    """Defers a stop (KeyboardInterrupt from a SIGTERM/SIGINT handler) to the end of the parts of
    the producer that count messages.

    Why: `produce_job.stop_on_signals` stops a run by raising KeyboardInterrupt from the signal
    handler, which Python runs in the main thread at its next instruction, wherever that is;
    inside a delivery report (run by librdkafka's poll or flush) that lost the report's count, so
    a bench's load generator reported 58,935 of 58,936 messages acknowledged, all in the topic.
    Blocking the signals in the main thread (pthread_sigmask) was not enough: another thread of
    the process then takes the signal and Python still runs the handler in the main thread.
    """

    def __init__(self) -> None:
        self.depth = 0
        self.pending = False

    @contextmanager
    def held(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth and self.pending:
                self.pending = False
                raise KeyboardInterrupt

    def interrupt(self) -> None:
        """A stop signal's handler: KeyboardInterrupt now, or when the held part ends."""
        if self.depth:
            self.pending = True
        else:
            self.pending = False
            raise KeyboardInterrupt


STOP = StopHold()  # one per process, as signal handlers are


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
    started: float = 0.0  # wall-clock time the plan's clock started
    ahead: int = 0  # messages made before it started (streaming.lookahead)
    ahead_seconds: float = 0.0  # the time that took
    processes: int = 1
    problems: tuple[str, ...] = ()  # e.g. a producer process that ended without a result
    cpu_seconds: float = 0.0  # the producer processes' CPU (all threads) from start to last ack

    @property
    def ok(self) -> bool:
        return self.stats.ok and not self.interrupted and not self.problems

    @classmethod
    def combine(cls, parts: list[RunResult]) -> RunResult:
        """One result for processes that ran a plan together (`RunPlan.share`)."""
        return cls(sum(p.sent for p in parts), sum(p.duplicates for p in parts),
                   DeliveryStats.total(p.stats for p in parts), max(p.elapsed for p in parts),
                   any(p.interrupted for p in parts), min(p.started for p in parts),
                   sum(p.ahead for p in parts), max(p.ahead_seconds for p in parts), len(parts),
                   tuple(x for p in parts for x in p.problems), sum(p.cpu_seconds for p in parts))

    @property
    def mb_per_s(self) -> float:
        return self.stats.bytes_delivered / 1e6 / self.elapsed if self.elapsed > 0 else 0.0


CHUNK_SECONDS = 0.001  # a bulk source is taken in chunks of a millisecond of the rate...
MAX_CHUNK = 256  # ... or, when behind, of what fell due, up to this
# How far behind the plan a run may fall and still catch up (the token bucket's slack): on a
# shared machine the loop is now and then held up (scheduling, a burst of delivery callbacks);
# with 50 ms of slack, 3 busy processes beside a 143,199/s run made it drop 9% of its messages.
CATCH_UP_SECONDS = 1.0


def _chunk(rate: float, bulk: bool) -> int:
    if not bulk:
        return 1
    return MAX_CHUNK if rate <= 0 else max(1, min(MAX_CHUNK, int(rate * CHUNK_SECONDS)))


class _Copies:
    """The plan's duplicates: each original is copied with probability `plan.duplicates` and
    the copy sent `plan.duplicate_delay` later."""

    def __init__(self, plan: RunPlan) -> None:
        self._p, (self._lo, self._hi) = plan.duplicates, plan.duplicate_delay
        self._rng = random.Random(plan.seed ^ 0x5EED)
        self._pending: list[tuple[float, int, bytes | None, bytes]] = []  # (due, seq, k, v) heap
        self._seq = 0

    def add(self, batch: list[Message], now: float) -> None:
        rng, p = self._rng, self._p
        for key, value, _ in batch:
            if rng.random() < p:
                self._seq += 1
                heapq.heappush(self._pending,
                               (now + rng.uniform(self._lo, self._hi), self._seq, key, value))

    def due(self, now: float) -> list[Message]:
        out: list[Message] = []
        pending = self._pending
        while pending and pending[0][0] <= now:
            _, _, k, v = heapq.heappop(pending)
            out.append((k, v, 0))
        return out

    def rest(self) -> list[Message]:
        """Copies not yet due: they still go out, the run owes them."""
        out = [(k, v, 0) for _, _, k, v in sorted(self._pending)]
        self._pending.clear()
        return out


def run_plan(producer: TweetProducer, messages: Iterator[Message], plan: RunPlan, *,
             on_burst: Callable[[int, int], None] | None = None,
             progress: Callable[[Progress], None] | None = None,
             flush_timeout: float = 60.0) -> RunResult:
    """Publish `messages` to `producer` as `plan` says; returns once all are acknowledged.

    A plain iterator (a live source) is taken one message at a time, each sent as soon as it
    comes. A `Lookahead` (the synthetic and file sources) is taken in chunks of up to a
    millisecond of the current rate, one pacing step and one delivery poll per chunk, and the
    pacing's waits fill its buffer (`streaming.lookahead`).
    `on_burst(start_ms, end_ms)` is called at the start with the burst's wall-clock span.
    `progress` is called about once a second.
    """
    bulk = isinstance(messages, Lookahead)
    source = messages if bulk else Lookahead(messages)
    planned = plan.planned_originals()
    bucket = TokenBucket(plan.rate, CATCH_UP_SECONDS, sleep=producer.poll if not bulk else (
        lambda s: source.fill_for(s, producer.poll, planned - sent)))
    copies = _Copies(plan) if plan.duplicates else None
    count = plan.count if plan.count and plan.count > 0 else None
    duration = plan.duration if plan.duration and plan.duration > 0 else None
    window = plan.burst_window()
    started, start, cpu = time.time(), time.monotonic(), time.process_time()
    if window and on_burst:  # on the wall clock of `RunResult.started`
        on_burst(int(started * 1000 + window[0] * 1000), int(started * 1000 + window[1] * 1000))
    stats, chunk = producer.stats, _chunk(plan.rate, bulk)
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
                chunk = _chunk(bucket.rate, bulk)
            n = chunk if not bulk else max(chunk, int(min(MAX_CHUNK, bucket.credit())))
            n = n if count is None else min(n, count - sent)
            bucket.take(n)
            batch = source.take(n)
            before = stats.attempted
            try:
                producer.produce_many(batch)
            finally:
                sent += stats.attempted - before
            if copies is not None:
                copies.add(batch, now)
                before = stats.attempted
                try:
                    producer.produce_many(copies.due(now))
                finally:
                    dups += stats.attempted - before
            if bulk or sent % 512 == 0:
                producer.poll(0)
            if progress and now - last_report >= 1.0:
                rate = (sent - last_sent) / (now - last_report)
                progress(Progress(elapsed, sent, dups, rate, stats.snapshot()))
                last_report, last_sent = now, sent
            if len(batch) < n:
                break
    except KeyboardInterrupt:
        interrupted = True
    if copies is not None:
        rest = copies.rest()
        producer.produce_many(rest)
        dups += len(rest)
    stats = producer.flush(flush_timeout)
    return RunResult(sent, dups, stats, time.monotonic() - start, interrupted, started,
                     cpu_seconds=time.process_time() - cpu)


def file_messages(path: str | Path, share: tuple[int, int] = (0, 1)) -> Iterator[Message]:
    """JSON lines of payloads (gzip if the name ends in .gz), keyed by their Tweet id (`keyed`);
    blank lines are skipped. `share=(i, n)`: only process i's lines of n processes reading the
    file together: those whose id is i modulo n, so that a Tweet, its copies and its delete stay
    in one process and in file order (unkeyed lines by line number)."""
    from streaming.parsing.keys import message_id  # the parser's package: only for files

    index, processes = share
    path = Path(path)
    opener: Callable[..., Any] = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as lines:
        for number, raw in enumerate(lines):
            line = raw.rstrip(b"\r\n")
            if not line or line.isspace():
                continue
            tid = message_id(line)
            message = (str(tid).encode(), line, tid) if tid is not None else keyed(line)
            if processes == 1 or (message[2] or number) % processes == index:
                yield message


def keyed(payload: bytes) -> Message:
    """A payload as it goes to Kafka, unchanged, keyed by the id `streaming.parsing.parse_payload`
    finds (the first event's, for a v2 `data` list; the deleted Tweet's, for a delete). A v2
    message's id is read without parsing it (`streaming.parsing.keys`, ~2 µs instead of ~30); other
    shapes are parsed, and one the parser rejects goes unkeyed (the consumers dead-letter it with
    the parser's reason, keyed or not)."""
    from streaming.parsing import InvalidPayload, parse_payload
    from streaming.parsing.keys import message_id

    tweet_id = message_id(payload)
    if tweet_id is not None:
        return str(tweet_id).encode(), payload, tweet_id
    try:
        tweet_id = parse_payload(payload)[0].tweet_id
    except InvalidPayload:
        return None, payload, 0
    return str(tweet_id).encode(), payload, tweet_id
