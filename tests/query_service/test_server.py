"""The server over a real port: health checking, reflection, metrics, graceful stop on SIGTERM,
and several processes sharing one port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from qs_support import API_KEY, METADATA, serving

from tweetflow.settings import Settings
from tweetflow.v1 import analytics_pb2 as pb
from tweetflow.v1 import analytics_pb2_grpc

pytestmark = pytest.mark.integration
PROJECT_ROOT = Path(__file__).resolve().parents[2]
SERVICE = "tweetflow.v1.AnalyticsService"


def test_health_and_reflection_answer_without_a_key(test_settings: Settings) -> None:
    with serving(test_settings) as srv, srv.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICE):
            reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING

        database = ProtoReflectionDescriptorDatabase(channel)
        assert SERVICE in set(database.get_services())
        service = DescriptorPool(database).FindServiceByName(SERVICE)
        assert {m.name for m in service.methods} == {
            "TrendingHashtags", "TimeSeries", "TopMentions", "TopDomains", "TopAuthors",
            "TweetVolume", "UserActivity", "EngagementSummary", "PipelineStatus"}
        assert service.FindMethodByName("TimeSeries").output_type.fields_by_name["source"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_serving(address: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with grpc.insecure_channel(address) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=SERVICE), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{address} never reported SERVING")
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_sigterm_stops_every_process_gracefully(test_settings: Settings, processes: int) -> None:
    port, metrics_port, http_port = _free_port(), _free_port(), _free_port()
    # The test's whole namespace, its consumer group too: the hot tier is "new" (answered from
    # Redis) only while that group has committed nothing, which the stack's default group has
    # once `make demo` ran on it.
    env = {**os.environ, **test_settings.to_env(), "TWEETFLOW_API_KEYS": API_KEY}
    server = subprocess.Popen(
        [sys.executable, "-m", "query_service.server", "--port", str(port), "--metrics-port",
         str(metrics_port), "--processes", str(processes), "--http-port", str(http_port)],
        cwd=PROJECT_ROOT, env=env, start_new_session=True)
    try:
        _wait_serving(f"127.0.0.1:{port}")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)
            start = Timestamp(seconds=int(time.time()) // 60 * 60 - 600)
            reply = stub.TopMentions(pb.TopMentionsRequest(start=start), metadata=METADATA,
                                     timeout=10)
            assert reply.source == pb.ANSWER_SOURCE_HOT
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=10) as alive:
            assert alive.status == 200  # Connect and the page are served by the same processes
        ok_hot = 'tweetflow_query_requests_total{code="OK",method="TopMentions",path="hot"} 1.0'
        _wait_metrics(range(metrics_port, metrics_port + processes), ok_hot)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.read().decode()
    except OSError:  # that worker's exporter may still be starting on a busy machine
        return ""


def _wait_metrics(ports: range, needle: str, timeout: float = 30) -> None:
    """Worker i serves metrics on metrics_port + i; any of them may have answered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in "".join(_scrape(p) for p in ports):
            return
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} not in the metrics of ports {list(ports)}")
