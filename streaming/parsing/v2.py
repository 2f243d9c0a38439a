"""X API v2 stream messages on the dict path: `data` as one Tweet or a list, with `includes`
and `matching_rules`, and the compliance stream's deletes.

This path accepts every v2 shape and words every error; the common shape usually takes the
msgspec fast path (`v2_fast`) first, which must give exactly what this module gives.
"""

from __future__ import annotations

import re
from typing import Any

from streaming.parsing.errors import MISSING_FIELD, UNKNOWN_SHAPE, InvalidPayload
from streaming.parsing.fields import (
    ID_LIMIT,
    count,
    edit_chain,
    flag,
    matching_rules,
    opt,
    opt_id,
    parse_id,
    req,
    tweet_kind,
    wrong,
)
from streaming.parsing.text_entities import domain, entity_texts, source_text, unescape
from streaming.parsing.timestamps import check_future, v2_created_at
from tweetflow.model import Event, Tweet
from tweetflow.snowflake import MIN_SNOWFLAKE_ID, snowflake_ms, snowflake_time

RT_PREFIX = re.compile(r"RT @(\w{1,15}): ", re.ASCII)
_V2_COMPLIANCE_EVENTS = frozenset(
    ("tweet_edit", "withheld", "drop", "undrop", "scrub_geo", "user_delete", "user_undelete",
     "user_protect", "user_unprotect", "user_suspend", "user_unsuspend", "user_withheld",
     "user_profile_modification"))


class _Includes:
    """`includes` of one v2 message, indexed by id on first use."""

    __slots__ = ("_doc", "_maps")

    def __init__(self, doc: dict) -> None:
        self._doc = opt(doc, "includes", dict, "v2 message") or {}
        self._maps: dict[str, dict[str, dict]] = {}

    def get(self, kind: str, key: str) -> dict | None:
        m = self._maps.get(kind)
        if m is None:
            m = self._maps[kind] = {}
            for it in opt(self._doc, kind, list, "v2 includes") or ():
                if type(it) is not dict:
                    wrong(f"v2 includes '{kind}' item", it, dict)
                m[req(it, "id", str, f"v2 includes '{kind}' item")] = it
        return m.get(key)


def parse_v2_message(doc: dict, limit: float) -> list[Event]:
    data = doc["data"]
    if type(data) is list:
        if not data:
            raise InvalidPayload("v2 message 'data' is an empty array", UNKNOWN_SHAPE)
        inc, rules = _Includes(doc), matching_rules(doc)
        return [_v2_event(t, inc, rules, limit) for t in data]
    if type(data) is not dict:
        wrong("v2 message 'data'", data, dict)
    if "delete" in data:
        return [_parse_v2_delete(data["delete"])]
    if "id" not in data and (kinds := _V2_COMPLIANCE_EVENTS.intersection(data)):
        raise InvalidPayload(f"v2 compliance event '{min(kinds)}' is not supported", UNKNOWN_SHAPE)
    return [_v2_event(data, _Includes(doc), matching_rules(doc), limit)]


def _v2_event(t: Any, inc: _Includes, rules: tuple[str, ...], limit: float) -> Event:
    if type(t) is not dict:
        wrong("v2 message 'data' item", t, dict)
    tweet = _parse_v2_tweet(t, inc, rules, limit)
    return Event("tweet", tweet.tweet_id, tweet)


def _v2_text(t: dict, where: str) -> tuple[str, dict | None]:
    """Full text and its entities: note_tweet (long posts) > text."""
    note = opt(t, "note_tweet", dict, where)
    if note is not None and "text" in note:
        return (unescape(req(note, "text", str, where + " note_tweet")),
                opt(note, "entities", dict, where + " note_tweet"))
    return unescape(req(t, "text", str, where)), opt(t, "entities", dict, where)


def _v2_refs(t: dict, where: str) -> tuple[bool, int, int, int]:
    """(has referenced_tweets, retweeted id, quoted id, replied_to id)."""
    refs = opt(t, "referenced_tweets", list, where)
    if refs is None:
        return False, 0, 0, 0
    ids = {"retweeted": 0, "quoted": 0, "replied_to": 0}
    for r in refs:
        if type(r) is not dict:
            wrong(where + " 'referenced_tweets' item", r, dict)
        typ = req(r, "type", str, where + " referenced Tweet")
        if typ in ids:
            if (rid := r.get("id")) is None:
                raise InvalidPayload(f"{where} {typ} Tweet has no 'id'", MISSING_FIELD)
            ids[typ] = parse_id(rid, f"{where} {typ} Tweet id")
    return True, ids["retweeted"], ids["quoted"], ids["replied_to"]


