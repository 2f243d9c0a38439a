"""Turn raw Kafka message bytes into canonical `Event`s; anything else becomes `InvalidPayload`.

Accepted payloads (one Kafka message each):

* an X API v2 stream message `{"data": {...}, "includes": {...}, "matching_rules": [...]}`, with
  or without expansions; `data` may be a list (lookup responses): one event per Tweet;
* a v1.1 / enterprise "original format" Tweet;
* deletes: v1.1 `{"delete": {"status": {...}, "timestamp_ms": ...}}` and the v2 compliance
  stream's `{"data": {"delete": {"tweet": {...}, "event_at": ...}}}`.

Why every failure is an `InvalidPayload`: a consumer must never crash on data, only route the
message to the dead-letter queue with a `reason_code` for headers and metrics: invalid_utf8,
invalid_json, oversize (over 1 MiB), unknown_shape, missing_field, wrong_type, invalid_value (right
type, impossible value), future_timestamp, or parser_error (a bug here, never the input's fault).

Decisions (the canonical form must be the same whichever format a Tweet arrived in):

* Retweet text: X truncates a retweet's own text ("RT @h: ...…" cut at 140 characters), losing
  the hashtags and links at the end. When the retweeted Tweet is in the payload (v1.1
  `retweeted_status`, v2 `includes.tweets`) the text is rebuilt as "RT @handle: <original full
  text>" and the entities are the original's plus a mention of its author (as X's own entity list
  for a retweet has), so a retweet amplifies every entity of what it retweets.
* Kind: retweet > quote > reply > original when several apply (a reply may quote). v2 takes it
  from `referenced_tweets`; a v2 Tweet without that field (default fields only) whose text starts
  with "RT @handle: " is still a retweet (the form X generates), with retweeted_id 0 (unknown).
  Nothing else is guessed: a leading "@" may or may not be a reply. Retweets carry no
  replied_to/quoted ids: those belong to the retweeted Tweet.
* Author: v2 default-field payloads carry none, so author_id 0 and handle "" are allowed for v2;
  a v1.1 Tweet always has `user`, so one without it is broken and rejected.
* created_at is UTC with milliseconds. Both formats give whole seconds; they are refined to
  milliseconds by v1.1 `timestamp_ms`, else by the Snowflake id, when that agrees on the second.
  v2 without created_at: derived from the Snowflake id, ms = (id >> 22) + 1288834974657 (ids
  below 2**35 predate Snowflake and carry no time, so such a Tweet is rejected). More than a day
  in the future is rejected (clock skew is seconds; days mean a broken producer).
* Text: the API escapes "&", "<", ">" as HTML entities; they are unescaped. v2 `note_tweet` (long
  posts) and v1.1 `extended_tweet.full_text` win over the truncated `text`, with their entities.
* Entities come from the payload when it has them, else from `extract_entities(text)`. URLs: the
  unwound URL, else the expanded one, else the t.co link as written; v2 media links (with a
  `media_key`) are skipped, as v1.1 keeps them out of `entities.urls`. `domains[i]` is the
  registered domain of `urls[i]` from tldextract's bundled Public Suffix List snapshot (no network).
* v1.1 conversation_id: a Tweet that replies to nothing starts its own conversation (its own id);
  for a reply it is unknown (0). v2 takes the field as given, 0 when absent.
* `null` counts as absent (v1.1 writes null liberally); any other type mismatch is rejected.

Speed: a common-shape v2 stream message takes a msgspec fast path (end of this module) with the
same results; anything else, and every error, goes through the dict-based path.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from operator import attrgetter
from typing import Any, NoReturn
from urllib.parse import urlsplit

import orjson
import tldextract
from msgspec import UNSET

from streaming import v2_schema as v2
from streaming.entities import extract_entities
from tweetflow.model import Event, Tweet, TweetKind
from tweetflow.schema import COUNT_LIMIT

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "SNOWFLAKE_EPOCH_MS",
    "InvalidPayload",
    "parse_payload",
    "snowflake_time",
]

MAX_PAYLOAD_BYTES = 1 << 20
MAX_FUTURE_SECONDS = 86_400.0
SNOWFLAKE_EPOCH_MS = 1288834974657
_MIN_SNOWFLAKE_ID = 1 << 35  # sequential (pre-Snowflake) Tweet ids ended near 3e10 < 2**35
_ID_LIMIT = 1 << 63
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_RT_PREFIX = re.compile(r"RT @(\w{1,15}): ", re.ASCII)
_V2_COMPLIANCE_EVENTS = frozenset(
    ("tweet_edit", "withheld", "drop", "undrop", "scrub_geo", "user_delete", "user_undelete",
     "user_protect", "user_unprotect", "user_suspend", "user_unsuspend", "user_withheld",
     "user_profile_modification"))
_JSON_TYPE_NAMES = {dict: "an object", list: "an array", str: "a string", int: "an integer",
                    float: "a number", bool: "a boolean", type(None): "null"}
# suffix_list_urls=() and cache_dir=None: use the bundled snapshot, never the network or disk.
_TLD_EXTRACT = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

# reason codes (DLQ headers, metrics labels)
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
OVERSIZE = "oversize"
UNKNOWN_SHAPE = "unknown_shape"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
INVALID_VALUE = "invalid_value"
FUTURE_TIMESTAMP = "future_timestamp"
PARSER_ERROR = "parser_error"  # a bug in this module, never an input's fault


class InvalidPayload(ValueError):
    """A message that cannot become an Event; `str()` says exactly what is wrong."""

    def __init__(self, reason: str, reason_code: str = UNKNOWN_SHAPE) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reason_code = reason_code

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, self.reason_code))


def parse_payload(raw: bytes) -> list[Event]:
    """Parse one Kafka message value into its events (several for a v2 `data` list).

    A common-shape v2 stream message takes the fast path (`_parse_v2_fast`); every other payload,
    and every invalid one, the dict-based path, which alone decides on errors.
    """
    if type(raw) is not bytes or len(raw) > MAX_PAYLOAD_BYTES:
        _check_bytes(raw)
    limit = time.time() + MAX_FUTURE_SECONDS
    events = _parse_v2_fast(raw, limit)
    return _parse_dicts(raw, limit) if events is None else events


def _parse_reference(raw: bytes) -> list[Event]:
    """`parse_payload` without the fast path: the reference the fast path is tested against."""
    _check_bytes(raw)
    return _parse_dicts(raw, time.time() + MAX_FUTURE_SECONDS)


def _check_bytes(raw: Any) -> None:
    if not isinstance(raw, (bytes, bytearray, memoryview)):  # a tuple: `|` builds a Union per call
        raise InvalidPayload(f"payload is a {type(raw).__name__}, expected bytes", WRONG_TYPE)
    size = raw.nbytes if isinstance(raw, memoryview) else len(raw)
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidPayload(f"payload of {size} bytes exceeds the 1 MiB limit", OVERSIZE)


def _parse_dicts(raw: bytes | bytearray | memoryview, limit: float) -> list[Event]:
    """Every accepted format, via orjson's dicts and lists; the source of every error."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _json_error(raw, exc) from None
    try:
        return _dispatch(doc, limit)
    except InvalidPayload:
        raise
    except Exception as exc:  # safety net: a worker must never crash on data
        raise InvalidPayload(f"parser error: {type(exc).__name__}: {exc}", PARSER_ERROR) from exc


