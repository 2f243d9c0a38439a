"""The X API v2 stream sources against a local server that follows X's documented protocol
(tests/streaming/x_api_server.py) and misbehaves the way X does: keep-alives, a socket cut in the
middle of a Tweet, HTTP 503 and 429 with X's bodies, an in-stream operational-disconnect, a silent
stall and the repeats of a `backfill_minutes` reconnect.

Each end-to-end test publishes through the real producer into the test's Kafka topic, consumes
with the real workers into ClickHouse and Redis, and compares with the truth: every line the
server completed is published unchanged, keyed by its Tweet id, and every Tweet counted once.
Reconnection timings are the delays the policy computed (recorded by an injected sleep) and the
order of events, never wall-clock durations.
"""

from __future__ import annotations

import io
from collections import Counter
from contextlib import redirect_stdout

import orjson
import pytest
from pydantic import SecretStr
from streaming_support import (
    assert_clickhouse_matches,
    assert_hot_matches,
    cli_env,
    drain,
    expect,
    synthetic,
)
from x_api_server import (
    OPERATIONAL_DISCONNECT,
    SERVICE_UNAVAILABLE,
    TOO_MANY_CONNECTIONS,
    UNAUTHORIZED,
    cut,
    end,
    error_line,
    keepalive,
    lines,
    running,
    stall,
    status,
)

from streaming.offsets import read_topic
from streaming.parsing import parse_payload
from streaming.producer import RunPlan, TweetProducer, run_plan
from streaming.sources.x_stream import FIELD_PARAMS, XStream
from tweetflow.app.cli import main as cli_main
from tweetflow.settings import Settings

TOKEN = "test-token"
STALL = 2.0  # the test's keep-alive window (X's is 20 s); above any pause a loaded machine makes
# What the source did, without the "connect" attempts (every other entry names them).
SHOWN = ("connected", "disconnect", "http_error", "stream_error", "wait", "fatal")


def x_settings(settings: Settings, url: str, backfill: int = 0) -> Settings:
    return settings.model_copy(update={"x_bearer_token": SecretStr(TOKEN),
                                       "x_api_base_url": url, "x_backfill_minutes": backfill})


def tweet_lines(seed: int, n: int) -> list[bytes]:
    return [value for _, value in synthetic(seed, n, delete_fraction=0.0) if value is not None]


def shown(source: XStream) -> list[tuple[str, str]]:
    return [(what, detail) for what, detail in source.log if what in SHOWN]


def assert_exactly_once(settings: Settings, sent: list[bytes], truth: list[bytes]) -> None:
    """Kafka holds every line sent, unchanged and keyed by its Tweet id; ClickHouse and Redis
    count each Tweet of the truth once."""
    records = read_topic(settings)
    assert Counter(r.value for r in records) == Counter(sent)
    for r in records:
        assert r.key == str(parse_payload(r.value)[0].tweet_id).encode()
    drain(settings)
    exp = expect(records)
    assert set(exp.tweets) == {parse_payload(v)[0].tweet_id for v in truth}
    assert exp.counted == len(truth) and exp.duplicates == len(sent) - len(truth)
    assert_clickhouse_matches(settings, exp)
    hot = assert_hot_matches(settings, exp)
    assert sum(v for (grain, _), v in hot.n.items() if grain == "h") == len(truth)


def test_filtered_stream_survives_every_documented_failure_exactly_once(
        test_settings: Settings) -> None:
    t = tweet_lines(1401, 60)
    script = [
        [keepalive(), lines(t[0:10]), keepalive(), cut(t[10][:37])],
        [status(503, SERVICE_UNAVAILABLE)],
        [status(429, TOO_MANY_CONNECTIONS)],
        # backfill: the last minutes again (5 repeats and the Tweet that was cut), then new ones
        [lines(t[5:20]), error_line(OPERATIONAL_DISCONNECT), end()],
        [lines(t[17:30]), keepalive(), stall()],
        [lines(t[30:60]), stall()],
    ]
    sent = [*t[0:10], *t[5:20], *t[17:30], *t[30:60]]
    waits: list[float] = []
    with running({None: script}) as server:
        settings = x_settings(test_settings, server.url, backfill=2)
        source = XStream(settings, "x-stream", stall_seconds=STALL, sleep=waits.append).start()
        try:
            result = run_plan(TweetProducer(settings), source,
                              RunPlan(rate=0, duration=None, count=len(sent)))
        finally:
            source.close()
        requests = server.streams()
    assert result.stats.ok and result.stats.delivered == len(sent)
    assert shown(source)[:15] == [
        ("connected", ""), ("disconnect", "network RemoteProtocolError"), ("wait", "network 0"),
        ("http_error", "503 Service Unavailable"), ("wait", "http 5"),
        ("http_error", "429 TooManyConnections"), ("wait", "rate_limit 60"),
        ("connected", ""), ("stream_error", "UpstreamOperationalDisconnect"),
        ("disconnect", "stream_error"), ("wait", "network 0"),
        ("connected", ""), ("disconnect", "stall"), ("wait", "network 0"),
        ("connected", ""),
    ]
    assert waits[:5] == [0, 5, 60, 0, 0]
    assert source.counts["keep-alives"] == 3
    assert {r.authorization for r in requests} == {f"Bearer {TOKEN}"}
    assert all(r.query[k] == v for r in requests for k, v in FIELD_PARAMS.items())
    assert [r.query.get("backfill_minutes") for r in requests[:6]] == [None] + ["2"] * 5
    assert_exactly_once(test_settings, sent, t)