def _v2_retweet_text(text: str, rt_id: int, inc: _Includes, where: str
                     ) -> tuple[str, dict | None] | None:
    """Rebuild 'RT @h: <full original>' when the original is in includes, else None."""
    orig = inc.get("tweets", str(rt_id)) if rt_id else None
    if orig is None:
        return None
    m = RT_PREFIX.match(text)
    handle = m.group(1) if m else None
    if handle is None and (aid := opt(orig, "author_id", str, where)):
        user = inc.get("users", aid)
        handle = user and opt(user, "username", str, "v2 includes user")
    if not handle:
        return None
    orig_text, orig_ents = _v2_text(orig, where + " retweeted Tweet")
    if orig_ents is not None:
        mentions = opt(orig_ents, "mentions", list, where) or ()
        orig_ents = {**orig_ents, "mentions": [{"username": handle}, *mentions]}
    return f"RT @{handle}: {orig_text}", orig_ents


def _parse_v2_tweet(t: dict, inc: _Includes, rules: tuple[str, ...], limit: float) -> Tweet:
    v = t.get("id")
    if v is None:
        raise InvalidPayload("v2 Tweet has no 'id'", MISSING_FIELD)
    tweet_id = parse_id(v, "Tweet id")
    where = f"v2 Tweet {tweet_id}"
    created = opt(t, "created_at", str, where)
    if created is not None:
        created_at = v2_created_at(created)
        if not created_at.microsecond and tweet_id >= MIN_SNOWFLAKE_ID:
            # v2 gives whole seconds ('.000Z'); the Snowflake id has the milliseconds
            ms = snowflake_ms(tweet_id)
            if ms // 1000 == int(created_at.timestamp()):
                created_at = created_at.replace(microsecond=(ms % 1000) * 1000)
    elif tweet_id >= MIN_SNOWFLAKE_ID:
        created_at = snowflake_time(tweet_id)
    else:
        raise InvalidPayload(f"{where} has no 'created_at' and its id predates Snowflake",
                             MISSING_FIELD)
    check_future(created_at, limit)
    text, ents = _v2_text(t, where)
    has_refs, rt_id, quoted_id, replied_id = _v2_refs(t, where)
    is_rt = bool(rt_id) or (not has_refs and RT_PREFIX.match(text) is not None)
    if is_rt:
        quoted_id = replied_id = 0
        if (rebuilt := _v2_retweet_text(text, rt_id, inc, where)) is not None:
            text, ents = rebuilt
    e = entity_texts(ents, text, True, where)

    author_id = opt_id(t, "author_id", where + " author_id")
    handle = ""
    if author_id and (user := inc.get("users", str(author_id))) is not None:
        handle = opt(user, "username", str, "v2 includes user") or ""
    country = ""
    if (geo := opt(t, "geo", dict, where)) is not None and (
            pid := opt(geo, "place_id", str, where + " geo")):
        place = inc.get("places", pid)
        country = (place and opt(place, "country_code", str, "v2 includes place")) or ""
    pm = opt(t, "public_metrics", dict, where) or {}
    pw = where + " public_metrics"
    return Tweet(
        tweet_id=tweet_id, author_id=author_id, author_handle=handle, created_at=created_at,
        lang=opt(t, "lang", str, where) or "und", text=text,
        kind=tweet_kind(is_rt, bool(quoted_id), bool(replied_id)),
        conversation_id=opt_id(t, "conversation_id", where + " conversation_id"),
        replied_to_id=replied_id, retweeted_id=rt_id, quoted_id=quoted_id,
        in_reply_to_user_id=opt_id(t, "in_reply_to_user_id", where + " in_reply_to_user_id"),
        hashtags=e.hashtags, mentions=e.mentions, cashtags=e.cashtags, urls=e.urls,
        domains=tuple(domain(u) for u in e.urls),
        retweet_count=count(pm, "retweet_count", pw), reply_count=count(pm, "reply_count", pw),
        like_count=count(pm, "like_count", pw), quote_count=count(pm, "quote_count", pw),
        impression_count=count(pm, "impression_count", pw, ID_LIMIT),
        source=source_text(opt(t, "source", str, where) or ""), country=country.upper(),
        possibly_sensitive=flag(t, "possibly_sensitive", where),
        edit_history_tweet_ids=edit_chain(t.get("edit_history_tweet_ids"), tweet_id, where,
                                          "edit_history_tweet_ids"),
        matching_rules=rules,
    )


def _parse_v2_delete(d: Any) -> Event:
    where = "v2 delete event"
    if type(d) is not dict:
        wrong(where + " 'delete'", d, dict)
    tweet = opt(d, "tweet", dict, where)
    if tweet is None:
        raise InvalidPayload(f"{where} has no 'tweet' object", MISSING_FIELD)
    v = tweet.get("id")
    if v is None:
        raise InvalidPayload(f"{where} 'tweet' has no 'id'", MISSING_FIELD)
    event_at = opt(d, "event_at", str, where)
    quote = opt_id(d, "quote_tweet_id", where + " quote_tweet_id")
    return Event("delete", parse_id(v, "deleted Tweet id"),
                 user_id=opt_id(tweet, "author_id", where + " author_id"),
                 event_at=v2_created_at(event_at, "event_at") if event_at else None,
                 extra={"quote_tweet_id": str(quote)} if quote else {})
