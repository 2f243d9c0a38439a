"""The contribution kept per Tweet id in the `seen` hashes: what a delete later subtracts."""

from __future__ import annotations

import time

from streaming.parsing import parse_payload
from streaming.sinks.hot_state import chain_members, decode, seen_hour
from streaming.synthetic import generate


def _tweets(count: int = 300):
    start_ms = int(time.time() * 1000) - 3_600_000
    for _, value, _ in generate(21, start_ms=start_ms, count=count, rate=count / 600):
        for event in parse_payload(value):
            if event.tweet is not None:
                yield event.tweet


def test_a_contribution_decodes_to_the_minute_and_members_it_was_built_from() -> None:
    seen_any_entity = False
    for tweet in _tweets():
        hour = seen_hour(tweet.tweet_id)
        minute, members = chain_members(tweet)
        stored = "\x1f".join((str((minute - hour) // 60), *members))
        assert decode(stored, hour) == (minute, members)
        assert members[:2] == [f"l{tweet.lang}", f"k{tweet.kind}"]
        seen_any_entity |= any(m[0] in "hmcd" for m in members)
    assert seen_any_entity


def test_contributions_stored_in_the_previous_layout_stilldecode() -> None:
    """Entries written before the compact layout (epoch minute, "dim<RS>value") live for the hot
    horizon after an upgrade; a delete in that window must subtract them exactly."""
    names = {"l": "lang", "k": "kind", "a": "author", "h": "hashtag", "m": "mention",
             "c": "cashtag", "d": "domain"}
    for tweet in _tweets(100):
        minute, members = chain_members(tweet)
        old = "\x1f".join((str(minute), *(f"{names[m[0]]}\x1e{m[1:]}" for m in members)))
        assert decode(old, seen_hour(tweet.tweet_id)) == (minute, members)
