"""The v2 fast path: a common-shape v2 stream message decoded by msgspec, same results as the
dict path.

Why: the dict path costs ~30 µs of CPU per stream message (type-checked `.get`s, an `_Includes`
index, tldextract per URL, `datetime` work, a frozen dataclass __init__), the largest CPU cost of
the consumers. For the message shape X sends all day (one Tweet in `data`, with expansions),
msgspec decodes into typed structs (`streaming.parsing.v2_schema`) and the Tweet is built from
them with the same rules as `v2._parse_v2_tweet`, at a fraction of the cost.
Why it falls back: exactness. Any decode or validation error, any field outside the schema
(note_tweet, compliance events, deletes, lists, v1.1, ...) and anything that `_parse_v2_tweet`
would reject sends the message to `dispatch._parse_dicts`, so results, error messages and reason
codes are those of the dict path by construction; the tests compare both paths message by message.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from functools import lru_cache
from operator import attrgetter
from typing import Any

from msgspec import UNSET

from streaming.parsing import v2_schema as schema
from streaming.parsing.fields import ID_LIMIT, is_edit_chain
from streaming.parsing.text_entities import domain, extracted_entities, host_domain, source_text, unescape
from streaming.parsing.timestamps import v2_created_at
from streaming.parsing.v2 import RT_PREFIX
from tweetflow.model import Event, Tweet
from tweetflow.snowflake import MIN_SNOWFLAKE_ID, snowflake_ms, snowflake_time


class _Fallback(Exception):
    """Raised inside the fast path: let the dict path decide (and word any error)."""


def parse_v2_fast(raw: bytes | bytearray | memoryview, limit: float) -> list[Event] | None:
    """The events of a common-shape v2 stream message; None when the dict path must decide."""
    try:
        tweet = _fast_v2_tweet(schema.V2_MESSAGE_DECODER.decode(raw), limit)
    except Exception:  # invalid, unusual or unexpected: `_parse_dicts` decides, exactly as before
        return None
    ev = _MutableEvent()
    ev.kind, ev.tweet_id, ev.tweet = "tweet", tweet.tweet_id, tweet
    ev.user_id, ev.event_at, ev.extra = 0, None, {}
    ev.__class__ = Event  # type: ignore[assignment]  # see _MutableTweet
    return [ev]  # type: ignore[list-item]


class _MutableTweet:
    """`Tweet`'s exact slot layout without its frozen `__setattr__`.

    Why: the frozen dataclass `__init__` sets each of its 27 fields through `object.__setattr__`
    (~3-4 µs a Tweet, more than the whole JSON decode). The fast path fills this twin with plain
    slot stores, then assigns `__class__ = Tweet`, which CPython allows for identical slot
    layouts: the result is a genuine `Tweet`, equal to (and pickled, hashed like) the
    constructor's. The tests check that every field is set and that Tweet has no
    `__post_init__` this would skip; a field added to Tweet must be set in `_fast_v2_tweet`.
    """

    __slots__ = Tweet.__slots__


class _MutableEvent:
    """`Event`'s slot layout, for the same reason as `_MutableTweet`."""

    __slots__ = Event.__slots__


_TAG = attrgetter("tag")
_USERNAME = attrgetter("username")
# A URL whose host is plain ASCII letters, digits, dots and dashes: `urlsplit(url).hostname` is
# then exactly that host, lower-cased (no userinfo, port, brackets or characters urlsplit strips).
_PLAIN_HTTP_HOST = re.compile(r"https?://([A-Za-z0-9.\-]+)(?:[/?#]|\Z)")


