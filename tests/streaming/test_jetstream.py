"""The Jetstream source against a local WebSocket server replaying Jetstream events
(tests/streaming/jetstream_server.py): a connection dropped without a close frame, a resume with
a rewound cursor, a restart from the durable cursor, zstd frames, a refused handshake.

The end-to-end test publishes through the real producer into the test's topic and consumes into
ClickHouse and Redis: every post the server sent is published unchanged, keyed by its
platform-scoped id, and every post of the history is counted once, its deletes applied.
Reconnection timings are the delays the policy computed and the order of events.
"""

from __future__ import annotations

import io
import time
from collections import Counter
from contextlib import redirect_stdout
from pathlib import Path

import orjson
import pytest
from jetstream_server import Connection, history, is_post, running
from streaming_support import (
    assert_clickhouse_matches,
    assert_hot_matches,
    ch_rows,
    cli_env,
    drain,
    expect,
)

from streaming.offsets import read_topic
from streaming.producer import RunPlan, TweetProducer, run_plan
from streaming.sources.jetstream import CursorStore, Jetstream
from tweetflow.app.cli import main as cli_main
from tweetflow.platforms import PLATFORM_BIT
from tweetflow.settings import Settings

REWIND_US = 5_000_000
SHOWN = ("connected", "disconnect", "http_error", "wait", "fatal")


def js_settings(settings: Settings, url: str, compress: bool = False) -> Settings:
    return settings.model_copy(update={"jetstream_url": url, "jetstream_compress": compress,
                                       "jetstream_rewind_seconds": REWIND_US / 1e6})


def shown(source: Jetstream) -> list[tuple[str, str]]:
    return [entry for entry in source.log if entry[0] in SHOWN]


def publish(settings: Settings, store: CursorStore, count: int, waits: list[float]) -> Jetstream:
    source = Jetstream(settings, cursor_store=store, sleep=waits.append)
    producer = TweetProducer(settings)
    source.bind(producer)
    source.start()
    try:
        result = run_plan(producer, source, RunPlan(rate=0, duration=None, count=count))
    finally:
        source.close()
    source.finish(result.stats.ok)
    assert result.stats.ok and result.stats.delivered == count
    return source


def test_drops_rewinds_and_restarts_ingest_every_post_exactly_once(
        test_settings: Settings, tmp_path: Path) -> None:
    start = int((time.time() - 3 * 3600) * 1e6)
    events = history(1404, start, 40)
    posts = [e for e in events if is_post(e)]
    creates = [e for e in posts if e["commit"]["operation"] == "create"]
    store = CursorStore(tmp_path / "cursor.json")
    waits: list[float] = []
    # run 1: 15 events, a drop, a resume 5 s before the last event received, then 40 more
    with running(events, [Connection(send=15, then="drop"), Connection(send=40)]) as server:
        settings = js_settings(test_settings, server.url)
        sent1 = [e for e in server.replay()[:15] if is_post(e)]
        resume1 = server.replay()[14]["time_us"] - REWIND_US
        sent1 += [e for e in server.replay(resume1)[:40] if is_post(e)]
        first = publish(settings, store, len(sent1), waits)
        assert [c.cursor for c in server.connections] == [None, resume1]
        assert server.sent_posts() == sent1
    assert shown(first)[:4] == [("connected", ""), ("disconnect", "dropped (1006)"),
                                ("wait", "network 0"), ("connected", "")]
    assert waits[:1] == [0]
    saved = store.load()
    assert saved == sent1[-1]["time_us"]
    # run 2: a new process resumes from the stored cursor, rewound, to the end of the history
    with running(events, [Connection(then="close"), Connection()]) as server:
        resume2 = saved - REWIND_US
        sent2 = [e for e in server.replay(resume2) if is_post(e)]
        publish(js_settings(test_settings, server.url), store, len(sent2), waits)
        assert server.connections[0].cursor == resume2
        assert server.connections[0].query["wantedCollections"] == ["app.bsky.feed.post"]
    sent = sent1 + sent2
    assert len(sent) > len(posts)  # the rewinds repeated some
    records = read_topic(test_settings)
    assert Counter(r.value for r in records) == Counter(orjson.dumps(e) for e in sent)
    drain(test_settings)
    exp = expect(records)
    assert len(exp.tweets) == len(creates) and exp.deleted
    assert all(i & PLATFORM_BIT for i in exp.tweets)
    assert exp.counted == len(creates)
    assert_clickhouse_matches(test_settings, exp)
    assert_hot_matches(test_settings, exp)
    assert ch_rows(test_settings, "SELECT DISTINCT platform FROM raw_tweets") == [("bluesky",)]
    assert ch_rows(test_settings, "SELECT DISTINCT platform FROM tweet_deletes") == [("bluesky",)]


