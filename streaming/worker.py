"""A consumer-group member: reads bounded batches from Kafka, runs them through the pipeline, and
commits offsets only after every sink has flushed. SIGTERM finishes the batch in hand. Between
batches it watches the hot tier's history and rebuilds what Redis lost (streaming.healer)."""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from streaming import metrics
from streaming.healer import HealMonitor
from streaming.pipeline import BatchProcessor, BatchResult, Record
from streaming.stopper import Stopper
from tweetflow.clients import kafka_config, topic_id
from tweetflow.logs import log_fields
from tweetflow.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerOptions:
    batch_size: int = 10000
    batch_ms: int = 500
    idle_exit_s: float | None = None  # stop after this long without messages (scripts, tests)
    metrics_port: int = 0
    instance_id: str | None = None  # static membership (group.instance.id); None: dynamic


def consumer_config(settings: Settings, options: WorkerOptions | None = None,
                    **overrides: object) -> dict[str, object]:
    """librdkafka settings of a worker: manual commits, earliest reset, fast failure detection,
    cooperative rebalancing (a member joining or leaving moves only the partitions that change
    hands; the others keep being consumed) and, with an instance id, static membership (a worker
    restarted within the session timeout gets its partitions back without any rebalance)."""
    static = {"group.instance.id": options.instance_id} if options and options.instance_id else {}
    return kafka_config(settings, **{
        "group.id": settings.consumer_group,
        "partition.assignment.strategy": "cooperative-sticky",
        **static,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10000,  # a kill -9'd worker's partitions move within ~10 s
        "heartbeat.interval.ms": 2000,
        "max.poll.interval.ms": 900000,
        "fetch.min.bytes": 65536,
        "fetch.wait.max.ms": 100,
        "queued.max.messages.kbytes": 262144,
        **overrides,
    })


