"""Faults on the cluster profile (`tweetflow stack up --profile cluster`: three KRaft brokers with
replication factor 3 and min.insync.replicas 2, a six-node Redis Cluster), under steady ingest:
the broker leading the most partitions killed, the consumer group scaled 2 -> 4 -> 1, a worker
killed and restarted under its static member id. After each, ClickHouse and Redis equal what the
topic holds (a master of the Redis Cluster killed: tests/streaming/test_hot_cluster.py).

The profile runs on free ports in a private data dir for this module, and is stopped after it.
"""

from __future__ import annotations

import itertools
import os
import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from streaming_support import (
    BackgroundProducer,
    Pair,
    WorkerProcess,
    finish,
    processes,
    produce,
    synthetic,
    wait_for,
    with_duplicates,
)

from bench.harness import redis_watermarks
from tweetflow import namespaces
from tweetflow.app.stack.cluster_profile import ClusterPorts, ClusterProfile
from tweetflow.clients import ensure_topics, kafka_admin
from tweetflow.schema import ensure_schema
from tweetflow.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster_profile(stack: Settings, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[ClusterProfile]:
    from bench.harness.processes import free_port

    p: list[int] = []
    while len(p) < 18:
        if (port := free_port()) not in p:
            p.append(port)
    data = tmp_path_factory.mktemp("cluster-profile")
    (data / "kafka-libs").symlink_to(stack.data_dir / "kafka-libs")  # the jars `stack up` fetched
    profile = ClusterProfile(stack.model_copy(update={"data_dir": data}),
                             ClusterPorts(tuple(p[:3]), tuple(p[3:6]), tuple(p[6:12]),
                                          tuple(p[12:])))
    try:
        profile.up()
        yield profile
    finally:
        profile.down()


@pytest.fixture
def on_cluster(stack: Settings, cluster_profile: ClusterProfile) -> Iterator[Settings]:
    """This test's namespace on the profile (topics with replication factor 3)."""
    settings = namespaces.scoped(cluster_profile.ports.settings(stack),
                                 f"faults_{uuid.uuid4().hex[:10]}")
    ensure_topics(settings)
    ensure_schema(settings)
    yield settings
    namespaces.drop(settings)


def _applied(settings: Settings) -> int:
    return sum(o + 1 for o in redis_watermarks(settings).values())


def _victim_id(settings: Settings, victim: str) -> int:
    """The node id of the broker leading the most partitions, or of the group's coordinator."""
    admin = kafka_admin(settings)
    if victim == "group coordinator":
        group = admin.describe_consumer_groups([settings.consumer_group])[settings.consumer_group]
        return group.result(timeout=10).coordinator.id
    meta = admin.list_topics(settings.topic_raw, timeout=10).topics[settings.topic_raw]
    return Counter(p.leader for p in meta.partitions.values()).most_common(1)[0][0]


def _members_with_partitions(settings: Settings) -> int:
    """Members of the group that own partitions now (the group's own description)."""
    admin = kafka_admin(settings)
    group = admin.describe_consumer_groups([settings.consumer_group])[settings.consumer_group]
    members = group.result(timeout=10).members
    return sum(1 for m in members if m.assignment and m.assignment.topic_partitions)


def _workers(settings: Settings, tmp_path: Path, names: list[str]) -> list[WorkerProcess]:
    return [WorkerProcess(settings, tmp_path / f"{name}.log", instance_id=name).start()
            for name in names]


def _warm_up(settings: Settings, pairs: list) -> None:
    produce(settings, pairs)
    wait_for(lambda: _applied(settings) >= len(pairs), 180, "the workers to join and apply")


@pytest.mark.parametrize("victim", ["most leaders", "group coordinator"])
def test_killing_a_broker_under_ingest_loses_nothing(
        on_cluster: Settings, cluster_profile: ClusterProfile, tmp_path: Path, victim: str) -> None:
    """The broker leading the most partitions of the topic, or the group's coordinator (the
    workers' sessions then time out: static members rejoin, fenced once, and renew)."""
    s = on_cluster
    pairs = with_duplicates(synthetic(1401, 5000), 0.05, seed=5)
    with processes() as children:
        workers = _workers(s, tmp_path, ["a", "b"])
        children += workers
        _warm_up(s, pairs[:200])
        broker = cluster_profile.brokers[_victim_id(s, victim) - 1]
        with BackgroundProducer(s, pairs[200:], rate=800):
            wait_for(lambda: _applied(s) > 1500, 180, "a first share under ingest")
            os.kill(broker.proc.pid() or 0, signal.SIGKILL)
        finish(s, workers)
    cluster_profile.up()  # the killed broker comes back for the tests after this one


def _endless(seed: int) -> Iterator[Pair]:
    """Fresh messages (5% published twice) in rounds, for as long as they are asked for."""
    for n in itertools.count():
        yield from with_duplicates(synthetic(seed + n, 2000), 0.05, seed=seed + n)


def test_scaling_the_group_2_4_1_under_ingest_counts_exactly(
        on_cluster: Settings, tmp_path: Path) -> None:
    """Ingest lasts until the group has gone 2 -> 4 -> 1 and each size has applied a share, however
    long a step takes on a loaded machine (a fixed amount could end before the fourth joined)."""
    s = on_cluster
    with processes() as children:
        workers = _workers(s, tmp_path, ["a", "b"])
        children += workers
        _warm_up(s, synthetic(1402, 200))
        with BackgroundProducer(s, _endless(14020), rate=250) as producer:
            wait_for(lambda: _applied(s) > 1000, 180, "a first share with two workers")
            more = _workers(s, tmp_path, ["c", "d"])
            children += more
            wait_for(lambda: _members_with_partitions(s) == 4, 180, "four members sharing it")
            progress = _applied(s)
            wait_for(lambda: _applied(s) > progress + 300, 180, "a share with four workers")
            for worker in (*workers, *more)[1:]:  # down to one
                worker.signal(signal.SIGTERM)
                assert worker.wait(120) == 0, worker.log()
            wait_for(lambda: _members_with_partitions(s) == 1, 180, "one member holding it all")
            progress = _applied(s)
            wait_for(lambda: _applied(s) > progress + 300, 180, "a share with one worker")
            producer.stop()
        finish(s, [workers[0]])


def test_a_worker_killed_and_restarted_under_its_member_id_loses_nothing(
        on_cluster: Settings, tmp_path: Path) -> None:
    s = on_cluster
    pairs = with_duplicates(synthetic(1403, 5000), 0.05, seed=7)
    with processes() as children:
        workers = _workers(s, tmp_path, ["a", "b"])
        children += workers
        _warm_up(s, pairs[:200])
        with BackgroundProducer(s, pairs[200:], rate=800):
            wait_for(lambda: _applied(s) > 1500, 180, "a first share under ingest")
            workers[0].kill()
            workers[0].start()  # same group.instance.id: it takes its partitions back
        finish(s, workers)