def _fast_v2_tweet(msg: schema.Message, limit: float) -> Tweet:
    """`_parse_v2_tweet` on the decoded structs; raises (anything) where that one would."""
    t, inc = msg.data, msg.includes
    tweet_id = _fast_id(t.id)
    created_at = _fast_created_at(t.created_at, tweet_id, limit)
    text = unescape(t.text)
    is_rt, rt_id, quoted_id, replied_id = _fast_refs(t.referenced_tweets, text)
    ents = None
    if rt_id and inc is not None and (rebuilt := _fast_retweet(text, rt_id, inc)) is not None:
        text, ents = rebuilt
    hashtags, mentions, cashtags, urls = ents or _fast_entities(t.entities, text)
    author_id = 0 if t.author_id is None else _fast_id(t.author_id)
    user = _last(inc.users, str(author_id)) if author_id and inc is not None else None
    pm, edits = t.public_metrics, t.edit_history_tweet_ids

    tw = _MutableTweet()
    tw.tweet_id, tw.author_id = tweet_id, author_id
    tw.author_handle = "" if user is None else user.username or ""
    tw.created_at, tw.lang, tw.text = created_at, t.lang or "und", text
    tw.kind = ("retweet" if is_rt else "quote" if quoted_id else "reply" if replied_id
               else "original")  # as `tweet_kind`
    tw.conversation_id = (0 if t.conversation_id is None else tweet_id
                          if t.conversation_id == t.id else _fast_id(t.conversation_id))
    tw.replied_to_id, tw.retweeted_id, tw.quoted_id = replied_id, rt_id, quoted_id
    tw.in_reply_to_user_id = (0 if t.in_reply_to_user_id is None
                              else _fast_id(t.in_reply_to_user_id))
    tw.hashtags, tw.mentions, tw.cashtags, tw.urls = hashtags, mentions, cashtags, urls
    tw.domains = tuple(map(fast_domain, urls)) if urls else ()
    if pm is None:
        tw.retweet_count = tw.reply_count = tw.like_count = tw.quote_count = 0
        tw.impression_count = 0
    else:
        tw.retweet_count, tw.reply_count = pm.retweet_count or 0, pm.reply_count or 0
        tw.like_count, tw.quote_count = pm.like_count or 0, pm.quote_count or 0
        tw.impression_count = pm.impression_count or 0
    tw.source = source_text(t.source) if t.source else ""
    tw.country = "" if t.geo is None else _fast_country(t.geo, inc)
    tw.possibly_sensitive = t.possibly_sensitive is True
    tw.edit_history_tweet_ids = (() if edits is None else (tweet_id,)
                                 if len(edits) == 1 and edits[0] == t.id  # unedited
                                 else _fast_chain(edits, tweet_id))
    tw.matching_rules = _fast_rule_tags(msg.matching_rules)
    tw.__class__ = Tweet  # type: ignore[assignment]  # see _MutableTweet
    return tw  # type: ignore[return-value]


def _fast_id(v: str | None) -> int:
    """`parse_id(v, ...)` for a string; None raises too (AttributeError): the dict path words it."""
    if v.isdigit() and v.isascii() and len(v) <= 19:  # type: ignore[union-attr]
        n = int(v)  # type: ignore[arg-type]
        if 0 < n < ID_LIMIT:
            return n
    raise _Fallback


def _fast_chain(edits: list[str], tweet_id: int) -> tuple[int, ...]:
    """`edit_chain` of an edit's history; one that is no chain is the dict path's to reject."""
    ids = tuple(map(_fast_id, edits))
    if is_edit_chain(ids, tweet_id):
        return ids
    raise _Fallback


def _fast_created_at(s: str | None, tweet_id: int, limit: float) -> datetime:
    """`_parse_v2_tweet`'s created_at: the given second refined to the Snowflake id's ms."""
    if s is None:
        if tweet_id < MIN_SNOWFLAKE_ID:
            raise _Fallback
        dt, sec = snowflake_time(tweet_id), snowflake_ms(tweet_id) // 1000
    else:
        dt, sec = _v2_second(s)
        if not dt.microsecond and tweet_id >= MIN_SNOWFLAKE_ID:
            ms = snowflake_ms(tweet_id)
            if ms // 1000 == sec:  # as dt.replace(microsecond=...), dt having none; 20x cheaper
                dt += _MILLISECONDS[ms % 1000]
    if sec + 1 > limit and dt.timestamp() > limit:  # dt.timestamp() < sec + 1: cheap test first
        raise _Fallback
    return dt


_MILLISECONDS = tuple(timedelta(milliseconds=k) for k in range(1000))


def _fast_refs(refs: list[schema.Reference] | None, text: str) -> tuple[bool, int, int, int]:
    """(is a retweet, retweeted id, quoted id, replied_to id) as `_parse_v2_tweet` finds them."""
    if refs is None:  # no referenced_tweets field: the text's "RT @h: " form says it
        return text.startswith("RT @") and RT_PREFIX.match(text) is not None, 0, 0, 0
    rt_id = quoted_id = replied_id = 0
    for r in refs:  # a later reference of a type wins, as in `_v2_refs`
        typ = r.type
        if typ == "retweeted":
            rt_id = _fast_id(r.id)
        elif typ == "quoted":
            quoted_id = _fast_id(r.id)
        elif typ == "replied_to":
            replied_id = _fast_id(r.id)
    if rt_id:  # a retweet carries no replied_to/quoted ids
        return True, rt_id, 0, 0
    return False, 0, quoted_id, replied_id