def tune_gc() -> None:
    """Run Python's cycle collector far less often than its defaults.

    Why: a batch allocates a dozen small objects per message (records, events, Tweets, rows),
    none of them in reference cycles, so reference counting frees them all; at the default
    thresholds the collector still ran dozens of times per batch over every live event, which
    measured 5-8 µs of CPU per message (a third of parsing). Freezing what start-up allocated
    (modules, clients) keeps the rare full collections short.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


class Worker:
    def __init__(self, settings: Settings, options: WorkerOptions | None = None) -> None:
        self.settings = settings
        self.options = options or WorkerOptions()
        topic = topic_id(settings)  # first: refused credentials fail before a consumer exists
        self.consumer = Consumer(consumer_config(settings, self.options))
        self.stopper = Stopper()  # also ends the processor's back-off while a sink is down
        self.processor = BatchProcessor(settings, stopper=self.stopper, topic_id=topic)
        self.totals = BatchResult()
        self.batches = 0  # numbers this worker's batches in its log lines
        self._window_start = time.monotonic()  # when the batch window being collected opened
        self._fatal: KafkaError | None = None  # a fatal consumer error: renew the consumer
        self.heal = HealMonitor(settings, self._committed)

    def run(self) -> BatchResult:
        """Consume until stopped (SIGTERM/SIGINT) or idle for `idle_exit_s`; returns the totals."""
        tune_gc()
        signal.signal(signal.SIGTERM, self.stopper.stop)
        signal.signal(signal.SIGINT, self.stopper.stop)
        metrics.serve_metrics(self.options.metrics_port)
        self.consumer.subscribe([self.settings.topic_raw], on_revoke=self._on_revoke)
        idle_since = time.monotonic()
        try:
            while not self.stopper.stopped:
                self.heal.poll()
                batch = self._collect()
                if self._fatal is not None:
                    self._renew_consumer()
                    continue
                if not batch:
                    if not self.consumer.assignment() or self.heal.busy:
                        idle_since = time.monotonic()  # not idle before joining, nor healing
                    idle = self.options.idle_exit_s
                    if idle is not None and time.monotonic() - idle_since > idle:
                        break
                    continue
                idle_since = time.monotonic()
                try:
                    self._process(batch)
                except Exception:
                    if self.stopper.stopped:  # stopped during a sink outage: nothing committed
                        log.warning("stopped before the batch could be written; it will be re-read")
                        break
                    raise
        finally:
            self.heal.close()
            self.consumer.close()
            self.processor.close()
        return self.totals

    def _committed(self) -> dict[int, int]:
        """The group's committed offsets of this worker's partitions."""
        assigned = self.consumer.assignment()
        if not assigned:
            return {}
        return {tp.partition: tp.offset for tp in self.consumer.committed(assigned, timeout=5)
                if tp.offset >= 0}

    def _collect(self) -> list[Record]:
        """Up to batch_size messages, or what arrived within batch_ms of the previous batch's
        collection ending. The window opens when the previous one closed, not when processing
        ends: messages that arrived while a batch was being applied have already waited, so a
        message waits at most batch_ms plus one batch's processing before it is applied (from
        the start of collection it was batch_ms plus two: freshness p99 1.08 s at 10,000/s,
        `tweetflow bench freshness`). A window that closed during processing takes only what
        is already fetched, up to batch_size."""
        deadline = self._window_start + self.options.batch_ms / 1000
        records: list[Record] = []
        while len(records) < self.options.batch_size and not self.stopper.stopped:
            remaining = deadline - time.monotonic()
            want = min(1000, self.options.batch_size - len(records))
            messages = self.consumer.consume(want, timeout=max(0.0, remaining))
            records.extend(r for m in messages if (r := self._record(m)) is not None)
            if remaining <= 0 and len(messages) < want:
                break
        self._window_start = time.monotonic()
        return records

    def _record(self, message: Message) -> Record | None:
        error = message.error()
        if error is not None:
            if error.fatal() or error.code() == KafkaError._FATAL:
                self._fatal = error
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", error)
            return None
        return Record(message.partition(), message.offset(), message.key(), message.value())

    def _process(self, records: list[Record]) -> None:
        """Apply one batch and commit its offsets; what is logged meanwhile, in any module,
        carries the batch's number and partitions (tweetflow.logs.log_fields)."""
        self.batches += 1
        with log_fields(batch=self.batches, partitions=sorted({r.partition for r in records})):
            result = self.processor.process(records)
            offsets = [TopicPartition(self.settings.topic_raw, p, o)
                       for p, o in result.next_offsets.items()]
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except Exception as exc:
                log.warning("commit failed (%s); the watermarks keep the work from repeating", exc)
            log.debug("batch %d: %d records, %d dead letters, committed %s", self.batches,
                      len(records), result.dead_letters, result.next_offsets,
                      extra={"records": len(records), "dead_letters": result.dead_letters})
        self.totals += result
        self._update_lag()

    def _renew_consumer(self) -> None:
        """Replace a consumer that failed for good. Seen when the group coordinator's broker dies:
        a static member's session times out, it rejoins under a new member id while the old one
        is still registered, and the broker fences it (FENCED_INSTANCE_ID). A new consumer joins
        under the same instance id; the batch in hand is dropped uncommitted, and re-read."""
        log.warning("the Kafka consumer failed for good (%s); joining the group again",
                    self._fatal)
        self._fatal = None
        with contextlib.suppress(Exception):
            self.consumer.close()
        self.consumer = Consumer(consumer_config(self.settings, self.options))
        self.consumer.subscribe([self.settings.topic_raw], on_revoke=self._on_revoke)

    def _update_lag(self) -> None:
        for tp in self.consumer.position(self.consumer.assignment()):
            try:
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except Exception:
                continue
            if tp.offset >= 0 and high >= 0:
                metrics.LAG.labels(tp.topic, str(tp.partition)).set(max(high - tp.offset, 0))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = [p.partition for p in partitions]
        log.info("partitions revoked: %s", revoked, extra={"partitions": revoked})
        metrics.forget_partitions(self.settings.topic_raw, revoked)  # their new owner reports them
