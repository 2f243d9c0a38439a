"""Shared helpers of the streaming integration tests (effectively-once, worker, offsets).

What they give a test: messages to publish (synthetic Tweets, duplicates, malformed payloads), a
way to read any topic back, workers (in this process, or as subprocesses configured through the
environment exactly as a deployment would be), private Redis / ClickHouse servers a test may stop,
and the EXPECTED results — computed from the bytes read back from the topic with
`streaming.parsing.parse_payload` and the documented semantics (docs/data-contracts.md), never
from the sinks under test. Reading the actual results uses only the documented key layout
(tweetflow/hot_keys.py docstring) and table names.

What is the bench's too is imported from it (bench/harness: free ports, the readers of Redis and
ClickHouse); what differs on purpose stays here, and says why where it is defined.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest.mock import patch

import orjson

from bench.harness import clickhouse_rows, free_port, redis_state, redis_watermarks
from streaming.offsets import KafkaRecord, committed_offsets, group_lag, read_topic, watermarks
from streaming.parsing import InvalidPayload, parse_payload
from streaming.pipeline import BatchResult
from streaming.producer import TweetProducer
from streaming.stopper import Stopper
from streaming.synthetic import generate
from streaming.worker import Worker, WorkerOptions
from tweetflow.clients import redis_client
from tweetflow.model import Tweet
from tweetflow.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SNOWFLAKE_EPOCH_MS = 1288834974657  # X's documented Snowflake epoch (not imported: independent)
EDGE_MARGIN_S = 3600.0  # test data stays this far from the hot-horizon edge: no ambiguity
Pair = tuple[bytes | None, bytes | None]  # (key, value) to publish


# --- messages --------------------------------------------------------------------------------------


def synthetic(seed: int, count: int, *, hours_ago: float = 4.0, span_hours: float = 3.0,
              delete_fraction: float = 0.03) -> list[Pair]:
    """`count` synthetic v2 messages whose event times start `hours_ago` and spread over
    `span_hours` (several hour and many minute buckets), with ~`delete_fraction` deletes."""
    start_ms = int((time.time() - hours_ago * 3600) * 1000)
    rate = count / (span_hours * 3600)
    return [(k, v) for k, v, _ in generate(seed, start_ms=start_ms, count=count, rate=rate,
                                           delete_fraction=delete_fraction)]


def with_duplicates(pairs: Sequence[Pair], fraction: float, seed: int,
                    max_gap: int = 150) -> list[Pair]:
    """Each message is published a second time, with probability `fraction`, up to `max_gap`
    messages later (so some copies land in the same batch, some in later ones, some after the
    Tweet's delete)."""
    rng = random.Random(seed)
    placed = [(float(i), p) for i, p in enumerate(pairs)]
    placed += [(i + rng.uniform(0.5, max_gap), p) for i, p in enumerate(pairs)
               if rng.random() < fraction]
    placed.sort(key=lambda item: item[0])
    return [p for _, p in placed]


def malformed() -> list[Pair]:
    """One message per kind of damage the consumers must dead-letter, never drop or crash on."""
    return [
        (b"bad-json", b'{"data": {"id": "1460323737035677698", "text": '),
        (b"bad-utf8", b'{"data": {"id": "1460323737035677698", "text": "caf\xe9"}}'),
        (b"no-id", orjson.dumps({"data": {"text": "a Tweet without an id",
                                          "created_at": "2024-06-01T00:00:00.000Z"}})),
        (b"oversize", orjson.dumps({"data": {"id": "1460323737035677698",
                                             "text": "x" * (1 << 20)}})),
        (None, b"[1, 2, 3]"),  # no key, not an object
        (b"tombstone", None),  # a null value
    ]


def interleave(pairs: Sequence[Pair], extra: Sequence[Pair], seed: int) -> list[Pair]:
    """`extra` inserted at random places of `pairs` (the order within each is kept)."""
    rng = random.Random(seed)
    out = list(pairs)
    for p in extra:
        out.insert(rng.randrange(len(out) + 1), p)
    return out


def produce(settings: Settings, pairs: Iterable[Pair], topic: str | None = None) -> int:
    """Publish with the project's producer (murmur2 keys, idempotence); all must be acked."""
    producer = TweetProducer(settings, topic, **{"message.max.bytes": 4 << 20})
    n = 0
    for key, value in pairs:
        producer.produce(key, value)  # type: ignore[arg-type]  # None value = tombstone
        n += 1
    stats = producer.flush(60)
    assert stats.ok and stats.delivered == n, f"produce failed: {stats}"
    return n


class BackgroundProducer:
    """Publishes `pairs` at about `rate` messages/s from a thread, while workers consume, until
    they run out or `stop()` is called (with an endless iterable, ingest lasts as long as the
    test needs it: a fixed amount may end before a slow step under load)."""

    def __init__(self, settings: Settings, pairs: Iterable[Pair], rate: float) -> None:
        self.settings, self.pairs, self.rate = settings, pairs, rate
        self.error: BaseException | None = None
        self.sent = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="test-producer", daemon=True)

    def __enter__(self) -> BackgroundProducer:
        self.thread.start()
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:  # the test failed: end the ingest; its error is the one to see
            self.stop()
            self.thread.join(120)
            return
        self.join()

    def _run(self) -> None:
        try:
            producer = TweetProducer(self.settings, **{"message.max.bytes": 4 << 20})
            chunk = max(1, int(self.rate / 20))
            for key, value in self.pairs:
                if self.stopping.is_set():
                    break
                producer.produce(key, value)  # type: ignore[arg-type]
                self.sent += 1
                if self.sent % chunk == 0:
                    producer.poll(0)
                    time.sleep(chunk / self.rate)
            stats = producer.flush(60)
            assert stats.ok and stats.delivered == self.sent, f"produce failed: {stats}"
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        """Publish no more (what is queued is still delivered, then the thread ends)."""
        self.stopping.set()

    @property
    def done(self) -> bool:
        return not self.thread.is_alive()

    def join(self, timeout: float = 120.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "producer thread did not finish"
        if self.error is not None:
            raise self.error


# --- reading topics back -----------------------------------------------------------------------
# Through streaming.offsets (read_topic, committed_offsets, group_lag): test_offsets pins that API
# against offsets committed with a plain consumer and counts published, so it can serve as an oracle.


def store_raw(settings: Settings, records: Sequence[KafkaRecord]) -> None:
    """Write the records' events to ClickHouse, as the pipeline does before Redis counts them
    (the hot tier reads a counted Tweet's entities back from there to subtract them): for tests
    that drive the hot sink directly."""
    from streaming.sinks import ClickHouseSink

    sink = ClickHouseSink(settings)
    try:
        sink.write([(r.partition, r.offset, e) for r in records if r.value is not None
                    for e in parse_payload(r.value)])
    finally:
        sink.close()


def high_watermarks(settings: Settings, topic: str | None = None) -> dict[int, int]:
    return {p: high for p, (_, high) in watermarks(settings, topic).items()}


def total_lag(settings: Settings) -> int:
    return sum(r.lag for r in group_lag(settings))


# --- what the stream should produce ----------------------------------------------------------
# Not the bench's `Truth` (bench/harness/truth.py), on purpose: that one parses with the pipeline's
# own `parse_records` and counts with `tweetflow.hot_keys`; this expectation uses only
# `parse_payload`, its own bucket arithmetic and the documented semantics, so it stays independent
# of the sinks and the batch code it checks. It also models what Truth does not need: the hot
# horizon, the worker's counted/duplicates/deletes totals and each dead letter's original record.


@dataclass
class Expected:
    """What the consumers must produce from a topic's records (docs/data-contracts.md)."""

    records: list[KafkaRecord]
    tweets: dict[int, Tweet] = field(default_factory=dict)  # first copy of every Tweet id
    deleted: set[int] = field(default_factory=set)  # every deleted id
    letters: dict[tuple[int, int], tuple[KafkaRecord, str]] = field(default_factory=dict)
    events: int = 0  # parsed events (Tweets and deletes, copies included)
    counted: int = 0  # hot Tweets counted the first time their id was seen
    duplicates: int = 0  # hot events whose id had already been counted or deleted
    deletes: int = 0  # hot deletes that subtracted a counted Tweet
    hot_n: dict[tuple[str, int], int] = field(default_factory=dict)
    hot_z: dict[tuple[str, str, int], dict[str, int]] = field(default_factory=dict)
    hot_authors: dict[tuple[str, int], set[int]] = field(default_factory=dict)

    @property
    def dead_letter_codes(self) -> Counter[str]:
        return Counter(code for _, code in self.letters.values())


def _event_ms(tweet_id: int) -> int:
    """The time in an id: Snowflake's 41 bits of ms, below bit 63, which marks a Bluesky post's
    platform-scoped id (its TID's time in the same layout: docs/data-contracts.md)."""
    return ((tweet_id & ((1 << 63) - 1)) >> 22) + SNOWFLAKE_EPOCH_MS


def members(tweet: Tweet) -> list[tuple[str, str]]:
    """(dimension, member) pairs a Tweet adds to a bucket: once per distinct lower-cased entity;
    lang and kind; the lower-cased author handle when the Tweet names an author."""
    out = [("lang", tweet.lang), ("kind", tweet.kind)]
    if tweet.author_id and tweet.author_handle:
        out.append(("author", tweet.author_handle.lower()))
    for dim, values in (("hashtag", tweet.hashtags), ("mention", tweet.mentions),
                        ("cashtag", tweet.cashtags), ("domain", tweet.domains)):
        out.extend((dim, v) for v in sorted({v.lower() for v in values}))
    return out


def platform_of_id(tweet_id: int) -> str:
    """`bluesky` for a platform-scoped Bluesky id (bit 63, docs/data-contracts.md), else `x`."""
    return "bluesky" if tweet_id >> 63 else "x"


def expect(records: Sequence[KafkaRecord], horizon_hours: float = 48,
           now: float | None = None) -> Expected:
    """Expected sink contents of `records`: ids are counted once, deletes subtract them,
    unparseable messages are dead letters, and Redis holds what is within the hot horizon."""
    oldest = (time.time() if now is None else now) - horizon_hours * 3600
    exp = Expected(list(records))
    state: dict[int, str] = {}  # hot ids: "C" counted, "D" deleted
    for rec in sorted(records, key=lambda r: (r.partition, r.offset)):
        if rec.value is None:
            exp.letters[(rec.partition, rec.offset)] = (rec, "empty")
            continue
        try:
            events = parse_payload(rec.value)
        except InvalidPayload as exc:
            exp.letters[(rec.partition, rec.offset)] = (rec, exc.reason_code)
            continue
        for ev in events:
            exp.events += 1
            when = (ev.tweet.created_at.timestamp() if ev.tweet is not None
                    else _event_ms(ev.tweet_id) / 1000)
            assert abs(when - oldest) > EDGE_MARGIN_S, "test data too close to the hot horizon"
            hot = when > oldest
            if ev.kind == "tweet" and ev.tweet is not None:
                exp.tweets.setdefault(ev.tweet_id, ev.tweet)
                if not hot:
                    continue
                if ev.tweet_id in state:
                    exp.duplicates += 1
                else:
                    state[ev.tweet_id] = "C"
                    exp.counted += 1
                    _add_authors(exp, ev.tweet)
            else:
                exp.deleted.add(ev.tweet_id)
                if not hot:
                    continue
                if state.get(ev.tweet_id) == "D":
                    exp.duplicates += 1
                elif ev.tweet_id in state:
                    exp.deletes += 1
                state[ev.tweet_id] = "D"
    n: Counter[tuple[str, int]] = Counter()
    z: dict[tuple[str, str, int], Counter[str]] = defaultdict(Counter)
    for tweet_id, s in state.items():
        if s != "C":
            continue
        tweet = exp.tweets[tweet_id]
        for grain, size in (("m", 60), ("h", 3600)):
            bucket = int(tweet.created_at.timestamp() // size) * size
            n[(grain, bucket)] += 1
            for dim, member in members(tweet):
                z[(dim, grain, bucket)][member] += 1
    exp.hot_n = dict(n)
    exp.hot_z = {k: dict(v) for k, v in z.items()}
    return exp


def _add_authors(exp: Expected, tweet: Tweet) -> None:
    if not tweet.author_id:
        return
    for grain, size in (("m", 60), ("h", 3600)):
        bucket = int(tweet.created_at.timestamp() // size) * size
        exp.hot_authors.setdefault((grain, bucket), set()).add(tweet.author_id)


# --- what the sinks hold ---------------------------------------------------------------------


@dataclass
class HotState:
    n: dict[tuple[str, int], int]
    z: dict[tuple[str, str, int], dict[str, int]]
    authors: dict[tuple[str, int], int]  # PFCOUNT per bucket
    watermarks: dict[int, int]


_BUCKET_KINDS = ("n", "z", "u")  # the per-bucket keys, which a platform other than X prefixes


def read_hot(settings: Settings, url: str | None = None,
             platforms: Sequence[str] | None = None) -> HotState:
    """The hot aggregates under the test's prefix, by the documented key layout, summed over
    `platforms` (None: all; a platform other than X is a segment before `n`, `z`, `u`); zero
    counts (a Tweet counted then deleted) are left out; unique authors add up (no author id is
    on two platforms). Read with the bench's `redis_state` (every key of the prefix, by kind)
    and `redis_watermarks`."""
    settings = settings.model_copy(update={"redis_url": url or settings.redis_url})
    n: Counter[tuple[str, int]] = Counter()
    z: dict[tuple[str, str, int], Counter[str]] = defaultdict(Counter)
    authors: Counter[tuple[str, int]] = Counter()
    for name, value in redis_state(settings).items():
        parts = name.split(":")
        platform = "x"
        if parts[0] not in _BUCKET_KINDS and len(parts) > 1 and parts[1] in _BUCKET_KINDS:
            platform = parts.pop(0)
        if platforms is not None and platform not in platforms:
            continue
        if parts[0] == "n":
            n[(parts[1], int(parts[2]))] += value
        elif parts[0] == "z":
            z[(parts[1], parts[2], int(parts[3]))].update(dict(value))
        elif parts[0] == "u":
            authors[(parts[1], int(parts[2]))] += value
    return HotState({k: v for k, v in n.items() if v},
                    {k: s for k, v in z.items() if (s := {m: c for m, c in v.items() if c})},
                    dict(authors), redis_watermarks(settings))


def redis_snapshot(settings: Settings, url: str | None = None) -> dict[bytes, Any]:
    """Every key under the test's prefix with its full value (raw bytes: HLLs included).

    Not the bench's `redis_state` on purpose: that one summarises (HLL cardinalities, `seen`
    sizes) to compare two namespaces readably; "a replay rewrote nothing" needs every byte."""
    r = redis_client(settings.model_copy(update={"redis_url": url or settings.redis_url}))
    out: dict[bytes, Any] = {}
    for key in r.scan_iter(match=f"{settings.redis_prefix}:*", count=1000):
        kind = r.type(key)
        if kind == b"string":
            out[key] = r.get(key)
        elif kind == b"hash":
            out[key] = r.hgetall(key)
        elif kind == b"zset":
            out[key] = r.zrange(key, 0, -1, withscores=True)
        else:
            out[key] = (kind, None)
    return out


def _diff(actual: dict, expected: dict, limit: int = 8) -> str:
    keys = sorted(set(actual) | set(expected), key=str)
    bad = [(k, actual.get(k), expected.get(k)) for k in keys if actual.get(k) != expected.get(k)]
    lines = [f"  {k}: actual {a!r:.200} expected {e!r:.200}" for k, a, e in bad[:limit]]
    return f"{len(bad)} of {len(keys)} differ:\n" + "\n".join(lines)


def assert_hot_matches(settings: Settings, exp: Expected, url: str | None = None) -> HotState:
    """Redis counts (every platform's, summed) equal the expected ones exactly (every bucket,
    every dimension); the author HLLs within HyperLogLog's error."""
    hot = read_hot(settings, url)
    assert hot.n == exp.hot_n, "Tweet counts per bucket: " + _diff(hot.n, exp.hot_n)
    assert hot.z == exp.hot_z, "dimension sorted sets: " + _diff(hot.z, exp.hot_z)
    assert set(hot.authors) == set(exp.hot_authors)
    for bucket, ids in exp.hot_authors.items():
        assert abs(hot.authors[bucket] - len(ids)) <= max(2, 0.03 * len(ids)), bucket
    return hot


ch_rows = clickhouse_rows  # the rows of one query against the test's database


def assert_clickhouse_matches(settings: Settings, exp: Expected) -> None:
    """raw_tweets FINAL holds each Tweet id once with lower-cased entities as found;
    tweet_deletes every deleted id. (Per id, against `expect`: stricter than the bench's
    `verify`, which compares counts with a truth parsed by the pipeline's own code.)"""
    rows = ch_rows(settings, "SELECT tweet_id, hashtags, mentions, cashtags, domains "
                             "FROM raw_tweets FINAL")
    ids = Counter(r[0] for r in rows)
    assert max(ids.values(), default=1) == 1, "FINAL returned an id twice"
    assert set(ids) == set(exp.tweets), (
        f"raw_tweets: {len(set(ids) - set(exp.tweets))} unexpected, "
        f"{len(set(exp.tweets) - set(ids))} missing of {len(exp.tweets)}")
    for tweet_id, hashtags, mentions, cashtags, domains in rows:
        t = exp.tweets[tweet_id]
        assert (list(hashtags), list(mentions), list(cashtags), list(domains)) == (
            [h.lower() for h in t.hashtags], [m.lower() for m in t.mentions],
            [c.lower() for c in t.cashtags], [d.lower() for d in t.domains]), tweet_id
    deleted = {r[0] for r in ch_rows(settings, "SELECT DISTINCT tweet_id FROM tweet_deletes")}
    assert deleted == exp.deleted


def assert_dead_letters(settings: Settings, exp: Expected, *, exactly_once: bool = True) -> None:
    """Each malformed message is in the DLQ with the original key and bytes and the documented
    headers; with `exactly_once`, once (a crash may legitimately send one twice)."""
    dlq = read_topic(settings, settings.topic_dlq)
    seen: Counter[tuple[int, int]] = Counter()
    for rec in dlq:
        for header in ("reason", "reason_code", "source_topic", "source_partition",
                       "source_offset"):
            assert header in rec.headers, f"DLQ message without header {header}: {rec.headers}"
        where = (int(rec.headers["source_partition"]), int(rec.headers["source_offset"]))
        assert where in exp.letters, f"DLQ message for a valid message {where}"
        original, code = exp.letters[where]
        assert rec.headers["source_topic"].decode() == settings.topic_raw
        assert rec.headers["reason_code"].decode() == code
        assert rec.headers["reason"]
        assert rec.key == original.key
        assert rec.value == original.value
        seen[where] += 1
    assert set(seen) == set(exp.letters), f"missing dead letters: {set(exp.letters) - set(seen)}"
    if exactly_once:
        assert set(seen.values()) <= {1}, f"dead-lettered more than once: {seen}"


def assert_committed_everything(settings: Settings, url: str | None = None) -> None:
    """Committed offsets are the high watermarks, and each partition's Redis watermark is the
    last offset (committed - 1)."""
    highs = high_watermarks(settings)
    committed = committed_offsets(settings)
    assert {p: committed[p] for p, h in highs.items() if h} == {p: h for p, h in highs.items() if h}
    wm = read_hot(settings, url).watermarks
    assert wm == {p: h - 1 for p, h in highs.items() if h}


# --- workers -----------------------------------------------------------------------------------


def run_worker(settings: Settings, idle_exit_s: float = 1.5, *, stall_after: int | None = None,
               **options: Any) -> BatchResult:
    """One worker in this process until idle; the signal handlers it installs are restored.
    With `stall_after`, a batch retried that many times stops the worker and fails the test."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    worker = Worker(settings, WorkerOptions(idle_exit_s=idle_exit_s, **options))
    guard = None
    if stall_after is not None:
        guard = worker.stopper = worker.processor.stopper = StopAfter(stall_after)
    try:
        totals = worker.run()
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    assert guard is None or not guard.stopped, f"a batch was retried {guard.waits} times: it stalled"
    return totals


def drain(settings: Settings, attempts: int = 4, **options: Any) -> BatchResult:
    """Run in-process workers until the group has committed every message; summed totals.
    (A worker exits when idle; one that joined slowly may have to be run again.)"""
    total = BatchResult()
    for _ in range(attempts):
        total += run_worker(settings, **options)
        if total_lag(settings) == 0:
            return total
    raise AssertionError(f"still lagging after {attempts} worker runs: {total}")


@contextmanager
def cli_env(settings: Settings) -> Iterator[None]:
    """Run `tweetflow.app.cli.main` in this process with `settings` taken from the environment (the
    process-wide `get_settings()` cache is cleared on the way in and out)."""
    from tweetflow.settings import get_settings

    with patch.dict(os.environ, settings.to_env()):
        get_settings.cache_clear()
        try:
            assert _identity(get_settings()) == _identity(settings)
            yield
        finally:
            get_settings.cache_clear()


def _identity(settings: Settings) -> list[str]:
    return [settings.topic_raw, settings.topic_dlq, settings.consumer_group,
            settings.clickhouse_database, settings.redis_prefix, settings.redis_url,
            settings.clickhouse_http_url]


# Runs one Worker with the environment's settings; refuses to start if those are not the test's
# (a mistake there would consume the shared `tweets.raw` into the shared database).
_WORKER_ENTRY = """
import json, logging, os, sys
from dataclasses import asdict
from tweetflow.settings import get_settings
from streaming.worker import Worker, WorkerOptions
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
s = get_settings()
got = [s.topic_raw, s.topic_dlq, s.consumer_group, s.clickhouse_database, s.redis_prefix,
       s.redis_url, s.clickhouse_http_url]
if got != json.loads(os.environ["TF_TEST_EXPECT"]):
    sys.exit(f"settings mismatch: {got}")
totals = Worker(s, WorkerOptions(**json.loads(os.environ["TF_TEST_OPTIONS"]))).run()
print("TOTALS " + json.dumps(asdict(totals)), flush=True)
"""


class ChildProcess:
    """A subprocess with its output in a log file, restartable; stopped only by its own pid.

    Not the bench's process helpers (bench/harness/processes.py) on purpose: a crash test starts
    the same command again and again (each start marked in the log), kills it at chosen moments and
    asserts on its exit; the bench's children are one-shot, die with the bench and are stopped
    with a SIGTERM-then-SIGKILL escalation whatever their state."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv, self.env, self.log_path = argv, env, log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> ChildProcess:
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start {self.starts} at {datetime.now(UTC).isoformat()}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv, cwd=PROJECT_ROOT, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT)
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.pid, signum)

    def wait(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.argv[:3]} did not exit; log:\n{self.log()}") from None

    def kill(self) -> int:
        self.signal(signal.SIGKILL)
        return self.wait(30)

    def log(self, tail: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]


class WorkerProcess(ChildProcess):
    """One `streaming.worker.Worker` in a subprocess, configured only through the environment."""

    def __init__(self, settings: Settings, log_path: Path, **options: Any) -> None:
        env = {**os.environ, **settings.to_env(),
               "TF_TEST_EXPECT": json.dumps(_identity(settings)),
               "TF_TEST_OPTIONS": json.dumps(options)}
        super().__init__([sys.executable, "-c", _WORKER_ENTRY], env, log_path)

    def totals(self) -> list[dict[str, Any]]:
        """The totals printed by each run that exited normally."""
        return [json.loads(line[7:]) for line in self.log_path.read_text().splitlines()
                if line.startswith("TOTALS ")]


@contextmanager
def processes() -> Iterator[list[ChildProcess]]:
    """Children registered in the list are killed (by pid) if still running at the end."""
    children: list[ChildProcess] = []
    try:
        yield children
    finally:
        for child in children:
            if child.alive():
                child.kill()


def wait_for(condition: Callable[[], Any], timeout: float, what: str,
             interval: float = 0.25) -> Any:
    """Poll until `condition()` is truthy; a deadline guard, not a timing assertion.
    (Not `tweetflow.app.stack.process.wait_until`, which swallows errors: here an assertion in
    the condition, e.g. that a private server is still alive, fails the test at once.)"""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def finish(settings: Settings, workers: Sequence[ChildProcess], *, clickhouse: bool = True) -> None:
    """The end of a test with worker processes under some fault: once they have caught up with
    the topic, each is stopped with SIGTERM and must exit cleanly; then Redis (and ClickHouse,
    unless `clickhouse=False`) must equal what the topic holds."""
    wait_for(lambda: total_lag(settings) == 0, 240, "the workers to catch up")
    for worker in workers:
        worker.signal(signal.SIGTERM)
        assert worker.wait(120) == 0, worker.log()
    exp = expect(read_topic(settings))
    assert_hot_matches(settings, exp)
    if clickhouse:
        assert_clickhouse_matches(settings, exp)


# --- private servers a test may stop -------------------------------------------------------------
# Not the bench's PrivateStack (bench/private_stack.py, the product's `Stack` on free ports), on
# purpose: these tests need Redis to fsync every write (`appendfsync always`: a restart must keep
# every acknowledged watermark) and a ClickHouse endpoint they can stop under load, each
# as a ChildProcess they restart at will; the bench restarts what users run.


class PrivateRedis(ChildProcess):
    """redis-server on a free port with an fsync-always append-only file in `data_dir`, so a
    stop/start keeps every acknowledged write (as the watermarks require)."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        super().__init__(["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
                          "--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", "always",
                          "--save", "", "--daemonize", "no"], dict(os.environ),
                         data_dir / "redis.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        super().start()
        import redis

        def answers() -> bool:
            assert self.alive(), self.log()
            try:
                return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
            except redis.ConnectionError:
                return False

        wait_for(answers, 20, "the private redis-server")
        return self

    def stop(self) -> None:
        self.signal(signal.SIGTERM)
        assert self.wait(20) == 0, self.log()


class PrivateClickHouse(ChildProcess):
    """`python -m tweetflow.embedded_clickhouse` on a free port and its own data directory."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        super().__init__([sys.executable, "-m", "tweetflow.embedded_clickhouse", "--data-dir",
                          str(data_dir / "data"), "--port", str(self.port)], dict(os.environ),
                         data_dir / "endpoint.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrivateClickHouse:
        super().start()

        def answers() -> bool:
            assert self.alive(), self.log()
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as resp:
                    return resp.status == 200
            except OSError:
                return False

        wait_for(answers, 30, "the private ClickHouse endpoint")
        return self

    def stop(self) -> None:
        """SIGTERM, as `tweetflow stack down` stops it: running inserts finish or are answered
        with an error, and the process exits 0 (tests/tweetflow/test_embedded_clickhouse_shutdown.py)."""
        self.signal(signal.SIGTERM)
        assert self.wait(60) == 0, self.log()


# --- stalls --------------------------------------------------------------------------------------


class StopAfter(Stopper):
    """A worker's or processor's stopper that asks to stop at its n-th back-off, without sleeping:
    a batch retried that often is stalled (the tests that expect a stall, and those that must
    not see one, both use it instead of a timeout)."""

    def __init__(self, backoffs: int = 3) -> None:
        super().__init__()
        self.backoffs, self.waits = backoffs, 0

    def wait(self, seconds: float) -> bool:
        self.waits += 1
        if self.waits >= self.backoffs:
            self.stop()
        return self.stopped
