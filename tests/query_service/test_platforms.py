"""The query API's platform filter on the real stack: with platform "x", "bluesky" and "" (every
platform) each question answers exactly the truth of a mixed input (synthetic X messages and
Bluesky Jetstream posts through the real parser and sinks, tests/dbt_project/platform_mix.py), on
the hot path (Redis) and on the ClickHouse path (marts and raw Tweets), over grpcio and Connect;
an unknown platform is INVALID_ARGUMENT."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from platform_mix import author, both_platforms, distinct, live_tweets, mixed_events
from qs_support import METADATA, Served, at, build_marts, post, serving, tweet, write_events

from query_service.json_answers import MESSAGE_TYPES, to_json
from query_service.planner import DAY, HOUR
from tweetflow.clients import redis_client
from tweetflow.model import Tweet
from tweetflow.platforms import PLATFORMS, platform_of
from tweetflow.settings import Settings
from tweetflow.v1 import analytics_pb2 as pb

pytestmark = pytest.mark.integration
EVERY = ""  # the request's platform for every platform
KINDS = ("original", "retweet", "reply", "quote")


@dataclass(frozen=True)
class Seeded:
    """The recent window [start, end) (inside the hot horizon, closed), a whole old day (older
    than the horizon: marts), and the live Tweets written."""

    start: int
    end: int
    old_day: int
    tweets: tuple[Tweet, ...]
    hashtag: str  # the most used hashtag of the window
    bluesky_author: int  # an author id with posts on the old day


def seed(settings: Settings, now: int) -> Seeded:
    hour = now // HOUR * HOUR
    old_day = now // DAY * DAY - 3 * DAY
    events = (mixed_events((hour - 6 * HOUR) * 1000, 5 * HOUR * 1000, seed=14)
              + mixed_events(old_day * 1000, DAY * 1000, n_x=150, n_bluesky=30, seed=15))
    # a Tweet a minute ago, so the marts are known complete past the window (as test_service)
    events.append(tweet(at(now - 60), 999, hashtags=("python",)))
    write_events(settings, events)
    build_marts(settings)
    tweets = tuple(live_tweets(events))
    both_platforms(list(tweets))
    start, end = hour - 5 * HOUR, hour - 2 * HOUR
    hashtags = Counter(h for t in _within(tweets, start, end, None) for h in distinct(t.hashtags))
    authors = Counter(t.author_id for t in _within(tweets, old_day, old_day + DAY, PLATFORMS[1]))
    return Seeded(start, end, old_day, tweets, hashtags.most_common(1)[0][0],
                  authors.most_common(1)[0][0])


# --- the truth --------------------------------------------------------------------------------

def _within(tweets: Iterable[Tweet], start: int, end: int, platform: str | None) -> list[Tweet]:
    return [t for t in tweets if start <= t.created_at.timestamp() < end
            and (platform is None or platform_of(t.tweet_id) == platform)]


def ranked(counter: Counter[str]) -> list[tuple[str, int]]:
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))


def truth(data: Seeded, platform: str | None) -> dict[str, Any]:
    """Every question's expected numbers for one platform (None: all)."""
    recent = _within(data.tweets, data.start, data.end, platform)
    old = _within(data.tweets, data.old_day, data.old_day + DAY, platform)
    hours = range(data.start, data.end, HOUR)
    per_hour = Counter(int(t.created_at.timestamp()) // HOUR * HOUR for t in recent
                       if data.hashtag in distinct(t.hashtags))
    mine = [t for t in old if t.author_id == data.bluesky_author]
    return {
        "mentions": ranked(Counter(m for t in recent for m in distinct(t.mentions))),
        "domains": ranked(Counter(d for t in recent for d in distinct(t.domains))),
        "authors": ranked(Counter(a for t in recent if (a := author(t)))),
        "old_authors": ranked(Counter(a for t in old if (a := author(t)))),
        "series": [(h, per_hour[h]) for h in hours],
        "volume": (len(recent), Counter(t.lang for t in recent), Counter(t.kind for t in recent)),
        "engagement": [len(old), *(sum(t.kind == k for t in old)
                                   for k in ("reply", "retweet", "quote")),
                       *(sum(getattr(t, f) for t in old) for f in
                         ("like_count", "retweet_count", "reply_count", "quote_count"))],
        "activity": [len(mine), *(sum(t.kind == k for t in mine) for k in KINDS)],
    }


# --- the questions and their numbers -------------------------------------------------------------

def ts(epoch: int) -> Timestamp:
    return Timestamp(seconds=epoch)


