"""What the sinks have in common, so the pipeline can drive them without knowing their clients.

Every sink flushes and closes (`Sink`). Writing is shared only by the sinks that store a batch of
items as it is (`BatchSink`: ClickHouse rows, dead letters). The hot aggregates do not fit that
shape and are not made to: they apply a batch atomically on top of the partitions' watermarks
(compare-and-set) and report what they counted, which is `HotAggregatesSink.apply_all`.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

Item = TypeVar("Item", contravariant=True)


class Sink(Protocol):
    def flush(self) -> None:
        """Return once everything written so far is stored; raise if some of it is not."""

    def close(self) -> None:
        """Flush what can be flushed and let go of connections (the next use reconnects)."""


class BatchSink(Sink, Protocol[Item]):
    def write(self, items: list[Item], /) -> int:
        """Store a batch; returns how many rows or messages were written; raises when any is
        not stored, so the batch is retried as a whole."""
