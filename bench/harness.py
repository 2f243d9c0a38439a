"""What every scenario needs: an isolated namespace on the real stack, load generators and
consumer groups as real processes, readers of what the stores hold, and the truth to compare with.

Isolation works as in tests/conftest.py: each namespace has its own topics, consumer group,
ClickHouse database and Redis key prefix, so a scenario sees only its own data and the stack can
be shared with other work. Child processes get the namespace through the environment
(`settings_env`), exactly as a deployed `tweetflow consume` would.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import AliasChoices

from tweetflow.settings import PROJECT_ROOT, Settings

BENCH_API_KEY = "bench-key"
log = logging.getLogger("bench")


# --- settings for child processes -------------------------------------------------------------

def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that make a child process's `get_settings()` equal `settings`.

    Every accepted name of every field is set (the unprefixed aliases win over the prefixed names
    in pydantic-settings), so a variable inherited from the caller cannot override the namespace.
    """
    env: dict[str, str] = {}
    for name, info in Settings.model_fields.items():
        value = str(getattr(settings, name))
        names = [f"TWEETFLOW_{name.upper()}"]
        if isinstance(info.validation_alias, AliasChoices):
            names += [c for c in info.validation_alias.choices if isinstance(c, str)]
        for n in names:
            env[n] = value
    return env


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the bench process dies (Linux prctl), so a crashed
    or killed bench leaves no consumers, load generators or servers behind."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1", **extra}


# --- namespaces --------------------------------------------------------------------------------

@dataclass
class Namespace:
    """One scenario's topics, group, database and key prefix on a (shared) stack."""

    settings: Settings
    tag: str

    @classmethod
    def new(cls, base: Settings, name: str) -> Namespace:
        tag = f"bench_{name}_{uuid.uuid4().hex[:8]}"
        settings = base.model_copy(update={
            "topic_raw": f"{tag}.raw", "topic_dlq": f"{tag}.dlq", "consumer_group": f"{tag}.group",
            "clickhouse_database": tag, "redis_prefix": tag})
        return cls(settings, tag)

    extra: list[Settings] = field(default_factory=list)  # other groups' databases and prefixes

    def create(self, topic_config: dict[str, str] | None = None) -> None:
        """Topics (with `topic_config`, e.g. LogAppendTime, on the raw one) and the raw tables."""
        from confluent_kafka.admin import NewTopic

        from tweetflow.clients import ensure_topics, kafka_admin
        from tweetflow.schema import ensure_schema

        s = self.settings
        if topic_config:
            admin = kafka_admin(s)  # keep a reference: a collected client never resolves futures
            futures = admin.create_topics(
                [NewTopic(s.topic_raw, s.topic_partitions, 1, config=topic_config)],
                operation_timeout=30)
            for future in futures.values():
                future.result()
        ensure_topics(s)
        ensure_schema(s)

    def drop(self) -> None:
        """Remove everything the namespace created (best effort: a stopped store keeps its part)."""
        from tweetflow.clients import kafka_admin, redis_client

        s = self.settings
        steps = []
        for other in (s, *self.extra):
            steps += [lambda o=other: drop_database(o),
                      lambda o=other: _delete_keys(redis_client(o), f"{o.redis_prefix}:*")]
        topics = sorted({s.topic_raw, s.topic_dlq, *(o.topic_dlq for o in self.extra)})
        admin = kafka_admin(s)
        steps.append(lambda: [f.result() for f in admin.delete_topics(
            topics, operation_timeout=30).values()])
        for step in steps:
            with suppress(Exception):
                step()

    def with_group(self, suffix: str, **updates: Any) -> Settings:
        """The same topic read by another group into another database and key prefix."""
        tag = f"{self.tag}_{suffix}"
        other = self.settings.model_copy(update={
            "consumer_group": f"{tag}.group", "clickhouse_database": tag, "redis_prefix": tag,
            "topic_dlq": f"{tag}.dlq", **updates})
        self.extra.append(other)
        return other


def _delete_keys(r, pattern: str) -> None:
    batch = []
    for key in r.scan_iter(match=pattern, count=2000):
        batch.append(key)
        if len(batch) >= 2000:
            r.delete(*batch)
            batch = []
    if batch:
        r.delete(*batch)


