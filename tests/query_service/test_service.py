"""The AnalyticsService against the real stack: hot and mart paths agree, Redis-down fallback,
the result cache, API keys and request validation."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from qs_support import API_KEY, METADATA, at, build_marts, serving, tweet, write_events

from query_service.planner import HOUR
from tweetflow.clients import redis_client
from tweetflow.settings import Settings
from tweetflow.v1 import analytics_pb2 as pb

pytestmark = pytest.mark.integration


def ts(epoch: int) -> Timestamp:
    return Timestamp(seconds=epoch)


@dataclass(frozen=True)
class Seeded:
    """The window [start, end) the questions ask about, and the Tweets' (i, created_at)."""

    start: int
    end: int
    created: tuple[int, ...]

    def inside(self, keep: Callable[[int], bool] = lambda i: True) -> int:
        """How many seeded Tweets fall in the window (and satisfy `keep(i)`)."""
        return sum(1 for i, c in enumerate(self.created) if self.start <= c < self.end and keep(i))


def seed(settings: Settings, now: int) -> Seeded:
    """60 Tweets over [hour-6h, hour-1h) plus one a minute ago (so the marts are known complete
    past the window), written by the real sinks; marts built by dbt. The window is
    [hour-5h, hour-2h): closed, inside the 48 h hot horizon."""
    hour = now // HOUR * HOUR
    created = tuple(hour - 6 * HOUR + i * 290 + 7 for i in range(60))
    events = [tweet(at(c), i, author=f"User{i % 4}", author_id=100 + i % 4,
                    kind=KINDS[i % 4], lang=("en", "de", "ja")[i % 3],
                    hashtags=("Python", f"tag{i % 5}", "python"), mentions=(f"m{i % 3}", "Bob"),
                    domains=(("example.com",) if i % 2 else ("news.org", "example.com")),
                    likes=i)
              for i, c in enumerate(created)]
    events.append(tweet(at(now - 60), 999, hashtags=("python",), mentions=("bob",)))
    write_events(settings, events)
    build_marts(settings)
    return Seeded(hour - 5 * HOUR, hour - 2 * HOUR, created)


KINDS = ("original", "reply", "retweet", "quote")


def questions(start: int, end: int) -> dict[str, tuple[str, Message]]:
    return {
        "mentions": ("TopMentions", pb.TopMentionsRequest(start=ts(start), end=ts(end), limit=3)),
        "domains": ("TopDomains", pb.TopDomainsRequest(start=ts(start), end=ts(end))),
        "authors": ("TopAuthors", pb.TopAuthorsRequest(start=ts(start), end=ts(end), limit=2)),
        "series_hour": ("TimeSeries", pb.TimeSeriesRequest(
            entity_type=pb.ENTITY_TYPE_HASHTAG, entity="#PYTHON", start=ts(start), end=ts(end),
            granularity=pb.GRANULARITY_HOUR)),
        "series_minute": ("TimeSeries", pb.TimeSeriesRequest(
            entity_type=pb.ENTITY_TYPE_MENTION, entity="@bob", start=ts(start), end=ts(end),
            granularity=pb.GRANULARITY_MINUTE)),
        "volume": ("TweetVolume", pb.TweetVolumeRequest(start=ts(start), end=ts(end))),
    }


def ask(settings: Settings, start: int, end: int) -> dict[str, Message]:
    """Every question over the window, from a fresh server, with the result cache emptied."""
    r = redis_client(settings)
    for key in r.scan_iter(match=f"{settings.redis_prefix}:q:*"):
        r.delete(key)
    answers = {}
    with serving(settings) as srv, srv.channel() as channel:
        stub = srv.stub(channel)
        for name, (method, request) in questions(start, end).items():
            answers[name] = getattr(stub, method)(request, metadata=METADATA, timeout=30)
    return answers


def numbers(message: Message) -> Message:
    """The answer without its provenance (source, origin, as_of)."""
    copy = type(message)()
    copy.CopyFrom(message)
    for name in ("source", "origin", "as_of"):
        copy.ClearField(name)
    return copy


def test_hot_and_mart_paths_give_identical_numbers_for_a_closed_window(
        test_settings: Settings) -> None:
    data = seed(test_settings, int(time.time()))
    hot = ask(test_settings, data.start, data.end)
    # The same stores, but a 1-hour hot horizon: the window is now "old" and goes to ClickHouse.
    cold = ask(test_settings.model_copy(update={"hot_horizon_hours": 1}), data.start, data.end)
    # A 5-hour horizon puts its boundary inside the window: each answer merges two stores.
    split = ask(test_settings.model_copy(update={"hot_horizon_hours": 5}), data.start, data.end)

    assert {n: a.source for n, a in hot.items()} == dict.fromkeys(hot, pb.ANSWER_SOURCE_HOT)
    assert {n: a.source for n, a in cold.items()} == {
        "mentions": pb.ANSWER_SOURCE_MART, "domains": pb.ANSWER_SOURCE_MART,
        "authors": pb.ANSWER_SOURCE_RAW,  # user_activity_daily has whole days only
        "series_hour": pb.ANSWER_SOURCE_MART,
        "series_minute": pb.ANSWER_SOURCE_RAW,  # no per-minute entity mart
        "volume": pb.ANSWER_SOURCE_MART,
    }
    assert {n: a.source for n, a in split.items()} == dict.fromkeys(split, pb.ANSWER_SOURCE_MIXED)
    for name in hot:
        assert numbers(hot[name]) == numbers(cold[name]), name
        assert numbers(hot[name]) == numbers(split[name]), name
    n = data.inside()
    assert hot["mentions"].entities[0] == pb.EntityCount(entity="bob", count=n)
    assert hot["series_hour"].total == n and len(hot["series_hour"].points) == 3
    assert sum(hot["volume"].by_kind.values()) == hot["volume"].total == n


