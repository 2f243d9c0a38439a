"""`tweetflow serve`: the AnalyticsService, run by the shared gRPC scaffold (tweetflow.grpc_server:
health checking, reflection, Prometheus metrics, API keys, a graceful stop on SIGTERM), and over
Connect on `--http-port` (default 8080, 0 = off) in the same processes: Connect JSON and binary
protobuf, gRPC-Web, `/healthz`, `/readyz` and the live page at `/` (query_service.connect_app,
served by granian, query_service.http_server). Both transports call the same core.

With `--processes N` (or TWEETFLOW_QUERY_PROCESSES) N processes serve the same port (SO_REUSEPORT;
the kernel spreads connections across them) and process i exposes metrics on metrics_port + i:
one Python process is bound to one core by the GIL.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Iterable

import grpc

from query_service.errors import QueryError
from query_service.interceptors import Behavior, cache_shortcut, instrument
from query_service.service import AnalyticsService, Backends
from tweetflow import grpc_server
from tweetflow.auth import ApiKeys
from tweetflow.grpc_server import RunningServer, Service
from tweetflow.settings import Settings, get_settings
from tweetflow.tls import ServerTls
from tweetflow.v1 import analytics_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["AnalyticsService"]
SERVICE_NAMES = (SERVICE.full_name,)
GRACE_SECONDS = 5.0
DEFAULT_PORT, DEFAULT_METRICS_PORT = 50051, 9500


def answering(service: AnalyticsService, method: str) -> Behavior:
    """The gRPC handler of one method: the core's answer, its QueryError as the gRPC status."""

    async def behavior(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            return await service.answer(method, request, context.time_remaining())
        except QueryError as exc:
            await context.abort(grpc.StatusCode[exc.status.name], exc.message)
            raise  # not reached: abort raises

    return behavior


def register(server: grpc.aio.Server, servicer: AnalyticsService, keys: ApiKeys | None) -> None:
    """Add the service's methods to the server, each wrapped once with metrics and (unless
    `keys` is None) the API key check, behind the in-process cache shortcut.

    Why not the generated `add_AnalyticsServiceServicer_to_server`: the core takes and returns
    wire bytes (no request deserializer, no response serializer) so cache hits skip protobuf.
    """
    handlers = {}
    for method in SERVICE.methods:
        behavior = answering(servicer, method.name)
        if keys is not None:
            behavior = keys.guard(behavior)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(cache_shortcut(
            method.name, instrument(method.name, behavior), servicer.cached, keys))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name,
                                                                         handlers),))


async def build(settings: Settings, backends: Backends | None = None, *,
                http_port: int = 0) -> Service:
    """The AnalyticsService over `backends` (default: the stores `settings` name), also over
    Connect on `http_port` unless it is 0."""
    backends = backends or Backends(settings)
    servicer = AnalyticsService(backends)

    async def serve_connect(keys: ApiKeys | None, host: str,
                            tls: ServerTls | None) -> grpc_server.Companion:
        from query_service import http_server
        from query_service.connect_app import HttpApp

        return await http_server.start(HttpApp(servicer, keys), host, http_port, tls=tls)

    return Service(
        label="AnalyticsService", names=SERVICE_NAMES,
        register=lambda server, keys: register(server, servicer, keys),
        release=backends.close, grace=GRACE_SECONDS,
        options=(("grpc.keepalive_permit_without_calls", 1),),
        companion=serve_connect if http_port else None)


async def start(settings: Settings, port: int, *, api_keys: Iterable[str] | None,
                host: str | None = None, backends: Backends | None = None,
                http_port: int = 0) -> RunningServer:
    """Build and start a server; port 0 picks a free port (see RunningServer.port). Connect is
    served on `http_port` unless it is 0 (no free port is picked for it). TLS per the settings."""
    return await grpc_server.start(await build(settings, backends, http_port=http_port), port,
                                   host=host or settings.query_host, api_keys=api_keys,
                                   tls=ServerTls.from_settings(settings))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    grpc_server.add_arguments(parser, port=DEFAULT_PORT, metrics_port=DEFAULT_METRICS_PORT,
                              host_env="TWEETFLOW_QUERY_HOST",
                              processes_env="TWEETFLOW_QUERY_PROCESSES")
    parser.add_argument("--http-port", type=int, default=None,
                        help="port of the Connect API, /healthz, /readyz and the live page; "
                             "0 = gRPC only (default TWEETFLOW_QUERY_HTTP_PORT or 8080)")


def run(args: argparse.Namespace) -> int:
    """Entry point of `tweetflow serve` and `python -m query_service.server`."""
    settings = get_settings()
    http_port = settings.query_http_port if args.http_port is None else args.http_port
    return grpc_server.run(args, functools.partial(build, http_port=http_port),
                           host=settings.query_host, processes=settings.query_processes)


if __name__ == "__main__":
    sys.exit(grpc_server.main("python -m query_service.server", "serve the gRPC analytics query service",
                              add_arguments, run))