@contextmanager
def namespace(base: Settings, name: str, *, topic_config: dict[str, str] | None = None,
              keep: bool = False) -> Iterator[Namespace]:
    ns = Namespace.new(base, name)
    ns.create(topic_config)
    try:
        yield ns
    finally:
        if not keep:
            ns.drop()


def drop_database(settings: Settings) -> None:
    from tweetflow.clients import clickhouse_client

    with suppress(Exception):
        clickhouse_client(settings, database="default").command(
            f"DROP DATABASE IF EXISTS `{settings.clickhouse_database}`")


# --- Kafka offsets ---------------------------------------------------------------------------------

class KafkaProbe:
    """Watermark look-ups of one topic through one long-lived client (cheap to poll)."""

    def __init__(self, settings: Settings, topic: str | None = None) -> None:
        from confluent_kafka import Consumer

        from tweetflow.clients import kafka_config

        self.topic = topic or settings.topic_raw
        self.partitions = list(range(settings.topic_partitions))
        self.consumer = Consumer(kafka_config(settings, **{
            "group.id": f"bench-probe-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False}))

    def watermarks(self, timeout: float = 10.0) -> dict[int, tuple[int, int]]:
        from confluent_kafka import TopicPartition

        return {p: self.consumer.get_watermark_offsets(TopicPartition(self.topic, p),
                                                       timeout=timeout) for p in self.partitions}

    def high(self) -> dict[int, int]:
        return {p: hi for p, (_, hi) in self.watermarks().items()}

    def total(self) -> int:
        return sum(hi - lo for lo, hi in self.watermarks().values())

    def close(self) -> None:
        self.consumer.close()


@dataclass
class KafkaRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: dict[str, bytes] = field(default_factory=dict)


def read_topic(settings: Settings, topic: str | None = None, *, headers: bool = False,
               timeout: float = 120.0) -> list[KafkaRecord]:
    """Every message of the topic, from the low to the high watermark of each partition."""
    from confluent_kafka import Consumer, TopicPartition

    from streaming.worker import consumer_config

    topic = topic or settings.topic_raw
    probe = KafkaProbe(settings, topic)
    marks = probe.watermarks()
    probe.close()
    wanted = {p: hi for p, (lo, hi) in marks.items() if hi > lo}
    consumer = Consumer(consumer_config(settings, **{
        "group.id": f"bench-read-{uuid.uuid4().hex[:6]}", "enable.partition.eof": False}))
    consumer.assign([TopicPartition(topic, p, marks[p][0]) for p in wanted])
    out: list[KafkaRecord] = []
    position = {p: marks[p][0] for p in wanted}
    deadline = time.monotonic() + timeout
    try:
        while any(position[p] < hi for p, hi in wanted.items()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: only {len(out)} messages in {timeout} s")
            for m in consumer.consume(1000, timeout=1.0):
                if m.error() is not None:
                    continue
                position[m.partition()] = m.offset() + 1
                out.append(KafkaRecord(m.partition(), m.offset(), m.key(), m.value(),
                                       m.timestamp()[1],
                                       dict(m.headers() or []) if headers else {}))
    finally:
        consumer.close()
    return out


def redis_watermarks(settings: Settings, r=None) -> dict[int, int]:
    from tweetflow.clients import redis_client
    from tweetflow.hot_keys import watermark_key

    r = r or redis_client(settings)
    raw = r.hgetall(watermark_key(settings.redis_prefix, settings.topic_raw))
    return {int(p): int(o) for p, o in raw.items() if p.isdigit()}  # skip the topic_id field


def applied(settings: Settings, high: dict[int, int], r=None) -> int:
    """Messages whose offsets the hot sink has applied (watermarks are the last offset + 0)."""
    wm = redis_watermarks(settings, r)
    return sum(min(wm.get(p, -1) + 1, hi) for p, hi in high.items())


def wait_applied(settings: Settings, *, timeout: float, low: dict[int, int] | None = None,
                 on_poll: Callable[[float, int, int], None] | None = None,
                 interval: float = 0.25) -> tuple[bool, list[tuple[float, int]]]:
    """Wait until the Redis watermarks reach every partition's high watermark (the pipeline's
    last step: the ClickHouse rows and dead letters of those offsets are written before it).

    Returns (done, [(monotonic time, messages applied)]); `low` (the low watermarks) turns
    offsets into message counts.
    """
    from tweetflow.clients import redis_client

    probe = KafkaProbe(settings)
    marks = probe.watermarks()
    probe.close()
    high = {p: hi for p, (_, hi) in marks.items()}
    low = low or {p: lo for p, (lo, _) in marks.items()}
    total = sum(high[p] - low[p] for p in high)
    r = redis_client(settings)
    points: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    error = ""
    while True:
        now = time.monotonic()
        try:
            done_count = applied(settings, high, r) - sum(low.values())
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            done_count = points[-1][1] if points else 0
        points.append((now, done_count))
        if on_poll:
            on_poll(now, done_count, total)
        if done_count >= total:
            return True, points
        if now > deadline:
            log.warning("not applied within %.0f s: %d/%d; high %s, watermarks %s%s", timeout,
                        done_count, total, high, _safe(lambda: redis_watermarks(settings)),
                        f"; last error {error}" if error else "")
            return False, points
        time.sleep(interval)


def require_applied(settings: Settings, *, timeout: float, what: str) -> None:
    """wait_applied, raising with the state of the group when it times out."""
    done, points = wait_applied(settings, timeout=timeout)
    if not done:
        from streaming.offsets import group_lag

        raise TimeoutError(f"{what}: only {points[-1][1]:,} messages applied after {timeout:.0f} s; "
                           f"group lag {_safe(lambda: group_lag(settings))}, "
                           f"watermarks {_safe(lambda: redis_watermarks(settings))}")


def _safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:
        return f"({type(exc).__name__}: {exc})"


# --- processes ---------------------------------------------------------------------------------------

def children_of(pid: int) -> list[int]:
    """Live child pids of `pid` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_process(proc: subprocess.Popen, timeout: float = 30.0) -> int | None:
    """SIGTERM the process (it forwards to its workers), SIGKILL its group if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


def wait_group(settings: Settings, members: int, timeout: float = 60.0) -> bool:
    from confluent_kafka import ConsumerGroupState

    from tweetflow.clients import kafka_admin

    admin = kafka_admin(settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            group = admin.describe_consumer_groups([settings.consumer_group])[
                settings.consumer_group].result(10)
            assigned = sum(len(m.assignment.topic_partitions) for m in group.members
                           if m.assignment)
            if (group.state == ConsumerGroupState.STABLE and len(group.members) == members
                    and assigned == settings.topic_partitions):
                return True
        except Exception:
            pass
        time.sleep(0.3)
    return False


class Consumers:
    """`tweetflow consume` processes of one namespace; each process runs `workers` workers."""

    def __init__(self, settings: Settings, log_path: Path, *, batch_size: int = 10000,
                 batch_ms: int = 500) -> None:
        self.settings = settings
        self.log_path = log_path
        self.batch_size, self.batch_ms = batch_size, batch_ms
        self.procs: list[subprocess.Popen] = []
        self.metrics_ports: list[int] = []

    def start(self, workers: int = 2, *, metrics: bool = False) -> subprocess.Popen:
        """Start a `tweetflow consume` process; with `metrics`, its workers serve Prometheus
        metrics (see `metrics`)."""
        base = free_ports(workers) if metrics else 0
        if metrics:
            self.metrics_ports += [base + i for i in range(workers)]
        cmd = [sys.executable, "-m", "tweetflow.cli", "consume", "--workers", str(workers),
               "--metrics-port", str(base), "--batch-size", str(self.batch_size),
               "--batch-ms", str(self.batch_ms)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=child_env(self.settings),
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, preexec_fn=die_with_parent)
        self.procs.append(proc)
        return proc

    def worker_pids(self) -> list[int]:
        """Live worker processes (multiprocessing's resource tracker, also a child, excluded)."""
        return [c for p in self.procs if p.poll() is None for c in children_of(p.pid)
                if b"spawn_main" in _cmdline(c)]

    def wait_workers(self, n: int, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.worker_pids()) >= n:
                return True
            time.sleep(0.1)
        return False

    def wait_ready(self, members: int, timeout: float = 60.0) -> bool:
        """Until the group is stable with `members` members holding every partition (so a
        measurement does not start with the workers still importing and joining)."""
        return wait_group(self.settings, members, timeout)

    def stop(self, timeout: float = 40.0) -> list[int | None]:
        codes = [stop_process(p, timeout) for p in self.procs]
        return codes

    def metrics(self) -> dict[str, float]:
        """Sums over the workers serving metrics: seconds spent per sink
        (`sink_seconds:<sink>`), batches and their seconds, messages consumed."""
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        out: dict[str, float] = {}
        for port in self.metrics_ports:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
            except OSError:
                continue
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    name = sample.name
                    if name == "tweetflow_sink_seconds_sum":
                        key = f"sink_seconds:{sample.labels['sink']}"
                    elif name in ("tweetflow_batch_seconds_sum", "tweetflow_batch_seconds_count",
                                  "tweetflow_consumed_messages_total"):
                        key = name
                    else:
                        continue
                    out[key] = out.get(key, 0.0) + sample.value
        return out

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tracebacks(self) -> int:
        return self.log_text().count("Traceback (most recent call last)")


class LoadGen:
    """A `bench.loadgen` process; its JSON progress lines are collected in a thread."""

    def __init__(self, settings: Settings, *args: str, log_path: Path | None = None) -> None:
        cmd = [sys.executable, "-m", "bench.loadgen", *args]
        self.stderr = log_path.open("ab") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=child_env(settings),
                                     stdout=subprocess.PIPE, stderr=self.stderr,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=die_with_parent)
        self.progress: list[dict[str, Any]] = []
        self.final: dict[str, Any] = {}
        self.burst: tuple[float, float] | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("done"):
                self.final = doc
            elif "burst_start" in doc:
                self.burst = (doc["burst_start"], doc["burst_end"])
            else:
                self.progress.append(doc)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float = 600.0) -> dict[str, Any]:
        self.proc.wait(timeout)
        self._reader.join(10)
        if hasattr(self.stderr, "close"):
            self.stderr.close()
        return self.final

    def interrupt(self, timeout: float = 200.0) -> dict[str, Any]:
        """SIGTERM: the generator stops publishing, waits for every ack, and reports."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def stop(self) -> None:
        stop_process(self.proc, 10)

    def append_rate(self) -> float:
        """Messages/s the generator sent over its whole run."""
        return self.final.get("attempted", 0) / self.final["elapsed"] if self.final.get(
            "elapsed") else float("nan")


def produce(settings: Settings, *args: str, processes: int = 1, log_path: Path | None = None,
            timeout: float = 900.0) -> list[dict[str, Any]]:
    """Run `processes` load generators (seeds 1..n: distinct ids) to completion."""
    gens = [LoadGen(settings, *args, "--seed", str(1000 + i), log_path=log_path)
            for i in range(processes)]
    return [g.wait(timeout) for g in gens]


# --- the truth: what the topic holds ----------------------------------------------------------------

@dataclass
class Truth:
    """What a correct pipeline must end with, computed from the messages in the topic."""

    messages: int = 0
    value_bytes: int = 0
    tweets: dict[int, Any] = field(default_factory=dict)  # tweet id -> canonical Tweet (first copy)
    deleted: set[int] = field(default_factory=set)
    dead_letters: dict[tuple[int, int], str] = field(default_factory=dict)  # (p, o) -> reason_code
    tweet_events: int = 0  # Tweet events including repeated copies
    delete_events: int = 0

    @classmethod
    def of(cls, records: list[KafkaRecord]) -> Truth:
        from streaming.pipeline import Record, parse_records

        located, letters = parse_records(
            [Record(r.partition, r.offset, r.key, r.value) for r in records])
        return cls.parsed(records, located, letters)

    @classmethod
    def parsed(cls, records: list[KafkaRecord], located, letters) -> Truth:
        """From records already parsed by streaming.pipeline.parse_records."""
        truth = cls(messages=len(records), value_bytes=sum(len(r.value or b"") for r in records))
        for _, _, event in located:
            if event.kind == "tweet":
                truth.tweet_events += 1
                truth.tweets.setdefault(event.tweet_id, event.tweet)
            else:
                truth.delete_events += 1
                truth.deleted.add(event.tweet_id)
        truth.dead_letters = {(d.partition, d.offset): d.reason_code for d in letters}
        return truth

    def live(self) -> dict[int, Any]:
        return {i: t for i, t in self.tweets.items() if i not in self.deleted}

    def minute_counts(self) -> Counter[int]:
        from tweetflow.hot_keys import bucket_start

        return Counter(bucket_start(t.created_at.timestamp(), "m") for t in self.live().values())

    def hour_hashtags(self) -> Counter[tuple[int, str]]:
        from tweetflow.hot_keys import bucket_start

        out: Counter[tuple[int, str]] = Counter()
        for t in self.live().values():
            hour = bucket_start(t.created_at.timestamp(), "h")
            for tag in {h.lower() for h in t.hashtags}:
                out[(hour, tag)] += 1
        return out


# --- what the stores hold ------------------------------------------------------------------------

def clickhouse_counts(settings: Settings) -> dict[str, int | str]:
    """Counts of the raw tables' content (FINAL: collapsed as every reader sees it), and
    `newest_insert`, the newest `ingested_at`, which moves exactly when rows are inserted (merges
    keep the newest version), so a replay that rewrote nothing leaves it unchanged. Row counts
    without FINAL are not reported: background merges change them at any moment."""
    from tweetflow.clients import clickhouse_client

    client = clickhouse_client(settings)
    try:
        raw = client.query("SELECT uniqExact(tweet_id), toString(max(ingested_at)) FROM raw_tweets"
                           ).result_rows[0]
        final = client.query(
            "SELECT count(), sum(cityHash64(tweet_id, author_id, created_at, kind, lang, text, "
            "hashtags, mentions, cashtags, domains)) FROM raw_tweets FINAL").result_rows[0]
        deletes = client.query(
            "SELECT uniqExact(tweet_id), toString(max(ingested_at)) FROM tweet_deletes"
        ).result_rows[0]
        live = client.query(
            "SELECT count() FROM raw_tweets FINAL WHERE tweet_id NOT IN "
            "(SELECT tweet_id FROM tweet_deletes)").result_rows[0][0]
    finally:
        client.close()
    return {"raw_ids": int(raw[0]), "raw_final": int(final[0]), "final_checksum": int(final[1]),
            "deleted_ids": int(deletes[0]), "live_tweets": int(live),
            "newest_insert": f"{raw[1]} / {deletes[1]}"}


# Figures that differ between two consumer groups reading the same topic (their own insert times).
STORED_ROW_COUNTS = ("newest_insert",)


def redis_state(settings: Settings) -> dict[str, Any]:
    """Every hot aggregate of the namespace, keyed without the prefix: counters, sorted sets (as
    sorted item lists), HLL cardinalities, `seen` sizes, watermarks."""
    from tweetflow.clients import redis_client

    r = redis_client(settings, decode_responses=True)
    prefix = settings.redis_prefix + ":"
    state: dict[str, Any] = {}
    keys = sorted(k for k in r.scan_iter(match=prefix + "*", count=2000)
                  if not k.startswith(prefix + "q:"))  # the query service's result cache
    pipe = r.pipeline(transaction=False)
    kinds = []
    for key in keys:
        kind = key[len(prefix):].split(":", 1)[0]
        kinds.append(kind)
        if kind == "n":
            pipe.get(key)
        elif kind == "z":
            pipe.zrange(key, 0, -1, withscores=True)
        elif kind == "u":
            pipe.pfcount(key)
        elif kind == "seen":
            pipe.hlen(key)
        else:
            pipe.hgetall(key)
    for key, kind, value in zip(keys, kinds, pipe.execute(), strict=True):
        name = key[len(prefix):]
        if kind == "n":
            state[name] = int(value)
        elif kind == "z":
            state[name] = sorted((m, int(s)) for m, s in value)
        else:
            state[name] = value
    return state


def hot_minute_counts(state: dict[str, Any]) -> Counter[int]:
    return Counter({int(k.rsplit(":", 1)[1]): v for k, v in state.items()
                    if k.startswith("n:m:") and v})


def hot_hour_hashtags(state: dict[str, Any]) -> Counter[tuple[int, str]]:
    out: Counter[tuple[int, str]] = Counter()
    for k, items in state.items():
        if k.startswith("z:hashtag:h:"):
            hour = int(k.rsplit(":", 1)[1])
            for member, score in items:
                if score:
                    out[(hour, member)] = score
    return out


def seen_ids(state: dict[str, Any]) -> int:
    return sum(v for k, v in state.items() if k.startswith("seen:"))


def diff_counters(expected: Counter, observed: Counter, limit: int = 5) -> list[str]:
    """Keys whose counts differ, first few, for a readable failure message."""
    keys = sorted(set(expected) | set(observed), key=str)
    bad = [f"{k}: expected {expected.get(k, 0)}, got {observed.get(k, 0)}"
           for k in keys if expected.get(k, 0) != observed.get(k, 0)]
    return bad[:limit] + ([f"... {len(bad) - limit} more"] if len(bad) > limit else [])


@dataclass
class Verdict:
    """Final state against the truth: ClickHouse and Redis must both equal the unique input."""

    ok: bool
    problems: list[str]
    clickhouse: dict[str, int]
    redis: dict[str, Any]


def verify(settings: Settings, truth: Truth) -> Verdict:
    ch = clickhouse_counts(settings)
    state = redis_state(settings)
    problems = []
    expected_final = len(truth.tweets)
    if ch["raw_final"] != expected_final:
        problems.append(f"ClickHouse raw_tweets FINAL has {ch['raw_final']:,} rows, the input "
                        f"{expected_final:,} unique Tweets")
    if ch["deleted_ids"] != len(truth.deleted):
        problems.append(f"ClickHouse tweet_deletes has {ch['deleted_ids']:,} ids, the input "
                        f"{len(truth.deleted):,}")
    if ch["live_tweets"] != len(truth.live()):
        problems.append(f"ClickHouse live Tweets {ch['live_tweets']:,} != {len(truth.live()):,}")
    minutes = diff_counters(truth.minute_counts(), hot_minute_counts(state))
    if minutes:
        problems.append("Redis per-minute counts differ: " + "; ".join(minutes))
    tags = diff_counters(truth.hour_hashtags(), hot_hour_hashtags(state))
    if tags:
        problems.append("Redis hourly hashtag counts differ: " + "; ".join(tags))
    if seen_ids(state) != len(truth.tweets | dict.fromkeys(truth.deleted)):
        problems.append(f"Redis `seen` holds {seen_ids(state):,} ids, the input "
                        f"{len(truth.tweets | dict.fromkeys(truth.deleted)):,}")
    return Verdict(not problems, problems, ch, state)


def dlq_records(settings: Settings) -> list[KafkaRecord]:
    return read_topic(settings, settings.topic_dlq, headers=True)


# --- sampling consumer lag ---------------------------------------------------------------------------

@dataclass
class LagSample:
    t: float  # monotonic
    committed: dict[int, int]
    high: dict[int, int]

    @property
    def lag(self) -> dict[int, int]:
        return {p: max(0, hi - self.committed.get(p, 0)) for p, hi in self.high.items()}

    @property
    def total_lag(self) -> int:
        return sum(self.lag.values())

    @property
    def total_committed(self) -> int:
        return sum(max(0, c) for c in self.committed.values())

    @property
    def total_high(self) -> int:
        return sum(self.high.values())


class LagSampler:
    """Samples the group's lag (streaming.offsets.group_lag) every `interval` s in a thread."""

    def __init__(self, settings: Settings, interval: float = 0.5) -> None:
        self.settings = settings
        self.interval = interval
        self.samples: list[LagSample] = []
        self.errors = 0
        self.paused = threading.Event()  # set while the broker is down on purpose
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LagSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        from streaming.offsets import group_lag

        while not self._stop.is_set():
            began = time.monotonic()
            if self.paused.is_set():
                self._stop.wait(self.interval)
                continue
            try:
                rows = group_lag(self.settings)
                committed = {r.partition: (r.committed if r.committed >= 0 else r.low) for r in rows}
                self.samples.append(LagSample(began, committed, {r.partition: r.high for r in rows}))
            except Exception:
                self.errors += 1
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - began)))


