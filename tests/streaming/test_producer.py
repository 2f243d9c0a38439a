"""streaming.producer and `tweetflow produce`: pacing, duplicates, keys and partitions, checked by
reading the topic back with a plain consumer from the real local broker."""

from __future__ import annotations

import gzip
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest

from streaming.producer import (
    BurstSpec,
    RunPlan,
    TokenBucket,
    TweetProducer,
    file_messages,
    run_plan,
)
from streaming.synthetic import SyntheticSource
from tweetflow import namespaces
from tweetflow.settings import Settings

DATA = Path(__file__).resolve().parents[1] / "data"


def _key_of(value: bytes) -> bytes:
    """The id a payload is about, read from its JSON (first Tweet of a v2 `data` list)."""
    data = orjson.loads(value)["data"]
    if isinstance(data, list):
        data = data[0]
    return (data["delete"]["tweet"]["id"] if "delete" in data else data["id"]).encode()


# --- units (no broker) -------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_token_bucket_holds_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000.0, clock=clock, sleep=clock.sleep)
    for _ in range(5000):
        bucket.take()
    assert clock.now == pytest.approx(5.0, rel=0.01)
    bucket.set_rate(100.0)
    start = clock.now
    for _ in range(100):
        bucket.take()
    assert clock.now - start == pytest.approx(1.0, rel=0.05)


def test_token_bucket_zero_rate_never_waits() -> None:
    clock = FakeClock()
    bucket = TokenBucket(0.0, clock=clock, sleep=clock.sleep)
    for _ in range(1000):
        bucket.take()
    assert clock.now == 0.0


def test_burst_spec_and_window() -> None:
    assert BurstSpec.parse("5000:2") == BurstSpec(5000.0, 2.0)
    for bad in ("5000", "a:b", "5000:0", "-1:3"):
        with pytest.raises(ValueError):
            BurstSpec.parse(bad)
    assert RunPlan(duration=10, burst=BurstSpec(5000, 2)).burst_window() == (4.0, 6.0)
    assert RunPlan(rate=100, duration=None, count=1000,
                   burst=BurstSpec(5000, 2)).burst_window() == (4.0, 6.0)
    assert RunPlan(duration=1, burst=BurstSpec(5000, 2)).burst_window() == (0.0, 2.0)
    assert RunPlan(duration=10).burst_window() is None


def _v2_lines() -> list[bytes]:
    raw = (DATA / "v2_expanded_stream.jsonl").read_bytes()
    return [ln for ln in raw.splitlines() if ln.strip()]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_file_messages_keys_by_tweet_id(tmp_path: Path, suffix: str) -> None:
    delete = b'{"data": {"delete": {"tweet": {"id": "42424242424"}}}}'
    lines = [*_v2_lines(), b"", b"{not json", delete]
    path = tmp_path / f"in{suffix}"
    body = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(body) if suffix.endswith(".gz") else body)
    out = list(file_messages(path))
    assert len(out) == len(lines) - 1  # the blank line is skipped
    for key, value, tid in out:
        if value == b"{not json":
            assert key is None and tid == 0
        else:
            assert key == _key_of(value) and tid == int(_key_of(value))


# --- against the local broker ------------------------------------------------------------------


