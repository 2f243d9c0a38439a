"""A mixed input of both platforms for the platform-filter tests, and its truth.

X: the synthetic source's v2 stream messages (`streaming.synthetic.generate`); Bluesky: Jetstream
commits from the local Jetstream server's history (tests/streaming/jetstream_server.py: posts with
facets, replies, quotes, deletes). Both go through the real parser (`parse_payload`), so the
events are what the consumers would write. The truth is computed here from those events, never
read back from the stores: the live Tweets (the newest version of each id, deleted ids dropped)
and counters keyed by (platform, bucket, ...), from which a test takes one platform or sums all.

Shared by tests/dbt_project (the marts) and tests/query_service (the API): both folders are on
pytest's `pythonpath`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import orjson
from jetstream_server import history, is_post

from streaming.parsing.dispatch import parse_payload
from streaming.synthetic import generate
from tweetflow.model import Event, Tweet
from tweetflow.platforms import BLUESKY, PLATFORMS, X, platform_of

KINDS = ("original", "retweet", "reply", "quote")


def mixed_events(start_ms: int, span_ms: int, *, n_x: int = 300, n_bluesky: int = 60,
                 seed: int = 14) -> list[Event]:
    """`n_x` synthetic X messages and `n_bluesky` Bluesky posts (with Jetstream's other events,
    deletes included) spread over [start_ms, start_ms + span_ms), parsed, interleaved by time."""
    x = [e for _key, value, _id in generate(seed, start_ms=start_ms, count=n_x,
                                            rate=n_x * 1000 / span_ms)
         for e in parse_payload(value)]
    step_us = span_ms * 1000 // (n_bluesky + n_bluesky // 9 + 2)
    commits = [c for c in history(seed, start_ms * 1000 + step_us, n_bluesky, step_us)
               if is_post(c)]
    bluesky = [e for c in commits for e in parse_payload(orjson.dumps(c))]
    assert {platform_of(e.tweet_id) for e in x} == {X}
    assert {platform_of(e.tweet_id) for e in bluesky} == {BLUESKY}
    return sorted(x + bluesky, key=_event_ms)


def _event_ms(event: Event) -> int:
    from tweetflow.snowflake import snowflake_ms

    return snowflake_ms(event.tweet_id)


def live_tweets(events: Iterable[Event]) -> list[Tweet]:
    """The Tweets that count: each id's last version written, ids deleted dropped."""
    newest: dict[int, Tweet] = {}
    deleted: set[int] = set()
    for e in events:
        if e.kind == "tweet" and e.tweet is not None:
            newest[e.tweet_id] = e.tweet
        elif e.kind == "delete":
            deleted.add(e.tweet_id)
    return [t for i, t in newest.items() if i not in deleted]


def floor(moment: datetime, seconds: int) -> datetime:
    """The bucket's start, naive UTC (as clickhouse-connect returns DateTime('UTC') here)."""
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC).replace(tzinfo=None)


def day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def distinct(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v.lower() for v in values))


def counts(tweets: Iterable[Tweet], keys: Callable[[Tweet], Iterator[tuple[Any, ...]]]
           ) -> Counter[tuple[Any, ...]]:
    """(platform, *key) -> Tweets, for every key `keys(tweet)` yields."""
    out: Counter[tuple[Any, ...]] = Counter()
    for t in tweets:
        for key in keys(t):
            out[(platform_of(t.tweet_id), *key)] += 1
    return out


def only(counter: Counter[tuple[Any, ...]], platform: str | None) -> Counter[tuple[Any, ...]]:
    """The counter without its platform, for one platform (None: summed over all)."""
    out: Counter[tuple[Any, ...]] = Counter()
    for (p, *key), n in counter.items():
        if platform is None or p == platform:
            out[tuple(key)] += n
    return out


def entity_keys(bucket: Callable[[datetime], Any]) -> Callable[[Tweet], Iterator[tuple]]:
    """(bucket, entity_type, entity) once per distinct entity of a Tweet."""
    def keys(t: Tweet) -> Iterator[tuple]:
        for entity_type, values in (("hashtag", t.hashtags), ("mention", t.mentions),
                                    ("cashtag", t.cashtags), ("domain", t.domains)):
            for value in distinct(values):
                yield bucket(t.created_at), entity_type, value
    return keys


def author(t: Tweet) -> str | None:
    """How the API names an author (docs: lower-cased handle, else `id:<author_id>`)."""
    if not t.author_id:
        return None
    return t.author_handle.lower() or f"id:{t.author_id}"


def both_platforms(tweets: list[Tweet]) -> None:
    """The input must hold Tweets of every platform, or a split proves nothing."""
    assert {platform_of(t.tweet_id) for t in tweets} == set(PLATFORMS)
