"""streaming.parsing: every accepted format becomes the same canonical Event (v1.1, v2 with and
without expansions, deletes). Errors: test_parsing_errors.py; the v2 fast path:
test_parsing_v2_fast.py."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import orjson
import pytest
from parsing_support import DATA, PAYLOADS, needs_fixtures, read_lines, to_bytes, v1_doc

from streaming.parsing import InvalidPayload, parse_payload, snowflake_time
from streaming.synthetic import generate
from tweetflow.model import Event, Tweet


def _one_tweet(raw: bytes) -> Tweet:
    events = parse_payload(raw)
    assert len(events) == 1 and events[0].kind == "tweet"
    assert events[0].tweet is not None and events[0].tweet_id == events[0].tweet.tweet_id
    return events[0].tweet


def _assert_canonical(t: Tweet) -> None:
    assert 0 < t.tweet_id < 2**63
    assert t.created_at.tzinfo is UTC and t.created_at.microsecond % 1000 == 0
    assert t.kind in ("original", "retweet", "quote", "reply")
    assert t.lang and isinstance(t.text, str)
    assert len(t.urls) == len(t.domains)
    assert not any(h.startswith("#") for h in t.hashtags)
    assert not any(m.startswith("@") for m in t.mentions)


# --- external fixtures -------------------------------------------------------------------------


@needs_fixtures
def test_every_v2_minimal_tweet_parses() -> None:
    lines = read_lines(PAYLOADS / "v2_tweets_minimal.jsonl")
    assert lines
    for raw in lines:
        data = json.loads(raw)["data"]
        t = _one_tweet(raw)
        _assert_canonical(t)
        assert t.tweet_id == int(data["id"])
        assert (t.author_id, t.author_handle, t.lang) == (0, "", "und")  # default fields: none
        assert t.created_at == snowflake_time(t.tweet_id)
        assert t.edit_history_tweet_ids == tuple(int(i) for i in data["edit_history_tweet_ids"])
        assert t.chain_root_id == int(data["edit_history_tweet_ids"][0])
        if data["text"].startswith("RT @"):
            assert (t.kind, t.retweeted_id) == ("retweet", 0)


@needs_fixtures
def test_v2_minimal_concrete_values() -> None:
    by_id = {json.loads(r)["data"]["id"]: r for r in read_lines(PAYLOADS / "v2_tweets_minimal.jsonl")}
    t = _one_tweet(by_id["1158796820627283973"])  # "@chromaticloud @thankunext327 #FreeDorothy"
    assert t.hashtags == ("FreeDorothy",)
    assert t.mentions == ("chromaticloud", "thankunext327")
    assert t.created_at == datetime(2019, 8, 6, 17, 47, 46, 98000, tzinfo=UTC)
    rt = _one_tweet(by_id["1177008991697874945"])  # "RT @shashashasha: ..."
    assert (rt.kind, rt.mentions) == ("retweet", ("shashashasha",))
    links = _one_tweet(by_id["1293593516040269825"])  # two bare t.co links
    assert links.domains == ("t.co", "t.co")


@needs_fixtures
def test_every_v1_tweet_parses() -> None:
    lines = read_lines(PAYLOADS / "v1_original_format.jsonl")
    assert lines
    for raw in lines:
        src = json.loads(raw)
        t = _one_tweet(raw)
        _assert_canonical(t)
        assert t.tweet_id == int(src["id_str"])
        assert (t.author_id, t.author_handle) == (int(src["user"]["id_str"]),
                                                  src["user"]["screen_name"])
        assert t.created_at.replace(microsecond=0) == datetime.strptime(
            src["created_at"], "%a %b %d %H:%M:%S %z %Y")
        assert t.source and "<" not in t.source


@needs_fixtures
def test_v1_concrete_values() -> None:
    docs = {json.loads(r)["id_str"]: (json.loads(r), r) for r in
            read_lines(PAYLOADS / "v1_original_format.jsonl")}

    src, raw = docs["867478524235366400"]  # a retweet of @notFromShrek
    t = _one_tweet(raw)
    orig = src["retweeted_status"]
    assert (t.kind, t.retweeted_id) == ("retweet", int(orig["id_str"]))
    assert t.text == f"RT @{orig['user']['screen_name']}: {orig['text']}"
    assert not src["text"].endswith(orig["text"])  # the own text was truncated
    assert t.mentions[0] == "notFromShrek"
    assert t.urls == tuple(u["expanded_url"] for u in orig["entities"]["urls"])
    assert t.domains == ("github.com",)

    src, raw = docs["867472736871866368"]  # extended_tweet reply with "&amp;"
    t = _one_tweet(raw)
    assert t.text == src["extended_tweet"]["full_text"].replace("&amp;", "&")
    assert len(t.text) > len(src["text"])
    assert (t.kind, t.replied_to_id) == ("reply", int(src["in_reply_to_status_id_str"]))
    assert t.in_reply_to_user_id == int(src["in_reply_to_user_id_str"])
    assert t.mentions == ("notFromShrek", "ericmbudd")
    assert t.country == "CL" == src["place"]["country_code"]

    src, raw = docs["867842308955226112"]  # a quote Tweet
    t = _one_tweet(raw)
    assert (t.kind, t.quoted_id) == ("quote", int(src["quoted_status_id_str"]))
    assert t.source == "Twitter Web Client"

    t = _one_tweet(docs["887453193294282752"][1])
    assert (t.kind, t.country, t.source) == ("original", "US", "Twitter for iPhone")
    assert t.conversation_id == t.tweet_id  # not a reply: it starts its own conversation

    t = _one_tweet(docs["867470833744191488"][1])  # unwound URL wins over expanded
    assert t.urls == ("http://smittenkitchen.com/2009/12/ridiculously-easy-butterscotch-sauce/",)
    assert t.domains == ("smittenkitchen.com",)


@needs_fixtures
def test_broken_payloads_are_rejected_with_a_reason() -> None:
    broken = sorted((PAYLOADS / "broken").glob("*.json"))
    assert broken
    for path in broken:
        with pytest.raises(InvalidPayload, match="user") as exc:
            parse_payload(path.read_bytes())
        assert exc.value.reason_code == "missing_field"
        assert str(exc.value) == "v1.1 Tweet has no 'user' object"


# --- own fixtures (built from the X API v2 docs) -----------------------------------------------


@pytest.fixture(scope="module")
def v2_stream() -> list[list[Event]]:
    return [parse_payload(raw) for raw in read_lines(DATA / "v2_expanded_stream.jsonl")]


def test_v2_reply_with_expansions(v2_stream: list[list[Event]]) -> None:
    t = v2_stream[0][0].tweet
    assert t is not None
    _assert_canonical(t)
    assert (t.author_id, t.author_handle) == (1012345678901234567, "ana_data")
    assert t.created_at == datetime(2024, 3, 5, 14, 22, 31, 482000, tzinfo=UTC)  # ms from id
    assert (t.kind, t.replied_to_id, t.in_reply_to_user_id) == ("reply", t.conversation_id,
                                                                2244994945)
    assert "&amp;" not in t.text and " & " in t.text
    assert t.hashtags == ("filteredstream", "API")
    assert (t.mentions, t.cashtags) == (("XDevelopers",), ("TWTR",))
    assert t.urls == ("https://docs.x.com/x-api/posts/filtered-stream/introduction",)
    assert t.domains == ("x.com",)
    assert (t.retweet_count, t.reply_count, t.like_count, t.quote_count, t.impression_count) == (
        3, 1, 12, 0, 845)
    assert (t.source, t.country, t.lang) == ("Twitter Web App", "US", "en")
    assert t.matching_rules == ("api-chatter", "devs")
    assert t.edit_history_tweet_ids == (t.tweet_id,)


def test_v2_retweet_takes_the_originals_full_text(v2_stream: list[list[Event]]) -> None:
    t = v2_stream[1][0].tweet
    assert t is not None
    assert (t.kind, t.retweeted_id, t.author_handle) == ("retweet", 1764941420164031010, "bob")
    assert t.text.startswith("RT @ana_data: Big thread") and t.text.endswith("/Zz9Yy8Xx7W")
    assert t.hashtags == ("dataengineering", "ClickHouse")
    assert t.mentions == ("ana_data",)
    assert t.domains == ("example.co.uk",)
    assert t.retweet_count == 57


def test_v2_quote_skips_media_links(v2_stream: list[list[Event]]) -> None:
    t = v2_stream[2][0].tweet
    assert t is not None
    assert (t.kind, t.quoted_id, t.possibly_sensitive) == ("quote", 1764941420164031010, True)
    assert t.urls == ("https://twitter.com/ana_data/status/1764941420164031010",)
    assert t.cashtags == ("AAPL",)
    assert len(t.edit_history_tweet_ids) == 2 and t.edit_history_tweet_ids[-1] == t.tweet_id


def test_v2_note_tweet_wins_over_truncated_text(v2_stream: list[list[Event]]) -> None:
    t = v2_stream[3][0].tweet
    assert t is not None
    assert t.text.endswith("#longform @XDevelopers") and not t.text.endswith("…")
    assert (t.hashtags, t.mentions, t.matching_rules) == (("longform",), ("XDevelopers",), ())


def test_v2_data_list_gives_one_event_per_tweet(v2_stream: list[list[Event]]) -> None:
    first, second = (e.tweet for e in v2_stream[4])
    assert first is not None and second is not None
    assert (first.lang, first.author_handle, first.hashtags) == ("fr", "ana_data", ("paris",))
    assert (second.lang, second.author_handle) == ("und", "bob")
    # no entities in the payload: extracted from the text
    assert (second.hashtags, second.mentions) == (("untagged",), ("bob",))
    assert second.domains == ("t.co",)


# --- deletes -----------------------------------------------------------------------------------


def test_deletes() -> None:
    v1, v2, v2_quote = (parse_payload(raw) for raw in read_lines(DATA / "deletes.jsonl"))
    assert v1 == [Event("delete", 1234567890123456789, user_id=3198576760,
                        event_at=datetime(2024, 3, 5, 14, 22, 31, 123000, tzinfo=UTC))]
    assert v2 == [Event("delete", 601430178305220608, user_id=3198576760,
                        event_at=datetime(2022, 12, 23, 12, 34, 56, 789000, tzinfo=UTC))]
    assert v2_quote[0].tweet_id == 1346889436626259968
    assert v2_quote[0].extra == {"quote_tweet_id": "1346889436626259968"}


# --- behaviour details -------------------------------------------------------------------------


def test_v1_details() -> None:
    t = _one_tweet(to_bytes(v1_doc()))
    assert t.text == "hello <b> &amp; #tag"  # exactly one level of the API's escaping undone
    assert (t.source, t.lang, t.kind) == ("Web & more", "und", "original")
    assert t.created_at == datetime(2018, 10, 10, 20, 19, 24, 211000, tzinfo=UTC)  # ms from id
    assert t.created_at == snowflake_time(t.tweet_id)
    t = _one_tweet(to_bytes(v1_doc(timestamp_ms="1539202764123")))
    assert t.created_at.microsecond == 123000
    t = _one_tweet(to_bytes(v1_doc(id_str="1050118621198921729", id=1.0501186211989217e18)))
    assert t.tweet_id == 1050118621198921729  # id_str wins over a float-mangled id
    t = _one_tweet(to_bytes(v1_doc(created_at="Wed Oct 10 22:19:24 +0200 2018")))
    assert t.created_at.hour == 20


def test_v2_without_referenced_tweets_field_detects_retweet_by_prefix() -> None:
    base = {"id": "1577658245286875136", "edit_history_tweet_ids": ["1577658245286875136"]}
    assert _one_tweet(to_bytes({"data": {**base, "text": "RT @a_b: hi"}})).kind == "retweet"
    assert _one_tweet(to_bytes({"data": {**base, "text": "RT me @a_b: hi"}})).kind == "original"
    refs = {"referenced_tweets": [{"type": "replied_to", "id": "1577658245286875135"}]}
    t = _one_tweet(to_bytes({"data": {**base, **refs, "text": "RT @a_b: hi"}}))
    assert (t.kind, t.replied_to_id) == ("reply", 1577658245286875135)


def test_domains() -> None:
    urls = {"urls": [{"url": "https://t.co/a", "expanded_url": u} for u in (
        "https://WWW.BBC.co.uk/news", "http://192.168.0.1:8080/x", "https://t.co/x", "nope")]}
    t = _one_tweet(to_bytes({"data": {"id": "1577658245286875136", "text": "x", "entities": urls}}))
    assert t.domains == ("bbc.co.uk", "192.168.0.1", "t.co", "nope")


def test_engagement_counts_beyond_the_uint32_columns_are_rejected_not_stored() -> None:
    """A like count of 2^32 cannot be stored (UInt32): it must become a dead letter with its reason
    rather than a row whose insert fails the batch forever; impressions are UInt64."""
    _, value, _ = next(generate(3, start_ms=int(time.time() * 1000) - 60_000, count=1, rate=1))
    doc = orjson.loads(value)
    doc["data"]["public_metrics"] |= {"like_count": 2**32, "impression_count": 2**40}
    with pytest.raises(InvalidPayload, match=r"'like_count' 4294967296 is not a count") as err:
        parse_payload(orjson.dumps(doc))
    assert err.value.reason_code == "invalid_value"
    doc["data"]["public_metrics"]["like_count"] = 2**32 - 1
    tweet = parse_payload(orjson.dumps(doc))[0].tweet
    assert tweet is not None and (tweet.like_count, tweet.impression_count) == (2**32 - 1, 2**40)


# --- edit chains -------------------------------------------------------------------------------
# An edit is a new Tweet whose edit history lists its whole chain, oldest first (v2
# `edit_history_tweet_ids`, v1.1 `edit_history.edit_tweet_ids`): the chain's root is the first id.
_ROOT, _EDIT = 1765286190904246340, 1765286997657649237


def test_an_edit_carries_its_chain_root_and_the_roots_time_in_both_formats() -> None:
    chain = [str(_ROOT), str(_EDIT)]
    v2 = _one_tweet(to_bytes({"data": {"id": str(_EDIT), "text": "fixed #typo",
                                       "edit_history_tweet_ids": chain}}))
    v1 = _one_tweet(to_bytes(v1_doc(id_str=str(_EDIT), id=_EDIT,
                                    created_at="Wed Mar 06 08:03:12 +0000 2024",
                                    edit_history={"initial_tweet_id": str(_ROOT),
                                                  "edit_tweet_ids": chain})))
    for t in (v2, v1):
        assert (t.tweet_id, t.chain_root_id) == (_EDIT, _ROOT)
        assert t.created_at == snowflake_time(_EDIT)  # the version's own time, as posted
        assert t.chain_created_at == snowflake_time(_ROOT)  # the chain counts at its root's time


def test_a_tweet_without_edits_is_its_own_chain_root() -> None:
    unedited = _one_tweet(to_bytes({"data": {"id": str(_ROOT), "text": "x",
                                             "edit_history_tweet_ids": [str(_ROOT)]}}))
    no_history = _one_tweet(to_bytes(v1_doc()))
    for t in (unedited, no_history):
        assert t.chain_root_id == t.tweet_id and t.chain_created_at == t.created_at
    # the original fetched after its edit lists the whole chain: still the root
    fetched = _one_tweet(to_bytes({"data": {"id": str(_ROOT), "text": "x",
                                            "edit_history_tweet_ids": [str(_ROOT), str(_EDIT)]}}))
    assert fetched.chain_root_id == _ROOT and fetched.chain_created_at == fetched.created_at


@pytest.mark.parametrize("history", [[_ROOT, _EDIT + 1, _EDIT], [_ROOT, _ROOT + 1]],
                         ids=["not oldest first", "without the tweet"])
def test_an_edit_history_that_cannot_be_a_chain_is_rejected(history: list[int]) -> None:
    """Its root would be wrong, and the chain counted twice or at the wrong time."""
    ids = [str(i) for i in history]
    for raw in (to_bytes({"data": {"id": str(_EDIT), "text": "x", "edit_history_tweet_ids": ids}}),
                to_bytes(v1_doc(id_str=str(_EDIT), edit_history={"edit_tweet_ids": ids}))):
        with pytest.raises(InvalidPayload, match=r"edit.* is not an edit chain") as err:
            parse_payload(raw)
        assert err.value.reason_code == "invalid_value"
