"""Bluesky Jetstream events (`app.bsky.feed.post` commits) as canonical Tweets and deletes.

A Jetstream event is `{"did", "time_us", "kind": "commit", "commit": {"operation", "collection",
"rkey", "record", ...}}`; the producer publishes it as received, keyed by the post's
platform-scoped id (`tweetflow.platforms`), so parsing stays in the consumers like X's payloads.

Decisions (the canonical form of a post, so the marts treat it like a Tweet):

* Ids: `bluesky_post_id(did, rkey)` for the post, its reply parent and root and a quoted post;
  `bluesky_user_id(did)` for authors. None can equal a Tweet id (bit 63).
* Author: the DID, as id and as handle. Commits carry no handle (resolving one means asking the
  PLC directory or DNS per author, which the consumers do not do), and a DID never changes, so an
  author counts under one name.
* Text, `createdAt` (UTC, milliseconds; more than a day ahead is rejected as for Tweets), lang:
  the first of `langs`, its primary subtag lower-cased ("pt-BR" -> "pt", as X writes languages),
  "und" without one.
* Entities from `facets`, whose `index` is a UTF-8 *byte* range of the text (end exclusive):
  `#tag` features give hashtags (then the record's `tags`, without repeats), `#link` their URI,
  `#mention` the text it covers without the "@" (the handle as written), or the DID when the range
  does not cut the text at characters. An external link card's URI joins the links when new.
* Kind: quote (an `app.bsky.embed.record` or `recordWithMedia` of a post) > reply (`reply`) >
  original; reposts are another collection, not asked for. conversation_id: the thread's root
  post, the post itself when it replies to nothing.
* `update` is a new version of the same id (the sinks keep the newest); `delete` a delete.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from streaming.parsing.errors import INVALID_VALUE, UNKNOWN_SHAPE, InvalidPayload
from streaming.parsing.fields import opt, req, short, tweet_kind, wrong
from streaming.parsing.text_entities import domain
from streaming.parsing.timestamps import check_future, v2_created_at
from tweetflow.model import Event, Tweet
from tweetflow.platforms import bluesky_post_id, bluesky_user_id

POST_COLLECTION = "app.bsky.feed.post"
_FACET = "app.bsky.richtext.facet#"
_QUOTE_EMBEDS = ("app.bsky.embed.record", "app.bsky.embed.recordWithMedia")
_AT_URI = re.compile(r"at://([^/]+)/([^/]+)/([^/?#]+)")


def is_jetstream_event(doc: dict) -> bool:
    return "time_us" in doc and "did" in doc and "kind" in doc


def parse_jetstream(doc: dict, limit: float) -> list[Event]:
    where = "Jetstream event"
    did = req(doc, "did", str, where)
    kind = req(doc, "kind", str, where)
    time_us = req(doc, "time_us", int, where)
    if kind != "commit":
        raise InvalidPayload(f"Jetstream {short(kind, 30)} event is not a post", UNKNOWN_SHAPE)
    commit = req(doc, "commit", dict, where)
    collection = req(commit, "collection", str, where + " commit")
    if collection != POST_COLLECTION:
        raise InvalidPayload(f"Jetstream commit of {short(collection, 60)} is not a post",
                             UNKNOWN_SHAPE)
    post_id = _post_id(did, req(commit, "rkey", str, where + " commit"))
    operation = req(commit, "operation", str, where + " commit")
    if operation == "delete":
        return [Event("delete", post_id, user_id=bluesky_user_id(did),
                      event_at=datetime.fromtimestamp(time_us // 1000 / 1000, UTC))]
    if operation not in ("create", "update"):
        raise InvalidPayload(f"Jetstream commit operation {short(operation, 30)} is unknown",
                             INVALID_VALUE)
    record = req(commit, "record", dict, where + " commit")
    return [Event("tweet", post_id, _post(record, did, post_id, limit))]


def _post_id(did: str, rkey: str) -> int:
    try:
        return bluesky_post_id(did, rkey)
    except ValueError as exc:
        raise InvalidPayload(f"Bluesky post {short(did, 60)}: {exc}", INVALID_VALUE) from None


def _uri_post_id(uri: str, what: str) -> int:
    """The id of the post an at:// URI names; 0 when it names another kind of record."""
    m = _AT_URI.fullmatch(uri)
    if m is None:
        raise InvalidPayload(f"{what} {short(uri)} is not an at:// URI", INVALID_VALUE)
    return _post_id(m.group(1), m.group(3)) if m.group(2) == POST_COLLECTION else 0


