"""The AnalyticsService over Connect on the real stack: Connect JSON and binary, gRPC-Web, HTTP/1.1
and HTTP/2 answer exactly what grpcio answers; the same keys; errors as Connect codes and HTTP
statuses; canonical proto3 JSON; health and readiness; the same metrics."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import grpc
import pytest
from connectrpc.code import Code
from connectrpc.compat import google_protobuf_binary_codec, google_protobuf_json_codec
from connectrpc.errors import ConnectError
from connectrpc.protocol import ProtocolType
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from pyqwest import HTTPVersion, SyncClient, SyncHTTPTransport
from qs_support import API_KEY, METADATA, at, post, rfc3339, serving, tweet, write_events

from tweetflow.settings import Settings
from tweetflow.v1 import analytics_pb2 as pb
from tweetflow.v1.analytics_connect import AnalyticsServiceClientSync

pytestmark = pytest.mark.integration
HEADERS = {"x-api-key": API_KEY}


def seed_recent(settings: Settings) -> int:
    """40 Tweets, one at second 30 of each of the last 40 minutes, hot aggregates and raw rows;
    returns the minute they end at (ranges ending there do not move while a test runs)."""
    minute = int(time.time()) // 60 * 60
    events = [tweet(at(minute - 60 * i - 30), i, author=f"u{i % 3}", author_id=10 + i % 3,
                    kind=("original", "reply", "retweet", "quote")[i % 4],
                    lang=("en", "de")[i % 2], hashtags=(f"tag{i % 4}", "python"),
                    mentions=(f"m{i % 5}",), domains=(("example.com", "news.org")[i % 2],))
              for i in range(40)]
    write_events(settings, events)
    return minute


def questions(minute: int) -> dict[str, tuple[str, Message]]:
    start, end = Timestamp(seconds=minute - 3600), Timestamp(seconds=minute)
    return {
        "TrendingHashtags": ("trending_hashtags", pb.TrendingHashtagsRequest(
            window=Duration(seconds=3600), limit=5)),
        "TopMentions": ("top_mentions", pb.TopMentionsRequest(start=start, end=end, limit=3)),
        "TopDomains": ("top_domains", pb.TopDomainsRequest(start=start, end=end)),
        "TopAuthors": ("top_authors", pb.TopAuthorsRequest(start=start, end=end)),
        "TimeSeries": ("time_series", pb.TimeSeriesRequest(
            entity_type=pb.ENTITY_TYPE_HASHTAG, entity="#Python", start=start, end=end,
            granularity=pb.GRANULARITY_MINUTE)),
        "TweetVolume": ("tweet_volume", pb.TweetVolumeRequest(
            start=start, end=end, granularity=pb.GRANULARITY_MINUTE)),
        "PipelineStatus": ("pipeline_status", pb.PipelineStatusRequest()),
    }


def numbers(message: Message) -> Message:
    """The answer without its provenance (source, origin, as_of) nor, for trending, its window
    (it ends at the time of the answer)."""
    copy = type(message)()
    copy.CopyFrom(message)
    for name in ("source", "origin", "as_of", "start", "end"):
        if name in copy.DESCRIPTOR.fields_by_name:
            copy.ClearField(name)
    return copy


CLIENTS: dict[str, dict[str, Any]] = {
    "connect-json": {"codec": google_protobuf_json_codec()},
    "connect-binary": {"codec": google_protobuf_binary_codec()},
    "grpc-web-binary": {"codec": google_protobuf_binary_codec(),
                        "protocol": ProtocolType.GRPC_WEB},
    "grpc-web-json": {"codec": google_protobuf_json_codec(), "protocol": ProtocolType.GRPC_WEB},
    "connect-json-http2": {"codec": google_protobuf_json_codec(), "http2": True},
}


def client(url: str, codec: Any, protocol: ProtocolType = ProtocolType.CONNECT,
           http2: bool = False) -> AnalyticsServiceClientSync:
    transport = SyncClient(SyncHTTPTransport(http_version=HTTPVersion.HTTP2)) if http2 else None
    return AnalyticsServiceClientSync(url, codec=codec, protocol=protocol, http_client=transport,
                                      timeout_ms=30_000)


def test_connect_answers_equal_grpc_answers(test_settings: Settings) -> None:
    minute = seed_recent(test_settings)
    asked = questions(minute)
    with serving(test_settings, http=True) as srv, srv.channel() as channel:
        stub = srv.stub(channel)
        expected = {m: getattr(stub, m)(request, metadata=METADATA, timeout=30)
                    for m, (_, request) in asked.items()}
        assert [e.entity for e in expected["TopMentions"].entities] == ["m0", "m1", "m2"]
        assert expected["TweetVolume"].total == 40
        for name, options in CLIENTS.items():
            with client(srv.http_url, **options) as connect:
                for method, (call, request) in asked.items():
                    answer = getattr(connect, call)(request, headers=HEADERS)
                    assert numbers(answer) == numbers(expected[method]), (name, method)
                    assert answer.origin == expected[method].origin
        # plain uncompressed POSTs, as curl sends them (answered from the cache without
        # connectrpc, see CacheHits): binary ...
        status, headers, body = post(srv.http_url, "TopMentions",
                                     asked["TopMentions"][1].SerializeToString(),
                                     content_type="application/proto")
        assert status == 200 and headers["content-type"] == "application/proto"
        assert numbers(pb.TopMentionsResponse.FromString(body)) == numbers(expected["TopMentions"])
        # ... and JSON: canonical proto3 JSON of the same numbers
        status, headers, body = post(srv.http_url, "TopMentions", json.dumps(
            {"start": rfc3339(minute - 3600), "end": rfc3339(minute), "limit": 3}).encode())
    assert status == 200 and headers["content-type"] == "application/json"
    answer = json.loads(body)
    assert answer["entities"][0] == {"entity": "m0", "count": "8"}  # uint64 as a string
    assert answer["source"] == "ANSWER_SOURCE_CACHE" and answer["origin"] == "ANSWER_SOURCE_HOT"
    assert answer["asOf"].endswith("Z") and "T" in answer["asOf"]  # RFC 3339
    parsed = json_format.Parse(body, pb.TopMentionsResponse())
    assert numbers(parsed) == numbers(expected["TopMentions"])


def test_json_is_canonical_for_every_type(test_settings: Settings) -> None:
    minute = seed_recent(test_settings)
    with serving(test_settings, http=True) as srv:
        _, _, body = post(srv.http_url, "TweetVolume", json.dumps(
            {"start": rfc3339(minute - 600), "end": rfc3339(minute),
             "granularity": "GRANULARITY_MINUTE"}).encode())
        _, _, trending = post(srv.http_url, "TrendingHashtags", b'{"window":"600s"}')
    volume = json.loads(body)
    assert volume["granularity"] == "GRANULARITY_MINUTE"  # enums by name
    assert volume["total"] == "10" and volume["byLang"] == {"en": "5", "de": "5"}
    assert volume["buckets"][0]["bucket"] == rfc3339(minute - 600)  # RFC 3339, UTC
    assert len(volume["buckets"][0]["byLang"]) == 1  # maps, lowerCamelCase names
    top = json.loads(trending)["hashtags"][0]
    assert top["hashtag"] == "python" and isinstance(top["count"], str)
    assert set(top) == {"hashtag", "count", "baselineAvg", "velocity"}  # lowerCamelCase
    assert isinstance(top["baselineAvg"], float)  # doubles as JSON numbers


def test_keys_and_errors_as_connect_codes_and_http_statuses(test_settings: Settings) -> None:
    window = b'{"window":"3600s"}'
    with serving(test_settings, http=True) as srv:
        for key, detail in ((None, "missing x-api-key"), ("wrong", "unknown x-api-key")):
            status, _, body = post(srv.http_url, "TrendingHashtags", window, key=key)
            assert (status, json.loads(body)["code"]) == (401, "unauthenticated")
            assert detail in json.loads(body)["message"]
        for body_sent, message in ((b'{"window":"90s"}', "whole number of minutes"),
                                   (b'{"window": 5', "not a valid TrendingHashtagsRequest"),
                                   (b'{"window":"forever"}', "not a valid")):
            status, _, body = post(srv.http_url, "TrendingHashtags", body_sent)
            assert (status, json.loads(body)["code"]) == (400, "invalid_argument"), body
            assert message in json.loads(body)["message"]
        status, _, body = post(srv.http_url, "TopMentions", b"\xff\xff\xff",
                               content_type="application/proto")
        assert (status, json.loads(body)["code"]) == (400, "invalid_argument")
        # ClickHouse-only question, no marts built in this database
        day = int(time.time()) // 86400 * 86400 - 3 * 86400
        status, _, body = post(srv.http_url, "EngagementSummary", json.dumps(
            {"start": rfc3339(day), "end": rfc3339(day + 86400)}).encode())
        assert (status, json.loads(body)["code"]) == (400, "failed_precondition"), body
        with client(srv.http_url, google_protobuf_json_codec()) as connect:
            with pytest.raises(ConnectError) as err:
                connect.trending_hashtags(pb.TrendingHashtagsRequest(), headers={"x-api-key": "x"})
            assert err.value.code == Code.UNAUTHENTICATED
        assert post(srv.http_url, "TrendingHashtags", window)[0] == 200


def test_both_stores_down_is_unavailable_and_not_ready(test_settings: Settings) -> None:
    down = test_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0",
                                            "clickhouse_url": "http://127.0.0.1:1"})
    with serving(down, http=True) as srv:
        status, _, body = post(srv.http_url, "TopMentions", json.dumps(
            {"start": rfc3339(int(time.time()) // 3600 * 3600 - 5 * 86400)}).encode())
        assert (status, json.loads(body)["code"]) == (503, "unavailable")
        assert "ClickHouse is unreachable" in json.loads(body)["message"]
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{srv.http_url}/readyz", timeout=10)
        assert err.value.code == 503
        state = json.loads(err.value.read())
        assert state["status"] == "not ready"
        assert state["redis"].startswith("error") and state["clickhouse"].startswith("error")
        with urllib.request.urlopen(f"{srv.http_url}/healthz", timeout=10) as alive:
            assert alive.status == 200


def test_health_readiness_and_the_page_need_no_key(test_settings: Settings) -> None:
    with serving(test_settings, http=True) as srv:
        for path, expected in (("/healthz", {"status": "ok"}),
                               ("/readyz", {"status": "ready", "redis": "ok", "clickhouse": "ok"})):
            with urllib.request.urlopen(f"{srv.http_url}{path}", timeout=10) as response:
                state = json.loads(response.read())
            assert response.status == 200
            assert {k: state[k] for k in expected} == expected  # /readyz tells more (the hot tier)
        with urllib.request.urlopen(f"{srv.http_url}/", timeout=10) as page:
            assert page.headers["content-type"].startswith("text/html")
            html = page.read().decode()
        assert "/static/uplot/uPlot.iife.min.js" in html and "https://" not in html
        with urllib.request.urlopen(f"{srv.http_url}/static/uplot/uPlot.iife.min.js",
                                    timeout=10) as script:
            assert b"uPlot" in script.read()


def test_connect_calls_are_counted_in_the_same_metrics(test_settings: Settings) -> None:
    from prometheus_client import REGISTRY

    labels = {"method": "TopDomains", "path": "cache", "code": "OK"}
    refused = {"method": "TopDomains", "path": "none", "code": "UNAUTHENTICATED"}
    before = [REGISTRY.get_sample_value("tweetflow_query_requests_total", lab) or 0
              for lab in (labels, refused)]
    body = json.dumps({"start": rfc3339(int(time.time()) // 60 * 60 - 3600)})
    with serving(test_settings, http=True) as srv, srv.channel() as channel:
        srv.stub(channel).TopDomains(json_format.Parse(body, pb.TopDomainsRequest()),
                                     metadata=METADATA)  # computed by gRPC, then cached
        assert post(srv.http_url, "TopDomains", body.encode())[0] == 200
        assert post(srv.http_url, "TopDomains", body.encode(), key=None)[0] == 401
        with pytest.raises(grpc.RpcError):
            srv.stub(channel).TopDomains(pb.TopDomainsRequest(), metadata=None)
    after = [REGISTRY.get_sample_value("tweetflow_query_requests_total", lab) or 0
             for lab in (labels, refused)]
    assert after == [before[0] + 1, before[1] + 2]