def questions(data: Seeded, platform: str) -> dict[str, tuple[str, Message]]:
    recent = {"start": ts(data.start), "end": ts(data.end), "platform": platform}
    old = {"start": ts(data.old_day), "end": ts(data.old_day + DAY), "platform": platform}
    return {
        "mentions": ("TopMentions", pb.TopMentionsRequest(limit=1000, **recent)),
        "domains": ("TopDomains", pb.TopDomainsRequest(limit=1000, **recent)),
        "authors": ("TopAuthors", pb.TopAuthorsRequest(limit=1000, **recent)),
        "old_authors": ("TopAuthors", pb.TopAuthorsRequest(limit=1000, **old)),
        "series": ("TimeSeries", pb.TimeSeriesRequest(
            entity_type=pb.ENTITY_TYPE_HASHTAG, entity=data.hashtag,
            granularity=pb.GRANULARITY_HOUR, **recent)),
        "volume": ("TweetVolume", pb.TweetVolumeRequest(granularity=pb.GRANULARITY_HOUR,
                                                        **recent)),
        "engagement": ("EngagementSummary", pb.EngagementSummaryRequest(**old)),
        "activity": ("UserActivity", pb.UserActivityRequest(
            author_id=data.bluesky_author, granularity=pb.GRANULARITY_DAY, **old)),
    }


HOT_QUESTIONS = ("mentions", "domains", "authors", "series", "volume")  # the recent window's


def numbers(name: str, answer: Any) -> Any:
    """An answer's numbers, shaped as `truth` gives them."""
    if name in ("mentions", "domains", "authors", "old_authors"):
        return [(e.entity, e.count) for e in answer.entities]
    if name == "series":
        assert answer.total == sum(p.count for p in answer.points)
        return [(p.bucket.seconds, p.count) for p in answer.points]
    if name == "volume":
        assert answer.total == sum(b.count for b in answer.buckets)
        return answer.total, Counter(dict(answer.by_lang)), Counter(dict(answer.by_kind))
    if name == "engagement":
        return [answer.count_tweets, answer.count_replies, answer.count_retweets,
                answer.count_quotes, answer.sum_like_count, answer.sum_retweet_count,
                answer.sum_reply_count, answer.sum_quote_count]
    c = answer.totals
    return [c.count_tweets, c.count_originals, c.count_retweets, c.count_replies, c.count_quotes]


Ask = Callable[[Served, grpc.Channel, str, Message], Message]


def every_answer(settings: Settings, data: Seeded, ask: Ask) -> dict[tuple[str, str], Message]:
    """(platform, question) -> the answer, from a fresh server with the result cache emptied."""
    r = redis_client(settings)
    for key in r.scan_iter(match=f"{settings.redis_prefix}:q:*"):
        r.delete(key)
    with serving(settings, http=True) as srv, srv.channel() as channel:
        return {(platform, name): ask(srv, channel, method, request)
                for platform in (EVERY, *PLATFORMS)
                for name, (method, request) in questions(data, platform).items()}


def over_grpc(srv: Served, channel: grpc.Channel, method: str, request: Message) -> Message:
    return getattr(srv.stub(channel), method)(request, metadata=METADATA, timeout=30)


def over_connect(srv: Served, _channel: grpc.Channel, method: str, request: Message) -> Message:
    status, _, body = post(srv.http_url, method, to_json(request))
    assert status == 200, body
    return json_format.Parse(body, MESSAGE_TYPES[method][1]())


def test_each_platform_answers_its_truth_on_both_paths_and_transports(
        test_settings: Settings) -> None:
    data = seed(test_settings, int(time.time()))
    expected = {p: truth(data, p or None) for p in (EVERY, *PLATFORMS)}
    for name in expected[EVERY]:  # the platforms split the whole
        assert expected["x"][name] != expected["bluesky"][name] or not expected[EVERY][name], name
    cold_settings = test_settings.model_copy(update={"hot_horizon_hours": 1})
    for settings, hot in ((test_settings, True), (cold_settings, False)):
        for transport, ask in (("grpc", over_grpc), ("connect", over_connect)):
            answers = every_answer(settings, data, ask)
            for (platform, name), answer in answers.items():
                where = (transport, "hot" if hot else "clickhouse", platform or "every", name)
                assert numbers(name, answer) == expected[platform][name], where
                if name in HOT_QUESTIONS:
                    assert (answer.origin == pb.ANSWER_SOURCE_HOT) == hot, where


def test_an_unknown_platform_is_invalid_argument(test_settings: Settings) -> None:
    with serving(test_settings, http=True) as srv, srv.channel() as channel:
        stub = srv.stub(channel)
        hour_ago = ts(int(time.time()) - HOUR)
        for method, request in (("TopMentions", pb.TopMentionsRequest(start=hour_ago)),
                                ("PipelineStatus", pb.PipelineStatusRequest())):
            for wrong in ("twitter", "X", " x"):
                request.platform = wrong
                with pytest.raises(grpc.RpcError) as caught:
                    getattr(stub, method)(request, metadata=METADATA, timeout=30)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert '"x" or "bluesky"' in caught.value.details()
                status, _, body = post(srv.http_url, method, to_json(request))
                answer = json.loads(body)
                assert (status, answer["code"]) == (400, "invalid_argument"), body
                assert '"x" or "bluesky"' in answer["message"]
