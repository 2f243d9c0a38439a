"""The floor under the query service's throughput: a grpc.aio server that does nothing.

It has the process layout of `query_service.server --processes N` (N workers sharing one port
with SO_REUSEPORT, uvloop when installed), and every AnalyticsService method answers the same
fixed bytes, with no parsing, serializing, API key check or metrics. ghz against it measures what
grpcio itself costs on this machine, so the real service's req/s and CPU per call can be read
against it (bench/query_bench.py runs both with the same ghz settings).

    python -m bench.grpc_floor --port P --processes N --response FILE
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import grpc

from tweetflow.grpc_server import use_uvloop
from tweetflow.supervisor import supervise
from tweetflow.v1 import analytics_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["AnalyticsService"]


def _identity(data: bytes) -> bytes:
    return data


async def _serve(port: int, response: bytes) -> None:
    async def answer(_request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
        return response

    handler = grpc.unary_unary_rpc_method_handler(answer, request_deserializer=_identity,
                                                  response_serializer=_identity)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        SERVICE.full_name, {m.name: handler for m in SERVICE.methods}),))
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise OSError(f"cannot listen on 127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0)


def serve(port: int, response: bytes) -> None:
    use_uvloop()  # the event loop the query service runs on
    asyncio.run(_serve(port, response))


def start(port: int, processes: int, response_file: Path) -> subprocess.Popen:
    """Start the floor server in a session of its own (so its CPU can be read by process group)."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench.grpc_floor", "--port", str(port), "--processes",
         str(processes), "--response", str(response_file)],
        cwd=Path(__file__).resolve().parents[1], start_new_session=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--response", type=Path, required=True,
                        help="file holding the serialized response every call gets")
    args = parser.parse_args()
    response = args.response.read_bytes()
    if args.processes == 1:
        serve(args.port, response)
        return 0
    return supervise("floor", serve, [(args.port, response)] * args.processes)


if __name__ == "__main__":
    sys.exit(main())
