"""Session-wide access to the real local stack, and per-test isolation inside it.

The stack (Kafka, Redis, the ClickHouse endpoint) is started once per session — by `make test`, or
here if it is not running — and each test gets its own topic, consumer group, ClickHouse database
and Redis key prefix, so tests never see each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tweetflow.settings import Settings, get_settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = PROJECT_ROOT.parent / "shared" / "fixtures"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"external fixtures not found at {FIXTURES} (../shared/fixtures beside the project)")
    return FIXTURES


@pytest.fixture(scope="session")
def stack() -> Settings:
    """The running local stack (started if needed); its settings."""
    from tweetflow.app.stack.manager import stack_up

    settings = get_settings()
    stack_up(settings)
    return settings


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def test_settings(stack: Settings, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings with this test's own topics, group, ClickHouse database and Redis prefix, all
    removed afterwards (the group too, once its members have left)."""
    from tweetflow import namespaces
    from tweetflow.clients import ensure_topics
    from tweetflow.schema import ensure_schema

    name = request.node.name.split("[")[0][:30].replace("-", "_").lower()
    settings = namespaces.scoped(stack, _unique(name))
    ensure_topics(settings)
    ensure_schema(settings)
    yield settings
    failures = namespaces.drop(settings)
    if failures:
        raise ExceptionGroup(f"the test's namespace {settings.redis_prefix} was left behind",
                             failures)


@pytest.fixture
def topic_factory(stack: Settings) -> Iterator[Callable[..., str]]:
    """Create uniquely named topics for one test; deleted afterwards."""
    from tweetflow import namespaces
    from tweetflow.clients import ensure_topics

    created: list[str] = []

    def make(partitions: int = 3) -> str:
        topic = _unique("t")
        ensure_topics(stack, topic, partitions=partitions)
        created.append(topic)
        return topic

    yield make
    namespaces.delete_topics(stack, created)


@pytest.fixture(scope="session")
def redis_cluster(stack: Settings, tmp_path_factory: pytest.TempPathFactory):
    """A private Redis Cluster for the session: six Debian redis-server nodes (three masters,
    three replicas) on free ports, formed with `redis-cli --cluster create` by the same code as
    `tweetflow stack up --profile cluster`; stopped at the end."""
    from bench.harness.processes import free_port
    from tweetflow.app.stack.redis_cluster import RedisCluster

    ports: list[int] = []
    while len(ports) < 12:  # node and cluster-bus ports, all distinct
        if (port := free_port()) not in ports:
            ports.append(port)
    cluster = RedisCluster(stack.model_copy(update={"data_dir": tmp_path_factory.mktemp("rc")}),
                           ports[:6], ports[6:])
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()


@pytest.fixture
def cluster_settings(test_settings: Settings, redis_cluster) -> Iterator[Settings]:
    """The test's namespace with its hot tier on the session's Redis Cluster (REDIS_MODE=cluster,
    one shard per partition of the raw topic); its keys there are deleted afterwards."""
    from tweetflow import namespaces

    settings = test_settings.model_copy(update={"redis_url": redis_cluster.url,
                                                "redis_mode": "cluster"})
    yield settings
    namespaces.delete_keys(settings)
