"""`tweetflow stack up --profile cluster` from an empty data dir: three KRaft brokers whose topics
get replication factor 3 and min.insync.replicas 2, a six-node Redis Cluster (three masters, three
replicas); `stack status` and `stack down` cover every node. In cluster mode the single-node stack
starts no Redis of its own."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka.admin import ConfigResource

from tweetflow.app.stack.cluster_profile import ClusterPorts, ClusterProfile
from tweetflow.app.stack.components import Redis
from tweetflow.app.stack.manager import Stack
from tweetflow.clients import ensure_topics, kafka_admin
from tweetflow.settings import Settings


def _ports(n: int) -> list[int]:
    from bench.harness.processes import free_port

    ports: list[int] = []
    while len(ports) < n:
        if (port := free_port()) not in ports:
            ports.append(port)
    return ports


def test_cluster_mode_starts_no_redis(stack: Settings, redis_cluster) -> None:
    settings = stack.model_copy(update={"redis_url": redis_cluster.url, "redis_mode": "cluster"})
    redis = Redis(settings)
    assert not redis.managed
    redis.up()  # checks that the named node answers; starts nothing
    assert redis.status().state == "external-up" and redis.status().pid is None


def test_the_cluster_profile_comes_up_replicated_and_goes_down(stack: Settings,
                                                              tmp_path: Path) -> None:
    p = _ports(18)
    ports = ClusterPorts(kafka=tuple(p[:3]), controllers=tuple(p[3:6]), redis=tuple(p[6:12]),
                         redis_bus=tuple(p[12:]))
    base = stack.model_copy(update={"data_dir": tmp_path})
    # the jars the running stack fetched already (keyed by the pom), not a second download
    (tmp_path / "kafka-libs").symlink_to(stack.data_dir / "kafka-libs")
    profile = ClusterProfile(base, ports)
    settings = ports.settings(base)
    stack_ = Stack(base, cluster=profile)
    try:
        profile.up()
        rows = stack_.status()
        assert [r.name for r in rows][:9] == ["kafka-1", "kafka-2", "kafka-3",
                                              *(f"redis-{q}" for q in ports.redis)]
        assert all(r.state == "up" for r in rows[:9]), rows
        ensure_topics(settings)
        admin = kafka_admin(settings)
        meta = admin.list_topics(settings.topic_raw, timeout=10).topics[settings.topic_raw]
        assert {len(p.replicas) for p in meta.partitions.values()} == {3}
        resource = ConfigResource(ConfigResource.Type.TOPIC, settings.topic_raw)
        config = admin.describe_configs([resource])[resource].result(timeout=10)
        assert config["min.insync.replicas"].value == "2"
        assert len(profile.redis.masters()) == 3 and profile.redis.healthy()
    finally:
        stopped = profile.down()
    assert sorted(stopped) == sorted([f"kafka-{i}" for i in (1, 2, 3)] +
                                     [f"redis-{q}" for q in ports.redis])
    assert all(r.state == "down" and r.pid is None for r in profile.status())
