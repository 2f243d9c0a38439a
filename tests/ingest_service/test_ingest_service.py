"""ingest_service over a real port: Publish validates, keys and forwards payloads to the
real local broker, and answers only once they are acknowledged; API keys, health, reflection."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import orjson
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from server_support import running

from ingest_service.client import publish
from ingest_service.server import start
from tweetflow import namespaces
from tweetflow.settings import Settings
from tweetflow.v1 import ingest_pb2_grpc

pytestmark = pytest.mark.integration
DATA = Path(__file__).resolve().parents[1] / "data"
SERVICE = "tweetflow.v1.IngestService"
API_KEY = "ingest-test-key"

V1_TWEET = orjson.dumps({
    "created_at": "Wed Oct 10 20:19:24 +0000 2018", "id_str": "1050118621198921728",
    "text": "hello #tag", "user": {"id_str": "6253282", "screen_name": "api"}})


@pytest.fixture
def address(test_settings: Settings) -> Iterator[str]:
    """The IngestService for `test_settings` on a free port, served from a background loop."""
    with running(lambda: start(test_settings, 0, api_keys=(API_KEY,))) as server:
        yield f"127.0.0.1:{server.port}"


def _lines(name: str) -> list[bytes]:
    return [ln for ln in (DATA / name).read_bytes().splitlines() if ln.strip()]


def _read_topic(settings: Settings, expected: int, timeout: float = 30.0
                ) -> list[tuple[bytes | None, bytes]]:
    """Every message of the raw topic: wait for `expected`, then one more second for extras."""
    from confluent_kafka import Consumer

    from tweetflow.clients import kafka_config

    group = f"reader_{uuid.uuid4().hex[:8]}"
    consumer = Consumer(kafka_config(settings, **{
        "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}))
    consumer.subscribe([settings.topic_raw])
    got: list[tuple[bytes | None, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(got) < expected:
            got += [(m.key(), m.value()) for m in consumer.consume(1000, 1.0) if not m.error()]
        got += [(m.key(), m.value()) for m in consumer.consume(1000, 1.0) if not m.error()]
    finally:
        consumer.close()
        namespaces.delete_groups(settings, [group])
    return got


def _first(data: dict | list) -> dict:
    return data[0] if isinstance(data, list) else data


def test_publish_forwards_valid_payloads_and_reports_the_rest(test_settings: Settings,
                                                              address: str) -> None:
    v2, deletes = _lines("v2_expanded_stream.jsonl"), _lines("deletes.jsonl")
    # Ids used as keys, written out by hand: the first Tweet of each v2 message, and for a
    # delete the deleted Tweet's id.
    v2_keys = [_first(orjson.loads(v)["data"])["id"].encode() for v in v2]
    expected = dict(zip([*v2, *deletes, V1_TWEET],
                        [*v2_keys, b"1234567890123456789", b"601430178305220608",
                         b"1346889436626259968", b"1050118621198921728"], strict=True))
    # Over the producer's 1 MB message limit but under the parser's 1 MiB limit: the payload
    # parses, then Kafka refuses it, so it counts as failed.
    too_big = orjson.dumps({**orjson.loads(v2[0]), "padding": "x" * 1_010_000})
    invalid = [b"{not json", b'{"data": {"text": "no id"}}', b"\xff\xfe", b"[]"]
    payloads = [invalid[0], *v2[:3], invalid[1], *deletes, too_big, invalid[2], V1_TWEET,
                *v2[3:], invalid[3]]

    with grpc.insecure_channel(address) as channel:
        summary = publish(ingest_pb2_grpc.IngestServiceStub(channel), payloads, api_key=API_KEY)

    assert (summary.received, summary.published, summary.rejected, summary.failed) == (
        len(payloads), len(expected), len(invalid), 1)
    reasons = {e.split(":")[0]: e for e in summary.errors}
    assert "rejected (invalid_json)" in reasons["payload #1"]
    assert "rejected (missing_field)" in reasons["payload #5"]
    assert "rejected (invalid_utf8)" in reasons["payload #10"]
    assert "rejected (unknown_shape)" in reasons[f"payload #{len(payloads)}"]
    assert "delivery failed: MSG_SIZE_TOO_LARGE" in reasons["payload #9"]
    # `published` means acknowledged: every one is already readable, unchanged, with its key.
    got = _read_topic(test_settings, len(expected))
    assert sorted(got) == sorted((key, value) for value, key in expected.items())


def test_calls_without_a_known_key_are_refused(test_settings: Settings, address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        for key in ("", "wrong"):
            with pytest.raises(grpc.RpcError) as err:
                publish(stub, [V1_TWEET], api_key=key, timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _read_topic(test_settings, 0) == []


def test_health_and_reflection_answer_without_a_key(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICE):
            reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert SERVICE in set(ProtoReflectionDescriptorDatabase(channel).get_services())
