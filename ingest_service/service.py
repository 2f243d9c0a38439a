"""Publish: validate each payload, forward the valid ones through one shared producer, and count
each stream's outcomes (see the package docstring for why validation happens here)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc
from prometheus_client import Counter

from streaming.parsing import InvalidPayload, parse_payload
from streaming.producer import PRODUCER_CONFIG
from tweetflow.clients import kafka_config, kafka_metadata
from tweetflow.settings import Settings
from tweetflow.v1 import ingest_pb2 as pb
from tweetflow.v1 import ingest_pb2_grpc

log = logging.getLogger(__name__)

MAX_ERRORS = 20  # reasons kept per PublishSummary

PAYLOADS = Counter("tweetflow_ingest_payloads_total",
                   "Payloads received by IngestService.Publish, by outcome and reason",
                   ["outcome", "reason"])

Report = Callable[[str | None], None]  # called with a Kafka error name, or None when acknowledged


class KafkaPublisher:
    """One idempotent producer (streaming.producer.PRODUCER_CONFIG) that all streams share. Each
    message's delivery report is passed back to the event loop.

    Written by hand rather than with confluent_kafka.aio.AIOProducer. AIOProducer resolves a
    delivery only inside its poll() or flush(), and flush() waits for the whole producer, so one
    stream would wait for the others. Here a thread polls all the time and sends each report to
    the loop with call_soon_threadsafe. TweetProducer is not used because it counts deliveries
    for the whole producer, and Publish has to count each stream separately.
    """

    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop) -> None:
        from confluent_kafka import Producer

        self.topic = settings.topic_raw
        self._producer = Producer(kafka_config(settings, **PRODUCER_CONFIG))
        self._loop = loop
        self._stopping = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="ingest-delivery-reports",
                                        daemon=True)  # started by check()

    def _poll(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.1)

    async def check(self, timeout: float = 10.0) -> None:
        """Fetch the topic's metadata now: a missing broker or refused credentials fail at start,
        not on the first call; then start reporting deliveries. Call it before produce().

        The poll thread starts only now because it serves the producer's events: running
        earlier, it would take the credentials' refusal that kafka_metadata looks for."""
        meta = await asyncio.to_thread(kafka_metadata, self._producer, self.topic, timeout)
        if not self._poller.is_alive():
            self._poller.start()
        if meta.topics[self.topic].error is not None:
            log.warning("topic %s: %s (payloads will fail until it exists)", self.topic,
                        meta.topics[self.topic].error)

    async def produce(self, key: bytes, value: bytes, report: Report) -> None:
        """Queue one message. `report` runs on the loop when Kafka has answered for it."""
        from confluent_kafka import KafkaException

        def on_delivery(err: object, _msg: object) -> None:
            self._loop.call_soon_threadsafe(report, None if err is None else err.name())  # type: ignore[attr-defined]

        while True:
            try:
                self._producer.produce(self.topic, value, key, on_delivery=on_delivery)
                return
            except BufferError:  # local queue full: the poll thread is draining it
                await asyncio.sleep(0.05)
            except KafkaException as exc:  # refused locally, e.g. MSG_SIZE_TOO_LARGE
                report(exc.args[0].name())
                return

    async def close(self, timeout: float = 10.0) -> None:
        """Wait (up to `timeout`) for queued messages, then stop the poll thread."""
        left = await asyncio.to_thread(self._producer.flush, timeout)
        if left:
            log.warning("%d messages still unacknowledged at shutdown", left)
        self._stopping.set()
        if self._poller.is_alive():
            await asyncio.to_thread(self._poller.join)


@dataclass
class _Stream:
    """Counts for one Publish stream. Delivery reports arrive on the event loop, so no lock."""

    received: int = 0
    published: int = 0
    rejected: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    pending: int = 0
    settled: asyncio.Event = field(default_factory=asyncio.Event)

    def note(self, text: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(text)

    def reject(self, exc: InvalidPayload) -> None:
        self.rejected += 1
        self.note(f"payload #{self.received}: rejected ({exc.reason_code}): {exc.reason}")
        PAYLOADS.labels("rejected", exc.reason_code).inc()

    def sending(self) -> Report:
        """Count one message as in flight. The returned callback settles it."""
        number = self.received
        self.pending += 1
        self.settled.clear()

        def settle(error: str | None) -> None:
            if error is None:
                self.published += 1
                PAYLOADS.labels("published", "").inc()
            else:
                self.failed += 1
                self.note(f"payload #{number}: delivery failed: {error}")
                PAYLOADS.labels("failed", error).inc()
            self.pending -= 1
            if self.pending == 0:
                self.settled.set()

        return settle

    def summary(self) -> pb.PublishSummary:
        return pb.PublishSummary(received=self.received, published=self.published,
                                 rejected=self.rejected, failed=self.failed, errors=self.errors)


class IngestService(ingest_pb2_grpc.IngestServiceServicer):
    """Publish: validate each payload, forward the valid ones, and answer once Kafka has
    acknowledged them all. Payloads are numbered from 1 in stream order (#N in `errors`)."""

    def __init__(self, publisher: KafkaPublisher) -> None:
        self.publisher = publisher

    async def Publish(self, request_iterator: AsyncIterator[pb.PublishRequest],
                      context: grpc.aio.ServicerContext) -> pb.PublishSummary:
        stream = _Stream()
        stream.settled.set()
        async for request in request_iterator:
            stream.received += 1
            try:
                events = parse_payload(request.payload)
            except InvalidPayload as exc:
                stream.reject(exc)
                continue
            # The key is the first event's Tweet id, the same one streaming.producer uses. For a
            # delete, that is the deleted Tweet's id.
            key = str(events[0].tweet_id).encode()
            await self.publisher.produce(key, request.payload, stream.sending())
        await stream.settled.wait()
        return stream.summary()