def snowflake_time(tweet_id: int) -> datetime:
    """When a Snowflake id was minted (X ids carry their creation time in ms since 2010-11-04)."""
    return _UNIX_EPOCH + timedelta(milliseconds=(tweet_id >> 22) + SNOWFLAKE_EPOCH_MS)


# --- dispatch ------------------------------------------------------------------------------------


def _json_error(raw: bytes | bytearray | memoryview, exc: Exception) -> InvalidPayload:
    try:
        bytes(raw).decode("utf-8")
    except UnicodeDecodeError as err:
        return InvalidPayload(f"invalid UTF-8 at byte {err.start}", INVALID_UTF8)
    return InvalidPayload(f"invalid JSON: {exc}", INVALID_JSON)


def _dispatch(doc: Any, limit: float) -> list[Event]:
    if type(doc) is not dict:
        raise InvalidPayload(f"payload is {_tname(doc)}, expected a JSON object", UNKNOWN_SHAPE)
    if "data" in doc:
        return _parse_v2_message(doc, limit)
    if "delete" in doc:
        return [_parse_v1_delete(doc["delete"])]
    if "id_str" in doc or "id" in doc:
        if "verb" in doc and "actor" in doc:
            raise InvalidPayload("Activity Streams payloads are not supported", UNKNOWN_SHAPE)
        if "user" not in doc and ("edit_history_tweet_ids" in doc or "author_id" in doc):
            raise InvalidPayload(
                "bare v2 Tweet object: expected a stream message {\"data\": {...}}", UNKNOWN_SHAPE)
        tweet = _parse_v1_tweet(doc, limit)
        return [Event("tweet", tweet.tweet_id, tweet)]
    if "errors" in doc:
        raise InvalidPayload(f"v2 message has only errors: {_short(doc['errors'], 200)}",
                             UNKNOWN_SHAPE)
    raise InvalidPayload("payload is not a Tweet, a v2 stream message or a delete event",
                         UNKNOWN_SHAPE)


# --- typed access ------------------------------------------------------------------------------


def _tname(v: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(v), type(v).__name__)


def _short(v: Any, n: int = 60) -> str:
    r = repr(v)
    return r if len(r) <= n else r[: n - 3] + "..."


def _wrong(what: str, v: Any, expected: type) -> NoReturn:
    raise InvalidPayload(f"{what} is {_tname(v)}, expected {_JSON_TYPE_NAMES[expected]}",
                         WRONG_TYPE)


def _opt(obj: dict, key: str, typ: type, where: str) -> Any:
    """obj[key] if it has type `typ`, None if absent or null; anything else is rejected."""
    v = obj.get(key)
    if v is None or type(v) is typ:
        return v
    _wrong(f"{where} '{key}'", v, typ)


def _req(obj: dict, key: str, typ: type, where: str) -> Any:
    v = obj.get(key)
    if type(v) is typ:
        return v
    if v is None:
        raise InvalidPayload(f"{where} has no '{key}'", MISSING_FIELD)
    _wrong(f"{where} '{key}'", v, typ)


