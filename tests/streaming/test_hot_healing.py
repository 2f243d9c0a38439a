"""When Redis loses data the hot tier heals itself, and no answer ever comes from a hole (issue 22,
docs/effectively-once.md#when-redis-loses-data).

Each scenario: three hours of history (ending two hours ago, with duplicates and deletes) consumed
by a worker process into a private Redis; a prober thread asks the query service about a closed
window of that history over and over (each request unique, so no cache answers it), while live
Tweets keep arriving (the current minutes, outside the window). Then Redis loses data: FLUSHALL,
a restart with an empty data directory, or hot keys evicted under `maxmemory`. Every answer must
equal the expectation computed from the topic's bytes, before, during and after; answers come
from ClickHouse while the hot tier is incomplete, and from Redis again once it is rebuilt; at the
end the hot tier equals the expectation key by key. The history's start is read from the
marker's `from` field (its layout: tweetflow/hot_history.py).
"""

from __future__ import annotations

import shutil
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import orjson
from qs_support import METADATA, build_marts, serving
from streaming_support import (
    BackgroundProducer,
    Expected,
    PrivateRedis,
    WorkerProcess,
    assert_hot_matches,
    cli_env,
    expect,
    high_watermarks,
    processes,
    produce,
    read_topic,
    synthetic,
    total_lag,
    wait_for,
    with_duplicates,
)

from tweetflow.clients import kafka_admin, redis_client
from tweetflow.settings import Settings
from tweetflow.v1 import analytics_pb2 as pb
from tweetflow.v1 import analytics_pb2_grpc as pb_grpc

HOUR = 3600
HISTORY, LIVE = 3000, 1200


# --- the hot tier's state, by the documented key layout -----------------------------------------


def history_start(s: Settings) -> str | None:
    """The history marker's `from` (one shard: Redis is standalone here): an epoch second once
    the hot tier is complete, else None."""
    key = f"{s.redis_prefix}:{{s0}}:history:{s.topic_raw}"
    value = redis_client(s, decode_responses=True).hget(key, "from")
    return value if value is not None and value.isdigit() else None


# --- what the closed window must answer ----------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    total: int
    mentions: tuple[tuple[str, int], ...]


def expected_answer(exp: Expected, window: tuple[int, int]) -> Answer:
    hours = range(window[0], window[1], HOUR)
    mentions: Counter[str] = Counter()
    for hour in hours:
        mentions.update(exp.hot_z.get(("mention", "h", hour), {}))
    ranked = sorted(((m, n) for m, n in mentions.items() if n), key=lambda kv: (-kv[1], kv[0]))
    return Answer(sum(exp.hot_n.get(("h", hour), 0) for hour in hours), tuple(ranked[:10]))


def ask(stub: pb_grpc.AnalyticsServiceStub, window: tuple[int, int],
        nanos: int) -> tuple[str, Answer]:
    """TweetVolume and TopMentions over the window (`nanos` makes the requests unique); where
    they came from: HOT, CLICKHOUSE (marts or raw) or MIXED."""
    volume = pb.TweetVolumeRequest(granularity=pb.GRANULARITY_HOUR)
    mentions = pb.TopMentionsRequest(limit=10)
    for request in (volume, mentions):
        request.start.seconds, request.start.nanos = window[0], nanos
        request.end.seconds = window[1]
    v = stub.TweetVolume(volume, metadata=METADATA, timeout=20)
    m = stub.TopMentions(mentions, metadata=METADATA, timeout=20)
    origins = {pb.AnswerSource.Name(a.origin).removeprefix("ANSWER_SOURCE_") for a in (v, m)}
    origin = "HOT" if origins == {"HOT"} else "CLICKHOUSE" if "HOT" not in origins else "MIXED"
    return origin, Answer(v.total, tuple((e.entity, e.count) for e in m.entities))


@dataclass
class Probe:
    at: float
    origin: str
    answer: Answer | None = None
    error: str = ""