def _fast_country(geo: schema.Geo, inc: schema.Includes | None) -> str:
    place = _last(inc.places, geo.place_id) if geo.place_id and inc is not None else None
    return "" if place is None else (place.country_code or "").upper()


def _fast_rule_tags(rules: list[schema.Rule] | None) -> tuple[str, ...]:
    """`matching_rules`, as one shared tuple per combination of tags (a stream has a handful)."""
    if not rules:
        return ()
    if len(rules) == 1:
        return _rule_tags(rules[0].tag) if rules[0].tag else ()
    return _rule_tags(*[r.tag for r in rules if r.tag])


@lru_cache(maxsize=1024)
def _rule_tags(*tags: str) -> tuple[str, ...]:
    """The first tuple of these tags, shared by every later Tweet (fewer objects for the GC)."""
    return tags


@lru_cache(maxsize=4096)
def _v2_second(s: str) -> tuple[datetime, int]:
    """`v2_created_at(s)` and its whole Unix seconds; cached as every Tweet minted in the same
    second carries the same created_at string."""
    dt = v2_created_at(s)
    return dt, int(dt.timestamp())


def _fast_retweet(text: str, rt_id: int, inc: schema.Includes
                  ) -> tuple[str, tuple[tuple[str, ...], ...]] | None:
    """`_v2_retweet_text` and the rebuilt Tweet's entities, else None."""
    orig = _last(inc.tweets, str(rt_id))
    if orig is None:
        return None
    m = RT_PREFIX.match(text)
    handle = m.group(1) if m else None
    if handle is None and orig.author_id:
        user = _last(inc.users, orig.author_id)
        handle = None if user is None else user.username
    if not handle:
        return None
    text = f"RT @{handle}: {unescape(orig.text)}"  # orig has no note_tweet: not in the schema
    oe = orig.entities
    if oe is None:
        return text, _fast_entities(None, text)
    mentions = (handle, *map(_USERNAME, oe.mentions)) if oe.mentions else (handle,)
    return text, (tuple(map(_TAG, oe.hashtags)) if oe.hashtags else (), mentions,
                  tuple(map(_TAG, oe.cashtags)) if oe.cashtags else (), _fast_urls(oe.urls))


def _fast_entities(ents: schema.Entities | None, text: str) -> tuple[tuple[str, ...], ...]:
    """(hashtags, mentions, cashtags, urls) as `entity_texts(..., v2=True)` gives them."""
    if ents is None:
        return _cached_extracted_entities(text)
    return (tuple(map(_TAG, ents.hashtags)) if ents.hashtags else (),
            tuple(map(_USERNAME, ents.mentions)) if ents.mentions else (),
            tuple(map(_TAG, ents.cashtags)) if ents.cashtags else (), _fast_urls(ents.urls))


@lru_cache(maxsize=2048)
def _cached_extracted_entities(text: str) -> tuple[tuple[str, ...], ...]:
    """`extracted_entities(text)`; cached as retweets of one Tweet share its rebuilt text."""
    e = extracted_entities(text)
    return e.hashtags, e.mentions, e.cashtags, e.urls


def _fast_urls(items: list[schema.Url] | None) -> tuple[str, ...]:
    """`_urls`: media links skipped; unwound URL, else expanded, else the t.co link."""
    if not items:
        return ()
    out = []
    for u in items:
        if u.media_key is UNSET:
            url = u.unwound_url or u.expanded_url or u.url
            if url is None:
                raise _Fallback
            out.append(url)
    return tuple(out)


def _last(items: list | None, key: str) -> Any:
    """The last item with id `key` (the one `_Includes`'s index keeps), else None."""
    if items:
        for it in reversed(items):
            if it.id == key:
                return it
    return None


def fast_domain(url: str) -> str:
    """`domain(url)`, reading the host off a plain http(s) URL instead of urlsplit-ing it."""
    m = _PLAIN_HTTP_HOST.match(url)
    return domain(url) if m is None else host_domain(m.group(1).lower())