def _id(v: Any, what: str) -> int:
    """A positive id below 2**63 from a decimal string or an integer."""
    t = type(v)
    if t is str:
        if not (v.isascii() and v.isdigit() and len(v) <= 19):
            raise InvalidPayload(f"{what} {_short(v)} is not an integer", INVALID_VALUE)
        n = int(v)
    elif t is int:
        n = v
    else:
        raise InvalidPayload(f"{what} {_short(v)} is not an integer", WRONG_TYPE)
    if 0 < n < _ID_LIMIT:
        return n
    raise InvalidPayload(f"{what} {n} is not between 1 and 2**63-1", INVALID_VALUE)


def _opt_id(obj: dict, key: str, what: str) -> int:
    v = obj.get(key)
    return 0 if v is None else _id(v, what)


def _id_str_first(obj: dict, key: str, what: str) -> int:
    """v1.1 ids: `<key>_str` first, as JSON numbers above 2**53 lose digits in many producers."""
    v = obj.get(key + "_str")
    if v is None:
        v = obj.get(key)
    return 0 if v is None else _id(v, what)


def _count(obj: dict, key: str, where: str, limit: int = COUNT_LIMIT) -> int:
    """A public metric. Why the limit: the raw table stores engagement counts as UInt32, so a
    larger value (no Tweet has 4 billion likes) is bad data for the dead-letter topic, not a
    row that would fail the batch's insert again and again."""
    v = obj.get(key)
    if v is None:
        return 0
    if type(v) is not int:
        _wrong(f"{where} '{key}'", v, int)
    if 0 <= v < limit:
        return v
    raise InvalidPayload(f"{where} '{key}' {v} is not a count (0 to {limit - 1})", INVALID_VALUE)


def _ms(v: Any, what: str) -> int:
    """Milliseconds since the Unix epoch from a decimal string or an integer."""
    if type(v) is int and v >= 0:
        return v
    if type(v) is str and v.isascii() and v.isdigit() and len(v) <= 16:
        return int(v)
    raise InvalidPayload(f"{what} {_short(v)} is not a millisecond timestamp",
                         INVALID_VALUE if type(v) in (int, str) else WRONG_TYPE)


# --- time --------------------------------------------------------------------------------------


def _check_future(dt: datetime, limit: float) -> datetime:
    if dt.timestamp() > limit:
        raise InvalidPayload(
            f"created_at {_iso(dt)} is more than 1 day in the future", FUTURE_TIMESTAMP)
    return dt


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _v1_created_at(s: str) -> datetime:
    """'Wed Oct 10 20:19:24 +0000 2018' -> aware UTC; by hand as strptime is ~10x slower."""
    try:
        _, mon, day, hms, off, year = s.split(" ")
        h, m, sec = hms.split(":")
        dt = datetime(int(year), _MONTHS[mon], int(day), int(h), int(m), int(sec), tzinfo=UTC)
        if off != "+0000":
            if len(off) != 5 or off[0] not in "+-" or not off[1:].isdigit():
                raise ValueError(off)
            delta = timedelta(hours=int(off[1:3]), minutes=int(off[3:5]))
            dt = dt - delta if off[0] == "+" else dt + delta
        return dt
    except (ValueError, KeyError, OverflowError):
        raise InvalidPayload(
            f"created_at {_short(s)} is not like 'Wed Oct 10 20:19:24 +0000 2018'",
            INVALID_VALUE) from None


def _v2_created_at(s: str, what: str = "created_at") -> datetime:
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise InvalidPayload(f"{what} {_short(s)} is not an ISO 8601 time", INVALID_VALUE) from None
    if dt.tzinfo is None:
        raise InvalidPayload(f"{what} {_short(s)} has no time zone", INVALID_VALUE)
    try:
        dt = dt.astimezone(UTC)
    except OverflowError:
        raise InvalidPayload(f"{what} {_short(s)} is out of range", INVALID_VALUE) from None
    us = dt.microsecond
    return dt.replace(microsecond=us - us % 1000) if us % 1000 else dt


# --- text and entities -------------------------------------------------------------------------


def _unescape(s: str) -> str:
    """Undo the API's escaping of exactly '&', '<', '>' (html.unescape would also decode
    entities the author typed literally, which the API leaves as written)."""
    if "&" in s:
        return s.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return s


@lru_cache(maxsize=1024)
def _source_text(s: str) -> str:
    """'<a href="...">Twitter Web Client</a>' -> 'Twitter Web Client'; plain text stays.
    By hand: the API's anchor is fixed-form, an HTML parser would cost 100x more per Tweet.
    Cached: a stream has a few hundred distinct client names."""
    if s.startswith("<"):
        gt, lt = s.find(">"), s.rfind("<")
        if 0 < gt < lt:
            s = s[gt + 1 : lt]
    return _unescape(s)


def _texts(ents: dict, key: str, field: str, where: str) -> tuple[str, ...]:
    items = _opt(ents, key, list, where)
    if not items:
        return ()
    out = []
    for it in items:
        if type(it) is not dict:
            _wrong(f"{where} '{key}' item", it, dict)
        out.append(_req(it, field, str, f"{where} '{key}' item"))
    return tuple(out)


