"""Container health probes using only the image's Python: `http`, `grpc` or `tcp` TARGET.

Why a script: python:3.11-slim has neither curl nor grpc_health_probe, the image already carries
grpcio-health-checking, and one probe serves docker compose healthchecks and Kubernetes exec
probes alike. Exit status 0 means healthy; the reason for a failure goes to stderr.
"""

from __future__ import annotations

import argparse
import socket
import sys
import urllib.request
from collections.abc import Sequence


def http_ok(url: str, timeout: float) -> bool:
    """A 2xx answer from `url`."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return 200 <= response.status < 300


def grpc_ok(target: str, timeout: float, service: str = "") -> bool:
    """SERVING from the gRPC health service at `target`.

    A server without the health service (UNIMPLEMENTED) still proved it speaks gRPC on the port,
    which is what a liveness probe needs; any other error is a failure.
    """
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:  # type: ignore[attr-defined]
                return True
            raise
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def tcp_ok(target: str, timeout: float) -> bool:
    """Something accepts connections at HOST:PORT."""
    host, _, port = target.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout):
        return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["http", "grpc", "tcp"])
    parser.add_argument("target", help="URL (http) or HOST:PORT (grpc, tcp)")
    parser.add_argument("--service", default="", help="gRPC health service name (default: server)")
    parser.add_argument("--timeout", type=float, default=3.0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.kind == "http":
            ok = http_ok(args.target, args.timeout)
        elif args.kind == "grpc":
            ok = grpc_ok(args.target, args.timeout, args.service)
        else:
            ok = tcp_ok(args.target, args.timeout)
    except Exception as exc:  # any failure means "unhealthy"; say why
        print(f"unhealthy: {args.kind} {args.target}: {exc}", file=sys.stderr)
        return 1
    if not ok:
        print(f"unhealthy: {args.kind} {args.target}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
