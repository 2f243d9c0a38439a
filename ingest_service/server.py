"""`tweetflow ingest`: the IngestService, run by the shared gRPC scaffold (tweetflow.grpc_server:
health checking, reflection, API keys in `x-api-key` metadata, a graceful stop on SIGTERM, and
`--processes N`). The listen address comes from `--host` or TWEETFLOW_INGEST_HOST; metrics are
served on `--metrics-port` or TWEETFLOW_INGEST_METRICS_PORT when one is set.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable

import grpc

from ingest_service.service import IngestService, KafkaPublisher
from tweetflow import grpc_server
from tweetflow.auth import ApiKeys
from tweetflow.grpc_server import RunningServer, Service
from tweetflow.settings import Settings, get_settings
from tweetflow.tls import ServerTls
from tweetflow.v1 import ingest_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["IngestService"]
GRACE_SECONDS = 20.0  # open streams get this long to finish; k8s allows 30 s before SIGKILL
DEFAULT_PORT = 50052


def register(server: grpc.aio.Server, servicer: IngestService, keys: ApiKeys | None) -> None:
    """Add Publish to the server, behind the API key check unless `keys` is None."""
    behavior = servicer.Publish
    if keys is not None:
        behavior = keys.guard(behavior)
    handler = grpc.stream_unary_rpc_method_handler(
        behavior, request_deserializer=pb.PublishRequest.FromString,
        response_serializer=pb.PublishSummary.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        SERVICE.full_name, {"Publish": handler}),))


async def build(settings: Settings) -> Service:
    """The IngestService with its producer; the topic's metadata is fetched now, so a missing
    broker fails at start rather than on the first call."""
    publisher = KafkaPublisher(settings, asyncio.get_running_loop())
    await publisher.check()
    return Service(
        label=f"IngestService -> {settings.topic_raw}", names=(SERVICE.full_name,),
        register=lambda server, keys: register(server, IngestService(publisher), keys),
        release=publisher.close, grace=GRACE_SECONDS)


async def start(settings: Settings, port: int, *, api_keys: Iterable[str] | None,
                host: str | None = None) -> RunningServer:
    """Build and start a server. Port 0 picks a free port (see RunningServer.port). TLS per the
    settings."""
    return await grpc_server.start(await build(settings), port,
                                   host=host or settings.ingest_host, api_keys=api_keys,
                                   tls=ServerTls.from_settings(settings))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    grpc_server.add_arguments(parser, port=DEFAULT_PORT, metrics_port=None,
                              host_env="TWEETFLOW_INGEST_HOST")


def run(args: argparse.Namespace) -> int:
    """Entry point of `tweetflow ingest` and `python -m ingest_service.server`."""
    settings = get_settings()
    return grpc_server.run(args, build, host=settings.ingest_host,
                           metrics_port=settings.ingest_metrics_port)


if __name__ == "__main__":
    sys.exit(grpc_server.main("python -m ingest_service.server", "serve the gRPC ingest service",
                              add_arguments, run))
