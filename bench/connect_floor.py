"""The floors under the query service's Connect throughput, on the same embedded granian server
and process layout as `tweetflow serve --http-port` (N processes sharing one port, uvloop), each
answering fixed bytes (the service's own answer, in JSON or binary as asked) with no key check,
cache, metrics or core:
- `/tweetflow.v1.AnalyticsService/<method>`: the same connectrpc application and codecs, so wrk
  measures what granian + connectrpc cost on this machine (the service's cache misses pay it);
- `/bare/<method>`: a bare ASGI answer, what granian alone costs (the service's cache hits skip
  connectrpc, see query_service.connect_app.CacheHits).
bench/connect_bench.py runs wrk against both and the service with the same settings.

    python -m bench.connect_floor --port P --processes N --binary FILE --json FILE
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from query_service.connect_app import PassThrough, WireRequest, snake
from query_service.http_server import start as start_http
from query_service.json_answers import SERVICE
from tweetflow.grpc_server import use_uvloop
from tweetflow.supervisor import supervise
from tweetflow.v1.analytics_connect import AnalyticsServiceASGIApplication


def app(binary: bytes, json: bytes) -> Any:
    async def answer(request: WireRequest, _ctx: object) -> bytes:
        return json if request.json else binary

    handlers = SimpleNamespace(**{snake(m.name): answer for m in SERVICE.methods})
    connect = AnalyticsServiceASGIApplication(handlers,  # type: ignore[arg-type]
                                              codecs=[PassThrough("proto"), PassThrough("json")])

    async def route(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/bare/"):
            return await connect(scope, receive, send)
        await receive()
        content_type = dict(scope["headers"]).get(b"content-type", b"application/proto")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", content_type)]})
        await send({"type": "http.response.body",
                    "body": json if content_type == b"application/json" else binary})
        return None

    return route


async def _serve(port: int, binary: bytes, json: bytes) -> None:
    running = await start_http(app(binary, json), "127.0.0.1", port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await running.stop()


def serve(port: int, binary: bytes, json: bytes) -> None:
    use_uvloop()  # the event loop the query service runs on
    asyncio.run(_serve(port, binary, json))


def start(port: int, processes: int, binary_file: Path, json_file: Path) -> subprocess.Popen:
    """Start the floor in a session of its own (so its CPU can be read by process group)."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench.connect_floor", "--port", str(port), "--processes",
         str(processes), "--binary", str(binary_file), "--json", str(json_file)],
        cwd=Path(__file__).resolve().parents[1], start_new_session=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--binary", type=Path, required=True, help="the binary answer")
    parser.add_argument("--json", type=Path, required=True, help="the JSON answer")
    args = parser.parse_args()
    binary, json = args.binary.read_bytes(), args.json.read_bytes()
    if args.processes == 1:
        serve(args.port, binary, json)
        return 0
    return supervise("floor", serve, [(args.port, binary, json)] * args.processes)


if __name__ == "__main__":
    sys.exit(main())