def _urls(ents: dict, where: str) -> tuple[str, ...]:
    items = _opt(ents, "urls", list, where)
    if not items:
        return ()
    out = []
    w = where + " 'urls' item"
    for it in items:
        if type(it) is not dict:
            _wrong(w, it, dict)
        if "media_key" in it:
            continue
        url = _opt(it, "unwound_url", str, w)
        if url is None:
            unwound = _opt(it, "unwound", dict, w)
            url = unwound and _opt(unwound, "url", str, w)
        out.append(url or _opt(it, "expanded_url", str, w) or _req(it, "url", str, w))
    return tuple(out)


class _Entities:
    """Entity texts of one Tweet, whichever way they were obtained."""

    __slots__ = ("cashtags", "hashtags", "mentions", "urls")

    def __init__(self, hashtags: tuple[str, ...], mentions: tuple[str, ...],
                 cashtags: tuple[str, ...], urls: tuple[str, ...]) -> None:
        self.hashtags, self.mentions, self.cashtags, self.urls = hashtags, mentions, cashtags, urls


def _payload_entities(ents: dict, v2: bool, where: str) -> _Entities:
    w = where + " entities"
    if v2:
        return _Entities(_texts(ents, "hashtags", "tag", w),
                         _texts(ents, "mentions", "username", w),
                         _texts(ents, "cashtags", "tag", w), _urls(ents, w))
    return _Entities(_texts(ents, "hashtags", "text", w),
                     _texts(ents, "user_mentions", "screen_name", w),
                     _texts(ents, "symbols", "text", w), _urls(ents, w))


def _extracted_entities(text: str) -> _Entities:
    e = extract_entities(text)  # its texts come without the '#', '@', '$' sign
    return _Entities(tuple(x.text for x in e.hashtags), tuple(x.text for x in e.mentions),
                     tuple(x.text for x in e.cashtags), tuple(x.text for x in e.urls))


def _entities(ents: dict | None, text: str, v2: bool, where: str) -> _Entities:
    return _extracted_entities(text) if ents is None else _payload_entities(ents, v2, where)


@lru_cache(maxsize=65536)
def _domain(url: str) -> str:
    """Registered domain ('bbc.co.uk'), else the host itself (IP addresses, 'localhost')."""
    try:
        host = urlsplit(url if "://" in url else "http://" + url).hostname
    except ValueError:
        return ""
    return _host_domain(host) if host else ""


@lru_cache(maxsize=16384)
def _host_domain(host: str) -> str:
    """The registered domain of a host, lower case; cached: URLs rarely repeat, their hosts do."""
    r = _TLD_EXTRACT.extract_str(host)
    return (r.top_domain_under_public_suffix or host).lower()


def _rules(doc: dict) -> tuple[str, ...]:
    rules = _opt(doc, "matching_rules", list, "payload")
    if not rules:
        return ()
    tags = []
    for r in rules:
        if type(r) is not dict:
            _wrong("'matching_rules' item", r, dict)
        tag = _opt(r, "tag", str, "matching rule")
        if tag:
            tags.append(tag)
    return tuple(tags)


def _id_list(v: Any, where: str, key: str) -> tuple[int, ...]:
    if v is None:
        return ()
    if type(v) is not list:
        _wrong(f"{where} '{key}'", v, list)
    return tuple(_id(x, f"{where} '{key}' item") for x in v)


def _kind(retweeted: bool, quoted: bool, replied: bool) -> TweetKind:
    if retweeted:
        return "retweet"
    if quoted:
        return "quote"
    return "reply" if replied else "original"


def _bool(obj: dict, key: str, where: str) -> bool:
    return bool(_opt(obj, key, bool, where))


# --- v1.1 --------------------------------------------------------------------------------------


def _v1_text(t: dict, where: str) -> tuple[str, dict | None]:
    """Full text and its entities: extended_tweet > full_text > text."""
    ext = _opt(t, "extended_tweet", dict, where)
    if ext is not None and "full_text" in ext:
        return (_unescape(_req(ext, "full_text", str, where + " extended_tweet")),
                _opt(ext, "entities", dict, where + " extended_tweet"))
    text = _opt(t, "full_text", str, where)
    if text is None:
        text = _req(t, "text", str, where)
    return _unescape(text), _opt(t, "entities", dict, where)


def _v1_handle(t: dict, where: str) -> tuple[int, str]:
    user = _opt(t, "user", dict, where)
    if user is None:
        raise InvalidPayload(f"{where} has no 'user' object", MISSING_FIELD)
    uid = _id_str_first(user, "id", f"{where} user id")
    if not uid:
        raise InvalidPayload(f"{where} 'user' has no 'id_str' or 'id'", MISSING_FIELD)
    return uid, _req(user, "screen_name", str, where + " user")


def _v1_created(t: dict, tweet_id: int, where: str, limit: float) -> datetime:
    dt = _v1_created_at(_req(t, "created_at", str, where))
    sec = int(dt.timestamp())
    ts = t.get("timestamp_ms")
    if ts is not None:
        ms = _ms(ts, where + " timestamp_ms")
    elif tweet_id >= _MIN_SNOWFLAKE_ID:
        ms = (tweet_id >> 22) + SNOWFLAKE_EPOCH_MS
    else:
        ms = sec * 1000
    if ms // 1000 == sec:
        dt = dt.replace(microsecond=(ms % 1000) * 1000)
    return _check_future(dt, limit)


