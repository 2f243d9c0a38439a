"""Prometheus metrics of a consumer worker, served on its own HTTP port."""

from __future__ import annotations

import os

from prometheus_client import Counter, Gauge, Histogram, start_http_server

CONSUMED = Counter("tweetflow_consumed_messages", "Messages read from Kafka")
WRITTEN = Counter("tweetflow_written_rows", "Rows or events written, by sink", ["sink"])
DEAD_LETTERED = Counter("tweetflow_dead_lettered_messages", "Messages sent to the DLQ", ["reason_code"])
DUPLICATES = Counter("tweetflow_duplicates_dropped", "Tweets or deletes already counted (by id)")
REPLAYED = Counter("tweetflow_replayed_messages_skipped", "Messages at offsets already applied")
SINK_ERRORS = Counter("tweetflow_sink_errors", "Failed sink writes (retried)", ["sink"])
BATCH_SECONDS = Histogram("tweetflow_batch_seconds", "Time to process one batch",
                          buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
SINK_SECONDS = Histogram("tweetflow_sink_seconds", "Time of one sink write", ["sink"],
                         buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5))
LAG = Gauge("tweetflow_consumer_lag", "Messages behind the high watermark", ["topic", "partition"])


def serve_metrics(port: int) -> None:
    """Expose /metrics on port (0 = do not serve), on TWEETFLOW_METRICS_HOST (default loopback;
    containers set 0.0.0.0 so Prometheus can scrape them)."""
    if port:
        start_http_server(port, addr=os.environ.get("TWEETFLOW_METRICS_HOST", "127.0.0.1"))
