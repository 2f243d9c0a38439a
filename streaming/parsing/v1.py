"""The v1.1 / enterprise "original format": Tweets and `{"delete": {...}}` events.

A v1.1 Tweet always has `user`, so one without it is broken and rejected. A Tweet that replies to
nothing starts its own conversation (its own id); for a reply the conversation is unknown (0).
ids are read from `<key>_str` first, as JSON numbers above 2**53 lose digits in many producers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from streaming.parsing.errors import MISSING_FIELD, InvalidPayload
from streaming.parsing.fields import (
    count,
    edit_chain,
    epoch_ms,
    flag,
    id_str_first,
    matching_rules,
    opt,
    parse_id,
    req,
    tweet_kind,
    wrong,
)
from streaming.parsing.text_entities import domain, entity_texts, source_text, unescape
from streaming.parsing.timestamps import check_future, v1_created_at
from tweetflow.model import Event, Tweet
from tweetflow.snowflake import MIN_SNOWFLAKE_ID, snowflake_ms

_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _v1_text(t: dict, where: str) -> tuple[str, dict | None]:
    """Full text and its entities: extended_tweet > full_text > text."""
    ext = opt(t, "extended_tweet", dict, where)
    if ext is not None and "full_text" in ext:
        return (unescape(req(ext, "full_text", str, where + " extended_tweet")),
                opt(ext, "entities", dict, where + " extended_tweet"))
    text = opt(t, "full_text", str, where)
    if text is None:
        text = req(t, "text", str, where)
    return unescape(text), opt(t, "entities", dict, where)


def _v1_handle(t: dict, where: str) -> tuple[int, str]:
    user = opt(t, "user", dict, where)
    if user is None:
        raise InvalidPayload(f"{where} has no 'user' object", MISSING_FIELD)
    uid = id_str_first(user, "id", f"{where} user id")
    if not uid:
        raise InvalidPayload(f"{where} 'user' has no 'id_str' or 'id'", MISSING_FIELD)
    return uid, req(user, "screen_name", str, where + " user")


def _v1_created(t: dict, tweet_id: int, where: str, limit: float) -> datetime:
    dt = v1_created_at(req(t, "created_at", str, where))
    sec = int(dt.timestamp())
    ts = t.get("timestamp_ms")
    if ts is not None:
        ms = epoch_ms(ts, where + " timestamp_ms")
    elif tweet_id >= MIN_SNOWFLAKE_ID:
        ms = snowflake_ms(tweet_id)
    else:
        ms = sec * 1000
    if ms // 1000 == sec:
        dt = dt.replace(microsecond=(ms % 1000) * 1000)
    return check_future(dt, limit)


def parse_v1_tweet(t: dict, limit: float) -> Tweet:
    v = t.get("id_str")
    if v is None:
        v = t.get("id")
    if v is None:
        raise InvalidPayload("v1.1 Tweet has no 'id_str' or 'id'", MISSING_FIELD)
    tweet_id = parse_id(v, "Tweet id")
    where = "v1.1 Tweet"
    author_id, handle = _v1_handle(t, where)
    where = f"v1.1 Tweet {tweet_id}"
    created_at = _v1_created(t, tweet_id, where, limit)
    text, ents = _v1_text(t, where)

    rt = opt(t, "retweeted_status", dict, where)
    retweeted_id = quoted_id = replied_to_id = reply_user = 0
    is_quote = False
    if rt is not None:
        rw = where + " retweeted_status"
        retweeted_id = id_str_first(rt, "id", rw + " id")
        if not retweeted_id:
            raise InvalidPayload(f"{rw} has no 'id_str' or 'id'", MISSING_FIELD)
        rt_user = opt(rt, "user", dict, rw)
        rt_handle = rt_user and opt(rt_user, "screen_name", str, rw + " user")
        if rt_handle:
            rt_text, rt_ents = _v1_text(rt, rw)
            text = f"RT @{rt_handle}: {rt_text}"
            ents = rt_ents and {**rt_ents, "user_mentions": [
                {"screen_name": rt_handle}, *(opt(rt_ents, "user_mentions", list, rw) or ())]}
    else:
        replied_to_id = id_str_first(t, "in_reply_to_status_id", where + " in_reply_to_status_id")
        reply_user = id_str_first(t, "in_reply_to_user_id", where + " in_reply_to_user_id")
        quoted_id = id_str_first(t, "quoted_status_id", where + " quoted_status_id")
        if not quoted_id and (qs := opt(t, "quoted_status", dict, where)) is not None:
            quoted_id = id_str_first(qs, "id", where + " quoted_status id")
        is_quote = bool(quoted_id) or flag(t, "is_quote_status", where)
    e = entity_texts(ents, text, False, where)
    place = opt(t, "place", dict, where)
    country = (place and opt(place, "country_code", str, where + " place")) or ""
    source = opt(t, "source", str, where)
    lang = opt(t, "lang", str, where)
    edits: tuple[int, ...] = ()
    if (hist := opt(t, "edit_history", dict, where)) is not None:
        edits = edit_chain(hist.get("edit_tweet_ids"), tweet_id, where + " edit_history",
                           "edit_tweet_ids")
    return Tweet(
        tweet_id=tweet_id, author_id=author_id, author_handle=handle, created_at=created_at,
        lang=lang or "und", text=text,
        kind=tweet_kind(bool(retweeted_id), is_quote, bool(replied_to_id)),
        conversation_id=0 if replied_to_id else tweet_id, replied_to_id=replied_to_id,
        retweeted_id=retweeted_id, quoted_id=quoted_id, in_reply_to_user_id=reply_user,
        hashtags=e.hashtags, mentions=e.mentions, cashtags=e.cashtags, urls=e.urls,
        domains=tuple(domain(u) for u in e.urls),
        retweet_count=count(t, "retweet_count", where),
        reply_count=count(t, "reply_count", where),
        like_count=count(t, "favorite_count", where), quote_count=count(t, "quote_count", where),
        source=source_text(source) if source else "", country=country.upper(),
        possibly_sensitive=flag(t, "possibly_sensitive", where), edit_history_tweet_ids=edits,
        matching_rules=matching_rules(t),
    )


def parse_v1_delete(d: Any) -> Event:
    if type(d) is not dict:
        wrong("v1.1 delete event 'delete'", d, dict)
    status = opt(d, "status", dict, "v1.1 delete event")
    if status is None:
        raise InvalidPayload("v1.1 delete event has no 'status' object", MISSING_FIELD)
    tweet_id = id_str_first(status, "id", "deleted Tweet id")
    if not tweet_id:
        raise InvalidPayload("v1.1 delete event 'status' has no 'id_str' or 'id'", MISSING_FIELD)
    ts = d.get("timestamp_ms")
    event_at = None if ts is None else _UNIX_EPOCH + timedelta(
        milliseconds=min(epoch_ms(ts, "delete timestamp_ms"), 253402300799999))
    user_id = id_str_first(status, "user_id", "deleted Tweet user_id")
    return Event("delete", tweet_id, user_id=user_id, event_at=event_at)