@dataclass(eq=False)
class Prober(threading.Thread):
    """TweetVolume and TopMentions over the window, each request unique (start.nanos)."""

    address: str
    window: tuple[int, int]
    probes: list[Probe] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(daemon=True)
        self.stopped = threading.Event()

    def run(self) -> None:
        channel = grpc.insecure_channel(self.address)
        stub = pb_grpc.AnalyticsServiceStub(channel)
        k = 0
        while not self.stopped.is_set():
            k += 1
            try:
                origin, answer = ask(stub, self.window, k)
            except grpc.RpcError as exc:
                self.probes.append(Probe(time.monotonic(), "error", error=str(exc.details())))
                continue
            self.probes.append(Probe(time.monotonic(), origin, answer))
            self.stopped.wait(0.05)
        channel.close()

    def count(self, origin: str, since: float = 0.0) -> int:
        return sum(1 for p in self.probes if p.origin == origin and p.at >= since)

    def stop(self) -> None:
        self.stopped.set()
        self.join(30)


# --- the scenario --------------------------------------------------------------------------------


def lose_and_heal(test_settings: Settings, tmp_path: Path,
                  lose: Callable[[PrivateRedis, Settings], None],
                  prepare: Callable[[Settings], None] = lambda s: None,
                  after_detection: Callable[[Settings], None] = lambda s: None) -> list[Probe]:
    redis = PrivateRedis(tmp_path / "redis")
    with processes() as children:
        children.append(redis.start())
        s = test_settings.model_copy(update={"redis_url": redis.url})
        prepare(s)
        produce(s, with_duplicates(synthetic(2201, HISTORY, hours_ago=5, span_hours=3), 0.05, 3))
        worker = WorkerProcess(s, tmp_path / "worker.log", batch_size=500, batch_ms=200)
        children.append(worker.start())
        wait_for(lambda: total_lag(s) == 0 and history_start(s), 120,
                 "the history consumed and the hot tier complete")
        build_marts(s, select=("stg_tweets",))
        now = time.time()
        window = (int(now - 5 * HOUR) // HOUR * HOUR + HOUR, int(now - 2 * HOUR) // HOUR * HOUR)
        want = expected_answer(expect(read_topic(s)), window)
        assert want.total > 0 and want.mentions
        before = history_start(s)
        with serving(s) as served:
            prober = Prober(served.address, window)
            prober.start()
            try:
                wait_for(lambda: prober.count("HOT") >= 3, 60, "answers from the hot tier")
                published = sum(high_watermarks(s).values())
                with BackgroundProducer(s, synthetic(2202, LIVE, hours_ago=0.05, span_hours=0.04),
                                        rate=100):
                    wait_for(lambda: sum(high_watermarks(s).values()) > published + LIVE // 4, 60,
                             "live Tweets arriving")
                    lose(redis, s)
                    # at once: no consumer can have rebuilt anything yet
                    assert _ask_once(served.address, window) == ("CLICKHOUSE", want)
                    after_detection(s)
                    wait_for(lambda: history_start(s) not in (None, before), 180,
                             "the hot tier rebuilt")
                    healed_at = time.monotonic()
                    wait_for(lambda: prober.count("HOT", healed_at) >= 3, 60,
                             "answers from the rebuilt hot tier")
            finally:
                prober.stop()
        wait_for(lambda: total_lag(s) == 0, 120, "the live Tweets consumed")
        assert_hot_matches(s, expect(read_topic(s)), url=redis.url)
    errors = [p.error for p in prober.probes if p.origin == "error"]
    assert not errors, errors[:3]
    wrong = [p for p in prober.probes if p.answer != want]
    assert not wrong, f"{len(wrong)} of {len(prober.probes)} answers differ, e.g. {wrong[0]} != {want}"
    assert "lost its history" in worker.log(200_000) or "evicted" in worker.log(200_000)
    return prober.probes


def test_redis_flushed_mid_ingest(test_settings: Settings, tmp_path: Path) -> None:
    lose_and_heal(test_settings, tmp_path, lambda redis, s: redis_client(s).flushall())


def test_redis_restarted_empty(test_settings: Settings, tmp_path: Path) -> None:
    def restart_empty(redis: PrivateRedis, s: Settings) -> None:
        redis.stop()
        shutil.rmtree(tmp_path / "redis" / "appendonlydir")
        redis.start()

    lose_and_heal(test_settings, tmp_path, restart_empty)


def test_hot_keys_evicted_under_maxmemory(test_settings: Settings, tmp_path: Path) -> None:
    """An operator runs Redis with an evicting policy (here volatile-ttl: the keys nearest their
    expiry go first, the oldest buckets of the history) and memory runs short: Redis evicts hot
    keys. Detected from Redis's eviction counter; once the operator raised maxmemory, rebuilt."""

    def evicting(s: Settings) -> None:
        redis_client(s).config_set("maxmemory-policy", "volatile-ttl")

    def squeeze(redis: PrivateRedis, s: Settings) -> None:
        r = redis_client(s)
        r.config_set("maxmemory", int(r.info("memory")["used_memory"]) - 300_000)
        wait_for(lambda: r.info("stats")["evicted_keys"] > 0, 60, "Redis evicting keys")

    def raise_maxmemory(s: Settings) -> None:
        redis_client(s).config_set("maxmemory", 0)

    lose_and_heal(test_settings, tmp_path, squeeze, evicting, raise_maxmemory)


def test_the_query_service_alone_notices_a_flush(test_settings: Settings, tmp_path: Path) -> None:
    """No consumer runs: the next answer after a FLUSHALL already comes from ClickHouse, exact, and
    /readyz says the hot tier lost its history. A worker started later heals it."""
    redis = PrivateRedis(tmp_path / "redis")
    with processes() as children:
        children.append(redis.start())
        s = test_settings.model_copy(update={"redis_url": redis.url})
        produce(s, synthetic(2301, 1500, hours_ago=5, span_hours=3))
        worker = WorkerProcess(s, tmp_path / "worker.log", batch_size=500, batch_ms=200,
                               idle_exit_s=3)
        children.append(worker.start())
        assert worker.wait(120) == 0, worker.log()
        assert history_start(s)
        build_marts(s, select=("stg_tweets",))
        now = time.time()
        window = (int(now - 5 * HOUR) // HOUR * HOUR + HOUR, int(now - 2 * HOUR) // HOUR * HOUR)
        want = expected_answer(expect(read_topic(s)), window)
        with serving(s, http=True) as served:
            assert _ask_once(served.address, window) == ("HOT", want)
            redis_client(s).flushall()
            assert _ask_once(served.address, window) == ("CLICKHOUSE", want)
            body = _readyz(served.http_url)
            assert body["hot"]["state"] == "lost", body
            worker = WorkerProcess(s, tmp_path / "worker2.log", batch_size=500, batch_ms=200,
                                   idle_exit_s=3)
            children.append(worker.start())
            assert worker.wait(120) == 0, worker.log()
            assert history_start(s)
            wait_for(lambda: _ask_once(served.address, window) == ("HOT", want), 30,
                     "answers from the rebuilt hot tier")
            assert "lost its history" in worker.log()


def _ask_once(address: str, window: tuple[int, int]) -> tuple[str, Answer]:
    with grpc.insecure_channel(address) as channel:
        return ask(pb_grpc.AnalyticsServiceStub(channel), window, time.monotonic_ns() % 10**9)


def test_heal_reads_the_raw_tables_when_kafka_no_longer_holds_the_horizon(
        test_settings: Settings, tmp_path: Path, capsys) -> None:
    """Kafka's retention deleted the history (here: deleteRecords up to the end of every
    partition, as retention does segment by segment) and then Redis was flushed: the hot tier is
    rebuilt from raw_tweets and tweet_deletes, exactly; `tweetflow heal` says from where."""
    from confluent_kafka import TopicPartition

    from tweetflow.app import cli

    redis = PrivateRedis(tmp_path / "redis")
    with processes() as children:
        children.append(redis.start())
        s = test_settings.model_copy(update={"redis_url": redis.url})
        produce(s, with_duplicates(synthetic(2401, 2000, hours_ago=5, span_hours=3), 0.05, 4))
        worker = WorkerProcess(s, tmp_path / "worker.log", batch_size=500, batch_ms=200,
                               idle_exit_s=3)
        children.append(worker.start())
        assert worker.wait(120) == 0, worker.log()
        exp = expect(read_topic(s))
        highs = high_watermarks(s)
        admin = kafka_admin(s)
        futures = admin.delete_records([TopicPartition(s.topic_raw, p, h)
                                        for p, h in highs.items()])
        for future in futures.values():
            future.result(30)
        redis_client(s).flushall()
        with cli_env(s):
            assert cli.main(["heal", "--run"]) == 0
            assert cli.main(["heal"]) == 0
        out = capsys.readouterr().out
        assert "raw tables" in out and "complete from" in out, out
        assert history_start(s)
        assert_hot_matches(s, exp, url=redis.url)


def test_redis_restored_from_an_older_snapshot(test_settings: Settings, tmp_path: Path) -> None:
    """Redis comes back with an older copy of its data (a snapshot, a lagging replica): its
    watermarks are behind the offsets the consumers committed. A worker sees the gap, re-applies
    it from the raw tables, and the hot tier is exact again."""
    redis = PrivateRedis(tmp_path / "redis")
    aof, snapshot = tmp_path / "redis" / "appendonlydir", tmp_path / "snapshot"
    with processes() as children:
        children.append(redis.start())
        s = test_settings.model_copy(update={"redis_url": redis.url})

        def consume(name: str) -> WorkerProcess:
            worker = WorkerProcess(s, tmp_path / f"{name}.log", batch_size=300, batch_ms=200,
                                   idle_exit_s=3)
            children.append(worker.start())
            assert worker.wait(120) == 0, worker.log()
            return worker

        produce(s, with_duplicates(synthetic(2501, 1500, hours_ago=5, span_hours=3), 0.05, 5))
        consume("first")
        assert history_start(s)
        redis.stop()
        shutil.copytree(aof, snapshot)  # the older copy
        redis.start()
        produce(s, with_duplicates(synthetic(2502, 1500, hours_ago=4, span_hours=3), 0.05, 6))
        consume("second")
        redis.stop()
        shutil.rmtree(aof)
        shutil.copytree(snapshot, aof)
        redis.start()
        assert history_start(s), "the snapshot's marker says complete: only the offsets show"
        build_marts(s, select=("stg_tweets",))
        now = time.time()
        window = (int(now - 5 * HOUR) // HOUR * HOUR + HOUR, int(now - 2 * HOUR) // HOUR * HOUR)
        exp = expect(read_topic(s))
        want = expected_answer(exp, window)
        with serving(s, http=True) as served:
            wait_for(lambda: _readyz(served.http_url)["hot"]["state"] == "behind", 30,
                     "the query service seeing the watermarks behind")
            assert _ask_once(served.address, window) == ("CLICKHOUSE", want)
            worker = consume("third")
            assert "offsets are missing below a watermark" in worker.log()
            assert history_start(s)
            wait_for(lambda: _ask_once(served.address, window) == ("HOT", want), 30,
                     "answers from the healed hot tier")
        assert_hot_matches(s, exp, url=redis.url)


def _readyz(base_url: str) -> dict:
    return orjson.loads(urllib.request.urlopen(f"{base_url}/readyz", timeout=10).read())
