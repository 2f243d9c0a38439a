"""What a counted Tweet added to the hot aggregates, read back from ClickHouse: a delete (or a newer
version) subtracts exactly that, so the members rebuilt from a stored row must be the very ones
counted from the parsed message, and their fingerprint the one the dedup state kept."""

from __future__ import annotations

import time

import pytest

from streaming.parsing import parse_payload
from streaming.sinks import ClickHouseSink
from streaming.sinks.hot_state import chain_members, fingerprint
from streaming.sinks.versions import MissingVersions, RawVersions
from streaming.synthetic import generate
from tweetflow.model import Event
from tweetflow.settings import Settings


def _tweets(count: int = 300):
    start_ms = int(time.time() * 1000) - 3_600_000
    for _, value, _ in generate(21, start_ms=start_ms, count=count, rate=count / 600,
                                delete_fraction=0):
        for event in parse_payload(value):
            if event.tweet is not None:
                yield event.tweet


def test_a_stored_tweet_reads_back_to_the_members_it_was_counted_with(
        test_settings: Settings) -> None:
    tweets = list(_tweets())
    sink = ClickHouseSink(test_settings)
    try:
        sink.write([(0, i, Event("tweet", t.tweet_id, t)) for i, t in enumerate(tweets)])
    finally:
        sink.close()
    reader = RawVersions(test_settings)
    try:
        stored = reader.fetch([t.tweet_id for t in tweets])
        assert any(m[0] in "hmcd" for t in tweets for m in chain_members(t)[1])
        for tweet in tweets:
            (row,) = stored[tweet.tweet_id]
            assert chain_members(row) == chain_members(tweet)
            assert fingerprint(*chain_members(row)) == fingerprint(*chain_members(tweet))
        with pytest.raises(MissingVersions, match="not in raw_tweets"):
            reader.fetch([tweets[0].tweet_id, 12345])
    finally:
        reader.close()
