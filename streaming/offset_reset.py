"""Rewinding (or fast-forwarding) a consumer group: `tweetflow replay --to earliest|latest|TIME`.

Why this is safe for counts: the consumers skip every offset the Redis watermarks show as applied
and ClickHouse deduplicates by Tweet id, so re-reading a range never changes a count
(docs/effectively-once.md). Re-consuming into another database is streaming.shadow_replay.
"""

from __future__ import annotations

import argparse
from datetime import datetime

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

from streaming.offsets import TopicProbe
from tweetflow.clients import kafka_admin
from tweetflow.settings import Settings, get_settings


def target_offsets(settings: Settings, topic: str, to: str) -> list[TopicPartition]:
    """Offsets for `earliest`, `latest` or an ISO-8601 time (first message at or after it; a time
    without a zone is UTC)."""
    with TopicProbe(settings, topic) as probe:
        if to in ("earliest", "latest"):
            marks = probe.watermarks()
            return [TopicPartition(topic, p, low if to == "earliest" else high)
                    for p, (low, high) in marks.items()]
        found = probe.offsets_at(datetime.fromisoformat(to.replace("Z", "+00:00")))
        return [TopicPartition(topic, p, offset) for p, offset in found.items()]


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", required=True, help="earliest | latest | ISO-8601 timestamp")
    parser.add_argument("--group", default=None)
    parser.add_argument("--topic", default=None)


def run(args: argparse.Namespace) -> int:
    """`tweetflow replay`: reset the group's offsets; the consumers then re-read from there."""
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
