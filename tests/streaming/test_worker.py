"""streaming.worker and `tweetflow consume` as processes: graceful SIGTERM (the batch in hand is
finished, committed offsets match what was applied), and the Prometheus metrics a worker serves."""

from __future__ import annotations

import os
import signal
import sys
import urllib.request
from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families
from streaming_support import (
    BackgroundProducer,
    ChildProcess,
    PrivateRedis,
    WorkerProcess,
    assert_clickhouse_matches,
    assert_committed_everything,
    assert_hot_matches,
    cli_env,
    committed_offsets,
    drain,
    expect,
    free_port,
    interleave,
    malformed,
    processes,
    produce,
    read_hot,
    read_topic,
    synthetic,
    total_lag,
    wait_for,
    with_duplicates,
)

from streaming.parsing import parse_payload
from tweetflow.settings import Settings

pytestmark = pytest.mark.slow


def test_sigterm_finishes_the_batch_in_hand_and_exits_0(test_settings: Settings, tmp_path) -> None:
    s = test_settings
    pairs = with_duplicates(synthetic(801, 2500), 0.1, seed=21)
    with processes() as children:
        worker = WorkerProcess(s, tmp_path / "worker.log", batch_size=100, batch_ms=100)
        children.append(worker)
        worker.start()
        with BackgroundProducer(s, pairs, rate=250):
            wait_for(lambda: sum(committed_offsets(s).values()) > 400, 60,
                     "the worker to commit a few batches")
            worker.signal(signal.SIGTERM)
            assert worker.wait(60) == 0, worker.log()
    records = read_topic(s)
    committed = committed_offsets(s)
    assert 0 < sum(max(o, 0) for o in committed.values()) < len(records), "not stopped mid-stream"
    # everything consumed was applied and committed: nothing half-done is left behind
    (totals,) = worker.totals()
    assert totals["messages"] == sum(max(o, 0) for o in committed.values())
    assert read_hot(s).watermarks == {p: o - 1 for p, o in committed.items() if o > 0}
    applied = expect([r for r in records if r.offset < committed[r.partition]])
    assert_hot_matches(s, applied)
    assert_clickhouse_matches(s, applied)
    # a new worker carries on exactly where the stopped one left off
    drain(s)
    exp = expect(records)
    assert_hot_matches(s, exp)
    assert_clickhouse_matches(s, exp)
    assert_committed_everything(s)


def test_sigterm_during_a_sink_outage_exits_0_without_committing(test_settings: Settings,
                                                                  tmp_path) -> None:
    with processes() as children:
        redis = PrivateRedis(tmp_path / "redis")
        children.append(redis.start())
        s = test_settings.model_copy(update={"redis_url": redis.url})
        produce(s, synthetic(802, 300))
        worker = WorkerProcess(s, tmp_path / "worker.log", batch_size=100, batch_ms=100)
        children.append(worker)
        redis.stop()
        worker.start()
        wait_for(lambda: "redis unavailable" in worker.log(), 60, "the worker to back off")
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.log()
        assert "it will be re-read" in worker.log()
        assert set(committed_offsets(s).values()) == {-1}
        redis.start()
        drain(s)
        exp = expect(read_topic(s))
        assert_hot_matches(s, exp, url=redis.url)
        assert_clickhouse_matches(s, exp)
        assert_committed_everything(s, url=redis.url)


def _scrape(port: int) -> dict[tuple[str, frozenset], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_consume_cli_metrics_agree_with_the_input(test_settings: Settings, tmp_path) -> None:
    s = test_settings
    produce(s, interleave(with_duplicates(synthetic(901, 1000), 0.15, seed=22), malformed(),
                          seed=23))
    records = read_topic(s)
    exp = expect(records)
    port = free_port()
    with cli_env(s):  # checks that this environment yields the test's settings
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("TWEETFLOW_")},
               **s.to_env()}
    with processes() as children:
        cli = ChildProcess([sys.executable, "-m", "tweetflow.app.cli", "consume", "--workers", "1",
                            "--metrics-port", str(port), "--batch-size", "300", "--batch-ms", "200"],
                           env, tmp_path / "consume.log")
        children.append(cli)
        cli.start()
        wait_for(lambda: total_lag(s) == 0, 60, "`tweetflow consume` to catch up")
        metrics = _scrape(port)
        cli.signal(signal.SIGTERM)
        assert cli.wait(60) == 0, cli.log()

    def value(name: str, **labels: str) -> float:
        return metrics.get((name, frozenset(labels.items())), 0.0)

    assert value("tweetflow_consumed_messages_total") == len(records)
    assert value("tweetflow_replayed_messages_skipped_total") == 0
    assert value("tweetflow_written_rows_total", sink="clickhouse") == exp.events
    assert value("tweetflow_written_rows_total", sink="redis") == exp.counted + exp.deletes
    assert value("tweetflow_duplicates_dropped_total") == exp.duplicates
    dead = {dict(labels)["reason_code"]: v for (name, labels), v in metrics.items()
            if name == "tweetflow_dead_lettered_messages_total"}
    assert dead == dict(exp.dead_letter_codes)
    lag = {dict(labels)["partition"]: v for (name, labels), v in metrics.items()
           if name == "tweetflow_consumer_lag"}
    assert lag == {str(p): 0 for p in {r.partition for r in records}}
    assert_hot_matches(s, exp)
    assert_committed_everything(s)