def _parse_v1_tweet(t: dict, limit: float) -> Tweet:
    v = t.get("id_str")
    if v is None:
        v = t.get("id")
    if v is None:
        raise InvalidPayload("v1.1 Tweet has no 'id_str' or 'id'", MISSING_FIELD)
    tweet_id = _id(v, "Tweet id")
    where = "v1.1 Tweet"
    author_id, handle = _v1_handle(t, where)
    where = f"v1.1 Tweet {tweet_id}"
    created_at = _v1_created(t, tweet_id, where, limit)
    text, ents = _v1_text(t, where)

    rt = _opt(t, "retweeted_status", dict, where)
    retweeted_id = quoted_id = replied_to_id = reply_user = 0
    is_quote = False
    if rt is not None:
        rw = where + " retweeted_status"
        retweeted_id = _id_str_first(rt, "id", rw + " id")
        if not retweeted_id:
            raise InvalidPayload(f"{rw} has no 'id_str' or 'id'", MISSING_FIELD)
        rt_user = _opt(rt, "user", dict, rw)
        rt_handle = rt_user and _opt(rt_user, "screen_name", str, rw + " user")
        if rt_handle:
            rt_text, rt_ents = _v1_text(rt, rw)
            text = f"RT @{rt_handle}: {rt_text}"
            ents = rt_ents and {**rt_ents, "user_mentions": [
                {"screen_name": rt_handle}, *(_opt(rt_ents, "user_mentions", list, rw) or ())]}
    else:
        replied_to_id = _id_str_first(t, "in_reply_to_status_id", where + " in_reply_to_status_id")
        reply_user = _id_str_first(t, "in_reply_to_user_id", where + " in_reply_to_user_id")
        quoted_id = _id_str_first(t, "quoted_status_id", where + " quoted_status_id")
        if not quoted_id and (qs := _opt(t, "quoted_status", dict, where)) is not None:
            quoted_id = _id_str_first(qs, "id", where + " quoted_status id")
        is_quote = bool(quoted_id) or _bool(t, "is_quote_status", where)
    e = _entities(ents, text, False, where)
    place = _opt(t, "place", dict, where)
    country = (place and _opt(place, "country_code", str, where + " place")) or ""
    source = _opt(t, "source", str, where)
    lang = _opt(t, "lang", str, where)
    edits: tuple[int, ...] = ()
    if (hist := _opt(t, "edit_history", dict, where)) is not None:
        edits = _id_list(hist.get("edit_tweet_ids"), where + " edit_history", "edit_tweet_ids")
    return Tweet(
        tweet_id=tweet_id, author_id=author_id, author_handle=handle, created_at=created_at,
        lang=lang or "und", text=text,
        kind=_kind(bool(retweeted_id), is_quote, bool(replied_to_id)),
        conversation_id=0 if replied_to_id else tweet_id, replied_to_id=replied_to_id,
        retweeted_id=retweeted_id, quoted_id=quoted_id, in_reply_to_user_id=reply_user,
        hashtags=e.hashtags, mentions=e.mentions, cashtags=e.cashtags, urls=e.urls,
        domains=tuple(_domain(u) for u in e.urls),
        retweet_count=_count(t, "retweet_count", where),
        reply_count=_count(t, "reply_count", where),
        like_count=_count(t, "favorite_count", where), quote_count=_count(t, "quote_count", where),
        source=_source_text(source) if source else "", country=country.upper(),
        possibly_sensitive=_bool(t, "possibly_sensitive", where), edit_history_tweet_ids=edits,
        matching_rules=_rules(t),
    )


def _parse_v1_delete(d: Any) -> Event:
    if type(d) is not dict:
        _wrong("v1.1 delete event 'delete'", d, dict)
    status = _opt(d, "status", dict, "v1.1 delete event")
    if status is None:
        raise InvalidPayload("v1.1 delete event has no 'status' object", MISSING_FIELD)
    tweet_id = _id_str_first(status, "id", "deleted Tweet id")
    if not tweet_id:
        raise InvalidPayload("v1.1 delete event 'status' has no 'id_str' or 'id'", MISSING_FIELD)
    ts = d.get("timestamp_ms")
    event_at = None if ts is None else _UNIX_EPOCH + timedelta(
        milliseconds=min(_ms(ts, "delete timestamp_ms"), 253402300799999))
    user_id = _id_str_first(status, "user_id", "deleted Tweet user_id")
    return Event("delete", tweet_id, user_id=user_id, event_at=event_at)


# --- v2 ----------------------------------------------------------------------------------------


class _Includes:
    """`includes` of one v2 message, indexed by id on first use."""

    __slots__ = ("_doc", "_maps")

    def __init__(self, doc: dict) -> None:
        self._doc = _opt(doc, "includes", dict, "v2 message") or {}
        self._maps: dict[str, dict[str, dict]] = {}

    def get(self, kind: str, key: str) -> dict | None:
        m = self._maps.get(kind)
        if m is None:
            m = self._maps[kind] = {}
            for it in _opt(self._doc, kind, list, "v2 includes") or ():
                if type(it) is not dict:
                    _wrong(f"v2 includes '{kind}' item", it, dict)
                m[_req(it, "id", str, f"v2 includes '{kind}' item")] = it
        return m.get(key)


