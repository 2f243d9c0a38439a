"""Consumer-group offsets: `tweetflow replay --to ...` and `tweetflow lag`."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition

from tweetflow.clients import kafka_admin, kafka_config
from tweetflow.settings import Settings, get_settings


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    committed: int  # -1 when the group has committed nothing
    low: int
    high: int

    @property
    def lag(self) -> int:
        return self.high - (self.committed if self.committed >= 0 else self.low)


def _probe(settings: Settings) -> Consumer:
    """A consumer that never joins a group: for watermark and time look-ups only."""
    return Consumer(kafka_config(settings, **{"group.id": "tweetflow-offset-probe",
                                              "enable.auto.commit": False}))


def partitions(settings: Settings, topic: str) -> list[int]:
    meta = kafka_admin(settings).list_topics(topic, timeout=10).topics[topic]
    if meta.error is not None:
        raise RuntimeError(f"topic {topic}: {meta.error}")
    return sorted(meta.partitions)


def group_lag(settings: Settings, group: str | None = None, topic: str | None = None) -> list[PartitionLag]:
    group, topic = group or settings.consumer_group, topic or settings.topic_raw
    parts = partitions(settings, topic)
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in parts])
    admin = kafka_admin(settings)  # keep a reference: a collected client never resolves futures
    future = admin.list_consumer_group_offsets([request])[group]
    committed = {tp.partition: tp.offset if tp.offset >= 0 else -1  # OFFSET_INVALID (-1001)
                 for tp in future.result(timeout=30).topic_partitions}
    probe = _probe(settings)
    try:
        rows = []
        for p in parts:
            low, high = probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            rows.append(PartitionLag(p, committed.get(p, -1), low, high))
        return rows
    finally:
        probe.close()


def target_offsets(settings: Settings, topic: str, to: str) -> list[TopicPartition]:
    """Offsets for `earliest`, `latest` or an ISO-8601 time (first message at or after it)."""
    parts = partitions(settings, topic)
    probe = _probe(settings)
    try:
        if to in ("earliest", "latest"):
            out = []
            for p in parts:
                low, high = probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                out.append(TopicPartition(topic, p, low if to == "earliest" else high))
            return out
        when = datetime.fromisoformat(to.replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        ms = int(when.timestamp() * 1000)
        found = probe.offsets_for_times([TopicPartition(topic, p, ms) for p in parts], timeout=10)
        result = []
        for tp in found:
            if tp.offset < 0:  # no message at or after that time: the end
                _, high = probe.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
                tp = TopicPartition(topic, tp.partition, high)
            result.append(tp)
        return result
    finally:
        probe.close()


def reset_group(settings: Settings, to: str, group: str | None = None,
                topic: str | None = None) -> list[TopicPartition]:
    """Move the group's committed offsets (the group must have no active members)."""
    group, topic = group or settings.consumer_group, topic or settings.topic_raw
    offsets = target_offsets(settings, topic, to)
    request = ConsumerGroupTopicPartitions(group, offsets)
    admin = kafka_admin(settings)  # keep a reference: a collected client never resolves futures
    future = admin.alter_consumer_group_offsets([request])[group]
    moved = list(future.result(timeout=30).topic_partitions)
    failed = [tp for tp in moved if tp.error is not None]  # e.g. UNKNOWN_MEMBER_ID: group active
    if failed:
        raise RuntimeError(f"group {group}: partitions {[tp.partition for tp in failed]} not moved: "
                           f"{failed[0].error.str()}")
    return moved


def run_replay(args: argparse.Namespace) -> int:
    settings = get_settings()
    try:
        moved = reset_group(settings, args.to, args.group, args.topic)
    except Exception as exc:
        print(f"replay failed: {exc}\n(stop the consumers of the group first)")
        return 1
    for tp in moved:
        print(f"{tp.topic}[{tp.partition}] -> offset {tp.offset}")
    print("restart `tweetflow consume`: offsets already applied are skipped, so counts do not change")
    return 0


def run_lag(args: argparse.Namespace) -> int:
    settings = get_settings()
    rows = group_lag(settings, args.group, args.topic)
    print(f"{'partition':>9} {'committed':>12} {'high':>12} {'lag':>10}")
    for r in rows:
        print(f"{r.partition:>9} {r.committed:>12} {r.high:>12} {r.lag:>10}")
    print(f"{'total':>9} {'':>12} {'':>12} {sum(r.lag for r in rows):>10}")
    return 0
