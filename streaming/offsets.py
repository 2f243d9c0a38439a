"""Kafka offsets, the one API: a topic's partitions and watermarks, a consumer group's committed
offsets and lag, the offsets at a time, and reading an offset range back.

Everyone asks Kafka about offsets through here: `tweetflow lag` (streaming.lag_cli), `tweetflow
replay` (streaming.offset_reset), the shadow re-consumption (streaming.shadow_replay), Dagster's topic
observation and replay planning, the bench and the tests.

Why look-ups and reads go through consumers that never join a group (they assign partitions or
only ask for metadata): joining would rebalance, and possibly commit for, the production group.
A group's committed offsets are read with the admin client, which reads without being a member.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, TopicPartition

from tweetflow.clients import kafka_admin, kafka_config, kafka_metadata
from tweetflow.settings import Settings

OffsetRanges = dict[int, tuple[int, int]]  # partition -> [start, end) offsets


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    committed: int  # -1 when the group has committed nothing
    low: int
    high: int

    @property
    def lag(self) -> int:
        return self.high - (self.committed if self.committed >= 0 else self.low)


@dataclass(frozen=True)
class KafkaRecord:
    """One message read back, with its coordinates."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: dict[str, bytes] = field(default_factory=dict)


def epoch_ms(when: datetime) -> int:
    """Kafka's timestamp of `when`; a time without a zone is UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


class TopicProbe:
    """Look-ups on one topic through one long-lived client that joins no group (cheap to poll)."""

    def __init__(self, settings: Settings, topic: str | None = None, timeout: float = 10.0) -> None:
        self.topic = topic or settings.topic_raw
        self.timeout = timeout
        self.consumer = Consumer(kafka_config(settings, **{
            "group.id": "tweetflow-offset-probe", "enable.auto.commit": False}))
        try:
            meta = kafka_metadata(self.consumer, self.topic, timeout).topics[self.topic]
            if meta.error is not None:
                raise RuntimeError(f"topic {self.topic}: {meta.error}")
        except BaseException:
            self.consumer.close()
            raise
        self.partitions: list[int] = sorted(meta.partitions)

    def watermarks(self) -> dict[int, tuple[int, int]]:
        """partition -> (low, high): the oldest retained offset and the next one to be written."""
        return {p: self.consumer.get_watermark_offsets(TopicPartition(self.topic, p),
                                                       timeout=self.timeout)
                for p in self.partitions}

    def high(self) -> dict[int, int]:
        return {p: hi for p, (_, hi) in self.watermarks().items()}

    def total(self) -> int:
        """Messages retained across all partitions."""
        return sum(hi - lo for lo, hi in self.watermarks().values())

    def offsets_at(self, when: datetime) -> dict[int, int]:
        """partition -> offset of the first message at or after `when` (the high watermark when
        there is none)."""
        ms = epoch_ms(when)
        found = self.consumer.offsets_for_times(
            [TopicPartition(self.topic, p, ms) for p in self.partitions], timeout=self.timeout)
        ends = self.high() if any(tp.offset < 0 for tp in found) else {}
        return {tp.partition: tp.offset if tp.offset >= 0 else ends[tp.partition] for tp in found}

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> TopicProbe:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def watermarks(settings: Settings, topic: str | None = None) -> dict[int, tuple[int, int]]:
    with TopicProbe(settings, topic) as probe:
        return probe.watermarks()


def offsets_at(settings: Settings, when: datetime, topic: str | None = None) -> dict[int, int]:
    with TopicProbe(settings, topic) as probe:
        return probe.offsets_at(when)


def _committed(settings: Settings, group: str, topic: str, parts: list[int]) -> dict[int, int]:
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in parts])
    admin = kafka_admin(settings)  # keep a reference: a collected client never resolves futures
    future = admin.list_consumer_group_offsets([request])[group]
    return {tp.partition: tp.offset if tp.offset >= 0 else -1  # OFFSET_INVALID (-1001)
            for tp in future.result(timeout=30).topic_partitions}


def committed_offsets(settings: Settings, group: str | None = None,
                      topic: str | None = None) -> dict[int, int]:
    """partition -> the group's committed offset (-1: none)."""
    group, topic = group or settings.consumer_group, topic or settings.topic_raw
    with TopicProbe(settings, topic) as probe:
        parts = probe.partitions
    return dict(sorted(_committed(settings, group, topic, parts).items()))


def group_lag(settings: Settings, group: str | None = None, topic: str | None = None
              ) -> list[PartitionLag]:
    group, topic = group or settings.consumer_group, topic or settings.topic_raw
    with TopicProbe(settings, topic) as probe:
        committed = _committed(settings, group, topic, probe.partitions)
        return [PartitionLag(p, committed.get(p, -1), low, high)
                for p, (low, high) in probe.watermarks().items()]


def read_range(settings: Settings, ranges: Mapping[int, tuple[int, int]],
               topic: str | None = None, *, timeout: float | None = None, batch: int = 1000,
               **config: Any) -> Iterator[list[KafkaRecord]]:
    """Batches of the messages at offsets [start, end) of each partition, in each partition's
    order. A partition is done at its last wanted offset or at its current end, whichever comes
    first; `timeout` (seconds, default none) raises TimeoutError. `config` adds to the consumer's."""
    topic = topic or settings.topic_raw
    ends = {p: end for p, (start, end) in ranges.items() if end > start}
    if not ends:
        return
    consumer = Consumer(kafka_config(settings, **{
        "group.id": f"tweetflow-reader-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        "enable.partition.eof": True, **config}))
    consumer.assign([TopicPartition(topic, p, ranges[p][0]) for p in ends])
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while ends:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: partitions {sorted(ends)} not read to "
                                   f"their end within {timeout} s")
            records = _take(consumer.consume(batch, timeout=1.0), ends)
            if records:
                yield records
    finally:
        consumer.close()


def _take(messages: list[Any], ends: dict[int, int]) -> list[KafkaRecord]:
    """The messages wanted by `ends` (partition -> end offset); finished partitions leave it."""
    out = []
    for m in messages:
        p = m.partition()
        if p not in ends:
            continue
        if m.error() is not None:
            if m.error().code() == KafkaError._PARTITION_EOF:
                del ends[p]  # the range asked for more than the partition holds
            continue
        if m.offset() >= ends[p]:
            del ends[p]
            continue
        out.append(KafkaRecord(p, m.offset(), m.key(), m.value(), m.timestamp()[1],
                               dict(m.headers() or [])))
        if m.offset() == ends[p] - 1:
            del ends[p]
    return out


def read_topic(settings: Settings, topic: str | None = None, *,
               timeout: float = 120.0) -> list[KafkaRecord]:
    """Every message `topic` (default: the raw topic) holds now, in (partition, offset) order."""
    ranges = watermarks(settings, topic)
    records = [r for batch in read_range(settings, ranges, topic, timeout=timeout) for r in batch]
    return sorted(records, key=lambda r: (r.partition, r.offset))

