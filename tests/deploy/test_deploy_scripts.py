"""deploy/scripts: the health probe against real endpoints (the stack's ClickHouse, in-process gRPC
servers) and the one-shot init against the running stack."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from deploy_support import DEPLOY, load_script
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tweetflow import namespaces
from tweetflow.clients import clickhouse_client, kafka_admin
from tweetflow.settings import Settings

healthcheck = load_script("healthcheck")
init_stack = load_script("init_stack")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def grpc_server() -> Iterator[tuple[grpc.Server, int, health.HealthServicer]]:
    """A real gRPC server on loopback with the standard health service."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield server, port, servicer
    server.stop(None)


def test_http_probe(stack: Settings) -> None:
    assert healthcheck.main(["http", f"{stack.clickhouse_http_url}/ping"]) == 0
    assert healthcheck.main(["http", f"http://127.0.0.1:{_free_port()}/", "--timeout", "1"]) == 1


def test_grpc_probe_follows_the_health_status(
        grpc_server: tuple[grpc.Server, int, health.HealthServicer]) -> None:
    _, port, servicer = grpc_server
    target = f"127.0.0.1:{port}"
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert healthcheck.main(["grpc", target]) == 0
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert healthcheck.main(["grpc", target]) == 1
    assert healthcheck.main(["grpc", f"127.0.0.1:{_free_port()}", "--timeout", "1"]) == 1


def test_grpc_probe_accepts_a_server_without_health_service() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        assert healthcheck.main(["grpc", f"127.0.0.1:{port}"]) == 0
    finally:
        server.stop(None)


def test_tcp_probe(stack: Settings) -> None:
    assert healthcheck.main(["tcp", f"127.0.0.1:{stack.clickhouse_port}"]) == 0
    assert healthcheck.main(["tcp", f"127.0.0.1:{_free_port()}", "--timeout", "1"]) == 1


def test_local_stack_addresses_are_refused() -> None:
    assert init_stack.local_components(Settings()) == ["kafka", "redis", "clickhouse"]
    env = {k: v for k, v in os.environ.items()
           if not any(n in k for n in ("KAFKA", "CLICKHOUSE", "REDIS"))}
    result = subprocess.run([sys.executable, str(DEPLOY / "scripts" / "init_stack.py")],
                            capture_output=True, text=True, env=env, check=False, timeout=120)
    assert result.returncode == 2
    assert "refusing" in result.stderr


def test_init_creates_topics_and_schema_idempotently(stack: Settings) -> None:
    tag = f"deploy_init_{uuid.uuid4().hex[:8]}"
    settings = stack.model_copy(update={"topic_raw": f"{tag}.raw", "topic_dlq": f"{tag}.dlq",
                                        "clickhouse_database": tag})
    client = clickhouse_client(settings, database="default")
    try:
        assert sorted(init_stack.init(settings, timeout=30)) == [f"{tag}.dlq", f"{tag}.raw"]
        assert init_stack.init(settings, timeout=30) == []
        topics = kafka_admin(settings).list_topics(timeout=10).topics
        assert len(topics[f"{tag}.raw"].partitions) == settings.topic_partitions
        tables = client.query("SELECT name FROM system.tables WHERE database = {db:String}",
                              parameters={"db": tag}).result_columns[0]
        assert sorted(tables) == ["mart_day_versions", "raw_day_versions", "raw_tweet_edits",
                                  "raw_tweet_edits_mv", "raw_tweets", "tweet_deletes"]
    finally:
        client.command(f"DROP DATABASE IF EXISTS `{tag}`")
        client.close()
        namespaces.delete_topics(settings, [settings.topic_raw, settings.topic_dlq])


def test_init_reports_services_that_do_not_answer(stack: Settings) -> None:
    dead = stack.model_copy(update={"redis_url": f"redis://127.0.0.1:{_free_port()}/0"})
    # 5 s, not 1: the live services must answer within it on a loaded 2-core machine too
    assert init_stack.wait_for_services(dead, timeout=5) == ["redis"]
    with pytest.raises(RuntimeError, match="redis"):
        init_stack.init(dead, timeout=5)