def _partitions(port: int, name: str) -> dict[str, float]:
    """A worker's per-partition series of `name`; none while its metrics server is starting."""
    try:
        metrics = _scrape(port)
    except OSError:
        return {}
    return {dict(labels)["partition"]: v for (n, labels), v in metrics.items() if n == name}


def test_a_worker_stops_reporting_the_partitions_it_no_longer_owns(test_settings: Settings,
                                                                   tmp_path) -> None:
    """After a rebalance, each partition's lag and freshness come from one worker only, so a sum
    (or max) over the workers counts each partition once."""
    s = test_settings
    ports = [free_port(), free_port()]
    hours_ago = 6.0
    first, second = (synthetic(seed, 600, hours_ago=hours_ago, span_hours=0.5) for seed in (951, 952))
    with processes() as children:
        a = WorkerProcess(s, tmp_path / "a.log", batch_size=100, batch_ms=100, metrics_port=ports[0])
        children.append(a)
        a.start()
        produce(s, first)
        wait_for(lambda: len(_partitions(ports[0], "tweetflow_consumer_lag"))
                 == s.topic_partitions, 60, "the first worker to report every partition")
        b = WorkerProcess(s, tmp_path / "b.log", batch_size=100, batch_ms=100, metrics_port=ports[1])
        children.append(b)
        b.start()
        with BackgroundProducer(s, second, rate=30):  # batches on both sides while B joins
            wait_for(lambda: _partitions(ports[1], "tweetflow_consumer_lag"), 90,
                     "the second worker to own partitions")
        wait_for(lambda: total_lag(s) == 0, 60, "both workers to catch up")

        def owned() -> tuple[set[str], set[str]]:
            return (set(_partitions(ports[0], "tweetflow_consumer_lag")),
                    set(_partitions(ports[1], "tweetflow_consumer_lag")))

        wait_for(lambda: not set.intersection(*owned()), 30,
                 "each partition's lag to come from one worker only")
        lag_a, lag_b = owned()
        assert lag_a and lag_b and lag_a | lag_b == {str(p) for p in range(s.topic_partitions)}
        fresh_a, fresh_b = (set(_partitions(p, "tweetflow_event_freshness_seconds"))
                            for p in ports)
        assert not fresh_a & fresh_b and fresh_a <= lag_a and fresh_b <= lag_b


def test_event_freshness_is_the_age_of_the_newest_event_applied(test_settings: Settings,
                                                                tmp_path) -> None:
    """tweetflow_event_freshness_seconds{partition}: when a batch was applied, how old (by event
    time, the Tweet's created_at) its newest Tweet of that partition was."""
    s = test_settings
    produce(s, synthetic(953, 400, hours_ago=6.0, span_hours=0.5))
    newest: dict[str, datetime] = {}
    for record in read_topic(s):
        for event in parse_payload(record.value):
            if event.tweet is not None:
                p = str(record.partition)
                newest[p] = max(newest.get(p, event.tweet.created_at), event.tweet.created_at)
    port = free_port()
    began = datetime.now(UTC)
    with processes() as children:
        worker = WorkerProcess(s, tmp_path / "w.log", batch_size=1000, metrics_port=port)
        children.append(worker)
        worker.start()
        wait_for(lambda: total_lag(s) == 0, 60, "the worker to catch up")
        freshness = _partitions(port, "tweetflow_event_freshness_seconds")
    ended = datetime.now(UTC)
    assert set(freshness) == set(newest)
    for p, age in freshness.items():  # applied between `began` and `ended`
        assert (began - newest[p]).total_seconds() <= age <= (ended - newest[p]).total_seconds(), p
