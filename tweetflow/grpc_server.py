"""How every tweetflow gRPC service runs (AnalyticsService in query_service, IngestService in
ingest_service): health checking and reflection, which need no key (load balancers and tools call
them anonymously); the API-key guard (tweetflow.auth); Prometheus metrics on the listen address;
a graceful stop on SIGTERM/SIGINT; TLS, mutual when a client CA is set, on gRPC and the
companion alike (tweetflow.tls); and `--processes N` copies sharing the port (SO_REUSEPORT,
tweetflow.supervisor), copy i serving metrics on metrics port + i.

A service brings a `Service`: its gRPC names, how to add its handlers given the API keys, what to
release once the server has stopped, how long open calls may take to finish, and optionally a
companion server run in the same process and event loop (the query service's Connect/HTTP
server), started once gRPC serves and stopped before it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tweetflow.auth import ApiKeys, describe_keys, load_api_keys
from tweetflow.command_line import ArgumentParser
from tweetflow.logs import setup_logging
from tweetflow.settings import Settings, get_settings
from tweetflow.supervisor import supervise
from tweetflow.tls import ServerTls

log = logging.getLogger(__name__)


class Companion(Protocol):
    """A server running beside gRPC in the same process (see Service.companion)."""

    description: str  # for the startup log line

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class Service:
    label: str  # for the startup log line, e.g. "AnalyticsService"
    names: tuple[str, ...]  # full gRPC service names, reported by health checking and reflection
    register: Callable[[grpc.aio.Server, ApiKeys | None], None]  # None: key checking is off
    release: Callable[[], Awaitable[None]]  # the service's own resources, after the server stops
    grace: float  # seconds open calls get to finish on a stop
    options: tuple[tuple[str, Any], ...] = ()  # grpc.aio.server channel options
    # Started with the API keys, the listen host and the TLS files (None: plaintext) once gRPC
    # serves; None: gRPC only.
    companion: Callable[[ApiKeys | None, str, ServerTls | None], Awaitable[Companion]] | None = None


Build = Callable[[Settings], Awaitable[Service]]  # module-level, so a spawned copy can run it


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    service: Service
    companion: Companion | None = None

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, stop the companion (its open requests finish), let open calls
        finish within `grace` (default: the service's), then release the service's resources."""
        await self.health.enter_graceful_shutdown()
        if self.companion is not None:
            await self.companion.stop()
        await self.server.stop(self.service.grace if grace is None else grace)
        await self.service.release()


async def start(service: Service, port: int, *, host: str, api_keys: Iterable[str] | None,
                tls: ServerTls | None = None) -> RunningServer:
    """Build and start a server; port 0 picks a free port (see RunningServer.port). With `tls`
    (ServerTls.from_settings) gRPC and the companion serve TLS only."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1), *service.options])
    keys = ApiKeys(api_keys) if api_keys is not None else None
    service.register(server, keys)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*service.names, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    bound = (server.add_secure_port(f"{host}:{port}", tls.grpc_credentials()) if tls
             else server.add_insecure_port(f"{host}:{port}"))
    if bound == 0:
        await service.release()
        raise OSError(f"cannot listen on {host}:{port}")
    await server.start()
    companion = None
    if service.companion is not None:
        try:
            companion = await service.companion(keys, host, tls)
        except BaseException:
            await server.stop(0)
            await service.release()
            raise
    for name in ("", *service.names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, bound, health_servicer, service, companion)


async def serve(build: Build, settings: Settings, port: int, *, host: str,
                metrics_port: int) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully."""
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=host)
    service = await build(settings)
    tls = ServerTls.from_settings(settings)
    running = await start(service, port, host=host, api_keys=load_api_keys(settings), tls=tls)
    # What startup created (modules, protobuf descriptors, clients) lives as long as the process:
    # frozen, a full garbage collection no longer walks it (measured 34 ms per full collection
    # of a query server before, well under 1 ms after), so such pauses stay out of the tail.
    gc.freeze()
    log.info("%s on %s:%d%s (%s; metrics :%s; API keys: %s)", service.label, host, running.port,
             f", {running.companion.description}" if running.companion else "",
             tls.description if tls else "plaintext", metrics_port or "off",
             describe_keys(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: letting open calls finish (grace %.0fs)", service.grace)
    await running.stop()


def use_uvloop() -> None:
    """uvloop when installed: a faster event loop for the same code (grpc.aio supports it)."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def serve_one(build: Build, port: int, metrics_port: int, host: str) -> None:
    """One server process: the whole of `--processes 1`, and each copy of `--processes N`."""
    use_uvloop()
    asyncio.run(serve(build, get_settings(), port, host=host, metrics_port=metrics_port))


def add_arguments(parser: argparse.ArgumentParser, *, port: int, metrics_port: int | None,
                  host_env: str, processes_env: str | None = None) -> None:
    """The options every service command has. Defaults left None come from the settings (the
    `*_env` variables name them for the help text)."""
    or_setting = "default: from the settings" if metrics_port is None else f"default {metrics_port}"
    parser.add_argument("--port", type=int, default=port, help="gRPC port")
    parser.add_argument("--metrics-port", type=int, default=metrics_port,
                        help=f"0 = no metrics endpoint ({or_setting})")
    processes_from = f"{processes_env} or " if processes_env else ""
    parser.add_argument("--processes", type=int, default=None,
                        help=f"server processes sharing the port (default {processes_from}1)")
    parser.add_argument("--host", default=None, help=f"listen address (default {host_env} or "
                                                     "127.0.0.1)")


def run(args: argparse.Namespace, build: Build, *, host: str, processes: int = 1,
        metrics_port: int = 0) -> int:
    """Run a service command: the options in `args` (see add_arguments) override the defaults
    given here, which the caller takes from the settings."""
    host = args.host or host
    processes = args.processes or processes
    metrics_port = metrics_port if args.metrics_port is None else args.metrics_port
    load_api_keys(get_settings())  # create the key file once, before any copy reads it
    if processes > 1:
        return supervise("server", serve_one, [
            (build, args.port, metrics_port + i if metrics_port else 0, host)
            for i in range(processes)])
    serve_one(build, args.port, metrics_port, host)
    return 0


def main(prog: str, description: str, add_service_arguments: Callable[[argparse.ArgumentParser], None],
         run_service: Callable[[argparse.Namespace], int]) -> int:
    """`python -m <service>.server`: a service command without the `tweetflow` CLI around it."""
    setup_logging(component=prog.removeprefix("python -m "))
    parser = ArgumentParser(prog=prog, description=description)
    add_service_arguments(parser)
    return run_service(parser.parse_args())
