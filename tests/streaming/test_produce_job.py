"""`tweetflow produce` at Kafka's pace (streaming.produce_job): messages made ahead on the plan's
schedule, several producer processes sharing one plan, one summary; read back from the real
local broker. Speed itself is measured by bench/producer_bench.py, never asserted here."""

from __future__ import annotations

import gzip
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest

from streaming.produce_job import Job, SourceSpec, messages, run_job
from streaming.producer import BurstSpec, RunPlan, keyed
from streaming.synthetic import SyntheticSource
from tweetflow import namespaces
from tweetflow.settings import Settings, get_settings
from tweetflow.snowflake import snowflake_ms


def _records(settings: Settings, topic: str, expected: int,
             timeout: float = 60.0) -> list[tuple[bytes | None, bytes, int, int]]:
    """(key, value, partition, offset) of every message of `topic`, in partition order."""
    from confluent_kafka import Consumer

    from tweetflow.clients import kafka_config

    group = f"reader_{uuid.uuid4().hex[:8]}"
    consumer = Consumer(kafka_config(settings, **{
        "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}))
    consumer.subscribe([topic])
    out: list[tuple[bytes | None, bytes, int, int]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(out) < expected:
            for msg in consumer.consume(10_000, 1.0):
                assert msg.error() is None, msg.error()
                out.append((msg.key(), msg.value(), msg.partition(), msg.offset()))
        out += [(m.key(), m.value(), m.partition(), m.offset())  # more would be a failure too
                for m in consumer.consume(10_000, 1.0)]
    finally:
        consumer.close()
        namespaces.delete_groups(settings, [group])
    return out


def _cli(*argv: str) -> int:
    from tweetflow.app.cli import main

    return main(["produce", *argv])


def _summary(out: str) -> dict[str, str]:
    """The summary's lines as {label: value} (labels take the first 22 characters)."""
    return {line[:22].strip(): line[22:].strip() for line in out.splitlines()
            if line.startswith(("delivered", "failed", "processes", "made ahead"))}


# --- the schedule (no broker) ------------------------------------------------------------------


def test_synthetic_messages_carry_the_time_the_plan_sends_them_and_the_burst_its_hashtag() -> None:
    plan = RunPlan(rate=1000, duration=2, burst=BurstSpec(10_000, 0.5))  # burst 0.75-1.25 s
    job = Job(get_settings(), "unused", SourceSpec("synthetic", 5), plan,
              start_ms=1_800_000_000_000, burst_hashtag="RecordBurst")
    made = [next(it) for it in [messages(job, 0)] for _ in range(750 + 5000 + 750)]
    tweets = [(i, orjson.loads(v)) for i, (_, v, _) in enumerate(made)]
    tweets = [(i, d) for i, d in tweets if "delete" not in d["data"]]
    for i, doc in tweets:
        ms = snowflake_ms(int(doc["data"]["id"]))
        planned = i if i < 750 else 750 + (i - 750) / 10 if i < 5750 else 1250 + (i - 5750)
        assert ms - job.start_ms == pytest.approx(planned, abs=1.01), i

    def share(lo: int, hi: int) -> float:
        inside = [d for i, d in tweets if lo <= i < hi]
        return sum(b"#RecordBurst" in orjson.dumps(d) for d in inside) / len(inside)

    assert share(750, 5750) > 0.25 and share(0, 750) == 0.0
    assert share(5750, 6500) < share(750, 5750) / 3  # afterwards only retweets of the burst


def test_processes_make_distinct_tweets_from_consecutive_seeds() -> None:
    job = Job(get_settings(), "unused", SourceSpec("synthetic", 40), RunPlan(rate=0),
              processes=3, start_ms=1_800_000_000_000)
    made = [[next(it) for it in [messages(job, i)] for _ in range(500)] for i in range(3)]
    ids = [{tid for _, v, tid in m if not v.startswith(b'{"data":{"delete"')} for m in made]
    assert sum(map(len, ids)) == len(set().union(*ids)) > 1450  # all but the deletes
    assert [{(t >> 12) & 0x3FF for t in s} for s in ids] == [{40}, {41}, {42}]  # Snowflake worker


# --- against the local broker ------------------------------------------------------------------


def test_processes_share_a_run_exactly(test_settings: Settings,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    topic, n = test_settings.topic_raw, 6001
    rc = _cli("--topic", topic, "--processes", "2", "--rate", "0", "--count", str(n),
              "--duration", "0", "--duplicates", "0.05", "--seed", "9")
    out = capsys.readouterr().out
    assert rc == 0, out
    summary = _summary(out)
    delivered = int(summary["delivered"].replace(",", ""))
    assert summary["failed"] == "0" and summary["processes"] == "2"
    assert summary["made ahead"].startswith(f"{n:,} messages")  # unpaced: all of them first
    got = _records(test_settings, topic, delivered)
    assert len(got) == delivered
    originals = Counter(value for _, value, _, _ in got)
    assert len(originals) == n and 0.03 * n < delivered - n < 0.07 * n
    partitions: dict[bytes | None, set[int]] = defaultdict(set)
    for key, _, partition, _ in got:
        partitions[key].add(partition)
    assert all(len(p) == 1 for p in partitions.values())
    workers = Counter((int(k) >> 12) & 0x3FF for k in partitions if k)
    assert set(workers) == {9, 10} and min(workers.values()) > 0.4 * len(partitions)


def test_a_plan_shared_by_processes_sends_its_count_and_one_burst(test_settings: Settings
                                                                  ) -> None:
    """Whatever the machine's load: the processes together send exactly the plan's count, and
    the burst is reported once, at the plan's window from a process's start (the first to
    report it; `started` is the earliest start). No wall-clock check: the pace is the plan's
    and the token bucket's, tested on a fake clock in test_producer.py."""
    spans: list[tuple[int, int]] = []
    ready: list[float] = []  # once every process has made its messages, before any starts
    plan = RunPlan(rate=400, duration=None, count=1600, burst=BurstSpec(2000, 0.5))
    assert plan.burst_window() == (1.75, 2.25)
    result = run_job(Job(test_settings, test_settings.topic_raw, SourceSpec("synthetic", 3), plan,
                         processes=2), on_burst=lambda a, b: spans.append((a, b)),
                     before_start=lambda: ready.append(time.time()))
    assert result.ok and result.processes == 2 and result.sent == 1600
    assert len(ready) == 1 and ready[0] <= result.started
    (start, end), = spans
    assert end - start == 500 and start >= int(result.started * 1000 + 1750)
    assert len(_records(test_settings, test_settings.topic_raw, 1600)) == 1600


def test_file_lines_split_by_tweet_id_keep_each_ids_order(test_settings: Settings,
                                                          tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    source = iter(SyntheticSource(4))
    lines = [next(source)[1] for _ in range(3000)]
    lines += [lines[10], lines[20], b"not a payload", lines[10]]  # repeats, after their original
    path = tmp_path / "archive.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    rc = _cli("--topic", test_settings.topic_raw, "--source", f"file:{path}", "--rate", "0",
              "--processes", "2")
    assert rc == 0, capsys.readouterr().out
    got = _records(test_settings, test_settings.topic_raw, len(lines))
    assert sorted(v for _, v, _, _ in got) == sorted(lines)
    in_file: dict[bytes | None, list[bytes]] = defaultdict(list)
    for line in lines:
        in_file[keyed(line)[0]].append(line)
    in_topic: dict[bytes | None, list[bytes]] = defaultdict(list)
    for key, value, _, _ in sorted(got, key=lambda r: (r[2], r[3])):  # partition, offset
        in_topic[key].append(value)
    assert in_topic.keys() == in_file.keys()
    deleted = [k for k, v in in_file.items() if len(v) > 1]  # a Tweet and its delete, repeats
    assert len(deleted) > 5
    for key in in_file:
        assert in_topic[key] == in_file[key], key


def test_bad_process_and_ahead_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli("--processes", "0") == 2
    assert _cli("--ahead", "lots") == 2
    assert _cli("--ahead", "-5") == 2
    assert _cli("--source", "jetstream", "--processes", "2") == 2
    err = capsys.readouterr().err
    assert "--processes must be >= 1" in err and "--ahead 'lots'" in err
    assert "--processes is for the synthetic and file sources" in err