def test_produce_command_ingests_a_reconnecting_stream_exactly_once(
        test_settings: Settings) -> None:
    """`tweetflow produce --source x-stream` pointed at the server by X_API_BASE_URL (real
    sleeps: only the immediate reconnects of network errors)."""
    t = tweet_lines(1402, 40)
    script = [[lines(t[0:15]), cut(t[15][:20])],
              [lines(t[10:25]), error_line(OPERATIONAL_DISCONNECT), end()],
              [keepalive(), lines(t[25:40]), stall()]]
    sent = [*t[0:15], *t[10:25], *t[25:40]]
    out = io.StringIO()
    with running({None: script}) as server:
        settings = x_settings(test_settings, server.url, backfill=1)
        with cli_env(settings), redirect_stdout(out):
            code = cli_main(["produce", "--source", "x-stream", "--count", str(len(sent)),
                             "--duration", "0"])
    assert code == 0, out.getvalue()
    assert f"delivered             {len(sent)}" in out.getvalue()
    assert "reconnect network 2" in out.getvalue()
    assert "stream error UpstreamOperationalDisconnect 1" in out.getvalue()
    assert_exactly_once(test_settings, sent, t)


def test_compliance_stream_reads_each_partition_and_keys_deletes_by_tweet_id() -> None:
    deletes = {p: [orjson.dumps({"data": {"delete": {
        "tweet": {"id": str(1800000000000000000 + 10 * p + i), "author_id": "12"},
        "event_at": "2026-12-01T00:00:00.000Z"}}}) for i in range(3)] for p in (1, 2, 3, 4)}
    withheld = orjson.dumps({"data": {"withheld": {"tweet": {"id": "1800000000000000099"},
                                                   "withheld_in_countries": ["DE"]}}})
    scripts = {p: [[lines(deletes[p][:2]), end()], [lines(deletes[p][1:]), stall()]]
               for p in (1, 2, 3, 4)}
    scripts[3][1][0] = lines([*deletes[3][1:], withheld])
    with running(scripts) as server:
        settings = x_settings(Settings(), server.url, backfill=3)
        source = XStream(settings, "x-compliance", stall_seconds=STALL,
                         sleep=lambda _: None).start()
        try:
            got = [next(source) for _ in range(4 * 4 + 1)]
        finally:
            source.close()
        requests = server.streams("/2/tweets/compliance/stream")
    by_key = Counter(k for k, _, _ in got)
    for p, items in deletes.items():
        assert by_key[str(1800000000000000000 + 10 * p).encode()] == 1
        assert by_key[str(1800000000000000000 + 10 * p + 1).encode()] == 2  # the backfill's repeat
        assert by_key[str(1800000000000000000 + 10 * p + 2).encode()] == 1
        assert all(v in {g[1] for g in got} for v in items)
    assert by_key[None] == 1  # the withheld event: published unkeyed, the consumers DLQ it
    assert sorted(r.query["partition"] for r in requests[:8]) == sorted("1234" * 2)
    assert all("tweet.fields" not in r.query for r in requests)
    assert {r.query.get("backfill_minutes") for r in requests} >= {None, "3"}


def test_a_rejected_token_ends_the_run_with_x_s_words() -> None:
    with running({None: [[status(401, UNAUTHORIZED)]]}) as server:
        settings = x_settings(Settings(), server.url).model_copy(
            update={"x_bearer_token": SecretStr("wrong")})
        source = XStream(settings, "x-sample", sleep=lambda _: None).start()
        try:
            assert list(source) == []
        finally:
            source.close()
        assert server.streams("/2/tweets/sample/stream")
    assert source.error == "HTTP 401: Unauthorized: Unauthorized"
    assert shown(source) == [("http_error", "401 Unauthorized"), ("fatal", source.error)]


def test_a_missing_token_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="X_BEARER_TOKEN is not set"):
        XStream(Settings().model_copy(update={"x_bearer_token": SecretStr("")}))


def test_in_stream_errors_that_announce_no_disconnect_are_counted_not_published() -> None:
    t = tweet_lines(1403, 4)
    info = {"errors": [{"title": "rule-warning", "detail": "a rule matched too much",
                        "type": "https://api.twitter.com/2/problems/rule-warning"}]}
    with running({None: [[lines(t[:2]), error_line(info), lines(t[2:]), stall()]]}) as server:
        source = XStream(x_settings(Settings(), server.url), stall_seconds=STALL,
                         sleep=lambda _: None).start()
        try:
            got = [next(source)[1] for _ in range(4)]
        finally:
            source.close()
    assert got == t
    assert ("stream_error", "rule-warning") in source.log
    assert ("disconnect", "stream_error") not in source.log
