"""Rewinding (or fast-forwarding) a consumer group: `tweetflow replay --to earliest|latest|TIME`
prints each partition's committed and new offset, and moves them only with `--execute`, as
Kafka's own `kafka-consumer-groups --reset-offsets` shows its plan unless given `--execute`.

Why this is safe for counts: the consumers skip every offset the Redis watermarks show as applied
and ClickHouse deduplicates by Tweet id, so re-reading a range never changes a count
(docs/effectively-once.md). Re-consuming into another database is streaming.shadow_replay.
"""

from __future__ import annotations

import argparse
from datetime import datetime

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition

from streaming.offsets import TopicProbe, committed_offsets
from tweetflow.clients import KafkaAccessError, kafka_admin
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


def plan(settings: Settings, to: str, group: str | None = None,
         topic: str | None = None) -> list[tuple[int, int, int]]:
    """(partition, committed offset or -1, offset `to` would set) for each partition."""
    group, topic = group or settings.consumer_group, topic or settings.topic_raw
    current = committed_offsets(settings, group, topic)
    return [(tp.partition, current.get(tp.partition, -1), tp.offset)
            for tp in sorted(target_offsets(settings, topic, to), key=lambda tp: tp.partition)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", required=True,
                        help="earliest | latest | an ISO-8601 time (the first message at or after "
                             "it; no zone = UTC)")
    parser.add_argument("--execute", action="store_true",
                        help="move the offsets; without it only the plan is printed (like "
                             "kafka-consumer-groups --reset-offsets)")
    parser.add_argument("--group", default=None,
                        help="consumer group (default: the settings' group, tweetflow-consumers)")
    parser.add_argument("--topic", default=None,
                        help="topic (default: the settings' raw topic, tweets.raw)")


def run(args: argparse.Namespace) -> int:
    """`tweetflow replay`: print where the group's offsets would go; with --execute, move them
    (the group must have no active members); the consumers then re-read from there."""
    settings = get_settings()
    group = args.group or settings.consumer_group
    try:
        moves = plan(settings, args.to, group, args.topic)
    except ValueError as exc:  # a time fromisoformat cannot read
        print(f"replay: --to {args.to!r}: {exc}")
        return 1
    print(f"{'partition':>9} {'committed':>12} {'new':>12}")
    for partition, committed, new in moves:
        print(f"{partition:>9} {committed:>12} {new:>12}")
    if not args.execute:
        print(f"dry run: nothing changed; add --execute to move group {group}'s offsets "
              "(with its consumers stopped)")
        return 0
    try:
        moved = reset_group(settings, args.to, group, args.topic)
    except KafkaAccessError:
        raise  # the CLI reports it
    except (KafkaException, RuntimeError) as exc:  # RuntimeError: partitions of an active group
        print(f"replay failed: {exc}\n(stop the consumers of the group first)")
        return 1
    print(f"moved {len(moved)} partitions of group {group}; restart `tweetflow consume`: offsets "
          "already applied are skipped, so counts do not change")
    return 0