def test_produce_command_reads_jetstream_and_stores_its_cursor(
        test_settings: Settings, tmp_path: Path) -> None:
    """`tweetflow produce --source jetstream` pointed at the server by JETSTREAM_URL: every post
    published, the cursor of the last one stored in the data directory for the next run."""
    events = history(1406, int((time.time() - 2 * 3600) * 1e6), 10)
    out = io.StringIO()
    with running(events, [Connection(send=12, then="drop"), Connection()]) as server:
        settings = js_settings(test_settings, server.url).model_copy(
            update={"data_dir": tmp_path})
        posts = [e for e in server.replay()[:12] if is_post(e)]
        resume = server.replay()[11]["time_us"] - REWIND_US
        posts += [e for e in server.replay(resume) if is_post(e)]
        with cli_env(settings), redirect_stdout(out):
            code = cli_main(["produce", "--source", "jetstream", "--count", str(len(posts)),
                             "--duration", "0"])
    assert code == 0, out.getvalue()
    assert "source jetstream      2 connections, reconnect network 1" in out.getvalue()
    assert Counter(r.value for r in read_topic(test_settings)) == Counter(
        orjson.dumps(e) for e in posts)
    assert CursorStore(tmp_path / "jetstream_cursor.json").load() == posts[-1]["time_us"]


def test_zstd_frames_and_a_refused_handshake(tmp_path: Path) -> None:
    start = int((time.time() - 3600) * 1e6)
    events = history(1405, start, 12)
    script = [Connection(refuse=503), Connection(refuse=429), Connection(send=6, then="drop"),
              Connection()]
    waits: list[float] = []
    with running(events, script) as server:
        settings = js_settings(Settings(), server.url, compress=True)
        source = Jetstream(settings, cursor_store=CursorStore(tmp_path / "c.json"),
                           sleep=waits.append).start()
        try:
            expected = [e for e in server.replay()[:6] if is_post(e)]
            resume = server.replay()[5]["time_us"] - REWIND_US
            expected += [e for e in server.replay(resume) if is_post(e)]
            got = [next(source) for _ in expected]
        finally:
            source.close()
        queries = [c.query for c in server.connections]
    assert [orjson.loads(value) for _, value, _ in got] == expected
    assert all(q["compress"] == ["true"] for q in queries)
    assert queries[3]["cursor"] == [str(resume)]
    assert shown(source)[:8] == [
        ("http_error", "503"), ("wait", "http 5"), ("http_error", "429"), ("wait", "rate_limit 60"),
        ("connected", ""), ("disconnect", "dropped (1006)"), ("wait", "network 0"),
        ("connected", "")]
    assert waits[:3] == [5, 60, 0]


def test_a_refused_subscription_ends_the_run(tmp_path: Path) -> None:
    with running([], [Connection(refuse=403)]) as server:
        source = Jetstream(js_settings(Settings(), server.url),
                           cursor_store=CursorStore(tmp_path / "c.json")).start()
        try:
            assert list(source) == []
        finally:
            source.close()
    assert source.error is not None and "HTTP 403" in source.error


def test_an_unreadable_cursor_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "cursor.json"
    path.write_text("{}")
    with pytest.raises(ValueError, match="holds no time_us: remove it"):
        Jetstream(js_settings(Settings(), "ws://127.0.0.1:1/subscribe"),
                  cursor_store=CursorStore(path))