# --- the query service -------------------------------------------------------------------------------

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> int:
    """The first of `n` consecutive free ports (the workers take metrics_port + i)."""
    import random
    import socket

    for _ in range(100):
        base = random.randint(20000, 40000)
        try:
            for i in range(n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
    raise RuntimeError("no free port range for worker metrics")


def start_query_server(settings: Settings, log_path: Path, processes: int = 1,
                       timeout: float = 60.0) -> tuple[subprocess.Popen, int]:
    """`query_service.server` for the namespace on a free port, API key BENCH_API_KEY."""
    from bench.query_bench import wait_serving

    port = free_port()
    with log_path.open("ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "query_service.server", "--port", str(port), "--metrics-port",
             "0", "--processes", str(processes)], cwd=PROJECT_ROOT,
            env=child_env(settings, TWEETFLOW_API_KEYS=BENCH_API_KEY), stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=die_with_parent)
    if wait_serving(port, timeout):
        return server, port
    stop_process(server)
    raise RuntimeError(f"the query server did not start; see {log_path}")


# --- dbt ----------------------------------------------------------------------------------------------

def run_dbt(settings: Settings, *args: str, work_dir: Path) -> float:
    """dbt against the namespace's database (artifacts in work_dir, not the project's target/,
    which holds Dagster's manifest); returns the seconds it took. Raises with dbt's log on failure."""
    import shutil

    from analytics_pipeline.resources import dbt_env

    project = PROJECT_ROOT / "dbt_project"
    target = work_dir / "dbt_target"
    target.mkdir(parents=True, exist_ok=True)
    cached = project / "target" / "partial_parse.msgpack"
    if cached.exists():  # a full parse costs seconds of a shared core
        shutil.copy(cached, target / cached.name)
    dbt = shutil.which("dbt") or str(Path(sys.executable).parent / "dbt")
    argv = [dbt, *args, "--project-dir", str(project), "--profiles-dir", str(project),
            "--target-path", str(target), "--log-path", str(target)]
    began = time.monotonic()
    done = subprocess.run(argv, env={**os.environ, **dbt_env(settings)}, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"dbt {' '.join(args)} failed:\n{done.stdout[-4000:]}")
    return time.monotonic() - began


