"""The query service as a real process (`query_service.server`) for a namespace, on a free port,
answering once its gRPC health check says SERVING."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.harness.processes import child_env, die_with_parent, free_port, stop_process
from tweetflow.settings import PROJECT_ROOT, Settings

BENCH_API_KEY = "bench-key"


def wait_serving(port: int, timeout: float) -> bool:
    """Poll grpc.health.v1 on 127.0.0.1:port until AnalyticsService is SERVING (or time runs out)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                status = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service="tweetflow.v1.AnalyticsService"),
                    timeout=1).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                return True
        except grpc.RpcError:
            time.sleep(0.2)
    return False


def start_query_server(settings: Settings, log_path: Path, processes: int = 1,
                       timeout: float = 60.0, http_port: int = 0) -> tuple[subprocess.Popen, int]:
    """`query_service.server` for the namespace on a free port, API key BENCH_API_KEY; Connect
    on `http_port` (0: off; never the default 8080, which another server may hold)."""
    port = free_port()
    with log_path.open("ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "query_service.server", "--port", str(port), "--metrics-port",
             "0", "--processes", str(processes), "--http-port", str(http_port)], cwd=PROJECT_ROOT,
            env=child_env(settings, TWEETFLOW_API_KEYS=BENCH_API_KEY), stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=die_with_parent)
    if wait_serving(port, timeout):
        return server, port
    stop_process(server)
    raise RuntimeError(f"the query server did not start; see {log_path}")
