"""Re-consume a bounded offset range into another ClickHouse database (the replay validation's
shadow), through the same parsing and ClickHouse sink as production.

Why it differs from a worker: it assigns partitions instead of joining the group, commits nothing,
writes no Redis and no dead letters, and ignores the production watermarks, because its purpose is
to rebuild what the range *should* have produced, independently of what production did.
"""

from __future__ import annotations

from collections.abc import Mapping

from confluent_kafka import Consumer, KafkaError, TopicPartition

from streaming.pipeline import Record, parse_records
from streaming.sinks import ClickHouseSink
from tweetflow.clients import kafka_config
from tweetflow.settings import Settings

BATCH = 5000


def replay_into(settings: Settings, ranges: Mapping[int, tuple[int, int]]) -> int:
    """Consume offsets [start, end) of each partition of settings.topic_raw into
    settings.clickhouse_database; returns the number of Kafka messages applied."""
    wanted = {p: (s, e) for p, (s, e) in ranges.items() if e > s}
    if not wanted:
        return 0
    consumer = Consumer(kafka_config(settings, **{
        "group.id": f"{settings.consumer_group}.replay", "enable.auto.commit": False,
        "enable.partition.eof": True}))
    consumer.assign([TopicPartition(settings.topic_raw, p, s) for p, (s, _) in wanted.items()])
    sink = ClickHouseSink(settings)
    applied, done, pending = 0, set(), []
    try:
        while len(done) < len(wanted):
            for message in consumer.consume(1000, timeout=1.0):
                p = message.partition()
                if message.error() is not None:
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        done.add(p)  # the range asked for more than the partition holds
                    continue
                if p in done:
                    continue
                if message.offset() >= wanted[p][1]:
                    done.add(p)
                    continue
                pending.append(Record(p, message.offset(), message.key(), message.value()))
                if message.offset() == wanted[p][1] - 1:
                    done.add(p)
            if len(pending) >= BATCH or (pending and len(done) == len(wanted)):
                located, _letters = parse_records(pending)
                sink.write(located)
                applied += len(pending)
                pending = []
    finally:
        consumer.close()
        sink.close()
    return applied
