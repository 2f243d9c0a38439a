"""granian serving the Connect application (query_service.connect_app) inside the process and
event loop of the grpcio server, so both transports share one service core: its in-process cache,
its store clients and its metrics.

Why granian: its HTTP/1.1 and HTTP/2 stack is Rust (hyper), so a request costs Python only the
ASGI callback: a bare granian handler answered ~73,000 req/s here, against ~6,000 for a no-op
grpcio server. Why embedded (granian.server.embed, marked experimental by granian): it runs in
the current asyncio loop, so `--processes N` stays N processes each serving both transports
(granian binds its socket with SO_REUSEPORT on Linux, as grpcio does); granian's own process
manager would have meant a second set of processes with their own caches and metrics ports.
Static files (the page's charting library) are served by granian itself, without Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from granian.constants import HTTPModes, Interfaces, SSLProtocols
from granian.log import LogLevels
from granian.server.embed import Server

from query_service.connect_app import DASHBOARD_DIR, STATIC_ROUTE
from tweetflow.tls import ServerTls

START_TIMEOUT = 10.0  # seconds until the port must accept connections
STOP_TIMEOUT = 10.0
# granian's own log lines (warnings and errors only) go to the process's root logger.
LOG_CONFIG = {"loggers": {"_granian": {"handlers": [], "propagate": True},
                          "granian.access": {"handlers": [], "propagate": False}}}


@dataclass
class RunningHttp:
    server: Server
    task: asyncio.Task
    port: int

    @property
    def description(self) -> str:
        return f"Connect (JSON, binary, gRPC-Web), /healthz, /readyz and the page on :{self.port}"

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish, and wait for granian to exit."""
        self.server.stop()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(self.task, STOP_TIMEOUT)


async def start(app: Any, host: str, port: int, *, tls: ServerTls | None = None) -> RunningHttp:
    """Serve `app` (an ASGI application, say HttpApp) on host:port (HTTP/1.1 and HTTP/2) until
    `stop()`: cleartext, or with `tls` HTTPS only (TLS 1.2 or later, as grpcio; a client
    certificate of its CA required when it has one), the files the gRPC side serves."""
    ssl: dict[str, Any] = {} if tls is None else {
        "ssl_cert": tls.cert, "ssl_key": tls.key, "ssl_protocol_min": SSLProtocols.tls12,
        "ssl_ca": tls.client_ca, "ssl_client_verify": tls.client_ca is not None}
    server = Server(app, address=host, port=port, interface=Interfaces.ASGI,
                    http=HTTPModes.auto, backlog=2048, log_level=LogLevels.warning,
                    log_dictconfig=LOG_CONFIG, static_path_route=[STATIC_ROUTE],
                    static_path_mount=[DASHBOARD_DIR / "static"], static_path_expires=3600, **ssl)
    task = asyncio.ensure_future(server.serve())
    deadline = time.monotonic() + START_TIMEOUT
    while not await _accepts(host, port):
        if task.done():
            task.result()  # raises why it stopped (say, the port is taken)
            raise OSError(f"granian stopped before listening on {host}:{port}")
        if time.monotonic() > deadline:
            server.stop()
            raise OSError(f"granian did not listen on {host}:{port} within {START_TIMEOUT:.0f}s")
        await asyncio.sleep(0.05)
    return RunningHttp(server, task, port)


async def _accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host if host != "0.0.0.0" else "127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True

