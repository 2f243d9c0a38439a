"""Calling the IngestService from Python."""

from __future__ import annotations

from collections.abc import Iterable

from tweetflow.auth import client_key
from tweetflow.settings import get_settings
from tweetflow.v1 import ingest_pb2 as pb
from tweetflow.v1 import ingest_pb2_grpc


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