def test_redis_down_falls_back_to_clickhouse_and_both_down_is_unavailable(
        test_settings: Settings) -> None:
    now = int(time.time())
    data = seed(test_settings, now)
    start, end = data.start, data.end
    hot = ask(test_settings, start, end)
    no_redis = test_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    fallback = ask_without_cache_reset(no_redis, start, end)
    for name in hot:
        assert fallback[name].source in (pb.ANSWER_SOURCE_MART, pb.ANSWER_SOURCE_RAW), name
        assert numbers(hot[name]) == numbers(fallback[name]), name

    # A range ending now: the marts are not complete for it, raw Tweets answer.
    with serving(no_redis) as srv, srv.channel() as channel:
        recent = srv.stub(channel).TopMentions(
            pb.TopMentionsRequest(start=ts(now - 600)), metadata=METADATA, timeout=30)
    assert recent.source == pb.ANSWER_SOURCE_RAW
    assert list(recent.entities) == [pb.EntityCount(entity="bob", count=1)]

    nothing = no_redis.model_copy(update={"clickhouse_url": "http://127.0.0.1:1"})
    with serving(nothing) as srv, srv.channel() as channel, pytest.raises(grpc.RpcError) as err:
        srv.stub(channel).TopMentions(pb.TopMentionsRequest(start=ts(start), end=ts(end)),
                                      metadata=METADATA, timeout=30)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "Redis" in err.value.details() and "ClickHouse" in err.value.details()


def ask_without_cache_reset(settings: Settings, start: int, end: int) -> dict[str, Message]:
    with serving(settings) as srv, srv.channel() as channel:
        stub = srv.stub(channel)
        return {name: getattr(stub, method)(request, metadata=METADATA, timeout=30)
                for name, (method, request) in questions(start, end).items()}


def test_repeated_questions_are_answered_from_the_cache(test_settings: Settings) -> None:
    now = int(time.time())
    write_events(test_settings, [tweet(at(now - 120), 1, hashtags=("rust",))])
    request = pb.TrendingHashtagsRequest(window=Duration(seconds=600))
    with serving(test_settings) as srv, srv.channel() as channel:
        stub = srv.stub(channel)
        first = stub.TrendingHashtags(request, metadata=METADATA)
        second = stub.TrendingHashtags(request, metadata=METADATA)
    assert (first.source, first.origin) == (pb.ANSWER_SOURCE_HOT, pb.ANSWER_SOURCE_HOT)
    assert (second.source, second.origin) == (pb.ANSWER_SOURCE_CACHE, pb.ANSWER_SOURCE_HOT)
    assert list(second.hashtags) == list(first.hashtags)
    assert first.hashtags[0].hashtag == "rust" and first.hashtags[0].count == 1
    # A window ending now is cached for seconds, not minutes.
    r = redis_client(test_settings)
    ttls = [r.pttl(k) for k in r.scan_iter(match=f"{test_settings.redis_prefix}:q:c1:*")]
    assert ttls and all(0 < t <= 2000 for t in ttls)