# --- progress on the terminal ------------------------------------------------------------------

class ProgressBar:
    """A one-line progress bar on stderr ('\\r' updates on a terminal, a line per phase otherwise)."""

    WIDTH = 28

    def __init__(self, label: str, stream=None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._last_text = ""
        self._last_draw = 0.0

    def update(self, fraction: float, text: str = "") -> None:
        fraction = min(1.0, max(0.0, fraction))
        now = time.monotonic()
        if self.tty:
            if now - self._last_draw < 0.2 and fraction < 1.0:
                return
            filled = int(self.WIDTH * fraction)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            line = (f"\r{self.label} [{bar}] {fraction * 100:3.0f}% "
                    f"{now - self.started:5.0f}s {text}")[:150]
            self.stream.write(line.ljust(150))
            self.stream.flush()
        elif text != self._last_text:
            self.stream.write(f"{self.label} {fraction * 100:3.0f}% {now - self.started:5.0f}s "
                              f"{text}\n")
            self.stream.flush()
        self._last_text, self._last_draw = text, now

    def done(self) -> None:
        if self.tty:
            self.stream.write("\r" + " " * 150 + "\r")
            self.stream.flush()


def sleep_with_progress(seconds: float, bar: ProgressBar | None, lo: float, hi: float,
                        text: str, stop: Callable[[], bool] | None = None) -> None:
    began = time.monotonic()
    while (elapsed := time.monotonic() - began) < seconds:
        if stop and stop():
            return
        if bar:
            bar.update(lo + (hi - lo) * elapsed / seconds, text)
        time.sleep(min(0.25, seconds - elapsed))
