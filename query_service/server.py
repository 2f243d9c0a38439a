"""`tweetflow serve`: the AnalyticsService on grpc.aio, with health checking, reflection,
Prometheus metrics, API keys and a graceful stop on SIGTERM.

With `--processes N` (or TWEETFLOW_QUERY_PROCESSES) N worker processes serve the same port
(SO_REUSEPORT; the kernel spreads connections across them) and worker i exposes metrics on
metrics_port + i: one Python process is bound to one core by the GIL.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from query_service.interceptors import cache_shortcut, instrument
from query_service.service import AnalyticsService, Backends
from tweetflow.auth import ApiKeys, describe_keys, load_api_keys
from tweetflow.settings import Settings, get_settings
from tweetflow.v1 import analytics_pb2 as pb

log = logging.getLogger(__name__)

SERVICE = pb.DESCRIPTOR.services_by_name["AnalyticsService"]
SERVICE_NAMES = (SERVICE.full_name,)
DEFAULT_HOST = "127.0.0.1"
GRACE_SECONDS = 5.0


def register(server: grpc.aio.Server, servicer: AnalyticsService,
             api_keys: Iterable[str] | None) -> None:
    """Add the servicer's methods to the server, each wrapped once with metrics and (unless
    `api_keys` is None) the API key check, behind the in-process cache shortcut.

    Why not the generated `add_AnalyticsServiceServicer_to_server`: the servicer takes and returns
    wire bytes (no request deserializer, no response serializer) so cache hits skip protobuf.
    """
    keys = ApiKeys(api_keys) if api_keys is not None else None
    handlers = {}
    for method in SERVICE.methods:
        behavior = getattr(servicer, method.name)
        if keys is not None:
            behavior = keys.guard(behavior)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(cache_shortcut(
            method.name, instrument(method.name, behavior), servicer.cached, keys))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name,
                                                                         handlers),))


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    backends: Backends

    async def stop(self, grace: float = GRACE_SECONDS) -> None:
        """Report NOT_SERVING, let in-flight calls finish within `grace`, release the stores."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        await self.backends.close()


async def start(settings: Settings, port: int, *, api_keys: Iterable[str] | None,
                host: str = DEFAULT_HOST, backends: Backends | None = None) -> RunningServer:
    """Build and start a server; port 0 picks a free port (see RunningServer.port)."""
    backends = backends or Backends(settings)
    server = grpc.aio.server(options=[
        ("grpc.so_reuseport", 1),
        ("grpc.keepalive_permit_without_calls", 1),
    ])
    register(server, AnalyticsService(backends), api_keys)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, bound, health_servicer, backends)


async def serve(settings: Settings, port: int, metrics_port: int, *, host: str = DEFAULT_HOST,
                grace: float = GRACE_SECONDS) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully."""
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=host)
    keys = load_api_keys(settings)
    running = await start(settings, port, api_keys=keys, host=host)
    log.info("AnalyticsService on %s:%d (metrics :%s; API keys: %s)", host, running.port,
             metrics_port or "off", describe_keys(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: letting in-flight calls finish (grace %.0fs)", grace)
    await running.stop(grace)


def use_uvloop() -> None:
    """uvloop when installed: a faster event loop for the same code (grpc.aio supports it)."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run(args: argparse.Namespace) -> int:
    """Entry point of `tweetflow serve` (args.port, args.metrics_port, optional args.processes)."""
    settings = get_settings()
    processes = int(getattr(args, "processes", None)
                    or os.environ.get("TWEETFLOW_QUERY_PROCESSES", "1"))
    host = getattr(args, "host", None) or os.environ.get("TWEETFLOW_QUERY_HOST", DEFAULT_HOST)
    load_api_keys(settings)  # create the key file once, before any worker reads it
    if processes > 1:
        return supervise([
            [sys.executable, "-m", "query_service.server", "--port", str(args.port),
             "--metrics-port", str(args.metrics_port + i if args.metrics_port else 0),
             "--host", host, "--processes", "1"]
            for i in range(processes)])
    use_uvloop()
    asyncio.run(serve(settings, args.port, args.metrics_port, host=host))
    return 0


def supervise(commands: list[list[str]]) -> int:
    """Run one child per command (single-process servers sharing a port) until they exit;
    forward SIGTERM/SIGINT to them. Returns the worst exit code."""
    children = [subprocess.Popen(command) for command in commands]

    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    # A child still starting when we forwarded the signal dies of it before its handler exists:
    # it served nothing, so that is a clean stop too.
    stopped_by_us = {-signal.SIGTERM, -signal.SIGINT} if stopping else set()
    return max((0 if code in stopped_by_us else code for code in codes), key=abs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m query_service.server",
                                     description="serve the gRPC analytics query service")
    parser.add_argument("--port", type=int, default=50051)
    parser.add_argument("--metrics-port", type=int, default=9500, help="0 = no metrics endpoint")
    parser.add_argument("--processes", type=int, default=None, help="worker processes (default 1)")
    parser.add_argument("--host", default=None, help=f"listen address (default {DEFAULT_HOST})")
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")
    sys.exit(run(build_parser().parse_args()))
