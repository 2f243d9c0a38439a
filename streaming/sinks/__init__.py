"""Where consumed events go: ClickHouse (raw rows), Redis (hot aggregates), Kafka (dead letters)."""

from streaming.sinks.clickhouse import ClickHouseSink
from streaming.sinks.dead_letters import DeadLetter, DeadLetterSink
from streaming.sinks.hot_aggregates import HotAggregatesSink, PartitionBatch
from streaming.sinks.protocol import BatchSink, Sink

__all__ = [
    "BatchSink", "ClickHouseSink", "DeadLetter", "DeadLetterSink", "HotAggregatesSink",
    "PartitionBatch", "Sink",
]
