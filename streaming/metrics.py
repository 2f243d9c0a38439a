"""Prometheus metrics of a consumer worker and of `tweetflow produce`'s live sources, each served on
its own HTTP port."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from tweetflow.settings import Settings, get_settings

CONSUMED = Counter("tweetflow_consumed_messages", "Messages read from Kafka")
WRITTEN = Counter("tweetflow_written_rows", "Rows or events written, by sink", ["sink"])
DEAD_LETTERED = Counter("tweetflow_dead_lettered_messages", "Messages sent to the DLQ", ["reason_code"])
DUPLICATES = Counter("tweetflow_duplicates_dropped", "Tweets or deletes already counted (by id)")
REPLAYED = Counter("tweetflow_replayed_messages_skipped", "Messages at offsets already applied")
SINK_ERRORS = Counter("tweetflow_sink_errors", "Failed sink writes (retried)", ["sink"])
SINK_REJECTIONS = Counter("tweetflow_sink_rejections", "Sink writes refused for good because of "
                          "their rows (not retried: the batch is split and the refused messages "
                          "dead-lettered as rejected_by_store)", ["sink"])
BATCH_SECONDS = Histogram("tweetflow_batch_seconds", "Time to process one batch",
                          buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
SINK_SECONDS = Histogram("tweetflow_sink_seconds", "Time of one sink write", ["sink"],
                         buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5))
INSERT_ROWS_VERIFIED = Counter("tweetflow_clickhouse_rows_verified",
                               "Rows read back after an acknowledged INSERT (one per part)", ["table"])
INSERT_ROWS_MISSING = Counter("tweetflow_clickhouse_rows_missing",
                              "Rows an acknowledged INSERT should have stored but did not (the batch "
                              "is retried, its offsets not committed)", ["table"])
LAG = Gauge("tweetflow_consumer_lag", "Messages behind the high watermark", ["topic", "partition"])
EVENT_FRESHNESS = Gauge("tweetflow_event_freshness_seconds", "When the worker last applied a batch "
                        "of this partition, how old (by event time, a Tweet's created_at) its "
                        "newest Tweet was", ["topic", "partition"])
# Rebuilding the hot tier (streaming.healer; its state: tweetflow.hot_history's metrics).
HEAL_MESSAGES = Counter("tweetflow_hot_heal_events", "Events re-applied to rebuild the hot tier",
                        ["source"])
HEAL_PROGRESS = Gauge("tweetflow_hot_heal_progress", "Fraction of the running rebuild done")
HEALS = Counter("tweetflow_hot_heals", "Rebuilds of a hot tier shard finished", ["source"])
HEAL_SECONDS = Gauge("tweetflow_hot_heal_seconds", "Duration of the last rebuild")
# Live sources of `tweetflow produce` (streaming/sources); served with `produce --metrics-port`.
SOURCE_MESSAGES = Counter("tweetflow_source_messages", "Messages a live source received (not "
                          "keep-alives)", ["source"])
SOURCE_KEEPALIVES = Counter("tweetflow_source_keepalives", "Keep-alive newlines received", ["source"])
SOURCE_STREAM_ERRORS = Counter("tweetflow_source_stream_errors", "In-stream error objects (not "
                               "Tweets), by disconnect_type or title", ["source", "type"])
SOURCE_RECONNECTS = Counter("tweetflow_source_reconnects", "Reconnections, by the failure that "
                            "caused them (network, http, rate_limit)", ["source", "failure"])


def record_freshness(topic: str, newest: Mapping[int, datetime], applied: datetime) -> None:
    """Each partition's newest event time in a batch applied at `applied`, as its freshness."""
    for partition, moment in newest.items():
        EVENT_FRESHNESS.labels(topic, str(partition)).set((applied - moment).total_seconds())


def forget_partitions(topic: str, partitions: Iterable[int]) -> None:
    """Drop the per-partition series of partitions this worker no longer owns. Why: after a
    rebalance their new owner reports them, and a sum over the workers would count them twice."""
    for partition in partitions:
        for gauge in (LAG, EVENT_FRESHNESS):
            with contextlib.suppress(KeyError):  # never reported by this worker
                gauge.remove(topic, str(partition))


def serve_metrics(port: int, settings: Settings | None = None) -> None:
    """Expose /metrics on port (0 = do not serve), on Settings.metrics_host (TWEETFLOW_METRICS_HOST,
    default loopback; containers set 0.0.0.0 so Prometheus can scrape them)."""
    if port:
        start_http_server(port, addr=(settings or get_settings()).metrics_host)