def test_calls_without_a_known_api_key_are_unauthenticated(test_settings: Settings) -> None:
    request = pb.TopDomainsRequest(start=ts(int(time.time()) // 60 * 60 - 3600))  # Redis only
    with serving(test_settings) as srv, srv.channel() as channel:
        stub = srv.stub(channel)
        for metadata, detail in ((None, "missing x-api-key"),
                                 ((("x-api-key", "wrong"),), "unknown x-api-key")):
            with pytest.raises(grpc.RpcError) as err:
                stub.TopDomains(request, metadata=metadata)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert detail in err.value.details()
        assert stub.TopDomains(request, metadata=(("x-api-key", API_KEY),)).source


def test_a_cached_answer_still_needs_a_key_and_hits_are_counted(test_settings: Settings) -> None:
    from prometheus_client import REGISTRY

    request = pb.TopDomainsRequest(start=ts(int(time.time()) // 60 * 60 - 3600))  # Redis only
    labels = {"method": "TopDomains", "path": "cache", "code": "OK"}
    before = REGISTRY.get_sample_value("tweetflow_query_requests_total", labels) or 0
    with serving(test_settings) as srv, srv.channel() as channel:
        stub = srv.stub(channel)
        first = stub.TopDomains(request, metadata=METADATA)
        for metadata in (None, (("x-api-key", "wrong"),)):
            with pytest.raises(grpc.RpcError) as err:
                stub.TopDomains(request, metadata=metadata)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        again = stub.TopDomains(request, metadata=METADATA)
    assert first.source != pb.ANSWER_SOURCE_CACHE and again.source == pb.ANSWER_SOURCE_CACHE
    assert REGISTRY.get_sample_value("tweetflow_query_requests_total", labels) == before + 1


RECENT = int(time.time()) // 60 * 60 - 3600
INVALID = [
    ("TimeSeries", pb.TimeSeriesRequest(entity="x", start=ts(RECENT)), "entity_type"),
    ("TimeSeries", pb.TimeSeriesRequest(entity_type=pb.ENTITY_TYPE_HASHTAG, entity=" # ",
                                        start=ts(RECENT)), "entity is required"),
    ("TimeSeries", pb.TimeSeriesRequest(entity_type=pb.ENTITY_TYPE_HASHTAG, entity="x",
                                        start=ts(RECENT - 30 * 86400), end=ts(RECENT),
                                        granularity=pb.GRANULARITY_MINUTE), "buckets"),
    ("TopMentions", pb.TopMentionsRequest(), "start is required"),
    ("TopMentions", pb.TopMentionsRequest(start=ts(RECENT), end=ts(RECENT - 60)),
     "end must be after start"),
    ("TopMentions", pb.TopMentionsRequest(start=ts(RECENT), limit=5000),
     "limit must be at most 1000"),
    ("TopAuthors", pb.TopAuthorsRequest(start=ts(1_000_000_000)), "before 2006"),
    ("TrendingHashtags", pb.TrendingHashtagsRequest(window=Duration(seconds=90)),
     "whole number of minutes"),
    ("TrendingHashtags", pb.TrendingHashtagsRequest(window=Duration(seconds=2 * 86400)),
     "between 1 minute and 24 hours"),
    ("TweetVolume", pb.TweetVolumeRequest(start=ts(RECENT), granularity=7),
     "not a known Granularity"),
    ("UserActivity", pb.UserActivityRequest(start=ts(RECENT)), "handle or author_id"),
    ("UserActivity", pb.UserActivityRequest(handle="no spaces!", start=ts(RECENT)),
     "handle must be"),
    ("UserActivity", pb.UserActivityRequest(author_id=5, start=ts(RECENT),
                                            granularity=pb.GRANULARITY_MINUTE),
     "granularity must be one of GRANULARITY_HOUR, GRANULARITY_DAY"),
    ("EngagementSummary", pb.EngagementSummaryRequest(
        start=ts(RECENT), end=Timestamp(seconds=RECENT + 60, nanos=-1)), "end.nanos"),
]


def test_invalid_fields_are_invalid_argument_with_a_message(test_settings: Settings) -> None:
    with serving(test_settings) as srv, srv.channel() as channel:
        garbage = channel.unary_unary("/tweetflow.v1.AnalyticsService/TopMentions")
        with pytest.raises(grpc.RpcError) as err:
            garbage(b"\xff\xff\xff", metadata=METADATA, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid TopMentionsRequest" in err.value.details()
        stub = srv.stub(channel)
        for method, request, message in INVALID:
            with pytest.raises(grpc.RpcError) as err:
                getattr(stub, method)(request, metadata=METADATA, timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, request)
            assert message in err.value.details(), (method, err.value.details())


def test_user_activity_and_engagement_come_from_clickhouse(test_settings: Settings) -> None:
    data = seed(test_settings, int(time.time()))
    start, end = ts(data.start), ts(data.end)
    with serving(test_settings) as srv, srv.channel() as channel:
        stub = srv.stub(channel)
        activity = stub.UserActivity(pb.UserActivityRequest(
            handle="@USER1", start=start, end=end, granularity=pb.GRANULARITY_HOUR),
            metadata=METADATA)
        by_id = stub.UserActivity(pb.UserActivityRequest(
            author_id=101, start=start, end=end, granularity=pb.GRANULARITY_HOUR),
            metadata=METADATA)
        engagement = stub.EngagementSummary(pb.EngagementSummaryRequest(start=start, end=end),
                                            metadata=METADATA)
    assert activity.source == pb.ANSWER_SOURCE_RAW  # hours, and user_activity_daily has days
    assert numbers(activity) == numbers(by_id)
    replies = data.inside(lambda i: i % 4 == 1)  # User1 posts the replies
    assert activity.totals.count_tweets == activity.totals.count_replies == replies
    assert sum(b.counts.count_tweets for b in activity.buckets) == replies
    assert engagement.count_tweets == data.inside()
    assert engagement.count_replies == replies
    assert engagement.count_quotes == data.inside(lambda i: i % 4 == 3)
    assert engagement.sum_like_count == sum(
        i for i, c in enumerate(data.created) if data.start <= c < data.end)