def _parse_v2_message(doc: dict, limit: float) -> list[Event]:
    data = doc["data"]
    if type(data) is list:
        if not data:
            raise InvalidPayload("v2 message 'data' is an empty array", UNKNOWN_SHAPE)
        inc, rules = _Includes(doc), _rules(doc)
        return [_v2_event(t, inc, rules, limit) for t in data]
    if type(data) is not dict:
        _wrong("v2 message 'data'", data, dict)
    if "delete" in data:
        return [_parse_v2_delete(data["delete"])]
    if "id" not in data and (kinds := _V2_COMPLIANCE_EVENTS.intersection(data)):
        raise InvalidPayload(f"v2 compliance event '{min(kinds)}' is not supported", UNKNOWN_SHAPE)
    return [_v2_event(data, _Includes(doc), _rules(doc), limit)]


def _v2_event(t: Any, inc: _Includes, rules: tuple[str, ...], limit: float) -> Event:
    if type(t) is not dict:
        _wrong("v2 message 'data' item", t, dict)
    tweet = _parse_v2_tweet(t, inc, rules, limit)
    return Event("tweet", tweet.tweet_id, tweet)


def _v2_text(t: dict, where: str) -> tuple[str, dict | None]:
    """Full text and its entities: note_tweet (long posts) > text."""
    note = _opt(t, "note_tweet", dict, where)
    if note is not None and "text" in note:
        return (_unescape(_req(note, "text", str, where + " note_tweet")),
                _opt(note, "entities", dict, where + " note_tweet"))
    return _unescape(_req(t, "text", str, where)), _opt(t, "entities", dict, where)


def _v2_refs(t: dict, where: str) -> tuple[bool, int, int, int]:
    """(has referenced_tweets, retweeted id, quoted id, replied_to id)."""
    refs = _opt(t, "referenced_tweets", list, where)
    if refs is None:
        return False, 0, 0, 0
    ids = {"retweeted": 0, "quoted": 0, "replied_to": 0}
    for r in refs:
        if type(r) is not dict:
            _wrong(where + " 'referenced_tweets' item", r, dict)
        typ = _req(r, "type", str, where + " referenced Tweet")
        if typ in ids:
            if (rid := r.get("id")) is None:
                raise InvalidPayload(f"{where} {typ} Tweet has no 'id'", MISSING_FIELD)
            ids[typ] = _id(rid, f"{where} {typ} Tweet id")
    return True, ids["retweeted"], ids["quoted"], ids["replied_to"]


def _v2_retweet_text(text: str, rt_id: int, inc: _Includes, where: str
                     ) -> tuple[str, dict | None] | None:
    """Rebuild 'RT @h: <full original>' when the original is in includes, else None."""
    orig = inc.get("tweets", str(rt_id)) if rt_id else None
    if orig is None:
        return None
    m = _RT_PREFIX.match(text)
    handle = m.group(1) if m else None
    if handle is None and (aid := _opt(orig, "author_id", str, where)):
        user = inc.get("users", aid)
        handle = user and _opt(user, "username", str, "v2 includes user")
    if not handle:
        return None
    orig_text, orig_ents = _v2_text(orig, where + " retweeted Tweet")
    if orig_ents is not None:
        mentions = _opt(orig_ents, "mentions", list, where) or ()
        orig_ents = {**orig_ents, "mentions": [{"username": handle}, *mentions]}
    return f"RT @{handle}: {orig_text}", orig_ents


def _parse_v2_tweet(t: dict, inc: _Includes, rules: tuple[str, ...], limit: float) -> Tweet:
    v = t.get("id")
    if v is None:
        raise InvalidPayload("v2 Tweet has no 'id'", MISSING_FIELD)
    tweet_id = _id(v, "Tweet id")
    where = f"v2 Tweet {tweet_id}"
    created = _opt(t, "created_at", str, where)
    if created is not None:
        created_at = _v2_created_at(created)
        if not created_at.microsecond and tweet_id >= _MIN_SNOWFLAKE_ID:
            # v2 gives whole seconds ('.000Z'); the Snowflake id has the milliseconds
            ms = (tweet_id >> 22) + SNOWFLAKE_EPOCH_MS
            if ms // 1000 == int(created_at.timestamp()):
                created_at = created_at.replace(microsecond=(ms % 1000) * 1000)
    elif tweet_id >= _MIN_SNOWFLAKE_ID:
        created_at = snowflake_time(tweet_id)
    else:
        raise InvalidPayload(f"{where} has no 'created_at' and its id predates Snowflake",
                             MISSING_FIELD)
    _check_future(created_at, limit)
    text, ents = _v2_text(t, where)
    has_refs, rt_id, quoted_id, replied_id = _v2_refs(t, where)
    is_rt = bool(rt_id) or (not has_refs and _RT_PREFIX.match(text) is not None)
    if is_rt:
        quoted_id = replied_id = 0
        if (rebuilt := _v2_retweet_text(text, rt_id, inc, where)) is not None:
            text, ents = rebuilt
    e = _entities(ents, text, True, where)

    author_id = _opt_id(t, "author_id", where + " author_id")
    handle = ""
    if author_id and (user := inc.get("users", str(author_id))) is not None:
        handle = _opt(user, "username", str, "v2 includes user") or ""
    country = ""
    if (geo := _opt(t, "geo", dict, where)) is not None and (
            pid := _opt(geo, "place_id", str, where + " geo")):
        place = inc.get("places", pid)
        country = (place and _opt(place, "country_code", str, "v2 includes place")) or ""
    pm = _opt(t, "public_metrics", dict, where) or {}
    pw = where + " public_metrics"
    return Tweet(
        tweet_id=tweet_id, author_id=author_id, author_handle=handle, created_at=created_at,
        lang=_opt(t, "lang", str, where) or "und", text=text,
        kind=_kind(is_rt, bool(quoted_id), bool(replied_id)),
        conversation_id=_opt_id(t, "conversation_id", where + " conversation_id"),
        replied_to_id=replied_id, retweeted_id=rt_id, quoted_id=quoted_id,
        in_reply_to_user_id=_opt_id(t, "in_reply_to_user_id", where + " in_reply_to_user_id"),
        hashtags=e.hashtags, mentions=e.mentions, cashtags=e.cashtags, urls=e.urls,
        domains=tuple(_domain(u) for u in e.urls),
        retweet_count=_count(pm, "retweet_count", pw), reply_count=_count(pm, "reply_count", pw),
        like_count=_count(pm, "like_count", pw), quote_count=_count(pm, "quote_count", pw),
        impression_count=_count(pm, "impression_count", pw, _ID_LIMIT),
        source=_source_text(_opt(t, "source", str, where) or ""), country=country.upper(),
        possibly_sensitive=_bool(t, "possibly_sensitive", where),
        edit_history_tweet_ids=_id_list(t.get("edit_history_tweet_ids"), where,
                                        "edit_history_tweet_ids"),
        matching_rules=rules,
    )


