"""Re-consume a bounded offset range into another ClickHouse database (the replay validation's
shadow), through the same parsing and ClickHouse sink as production.

Why it differs from a worker: it assigns partitions instead of joining the group, commits nothing,
writes no Redis and no dead letters, and ignores the production watermarks, because its purpose is
to rebuild what the range *should* have produced, independently of what production did.
(Rewinding the production group itself is streaming.offset_reset.)
"""

from __future__ import annotations

from collections.abc import Mapping

from streaming.offsets import read_range
from streaming.pipeline import Record, parse_records
from streaming.sinks import ClickHouseSink
from tweetflow.settings import Settings

BATCH = 5000


def replay_into(settings: Settings, ranges: Mapping[int, tuple[int, int]]) -> int:
    """Consume offsets [start, end) of each partition of settings.topic_raw into
    settings.clickhouse_database; returns the number of Kafka messages applied."""
    if all(end <= start for start, end in ranges.values()):
        return 0
    reader = read_range(settings, ranges, **{"group.id": f"{settings.consumer_group}.replay"})
    sink = ClickHouseSink(settings)
    applied, pending = 0, []
    try:
        for records in reader:
            pending += [Record(r.partition, r.offset, r.key, r.value) for r in records]
            if len(pending) >= BATCH:
                applied += _write(sink, pending)
                pending = []
        if pending:
            applied += _write(sink, pending)
    finally:
        sink.close()
    return applied


def _write(sink: ClickHouseSink, pending: list[Record]) -> int:
    located, _letters = parse_records(pending)
    sink.write(located)
    return len(pending)
