"""streaming.producer and `tweetflow produce`: pacing, duplicates, keys and partitions, checked by
reading the topic back with a plain consumer from the real local broker."""

from __future__ import annotations

import gzip
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from streaming.lookahead import Lookahead, ahead_needed
from streaming.producer import (
    CATCH_UP_SECONDS,
    BurstSpec,
    Message,
    RunPlan,
    TokenBucket,
    TweetProducer,
    file_messages,
    keyed,
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


def test_token_bucket_holds_the_rate_when_its_sleep_returns_early() -> None:
    """The bucket sleeps in the producer's poll, which returns as soon as a delivery callback
    comes: a sleep cut short must not let the next calls out ahead of the rate."""
    clock = FakeClock()
    bucket = TokenBucket(1000.0, clock=clock, sleep=lambda s: clock.sleep(s / 4))
    for _ in range(5000):
        bucket.take()
    assert clock.now == pytest.approx(5.0, rel=0.01)


def test_the_run_loops_bucket_catches_up_after_a_hold_up() -> None:
    """On a shared machine the send loop is now and then held up for tens of milliseconds or
    more (scheduling, a burst of delivery callbacks): what fell due meanwhile must still go out,
    at once, rather than be dropped from the plan (a burst would carry fewer messages)."""
    clock = FakeClock()
    bucket = TokenBucket(1000.0, slack=CATCH_UP_SECONDS, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        bucket.take()
    clock.now += 0.5  # held up
    held = clock.now
    for _ in range(500):  # the 500 that fell due go at once (the last waits its millisecond)
        bucket.take()
    assert clock.now - held <= 0.0011 and bucket.credit() < 1
    for _ in range(100):
        bucket.take()
    assert clock.now == pytest.approx(held + 0.1, rel=0.05)


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


def test_token_bucket_holds_the_rate_in_chunks() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100_000.0, clock=clock, sleep=clock.sleep)
    for _ in range(5000):
        bucket.take(100)  # 500,000 calls
    assert clock.now == pytest.approx(5.0, rel=0.01)


RECORD = RunPlan(rate=2000, duration=30, burst=BurstSpec(143_199, 10))


def test_plan_phases_and_when_each_original_goes_out() -> None:
    assert RECORD.phases() == [(0.0, 10.0, 2000), (10.0, 20.0, 143_199), (20.0, 30.0, 2000)]
    assert RunPlan(rate=5, duration=None).phases() == [(0.0, float("inf"), 5)]
    assert RECORD.offset_of(0) == 0.0
    assert RECORD.offset_of(19_999) == pytest.approx(9.9995)
    assert RECORD.offset_of(20_000) == 10.0
    assert RECORD.offset_of(20_000 + 143_199 * 5) == pytest.approx(15.0)
    assert RECORD.offset_of(20_000 + 1_431_990) == 20.0
    assert RECORD.offset_of(20_000 + 1_431_990 + 20_000) is None  # after the run
    assert RunPlan(rate=0, duration=10).offset_of(0) is None  # unpaced
    assert RunPlan(rate=10, duration=None, count=100).offset_of(99) == pytest.approx(9.9)
    assert RECORD.planned_originals() == 40_000 + 1_431_990
    assert RunPlan(rate=10, duration=None, count=100).planned_originals() == 100
    assert RunPlan(rate=0, duration=10).planned_originals() == float("inf")


def test_a_plan_shared_by_processes_adds_up_to_the_plan() -> None:
    plan = RunPlan(rate=3000, duration=None, count=10_001, burst=BurstSpec(30_000, 1), seed=7)
    shares = [plan.share(i, 3) for i in range(3)]
    assert [s.count for s in shares] == [3334, 3334, 3333]
    assert all(s.rate == 1000 and s.burst == BurstSpec(10_000, 1) for s in shares)
    assert {s.burst_window() for s in shares} == {plan.burst_window()}
    assert [s.seed for s in shares] == [7, 8, 9]
    assert sum(s.offset_of(0) == 0.0 for s in shares) == 3


def test_lookahead_hands_out_made_messages_then_makes_more() -> None:
    made = iter(range(10))
    ahead = Lookahead(((b"k", b"v", i) for i in made), limit=4)
    assert ahead.fill(100) == 4 and len(ahead) == 4 and ahead.made_ahead == 4
    assert [m[2] for m in ahead.take(3)] == [0, 1, 2]
    assert [m[2] for m in ahead.take(3)] == [3, 4, 5]  # one from the buffer, two on the fly
    polls: list[float] = []
    ahead.fill_for(0.02, polls.append, wanted=1)  # up to what the rest of the run needs
    assert len(ahead) == 1 and polls  # and delivery callbacks were served meanwhile
    ahead.fill_for(0.05, polls.append)  # fills to the limit, then waits in poll
    assert len(ahead) == 4
    assert [m[2] for m in ahead.take(10)] == [6, 7, 8, 9] and ahead.exhausted
    assert ahead.take(1) == [] and list(ahead) == []


def test_ahead_is_what_the_plan_needs_faster_than_messages_can_be_made() -> None:
    # 25,000/s (half of 50,000) made in the steady phase's waits, 23,000/s net of its 2,000/s;
    # the burst, faster than that, leaves no waits: its 1,431,990 must be made before
    assert ahead_needed(RECORD, 50_000, 10**7) == 1_431_990 - 23_000 * 10
    assert ahead_needed(RECORD, 50_000, 500_000) == 500_000  # the memory limit
    assert ahead_needed(RunPlan(rate=1000, duration=3600), 50_000, 10**7) == 0
    assert ahead_needed(RunPlan(rate=0, duration=None, count=70_000), 50_000, 10**7) == 70_000
    assert ahead_needed(RunPlan(rate=0, duration=10), 50_000, 10**6) == 10**6
    assert ahead_needed(RunPlan(rate=90_000, duration=None), 50_000, 10**6) == 10**6
    assert ahead_needed(RunPlan(rate=90_000, duration=None, count=900_000), 50_000,
                        10**7) == 900_000
    slow_then_fast = RunPlan(rate=10_000, duration=None, count=300_000,
                             burst=BurstSpec(100_000, 1))  # 1 s of burst in the middle of ~30 s
    assert ahead_needed(slow_then_fast, 50_000, 10**7) == 0  # 15 s x 15,000/s net before it


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


def _payloads_of_every_shape() -> list[bytes]:
    """Synthetic v2 messages (retweets, replies, quotes, deletes), the test data, a v2 lookup
    list, v1.1 and Jetstream payloads, and every malformed case of the parser's tests."""
    from jetstream_server import history
    from parsing_support import MALFORMED, VALID_DOCS, to_bytes, v1_doc

    source = iter(SyntheticSource(8))
    synthetic = [next(source)[1] for _ in range(3000)]
    lookup = to_bytes({"data": [orjson.loads(v)["data"] for v in _v2_lines()[:2]]})
    jetstream = [orjson.dumps(e) for e in history(3, 1_700_000_000_000_000, 20)]
    return [*synthetic, *_v2_lines(), lookup, to_bytes(v1_doc()), *jetstream,
            *(to_bytes(d) for d in VALID_DOCS), *(raw for _, raw, _, _ in MALFORMED)]


def test_keys_are_the_ids_the_parser_finds_read_without_parsing() -> None:
    from streaming.parsing import InvalidPayload, parse_payload
    from streaming.parsing.keys import message_id

    payloads = _payloads_of_every_shape()
    fast = 0
    for raw in payloads:
        try:
            expected: int | None = parse_payload(raw)[0].tweet_id
        except InvalidPayload:
            expected = None
        key, value, tid = keyed(raw)
        if expected is not None:  # a payload the parser rejects may go keyed or not
            assert (key, tid) == (str(expected).encode(), expected), raw[:200]
            cheap = message_id(raw)
            assert cheap in (None, expected), raw[:200]
            fast += cheap is not None
        assert value is raw
    synthetic = 3000
    assert fast >= synthetic  # every v2 stream message takes the cheap path


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


def _messages(seed: int, bulk: bool, made: list[bytes] | None = None) -> Iterator[Message]:
    """A synthetic stream, taken one message at a time or in chunks from a half-filled
    lookahead buffer (`run_plan`'s two ways); each message made is appended to `made`."""
    source: Iterator[Message] = iter(SyntheticSource(seed))
    if made is not None:
        source = _recorded(source, made)
    if not bulk:
        return source
    ahead = Lookahead(source, limit=2000)
    ahead.fill(1000)
    return ahead


@pytest.mark.parametrize("bulk", [False, True], ids=["one by one", "chunks"])
def test_produces_n_plus_duplicates_keyed_and_partitioned(test_settings: Settings,
                                                          bulk: bool) -> None:
    topic, n = test_settings.topic_raw, 3000
    producer = TweetProducer(test_settings, topic)
    result = run_plan(producer, _messages(11, bulk),
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


def test_batches_wait_for_room_keep_their_order_and_count_rejections(test_settings: Settings
                                                                     ) -> None:
    """`produce_many` with a queue of 50 messages: batches wait for room rather than being cut
    (the topic holds every message in order); one over the size limit fails alone."""
    topic = test_settings.topic_raw
    producer = TweetProducer(test_settings, topic, **{"queue.buffering.max.messages": 50})
    source = iter(SyntheticSource(21))
    made = [next(source) for _ in range(1000)]
    too_large = (b"1", b"x" * 1_500_000, 1)  # beyond message.max.bytes: rejected locally
    for i in range(0, 1000, 40):
        producer.produce_many(made[i:i + 40] + ([too_large] if i == 400 else []))
    stats = producer.flush(60)
    assert (stats.attempted, stats.delivered, stats.failed) == (1001, 1000, 1)
    assert dict(stats.errors) == {"MSG_SIZE_TOO_LARGE": 1}
    assert stats.bytes_delivered == sum(len(v) for _, v, _ in made)
    got = _read_all(test_settings, topic, 1000)
    position = {value: i for i, (_, value, _) in enumerate(made)}
    per_partition: dict[int, list[int]] = defaultdict(list)
    for _, value, partition in got:
        per_partition[partition].append(position[value])
    assert sorted(i for ps in per_partition.values() for i in ps) == list(range(1000))
    assert all(ps == sorted(ps) for ps in per_partition.values())


def _recorded(source: Iterator[Message], made: list[bytes]) -> Iterator[Message]:
    for message in source:
        made.append(message[1])
        yield message


@pytest.mark.parametrize("bulk", [False, True], ids=["one by one", "chunks"])
def test_a_paced_run_with_a_burst_sends_the_plan_in_order(test_settings: Settings,
                                                          bulk: bool) -> None:
    """What a run must do whatever the machine's load: send exactly its count, in the source's
    order (per partition), and report the burst at the plan's window from the run's start.
    The pace itself is the token bucket's and the plan's (unit tests above, on a fake clock):
    a wall-clock check here would fail on a loaded machine, not on wrong pacing."""
    producer = TweetProducer(test_settings, test_settings.topic_raw)
    spans: list[tuple[int, int]] = []
    plan = RunPlan(rate=400, duration=None, count=1600, burst=BurstSpec(2000, 0.5))
    assert plan.burst_window() == (1.75, 2.25)  # centred on count / rate = 4 s
    made: list[bytes] = []
    result = run_plan(producer, _messages(3, bulk, made), plan,
                      on_burst=lambda a, b: spans.append((a, b)))
    assert result.ok and result.sent == 1600 and result.duplicates == 0
    started_ms = result.started * 1000
    assert spans == [(int(started_ms + 1750), int(started_ms + 2250))]
    planned = made[:1600]  # made ahead of need beyond that, but never sent
    got = _read_all(test_settings, test_settings.topic_raw, 1600)
    per_partition: dict[int, list[bytes]] = defaultdict(list)
    for _, value, partition in got:
        per_partition[partition].append(value)
    assert sorted(v for _, v, _ in got) == sorted(planned)
    position = {value: i for i, value in enumerate(planned)}
    for values in per_partition.values():
        assert [position[v] for v in values] == sorted(position[v] for v in values)


@pytest.mark.parametrize("bulk", [False, True], ids=["one by one", "chunks"])
def test_a_stop_signal_during_a_delivery_report_loses_no_count(test_settings: Settings,
                                                              bulk: bool) -> None:
    """SIGTERM stops a run as Ctrl-C does (`tweetflow produce`, the bench's load generator); one
    arriving while a delivery report is being counted must not lose that count: the run still
    reports every message the topic holds as attempted and acknowledged (a bench once saw
    58,935 of 58,936)."""
    import os
    import signal

    from streaming.produce_job import stop_on_signals

    class SignalledProducer(TweetProducer):
        reports = 0

        def _on_delivery(self, err: object, msg: object) -> None:
            self.reports += 1
            if self.reports == 200:  # the signal arrives in the middle of a report
                os.kill(os.getpid(), signal.SIGTERM)
            super()._on_delivery(err, msg)

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    producer = SignalledProducer(test_settings, test_settings.topic_raw)
    # Another Python thread, as a long test session or the load generator's process pool has:
    # the kernel may hand it the signal, and Python then runs the handler in the main thread at
    # its next instruction, wherever that is.
    done = threading.Event()
    bystander = threading.Thread(target=done.wait, daemon=True)
    bystander.start()
    stop_on_signals()
    try:
        result = run_plan(producer, _messages(5, bulk), RunPlan(rate=2000, duration=None,
                                                               count=4000))
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        done.set()
    assert result.interrupted and 200 <= result.sent < 4000
    stats = result.stats
    assert (stats.failed, stats.undelivered) == (0, 0)
    assert stats.delivered == stats.attempted == result.sent
    assert len(_read_all(test_settings, test_settings.topic_raw, result.sent)) == result.sent


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