def _parse_v2_delete(d: Any) -> Event:
    where = "v2 delete event"
    if type(d) is not dict:
        _wrong(where + " 'delete'", d, dict)
    tweet = _opt(d, "tweet", dict, where)
    if tweet is None:
        raise InvalidPayload(f"{where} has no 'tweet' object", MISSING_FIELD)
    v = tweet.get("id")
    if v is None:
        raise InvalidPayload(f"{where} 'tweet' has no 'id'", MISSING_FIELD)
    event_at = _opt(d, "event_at", str, where)
    quote = _opt_id(d, "quote_tweet_id", where + " quote_tweet_id")
    return Event("delete", _id(v, "deleted Tweet id"),
                 user_id=_opt_id(tweet, "author_id", where + " author_id"),
                 event_at=_v2_created_at(event_at, "event_at") if event_at else None,
                 extra={"quote_tweet_id": str(quote)} if quote else {})


# --- v2 fast path ------------------------------------------------------------------------------
# Why: the dict path above costs ~30 µs of CPU per stream message (type-checked `.get`s, an
# `_Includes` index, tldextract per URL, `datetime` work, a frozen dataclass __init__), the
# largest CPU cost of the consumers. For the message shape X sends all day (one Tweet in `data`,
# with expansions), msgspec decodes into typed structs (`streaming.v2_schema`) and the Tweet is
# built from them with the same rules as `_parse_v2_tweet`, at a fraction of the cost.
# Why it falls back: exactness. Any decode or validation error, any field outside the schema
# (note_tweet, compliance events, deletes, lists, v1.1, ...) and anything that `_parse_v2_tweet`
# would reject sends the message to `_parse_dicts`, so results, error messages and reason codes
# are those of the dict path by construction; the tests compare both paths message by message.


class _Fallback(Exception):
    """Raised inside the fast path: let the dict path decide (and word any error)."""


def _parse_v2_fast(raw: bytes | bytearray | memoryview, limit: float) -> list[Event] | None:
    """The events of a common-shape v2 stream message; None when the dict path must decide."""
    try:
        tweet = _fast_v2_tweet(v2.V2_MESSAGE_DECODER.decode(raw), limit)
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


def _fast_v2_tweet(msg: v2.Message, limit: float) -> Tweet:
    """`_parse_v2_tweet` on the decoded structs; raises (anything) where that one would."""
    t, inc = msg.data, msg.includes
    tweet_id = _fast_id(t.id)
    created_at = _fast_created_at(t.created_at, tweet_id, limit)
    text = _unescape(t.text)
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
               else "original")  # as `_kind`
    tw.conversation_id = (0 if t.conversation_id is None else tweet_id
                          if t.conversation_id == t.id else _fast_id(t.conversation_id))
    tw.replied_to_id, tw.retweeted_id, tw.quoted_id = replied_id, rt_id, quoted_id
    tw.in_reply_to_user_id = (0 if t.in_reply_to_user_id is None
                              else _fast_id(t.in_reply_to_user_id))
    tw.hashtags, tw.mentions, tw.cashtags, tw.urls = hashtags, mentions, cashtags, urls
    tw.domains = tuple(map(_fast_domain, urls)) if urls else ()
    if pm is None:
        tw.retweet_count = tw.reply_count = tw.like_count = tw.quote_count = 0
        tw.impression_count = 0
    else:
        tw.retweet_count, tw.reply_count = pm.retweet_count or 0, pm.reply_count or 0
        tw.like_count, tw.quote_count = pm.like_count or 0, pm.quote_count or 0
        tw.impression_count = pm.impression_count or 0
    tw.source = _source_text(t.source) if t.source else ""
    tw.country = "" if t.geo is None else _fast_country(t.geo, inc)
    tw.possibly_sensitive = t.possibly_sensitive is True
    tw.edit_history_tweet_ids = (() if edits is None else (tweet_id,)
                                 if len(edits) == 1 and edits[0] == t.id  # unedited
                                 else tuple(map(_fast_id, edits)))
    tw.matching_rules = _fast_rule_tags(msg.matching_rules)
    tw.__class__ = Tweet  # type: ignore[assignment]  # see _MutableTweet
    return tw  # type: ignore[return-value]


