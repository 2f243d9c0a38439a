"""streaming.offsets and streaming.offset_reset through `tweetflow lag` and `tweetflow replay`:
printed lag per partition, and where `--to` moves the group (checked against offsets and
timestamps read back from the topic)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Consumer, TopicPartition
from streaming_support import (
    cli_env,
    committed_offsets,
    drain,
    high_watermarks,
    produce,
    read_topic,
    synthetic,
    wait_for,
)

from streaming.offsets import group_lag
from tweetflow.app import cli
from tweetflow.clients import kafka_config
from tweetflow.settings import Settings


def _lag_table(settings: Settings, capsys: pytest.CaptureFixture[str]
               ) -> tuple[dict[int, tuple[int, int, int]], int]:
    """`tweetflow lag` output: {partition: (committed, high, lag)} and the printed total."""
    with cli_env(settings):
        assert cli.main(["lag"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["partition", "committed", "high", "lag"]
    end = next(i for i, line in enumerate(lines) if line.split()[:1] == ["total"])
    rows = {int(p): (int(c), int(h), int(lag)) for p, c, h, lag in map(str.split, lines[1:end])}
    label, total = lines[end].split()  # the hot tier's status lines may follow (issue 22)
    assert label == "total"
    return rows, int(total)


def test_lag_command_prints_each_partition(test_settings: Settings,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    s = test_settings
    produce(s, synthetic(1001, 300, delete_fraction=0))
    highs = high_watermarks(s)
    assert len(highs) == s.topic_partitions

    rows, total = _lag_table(s, capsys)
    assert rows == {p: (-1, h, h) for p, h in highs.items()}  # -1: nothing committed yet
    assert total == 300

    drain(s)
    rows, total = _lag_table(s, capsys)
    assert rows == {p: (h, h, 0) for p, h in highs.items()}
    assert total == 0


def test_lag_json_is_the_group_lag(test_settings: Settings,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    s = test_settings
    produce(s, synthetic(1003, 90, delete_fraction=0))
    with cli_env(s):
        assert cli.main(["lag", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {
        "group": s.consumer_group, "topic": s.topic_raw, "total": 90,
        "partitions": [{"partition": r.partition, "committed": r.committed, "low": r.low,
                        "high": r.high, "lag": r.lag} for r in group_lag(s)]}


def test_replay_prints_the_plan_and_moves_only_with_execute(
        test_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    s = test_settings
    produce(s, synthetic(1004, 120, delete_fraction=0))
    drain(s)
    highs = high_watermarks(s)
    assert committed_offsets(s) == highs
    with cli_env(s):
        assert cli.main(["replay", "--to", "earliest"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["partition", "committed", "new"]
    assert {int(p): (int(c), int(n)) for p, c, n in map(str.split, out[1:1 + len(highs)])} == {
        p: (h, 0) for p, h in highs.items()}
    assert "--execute" in out[-1]
    assert committed_offsets(s) == highs  # nothing moved
    with cli_env(s):
        assert cli.main(["replay", "--to", "earliest", "--execute"]) == 0
    assert committed_offsets(s) == {p: 0 for p in highs}


def test_group_lag_agrees_with_the_broker(test_settings: Settings) -> None:
    s = test_settings
    produce(s, synthetic(1002, 200, delete_fraction=0))
    highs = high_watermarks(s)
    half = {p: h // 2 for p, h in highs.items()}
    committer = Consumer(kafka_config(s, **{"group.id": s.consumer_group,
                                            "enable.auto.commit": False}))
    try:
        committer.commit(offsets=[TopicPartition(s.topic_raw, p, o) for p, o in half.items()],
                         asynchronous=False)
    finally:
        committer.close()
    rows = {r.partition: r for r in group_lag(s)}
    assert {p: (r.committed, r.low, r.high, r.lag) for p, r in rows.items()} == {
        p: (half[p], 0, highs[p], highs[p] - half[p]) for p in highs}
    assert committed_offsets(s) == half


def test_replay_to_moves_offsets_to_the_first_message_at_or_after_the_time(
        test_settings: Settings) -> None:
    s = test_settings
    cuts = []
    for seed in (1101, 1102, 1103):
        if seed != 1101:
            time.sleep(0.05)
            cuts.append(datetime.now(UTC))
            time.sleep(0.05)
        produce(s, synthetic(seed, 150, delete_fraction=0))
    records = read_topic(s)
    highs = high_watermarks(s)

    def first_at_or_after(when: datetime) -> dict[int, int]:
        ms = int(when.timestamp() * 1000)
        return {p: min((r.offset for r in records if r.partition == p and r.timestamp_ms >= ms),
                       default=high) for p, high in highs.items()}

    naive_utc = cuts[1].astimezone(UTC).replace(tzinfo=None)  # no zone given: UTC
    cases = [
        (cuts[0].isoformat(), first_at_or_after(cuts[0])),
        (cuts[1].strftime("%Y-%m-%dT%H:%M:%S.%fZ"), first_at_or_after(cuts[1])),
        (naive_utc.isoformat(), first_at_or_after(cuts[1])),
        ((cuts[0] - timedelta(days=1)).isoformat(), {p: 0 for p in highs}),
        ((cuts[1] + timedelta(hours=1)).isoformat(), highs),
        ("earliest", {p: 0 for p in highs}),
        ("latest", highs),
    ]
    assert first_at_or_after(cuts[0]) != first_at_or_after(cuts[1])
    for to, want in cases:
        with cli_env(s):
            assert cli.main(["replay", "--to", to, "--execute"]) == 0
        assert committed_offsets(s) == want, to


def test_replay_refuses_while_the_group_has_a_member(test_settings: Settings,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    s = test_settings
    produce(s, synthetic(1201, 60, delete_fraction=0))
    drain(s)
    before = committed_offsets(s)
    member = Consumer(kafka_config(s, **{"group.id": s.consumer_group, "enable.auto.commit": False}))
    try:
        member.subscribe([s.topic_raw])
        wait_for(lambda: member.poll(0.2) is None and member.assignment(), 30, "an assignment")
        with cli_env(s):
            assert cli.main(["replay", "--to", "earliest", "--execute"]) == 1
        assert "stop the consumers" in capsys.readouterr().out
    finally:
        member.close()
    assert committed_offsets(s) == before
