"""Kafka as a cluster: topics get the replication factor and min.insync.replicas the settings ask
for (the broker's own when unset), and consumers rebalance cooperatively with static membership,
so a worker that restarts within the session timeout takes its partitions back without a
rebalance of the others. Against the real local broker."""

from __future__ import annotations

import time

from confluent_kafka import Consumer
from confluent_kafka.admin import ConfigResource

from streaming.worker import WorkerOptions, consumer_config
from tweetflow import namespaces
from tweetflow.clients import ensure_topics, kafka_admin
from tweetflow.settings import Settings


def _topic_settings(settings: Settings, topic: str) -> tuple[int, str]:
    admin = kafka_admin(settings)
    meta = admin.list_topics(topic, timeout=10).topics[topic]
    replicas = len(next(iter(meta.partitions.values())).replicas)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    config = admin.describe_configs([resource])[resource].result(timeout=10)
    return replicas, config["min.insync.replicas"].value


def test_topics_take_the_replication_settings_or_the_brokers_defaults(
        test_settings: Settings) -> None:
    default, chosen = f"{test_settings.topic_raw}.d", f"{test_settings.topic_raw}.c"
    try:
        ensure_topics(test_settings, default)
        ensure_topics(test_settings.model_copy(update={"topic_replication_factor": 1,
                                                       "topic_min_insync_replicas": 1}), chosen)
        assert _topic_settings(test_settings, default) == (1, "1")  # the local broker's own
        assert _topic_settings(test_settings, chosen) == (1, "1")
        too_many = test_settings.model_copy(update={"topic_replication_factor": 3})
        try:
            ensure_topics(too_many, f"{test_settings.topic_raw}.x")
        except Exception as exc:  # one broker cannot hold three replicas: the broker says so
            assert "replication" in str(exc).lower()
        else:
            raise AssertionError("a replication factor above the brokers was accepted")
    finally:
        namespaces.delete_topics(test_settings, [default, chosen, f"{test_settings.topic_raw}.x"])


def test_workers_rebalance_cooperatively_with_static_membership(test_settings: Settings) -> None:
    options = WorkerOptions(instance_id="host-a-9400")
    config = consumer_config(test_settings, options)
    assert config["partition.assignment.strategy"] == "cooperative-sticky"
    assert config["group.instance.id"] == "host-a-9400"
    assert "group.instance.id" not in consumer_config(test_settings, WorkerOptions())

    first = Consumer(config)
    first.subscribe([test_settings.topic_raw])
    deadline = time.monotonic() + 60
    while not first.assignment() and time.monotonic() < deadline:
        first.poll(0.2)
    assigned = {p.partition for p in first.assignment()}
    first.close()  # a static member leaves without a rebalance: its partitions wait for it
    again = Consumer(config)
    again.subscribe([test_settings.topic_raw])
    deadline = time.monotonic() + 60
    while not again.assignment() and time.monotonic() < deadline:
        again.poll(0.2)
    assert {p.partition for p in again.assignment()} == assigned == set(
        range(test_settings.topic_partitions))
    again.close()