def _fast_id(v: str | None) -> int:
    """`_id(v, ...)` for a string; None raises too (AttributeError): the dict path words it."""
    if v.isdigit() and v.isascii() and len(v) <= 19:  # type: ignore[union-attr]
        n = int(v)  # type: ignore[arg-type]
        if 0 < n < _ID_LIMIT:
            return n
    raise _Fallback


def _fast_created_at(s: str | None, tweet_id: int, limit: float) -> datetime:
    """`_parse_v2_tweet`'s created_at: the given second refined to the Snowflake id's ms."""
    if s is None:
        if tweet_id < _MIN_SNOWFLAKE_ID:
            raise _Fallback
        dt, sec = snowflake_time(tweet_id), ((tweet_id >> 22) + SNOWFLAKE_EPOCH_MS) // 1000
    else:
        dt, sec = _v2_second(s)
        if not dt.microsecond and tweet_id >= _MIN_SNOWFLAKE_ID:
            ms = (tweet_id >> 22) + SNOWFLAKE_EPOCH_MS
            if ms // 1000 == sec:  # as dt.replace(microsecond=...), dt having none; 20x cheaper
                dt += _MILLISECONDS[ms % 1000]
    if sec + 1 > limit and dt.timestamp() > limit:  # dt.timestamp() < sec + 1: cheap test first
        raise _Fallback
    return dt


_MILLISECONDS = tuple(timedelta(milliseconds=k) for k in range(1000))


def _fast_refs(refs: list[v2.Reference] | None, text: str) -> tuple[bool, int, int, int]:
    """(is a retweet, retweeted id, quoted id, replied_to id) as `_parse_v2_tweet` finds them."""
    if refs is None:  # no referenced_tweets field: the text's "RT @h: " form says it
        return text.startswith("RT @") and _RT_PREFIX.match(text) is not None, 0, 0, 0
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


def _fast_country(geo: v2.Geo, inc: v2.Includes | None) -> str:
    place = _last(inc.places, geo.place_id) if geo.place_id and inc is not None else None
    return "" if place is None else (place.country_code or "").upper()


def _fast_rule_tags(rules: list[v2.Rule] | None) -> tuple[str, ...]:
    """`_rules`, as one shared tuple per combination of tags (a stream has a handful)."""
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
    """`_v2_created_at(s)` and its whole Unix seconds; cached as every Tweet minted in the same
    second carries the same created_at string."""
    dt = _v2_created_at(s)
    return dt, int(dt.timestamp())


def _fast_retweet(text: str, rt_id: int, inc: v2.Includes
                  ) -> tuple[str, tuple[tuple[str, ...], ...]] | None:
    """`_v2_retweet_text` and the rebuilt Tweet's entities, else None."""
    orig = _last(inc.tweets, str(rt_id))
    if orig is None:
        return None
    m = _RT_PREFIX.match(text)
    handle = m.group(1) if m else None
    if handle is None and orig.author_id:
        user = _last(inc.users, orig.author_id)
        handle = None if user is None else user.username
    if not handle:
        return None
    text = f"RT @{handle}: {_unescape(orig.text)}"  # orig has no note_tweet: not in the schema
    oe = orig.entities
    if oe is None:
        return text, _fast_entities(None, text)
    mentions = (handle, *map(_USERNAME, oe.mentions)) if oe.mentions else (handle,)
    return text, (tuple(map(_TAG, oe.hashtags)) if oe.hashtags else (), mentions,
                  tuple(map(_TAG, oe.cashtags)) if oe.cashtags else (), _fast_urls(oe.urls))


def _fast_entities(ents: v2.Entities | None, text: str) -> tuple[tuple[str, ...], ...]:
    """(hashtags, mentions, cashtags, urls) as `_entities(..., v2=True)` gives them."""
    if ents is None:
        return _cached_extracted_entities(text)
    return (tuple(map(_TAG, ents.hashtags)) if ents.hashtags else (),
            tuple(map(_USERNAME, ents.mentions)) if ents.mentions else (),
            tuple(map(_TAG, ents.cashtags)) if ents.cashtags else (), _fast_urls(ents.urls))


@lru_cache(maxsize=2048)
def _cached_extracted_entities(text: str) -> tuple[tuple[str, ...], ...]:
    """`_extracted_entities(text)`; cached as retweets of one Tweet share its rebuilt text."""
    e = _extracted_entities(text)
    return e.hashtags, e.mentions, e.cashtags, e.urls


def _fast_urls(items: list[v2.Url] | None) -> tuple[str, ...]:
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


def _fast_domain(url: str) -> str:
    """`_domain(url)`, reading the host off a plain http(s) URL instead of urlsplit-ing it."""
    m = _PLAIN_HTTP_HOST.match(url)
    return _domain(url) if m is None else _host_domain(m.group(1).lower())
