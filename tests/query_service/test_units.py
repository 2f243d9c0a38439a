"""Pure parts of the query service: cache TTLs, single-flight, validation, SQL building, auth keys,
request metrics and the CLI's parsing. No stack needed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from query_service import cli, marts, validation
from query_service.cache import CURRENT_MINUTE_TTL, MAX_TTL, MIN_CLOSED_TTL, SingleFlight, ttl_for
from query_service.metrics import RequestMetrics, observe
from query_service.planner import DAY, HOUR, MINUTE, Part, Source
from tweetflow.auth import load_api_keys, stored_or_new_key
from tweetflow.settings import Settings
from tweetflow.v1 import analytics_pb2 as pb

NOW = 1_750_000_020 + 37  # 37 s into a minute


def test_cache_ttl_follows_freshness() -> None:
    assert ttl_for(NOW, NOW) == CURRENT_MINUTE_TTL
    assert ttl_for(NOW - 30, NOW) == CURRENT_MINUTE_TTL  # still inside the current minute
    assert ttl_for(NOW - 37, NOW) == MIN_CLOSED_TTL  # ends exactly at the minute: closed
    assert ttl_for(NOW - HOUR, NOW) == pytest.approx(360)
    assert ttl_for(NOW - 30 * DAY, NOW) == MAX_TTL


def test_single_flight_collapses_identical_concurrent_requests() -> None:
    calls = 0

    async def compute() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return "answer"

    async def main() -> list[str]:
        flights = SingleFlight()
        results = await asyncio.gather(*(flights.run("k", compute) for _ in range(20)),
                                       flights.run("other", compute))
        assert len(flights) == 0
        return results

    assert asyncio.run(main()) == ["answer"] * 21
    assert calls == 2


def test_a_caller_giving_up_does_not_cancel_the_others() -> None:
    async def compute() -> int:
        await asyncio.sleep(0.1)
        return 7

    async def main() -> int:
        flights = SingleFlight()
        impatient = asyncio.ensure_future(flights.run("k", compute, timeout=0.01))
        patient = asyncio.ensure_future(flights.run("k", compute))
        with pytest.raises(TimeoutError):
            await impatient
        return await patient

    assert asyncio.run(main()) == 7


def _ts(seconds: int, nanos: int = 0) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


def test_validation_defaults_and_normalization() -> None:
    rng = validation.time_range(pb.TopMentionsRequest(start=_ts(NOW - 100, 999)), NOW + 0.5)
    assert (rng.start, rng.end) == (NOW - 100, NOW)
    assert validation.limit(0) == 10
    assert validation.window(pb.TrendingHashtagsRequest()) == HOUR
    assert validation.window(pb.TrendingHashtagsRequest(window=Duration(seconds=900))) == 900
    assert validation.entity(" #PyThon ") == "python"
    assert validation.entity("$TSLA") == "tsla"
    assert validation.user(pb.UserActivityRequest(handle="@Jack_")) == ("jack_", None)
    assert validation.granularity(pb.GRANULARITY_UNSPECIFIED, rng) == HOUR
    assert validation.granularity(pb.GRANULARITY_MINUTE, rng) == MINUTE


def test_validation_bounds_the_number_of_buckets() -> None:
    rng = validation.TimeRange(NOW - 7 * DAY, NOW)
    with pytest.raises(validation.InvalidArgument, match="10081 buckets"):
        validation.granularity(pb.GRANULARITY_MINUTE, rng)


HOSTILE = "x'); DROP TABLE raw_tweets; --"


@pytest.mark.parametrize("query", [
    marts.top_entities("hashtag", [Part(Source.MART, 0, DAY, DAY),
                                   Part(Source.RAW, DAY, DAY + 5, 0)], 10),
    marts.entity_series("hashtag", HOSTILE, [Part(Source.MART, 0, HOUR, HOUR),
                                             Part(Source.RAW, HOUR, HOUR + 5, 0)], HOUR),
    marts.entity_scores("hashtag", [HOSTILE], [Part(Source.RAW, 0, 5, 0)]),
    marts.user_activity([Part(Source.MART, 0, DAY, DAY)], DAY, handle=HOSTILE),
    marts.top_authors([Part(Source.RAW, 0, 5, 0)], None),
    marts.volume([Part(Source.MART, 0, 60, MINUTE)], HOUR),
    marts.engagement([Part(Source.MART, 0, DAY, DAY), Part(Source.RAW, DAY, DAY + 9, 0)]),
])
def test_request_values_only_ever_travel_as_parameters(query: marts.Query) -> None:
    assert HOSTILE not in query.sql
    assert "DROP" not in query.sql
    for name in query.params:
        assert "{" + name + ":" in query.sql


def test_mart_parts_filter_their_own_grain_column() -> None:
    q = marts.entity_series("mention", "bob", [Part(Source.MART, 0, 2 * DAY, DAY),
                                               Part(Source.MART, 2 * DAY, 2 * DAY + HOUR, HOUR)],
                            DAY)
    assert "FROM entity_counts_daily" in q.sql and "FROM entity_counts_hourly" in q.sql
    assert "toDate(toDateTime({a0:UInt32}, 'UTC'))" in q.sql
    assert q.params == {"et": "mention", "e": "bob", "g": DAY, "a0": 0, "b0": 2 * DAY,
                        "a1": 2 * DAY, "b1": 2 * DAY + HOUR}


def test_api_keys_come_from_the_environment_or_a_generated_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def keys(env: str | None) -> frozenset[str] | None:
        if env is None:
            monkeypatch.delenv("TWEETFLOW_API_KEYS", raising=False)
        else:
            monkeypatch.setenv("TWEETFLOW_API_KEYS", env)
        return load_api_keys(Settings().model_copy(update={"data_dir": tmp_path}))

    assert keys("a, b,") == {"a", "b"}
    assert keys("off") is None
    generated = keys(None)
    assert generated and len(next(iter(generated))) > 20
    assert keys(None) == generated  # kept, not regenerated
    assert (tmp_path / "api_key").stat().st_mode & 0o777 == 0o600
    assert stored_or_new_key(tmp_path / "api_key") == next(iter(generated))


def test_request_metrics_render_as_prometheus_counters_and_histograms() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    metrics = RequestMetrics()
    registry = CollectorRegistry()
    registry.register(metrics)
    metrics.counter("TopMentions", "hot", "OK")[0] += 2
    cells = metrics.histogram("TopMentions", "hot")
    for seconds in (0.0002, 0.0003, 99.0):  # a bound itself counts in its own bucket (`le`)
        observe(cells, seconds)
    assert metrics.counter("TopMentions", "hot", "OK")[0] == 2  # the same series, not a new one
    text = generate_latest(registry).decode()
    labels = 'method="TopMentions",path="hot"'
    for line in ('tweetflow_query_requests_total{code="OK",method="TopMentions",path="hot"} 2.0',
                 f'tweetflow_query_latency_seconds_bucket{{le="0.0002",{labels}}} 1.0',
                 f'tweetflow_query_latency_seconds_bucket{{le="0.0005",{labels}}} 2.0',
                 f'tweetflow_query_latency_seconds_bucket{{le="30.0",{labels}}} 2.0',
                 f'tweetflow_query_latency_seconds_bucket{{le="+Inf",{labels}}} 3.0',
                 f'tweetflow_query_latency_seconds_count{{{labels}}} 3.0',
                 f'tweetflow_query_latency_seconds_sum{{{labels}}} 99.0005'):
        assert line in text.splitlines(), line
    assert "tweetflow_query_latency_seconds_created{" in text


def test_cli_parses_questions_into_requests() -> None:
    args = cli.build_parser().parse_args(cli._glue_relative_times(
        ["series", "hashtag", "python", "--start", "-2h", "--end", "2025-06-01T10:00",
         "--granularity", "minute"]))
    method, request = cli.request_for(args)
    assert method == "TimeSeries"
    assert request.entity_type == pb.ENTITY_TYPE_HASHTAG and request.entity == "python"
    assert request.granularity == pb.GRANULARITY_MINUTE
    assert request.start.seconds % 60 == 0  # relative times are floored to the minute
    assert request.end.ToDatetime(UTC) == datetime(2025, 6, 1, 10, tzinfo=UTC)
    args = cli.build_parser().parse_args(["trending", "--window", "15m"])
    method, request = cli.request_for(args)
    assert (method, request.window.seconds) == ("TrendingHashtags", 900)


def test_a_connect_body_in_several_messages_is_read_whole_and_handed_on_in_order() -> None:
    from query_service.connect_app import _read_body, _replay

    sent = [{"type": "http.request", "body": b'{"win', "more_body": True},
            {"type": "http.request", "body": b'dow":"60s"}', "more_body": False},
            {"type": "http.disconnect"}]

    async def run() -> tuple[list[dict], list[dict]]:
        source = iter(sent)

        async def receive() -> dict:
            return next(source)

        read = await _read_body(receive)
        again = _replay(read, receive)
        return read, [await again() for _ in range(3)]

    read, replayed = asyncio.run(run())
    assert b"".join(m["body"] for m in read) == b'{"window":"60s"}'
    assert replayed == sent  # connectrpc, on a miss, reads exactly what the client sent


def test_json_requests_map_to_the_binary_cache_key_and_answers_to_canonical_json() -> None:
    from query_service.errors import QueryError, Status
    from query_service.json_answers import to_json, wire_from_json

    binary = pb.TrendingHashtagsRequest(window=Duration(seconds=3600), limit=5)
    assert wire_from_json("TrendingHashtags", b'{"limit": 5, "window": "3600s", "x": 1}') == (
        binary.SerializeToString(deterministic=True))  # unknown fields ignored, as Connect does
    assert wire_from_json("TrendingHashtags", b"") == b""  # an empty body is `{}`
    with pytest.raises(QueryError) as err:
        wire_from_json("TrendingHashtags", b'{"window": 3600}')
    assert err.value.status is Status.INVALID_ARGUMENT
    answer = pb.TopMentionsResponse(source=pb.ANSWER_SOURCE_CACHE,
                                    as_of=Timestamp(seconds=1_700_000_000, nanos=5_000_000))
    answer.entities.add(entity="bob", count=2**63)
    assert to_json(answer) == (b'{"source":"ANSWER_SOURCE_CACHE","asOf":"2023-11-14T22:13:20.005Z",'
                               b'"entities":[{"entity":"bob","count":"9223372036854775808"}]}')


def test_platform_is_validated_against_the_platforms() -> None:
    assert validation.platform("") is None
    assert [validation.platform(p) for p in ("x", "bluesky")] == ["x", "bluesky"]
    assert validation.hot_platforms(None) is None and validation.hot_platforms("x") == ("x",)
    for wrong in ("X", "twitter", " x", "x,bluesky"):
        with pytest.raises(validation.InvalidArgument, match='platform must be "x" or "bluesky"'):
            validation.platform(wrong)


@pytest.mark.parametrize("build", [
    lambda p: marts.top_entities("hashtag", PARTS, 5, platform=p),
    lambda p: marts.top_authors(PARTS, None, platform=p),
    lambda p: marts.entity_scores("hashtag", ["ai"], PARTS, platform=p),
    lambda p: marts.entity_series("hashtag", "ai", PARTS, HOUR, platform=p),
    lambda p: marts.volume(PARTS, HOUR, platform=p),
    lambda p: marts.user_activity(PARTS, DAY, author_id=7, platform=p),
    lambda p: marts.engagement(PARTS, platform=p),
])
def test_every_builder_filters_each_part_by_the_platform_parameter(build) -> None:
    every, one = build(None), build(HOSTILE)
    assert "platform" not in every.sql and "platform" not in every.params
    assert one.sql.count("AND platform = {platform:String}") == len(PARTS)
    assert one.params["platform"] == HOSTILE and HOSTILE not in one.sql


PARTS = (Part(Source.MART, 0, HOUR, HOUR), Part(Source.RAW, HOUR, HOUR + 9, 0))


def test_the_cli_asks_for_a_platform() -> None:
    args = cli.build_parser().parse_args(["volume", "--platform", "bluesky"])
    assert cli.request_for(args)[1].platform == "bluesky"
    assert cli.request_for(cli.build_parser().parse_args(["trending"]))[1].platform == ""