def _ref_uri(obj: dict, key: str, where: str) -> str | None:
    """`obj[key].uri` of a strong ref, if present."""
    ref = opt(obj, key, dict, where)
    return None if ref is None else req(ref, "uri", str, f"{where} '{key}'")


def _post(record: dict, did: str, post_id: int, limit: float) -> Tweet:
    where = f"Bluesky post {post_id}"
    text = req(record, "text", str, where)
    created_at = check_future(v2_created_at(req(record, "createdAt", str, where), "createdAt"),
                              limit)
    hashtags, mentions, urls = _facets(record, text, where)
    replied = conversation = in_reply_to_user = 0
    if (reply := opt(record, "reply", dict, where)) is not None:
        parent = _ref_uri(reply, "parent", where + " reply")
        root = _ref_uri(reply, "root", where + " reply")
        replied = _uri_post_id(parent, where + " reply parent") if parent else 0
        conversation = _uri_post_id(root, where + " reply root") if root else 0
        if parent and (m := _AT_URI.fullmatch(parent)):
            in_reply_to_user = bluesky_user_id(m.group(1))
    quoted = _embed(record, urls, where)
    return Tweet(
        tweet_id=post_id, author_id=bluesky_user_id(did), author_handle=did,
        created_at=created_at, lang=_lang(record, where), text=text,
        kind=tweet_kind(False, bool(quoted), bool(replied)),
        conversation_id=conversation or (0 if replied else post_id), replied_to_id=replied,
        quoted_id=quoted, in_reply_to_user_id=in_reply_to_user,
        hashtags=tuple(hashtags), mentions=tuple(mentions), urls=tuple(urls),
        domains=tuple(domain(u) for u in urls))


def _lang(record: dict, where: str) -> str:
    langs = opt(record, "langs", list, where)
    if not langs:
        return "und"
    first = langs[0]
    if type(first) is not str:
        wrong(where + " 'langs' item", first, str)
    return first.split("-", 1)[0].lower() or "und"


def _facets(record: dict, text: str, where: str) -> tuple[list[str], list[str], list[str]]:
    hashtags: dict[str, None] = {}
    mentions: list[str] = []
    urls: list[str] = []
    encoded = text.encode()
    for facet in opt(record, "facets", list, where) or ():
        if type(facet) is not dict:
            wrong(where + " 'facets' item", facet, dict)
        w = where + " facet"
        index = req(facet, "index", dict, w)
        start, end = req(index, "byteStart", int, w), req(index, "byteEnd", int, w)
        for feature in req(facet, "features", list, w):
            if type(feature) is not dict:
                wrong(w + " 'features' item", feature, dict)
            typ = opt(feature, "$type", str, w) or ""
            if typ == _FACET + "tag":
                hashtags[req(feature, "tag", str, w)] = None
            elif typ == _FACET + "link":
                urls.append(req(feature, "uri", str, w))
            elif typ == _FACET + "mention":
                mentions.append(_covered(encoded, start, end).lstrip("@")
                                or req(feature, "did", str, w))
    for tag in opt(record, "tags", list, where) or ():
        if type(tag) is not str:
            wrong(where + " 'tags' item", tag, str)
        hashtags[tag] = None
    return list(hashtags), mentions, urls


def _covered(encoded: bytes, start: int, end: int) -> str:
    """The text a facet covers; "" when its byte range is out of the text or cuts a character."""
    if not 0 <= start < end <= len(encoded):
        return ""
    try:
        return encoded[start:end].decode()
    except UnicodeDecodeError:
        return ""


def _embed(record: dict, urls: list[str], where: str) -> int:
    """The quoted post's id (0 if none); adds an external link card's URI to `urls`."""
    embed = opt(record, "embed", dict, where)
    if embed is None:
        return 0
    w = where + " embed"
    typ = opt(embed, "$type", str, w)
    if typ == "app.bsky.embed.external":
        external = req(embed, "external", dict, w)
        uri = req(external, "uri", str, w + " external")
        if uri not in urls:
            urls.append(uri)
    elif typ in _QUOTE_EMBEDS:
        inner: Any = req(embed, "record", dict, w)
        if typ == _QUOTE_EMBEDS[1]:  # recordWithMedia: {"record": {"record": strong ref}}
            inner = req(inner, "record", dict, w + " record")
        return _uri_post_id(req(inner, "uri", str, w + " record"), w + " record uri")
    return 0
