"""bench.kafka_ceiling: Kafka's own ProducerPerformance, from the stack's jars, with `tweetflow
produce`'s settings and payloads, on the real local broker (its rate is reported, never asserted)."""

from __future__ import annotations

from pathlib import Path

from bench.kafka_ceiling import java_producer_props, payload_file, producer_performance
from streaming.parsing import parse_payload
from tweetflow.settings import Settings


def test_the_java_producer_gets_the_python_producers_settings(stack: Settings) -> None:
    props = dict(p.split("=", 1) for p in java_producer_props(stack))
    assert props == {"bootstrap.servers": stack.kafka_bootstrap_servers, "acks": "all",
                     "enable.idempotence": "true", "compression.type": "lz4", "linger.ms": "20",
                     "batch.size": "1000000", "buffer.memory": str(512 << 20),
                     "delivery.timeout.ms": "120000"}


def test_producer_performance_appends_synthetic_payloads_and_cleans_up(stack: Settings,
                                                                       tmp_path: Path) -> None:
    from tweetflow.clients import kafka_admin

    payloads = payload_file(tmp_path / "payloads.txt", count=300)
    lines = payloads.read_bytes().splitlines()
    assert len(lines) == 300 and all(parse_payload(line) for line in lines)
    ceiling = producer_performance(stack, 5000, payloads)
    assert ceiling.records == 5000 and ceiling.per_second > 0 and ceiling.mb_per_second > 0
    topic = ceiling.command.split("--topic ")[1].split()[0]
    assert "acks=all" in ceiling.command and "--throughput -1" in ceiling.command
    assert topic not in kafka_admin(stack).list_topics(timeout=10).topics
