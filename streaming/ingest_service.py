"""`tweetflow ingest`: the IngestService on grpc.aio. Clients stream Tweet payloads; the valid ones
go to the raw topic keyed by Tweet id, and Publish answers once Kafka has acknowledged them all.

Why validate here although the consumers parse again: a payload with no Tweet id has no key, so it
would land on a random partition and be dead-lettered later, far from the client that sent it.
Rejecting it in the answer tells that client now. Valid payloads are published byte for byte.

Same conventions as the query service: health checking and reflection (no key needed), API keys in
`x-api-key` metadata (tweetflow.auth), and a graceful stop on SIGTERM. The listen address
comes from `--host` or TWEETFLOW_INGEST_HOST. Metrics are served on TWEETFLOW_INGEST_METRICS_PORT
when it is set.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter

from streaming.parsing import InvalidPayload, parse_payload
from streaming.producer import PRODUCER_CONFIG

# The query service's API keys, reused as they are. This import runs from streaming to
# query_service; auth.py needs only grpc and tweetflow.settings, so it could move to tweetflow/.
from tweetflow.auth import ApiKeys, client_key, describe_keys, load_api_keys
from tweetflow.clients import kafka_config
from tweetflow.settings import Settings, get_settings
from tweetflow.v1 import ingest_pb2 as pb
from tweetflow.v1 import ingest_pb2_grpc

log = logging.getLogger(__name__)

SERVICE = pb.DESCRIPTOR.services_by_name["IngestService"]
DEFAULT_HOST = "127.0.0.1"
GRACE_SECONDS = 20.0  # open streams get this long to finish; k8s allows 30 s before SIGKILL
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
                                        daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.1)

    async def check(self, timeout: float = 10.0) -> None:
        """Fetch the topic's metadata now: a missing broker fails at start, not on the first call."""
        meta = await asyncio.to_thread(self._producer.list_topics, self.topic, timeout=timeout)
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


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    publisher: KafkaPublisher

    async def stop(self, grace: float = GRACE_SECONDS) -> None:
        """Report NOT_SERVING, let open streams finish within `grace`, flush the producer."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        await self.publisher.close()


def register(server: grpc.aio.Server, servicer: IngestService,
             api_keys: Iterable[str] | None) -> None:
    """Add Publish to the server, behind the API key check unless `api_keys` is None."""
    behavior = servicer.Publish
    if api_keys is not None:
        behavior = ApiKeys(api_keys).guard(behavior)
    handler = grpc.stream_unary_rpc_method_handler(
        behavior, request_deserializer=pb.PublishRequest.FromString,
        response_serializer=pb.PublishSummary.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        SERVICE.full_name, {"Publish": handler}),))


async def start(settings: Settings, port: int, *, api_keys: Iterable[str] | None,
                host: str = DEFAULT_HOST) -> RunningServer:
    """Build and start a server. Port 0 picks a free port (see RunningServer.port)."""
    publisher = KafkaPublisher(settings, asyncio.get_running_loop())
    await publisher.check()
    server = grpc.aio.server()
    register(server, IngestService(publisher), api_keys)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE.full_name, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        await publisher.close(0)
        raise OSError(f"cannot listen on {host}:{port}")
    await server.start()
    for name in ("", SERVICE.full_name):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, bound, health_servicer, publisher)


async def serve(settings: Settings, port: int, *, host: str = DEFAULT_HOST, metrics_port: int = 0,
                grace: float = GRACE_SECONDS) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully."""
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=host)
    running = await start(settings, port, api_keys=load_api_keys(settings), host=host)
    log.info("IngestService on %s:%d -> %s (metrics :%s; API keys: %s)", host, running.port,
             settings.topic_raw, metrics_port or "off", describe_keys(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: letting open streams finish (grace %.0fs)", grace)
    await running.stop(grace)


def run(args: argparse.Namespace) -> int:
    """Entry point of `tweetflow ingest` (args.port, optional args.host and args.metrics_port)."""
    host = getattr(args, "host", None) or os.environ.get("TWEETFLOW_INGEST_HOST", DEFAULT_HOST)
    metrics_port = int(getattr(args, "metrics_port", None)
                       or os.environ.get("TWEETFLOW_INGEST_METRICS_PORT", "0"))
    asyncio.run(serve(get_settings(), args.port, host=host, metrics_port=metrics_port))
    return 0


def publish(stub: ingest_pb2_grpc.IngestServiceStub, payloads: Iterable[bytes], *,
            api_key: str | None = None, timeout: float | None = 180.0) -> pb.PublishSummary:
    """Client helper: stream `payloads` over one Publish call and return the summary.

    When `api_key` is not given, it uses the key a local client should send
    (tweetflow.auth.client_key). The default timeout is longer than the producer's 120 s
    delivery timeout, so a slow broker is reported in `failed` and the call does not expire first.
    """
    key = api_key if api_key is not None else client_key(get_settings())
    metadata = (("x-api-key", key),) if key else ()
    requests = (pb.PublishRequest(payload=p) for p in payloads)
    return stub.Publish(requests, metadata=metadata, timeout=timeout)
