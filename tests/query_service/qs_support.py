"""Query service test support: a tiny Tweet set written by the real sinks, dbt-built marts, and
an AnalyticsService served on a real port from a background event loop.

A plain module rather than a conftest.py: the tests import these helpers by name, and
`import conftest` would be ambiguous next to tests/conftest.py."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from bench.harness.dbt_runs import DBT_PROJECT, dbt
from tweetflow.model import Event, Tweet
from tweetflow.settings import Settings
from tweetflow.snowflake import snowflake_ms
from tweetflow.v1 import analytics_pb2_grpc

API_KEY = "test-key-1"
# The marts the query service reads (with stg_tweets, which they select from).
MART_MODELS = ("stg_tweets", "entity_counts_hourly", "entity_counts_daily", "tweet_volume_hourly",
               "tweet_volume_minutely", "user_activity_daily", "engagement_daily")


def snowflake(created_at: datetime, seq: int) -> int:
    """A Tweet id whose embedded time is `created_at` (the hot sink buckets ids by it)."""
    ms = int(created_at.timestamp() * 1000)
    tweet_id = ((ms - 1288834974657) << 22) | (seq & 0x3FFFFF)
    assert snowflake_ms(tweet_id) == ms
    return tweet_id


def tweet(created_at: datetime, seq: int, *, author: str = "alice", author_id: int = 1,
          kind: str = "original", lang: str = "en", hashtags: tuple[str, ...] = (),
          mentions: tuple[str, ...] = (), domains: tuple[str, ...] = (),
          likes: int = 0) -> Event:
    t = Tweet(tweet_id=snowflake(created_at, seq), author_id=author_id, author_handle=author,
              created_at=created_at, lang=lang, text=f"tweet {seq}", kind=kind,  # type: ignore[arg-type]
              hashtags=hashtags, mentions=mentions, domains=domains, like_count=likes,
              urls=tuple(f"https://{d}/x" for d in domains))
    return Event(kind="tweet", tweet_id=t.tweet_id, tweet=t)


def write_events(settings: Settings, events: list[Event], *, hot: bool = True) -> None:
    """Write events as the consumers do: raw rows to ClickHouse, hot aggregates to Redis, and
    (as their watch over the hot tier does) start the hot tier's history."""
    from streaming.healer import Healer
    from streaming.sinks.clickhouse import ClickHouseSink
    from streaming.sinks.hot_aggregates import HotAggregatesSink, PartitionBatch

    located = [(0, offset, e) for offset, e in enumerate(events)]
    sink = ClickHouseSink(settings)
    sink.write(located)
    sink.close()
    if hot:
        batch = PartitionBatch(0, len(events) - 1, [(o, e) for _, o, e in located])
        hot_sink = HotAggregatesSink(settings)
        hot_sink.apply(batch, hot_sink.watermarks().get(0, -1))
        hot_sink.close()
        assert Healer(settings).run(retry=False), "the hot tier's history did not start"


def build_marts(settings: Settings, *extra: str, select: tuple[str, ...] = MART_MODELS,
                check: bool = True) -> subprocess.CompletedProcess:
    """Build stg_tweets and the marts in the test's database with the project's dbt models
    (`extra`: more dbt arguments, e.g. `--vars`; `check=False` returns a failed run too)."""
    if not (DBT_PROJECT / "models" / "marts").is_dir():
        pytest.skip("dbt_project/models/marts not found")
    with tempfile.TemporaryDirectory() as tmp:
        done = dbt(settings, "run", "--select", *select, *extra, work_dir=Path(tmp), timeout=600)
    if check and done.returncode != 0:
        raise AssertionError(f"dbt run failed:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}")
    return done


@dataclass
class Served:
    address: str
    loop: asyncio.AbstractEventLoop
    running: object
    http_url: str = ""  # the Connect base URL, when served

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address)

    def stub(self, channel: grpc.Channel) -> analytics_pb2_grpc.AnalyticsServiceStub:
        return analytics_pb2_grpc.AnalyticsServiceStub(channel)


@contextmanager
def serving(settings: Settings, *, api_keys: tuple[str, ...] | None = (API_KEY,),
            http: bool = False) -> Iterator[Served]:
    """Serve the AnalyticsService for `settings` on a free port from a background loop, and with
    `http` over Connect too (on another free port)."""
    from bench.harness import free_port
    from query_service.server import start

    http_port = free_port() if http else 0
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    running = asyncio.run_coroutine_threadsafe(
        start(settings, 0, api_keys=api_keys, http_port=http_port), loop).result(30)
    try:
        yield Served(f"127.0.0.1:{running.port}", loop, running,
                     f"http://127.0.0.1:{http_port}" if http else "")
    finally:
        asyncio.run_coroutine_threadsafe(running.stop(0.5), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


METADATA = (("x-api-key", API_KEY),)


def rfc3339(epoch: int) -> str:
    return f"{at(epoch):%Y-%m-%dT%H:%M:%SZ}"


def post(url: str, method: str, body: bytes, *, key: str | None = API_KEY,
         content_type: str = "application/json") -> tuple[int, dict[str, str], bytes]:
    """A plain HTTP POST, as curl sends it: (status, headers, body)."""
    headers = {"Content-Type": content_type, **({"x-api-key": key} if key else {})}
    request = urllib.request.Request(f"{url}/tweetflow.v1.AnalyticsService/{method}", data=body,
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()