def _murmur2(data: bytes) -> int:
    """Kafka's Java murmur2 (what `partitioner=murmur2_random` must match for keyed messages)."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = data[length - length % 4:]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def _read_all(settings: Settings, topic: str, expected: int, timeout: float = 60.0
              ) -> list[tuple[bytes | None, bytes, int]]:
    from confluent_kafka import Consumer

    from tweetflow.clients import kafka_config

    group = f"reader_{uuid.uuid4().hex[:8]}"
    consumer = Consumer(kafka_config(settings, **{
        "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}))
    consumer.subscribe([topic])
    out: list[tuple[bytes | None, bytes, int]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for msg in consumer.consume(10_000, 1.0):
                assert msg.error() is None, msg.error()
                out.append((msg.key(), msg.value(), msg.partition()))
            if len(out) >= expected:
                # linger a moment: more than expected would be a failure too
                out += [(m.key(), m.value(), m.partition()) for m in consumer.consume(10_000, 1.0)]
                break
    finally:
        consumer.close()
        namespaces.delete_groups(settings, [group])
    return out


def test_produces_n_plus_duplicates_keyed_and_partitioned(test_settings: Settings) -> None:
    topic, n = test_settings.topic_raw, 3000
    producer = TweetProducer(test_settings, topic)
    result = run_plan(producer, iter(SyntheticSource(11)),
                      RunPlan(rate=0, duration=None, count=n, duplicates=0.1, seed=11,
                              duplicate_delay=(0.0, 0.2)))
    assert result.ok and result.sent == n
    assert 0.06 * n < result.duplicates < 0.14 * n
    assert result.stats.delivered == result.stats.attempted == n + result.duplicates
    assert result.stats.bytes_delivered > 500 * (n + result.duplicates)

    got = _read_all(test_settings, topic, n + result.duplicates)
    assert len(got) == n + result.duplicates
    partitions: dict[bytes, set[int]] = defaultdict(set)
    copies = Counter((key, value) for key, value, _ in got)
    for key, value, partition in got:
        assert key is not None and key == _key_of(value)
        partitions[key].add(partition)
        assert partition == (_murmur2(key) & 0x7FFFFFFF) % test_settings.topic_partitions
    assert all(len(p) == 1 for p in partitions.values())
    assert sum(c - 1 for c in copies.values()) == result.duplicates  # same key, same bytes
    assert len({p for ps in partitions.values() for p in ps}) == test_settings.topic_partitions


def test_rate_and_burst_are_honoured(test_settings: Settings) -> None:
    producer = TweetProducer(test_settings, test_settings.topic_raw)
    spans: list[tuple[int, int]] = []
    t0 = time.time() * 1000
    result = run_plan(producer, iter(SyntheticSource(3)),
                      RunPlan(rate=400, duration=2.0, burst=BurstSpec(2000, 0.5)),
                      on_burst=lambda a, b: spans.append((a, b)))
    assert result.ok
    (start, end), = spans
    assert start - t0 == pytest.approx(750, abs=150) and end - start == pytest.approx(500, abs=5)
    expected = 400 * 1.5 + 2000 * 0.5  # 1600
    assert 0.75 * expected < result.sent < 1.15 * expected


def _cli(*argv: str) -> int:
    from tweetflow.app.cli import main

    return main(["produce", *argv])


def test_cli_end_to_end(test_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    topic = test_settings.topic_raw
    rc = _cli("--topic", topic, "--rate", "0", "--count", "5000", "--duration", "0",
              "--duplicates", "0.1", "--seed", "5")
    out = capsys.readouterr().out
    assert rc == 0, out
    summary = dict(line.split(None, 1) for line in out.splitlines() if line.startswith(
        ("delivered", "failed", "elapsed")))
    delivered = int(summary["delivered"].replace(",", ""))
    assert summary["failed"] == "0" and 5000 < delivered < 6000
    assert "duplicates published" in out and "MB/s" in out
    with capsys.disabled():
        print("\n" + out.strip().splitlines()[-1], out.strip().splitlines()[-2])
    assert len(_read_all(test_settings, topic, delivered)) == delivered


def test_cli_file_source(test_settings: Settings, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    lines = [*_v2_lines(), b"not a payload"]
    path = tmp_path / "payloads.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines)))
    rc = _cli("--topic", test_settings.topic_raw, "--source", f"file:{path}", "--rate", "0")
    assert rc == 0, capsys.readouterr().out
    got = _read_all(test_settings, test_settings.topic_raw, len(lines))
    assert sorted(v for _, v, _ in got) == sorted(lines)
    assert [k for k, v, _ in got if v == b"not a payload"] == [None]
    assert all(k == _key_of(v) for k, v, _ in got if v != b"not a payload")


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli("--source", "file:/nonexistent/x.jsonl") == 2
    assert _cli("--source", "kafka") == 2
    assert _cli("--duplicates", "1.5") == 2
    assert _cli("--burst", "fast") == 2
    assert "tweetflow produce:" in capsys.readouterr().err
