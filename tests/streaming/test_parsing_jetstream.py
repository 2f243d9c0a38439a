"""Bluesky Jetstream posts as canonical Tweets (streaming/parsing/jetstream.py) and their
platform-scoped ids (tweetflow/platforms.py). The expected values are written out by hand from
the atproto lexicons, not computed with the code under test."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from jetstream_server import tid

from streaming.parsing import InvalidPayload, parse_payload
from tweetflow.platforms import bluesky_post_id, platform_of, tid_time_us
from tweetflow.snowflake import snowflake_time

DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
OTHER = "did:plc:z72i7hdynmk6r22z27h6tvur"
T_US = 1_764_000_000_123_456  # 2025-11-24T16:00:00.123456Z
RKEY = tid(T_US, 5)
POST = "app.bsky.feed.post"


def event(record: dict[str, Any] | None = None, op: str = "create", rkey: str = RKEY,
          collection: str = POST, **extra: Any) -> bytes:
    commit: dict[str, Any] = {"rev": "3lbx", "operation": op, "collection": collection,
                              "rkey": rkey}
    if record is not None:
        commit.update(record={"$type": POST, "createdAt": "2025-11-24T16:00:00.123Z",
                              "text": "hi", **record}, cid="bafyrei")
    return orjson.dumps({"did": DID, "time_us": T_US + 900, "kind": "commit", "commit": commit,
                         **extra})


def facet(start: int, end: int, **feature: Any) -> dict[str, Any]:
    return {"index": {"byteStart": start, "byteEnd": end}, "features": [feature]}


def test_a_post_with_facets_at_utf8_byte_offsets() -> None:
    text = "é🎉 #日本語 @alice.bsky.social see example.com/x"
    # byte offsets: "é"=2, "🎉"=4, " "=1 -> "#日本語" starts at byte 7 and is 10 bytes long
    (ev,) = parse_payload(event({
        "text": text, "langs": ["pt-BR", "en"], "tags": ["extra", "日本語"],
        "facets": [facet(7, 17, **{"$type": "app.bsky.richtext.facet#tag", "tag": "日本語"}),
                   facet(18, 36, **{"$type": "app.bsky.richtext.facet#mention", "did": OTHER}),
                   facet(41, 54, **{"$type": "app.bsky.richtext.facet#link",
                                    "uri": "https://example.com/x"})]}))
    t = ev.tweet
    assert ev.kind == "tweet" and t is not None and ev.tweet_id == t.tweet_id
    assert (t.text, t.lang, t.kind) == (text, "pt", "original")
    assert t.hashtags == ("日本語", "extra")
    assert t.mentions == ("alice.bsky.social",)
    assert (t.urls, t.domains) == (("https://example.com/x",), ("example.com",))
    assert t.created_at == datetime(2025, 11, 24, 16, 0, 0, 123000, tzinfo=UTC)
    assert t.author_handle == DID and platform_of(t.author_id) == "bluesky"
    assert t.conversation_id == t.tweet_id  # a post that replies to nothing starts a thread
    assert t.platform == "bluesky"


def test_a_mention_whose_range_cuts_a_character_falls_back_to_the_did() -> None:
    (ev,) = parse_payload(event({"text": "é @bob", "facets": [
        facet(1, 6, **{"$type": "app.bsky.richtext.facet#mention", "did": OTHER})]}))
    assert ev.tweet is not None and ev.tweet.mentions == (OTHER,)


def test_replies_and_quotes_point_at_platform_scoped_ids() -> None:
    parent_key, root_key, quoted_key = tid(T_US - 10**6, 1), tid(T_US - 10**7, 2), tid(T_US - 5, 3)
    parent = {"uri": f"at://{OTHER}/{POST}/{parent_key}", "cid": "b"}
    root = {"uri": f"at://{DID}/{POST}/{root_key}", "cid": "c"}
    quote = {"uri": f"at://{OTHER}/{POST}/{quoted_key}", "cid": "d"}
    (reply,) = parse_payload(event({"reply": {"root": root, "parent": parent}}))
    assert reply.tweet is not None
    assert (reply.tweet.kind, reply.tweet.replied_to_id, reply.tweet.conversation_id) == (
        "reply", bluesky_post_id(OTHER, parent_key), bluesky_post_id(DID, root_key))
    assert platform_of(reply.tweet.in_reply_to_user_id) == "bluesky"
    (quoting,) = parse_payload(event({"reply": {"root": root, "parent": parent}, "embed": {
        "$type": "app.bsky.embed.recordWithMedia",
        "record": {"record": quote}, "media": {"$type": "app.bsky.embed.images", "images": []}}}))
    assert quoting.tweet is not None
    assert (quoting.tweet.kind, quoting.tweet.quoted_id) == ("quote",
                                                             bluesky_post_id(OTHER, quoted_key))
    (card,) = parse_payload(event({"embed": {"$type": "app.bsky.embed.external", "external": {
        "uri": "https://news.example.co.uk/a", "title": "t", "description": ""}}}))
    assert card.tweet is not None and card.tweet.domains == ("example.co.uk",)
    list_embed = {"$type": "app.bsky.embed.record",
                  "record": {"uri": f"at://{OTHER}/app.bsky.graph.list/{quoted_key}", "cid": "e"}}
    (other,) = parse_payload(event({"embed": list_embed}))
    assert other.tweet is not None and (other.tweet.kind, other.tweet.quoted_id) == ("original", 0)


def test_a_delete_carries_the_post_s_id_and_time() -> None:
    (created,) = parse_payload(event({}))
    (deleted,) = parse_payload(event(None, op="delete"))
    assert (deleted.kind, deleted.tweet_id) == ("delete", created.tweet_id)
    assert deleted.event_at == datetime(2025, 11, 24, 16, 0, 0, 124000, tzinfo=UTC)


def test_ids_carry_the_tid_s_time_and_never_collide_with_tweet_ids() -> None:
    post_id = bluesky_post_id(DID, RKEY)
    assert tid_time_us(RKEY) == T_US
    assert post_id >> 63 == 1  # every Tweet id is below 2**63
    assert snowflake_time(post_id) == datetime(2025, 11, 24, 16, 0, 0, 123000, tzinfo=UTC)
    assert bluesky_post_id(OTHER, RKEY) != post_id  # same record key, another author
    assert platform_of(1460323737035677698) == "x"


@pytest.mark.parametrize(("payload", "code", "words"), [
    (event({}, rkey="self"), "invalid_value", "is not a TID"),
    (event({}, rkey=tid(10**15, 1)), "invalid_value", "outside 2010-2080"),
    (event({}, collection="app.bsky.feed.like"), "unknown_shape", "is not a post"),
    (event({"createdAt": "2999-01-01T00:00:00Z"}), "future_timestamp", "in the future"),
    (event({"createdAt": "yesterday"}), "invalid_value", "createdAt"),
    (event({"text": 5}), "wrong_type", "'text' is an integer"),
    (event({"facets": [{"index": {"byteStart": 0}, "features": []}]}), "missing_field",
     "byteEnd"),
    (event({"reply": {"parent": {"uri": "https://x"}, "root": {"uri": "https://x"}}}),
     "invalid_value", "not an at:// URI"),
    (event(None, op="create"), "missing_field", "'record'"),
    (orjson.dumps({"did": DID, "time_us": T_US, "kind": "identity",
                   "identity": {"did": DID, "handle": "a.bsky.social"}}),
     "unknown_shape", "'identity' event is not a post"),
])
def test_bad_events_are_rejected_with_a_reason(payload: bytes, code: str, words: str) -> None:
    with pytest.raises(InvalidPayload) as err:
        parse_payload(payload)
    assert err.value.reason_code == code and words in err.value.reason
