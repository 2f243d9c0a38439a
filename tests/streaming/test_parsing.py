"""streaming.parsing: every accepted format becomes the same canonical Event; anything else is an
InvalidPayload with a reason a DLQ reader can act on, and never any other exception."""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streaming.parsing import (
    MAX_PAYLOAD_BYTES,
    PARSER_ERROR,
    InvalidPayload,
    _domain,
    _fast_domain,
    _parse_reference,
    _parse_v2_fast,
    parse_payload,
    snowflake_time,
)
from streaming.synthetic import Burst, generate
from tweetflow.model import Event, Tweet

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PAYLOADS = PROJECT_ROOT / ".." / "shared" / "fixtures" / "payloads"
DATA = PROJECT_ROOT / "tests" / "data"
needs_fixtures = pytest.mark.skipif(
    not PAYLOADS.is_dir(),
    reason=f"external fixtures not found at {PAYLOADS} (../shared/fixtures beside the project)")


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


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
    lines = _lines(PAYLOADS / "v2_tweets_minimal.jsonl")
    assert lines
    for raw in lines:
        data = json.loads(raw)["data"]
        t = _one_tweet(raw)
        _assert_canonical(t)
        assert t.tweet_id == int(data["id"])
        assert (t.author_id, t.author_handle, t.lang) == (0, "", "und")  # default fields: none
        assert t.created_at == snowflake_time(t.tweet_id)
        assert t.edit_history_tweet_ids == tuple(int(i) for i in data["edit_history_tweet_ids"])
        if data["text"].startswith("RT @"):
            assert (t.kind, t.retweeted_id) == ("retweet", 0)


@needs_fixtures
def test_v2_minimal_concrete_values() -> None:
    by_id = {json.loads(r)["data"]["id"]: r for r in _lines(PAYLOADS / "v2_tweets_minimal.jsonl")}
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
    lines = _lines(PAYLOADS / "v1_original_format.jsonl")
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
            _lines(PAYLOADS / "v1_original_format.jsonl")}

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
    return [parse_payload(raw) for raw in _lines(DATA / "v2_expanded_stream.jsonl")]


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
    v1, v2, v2_quote = (parse_payload(raw) for raw in _lines(DATA / "deletes.jsonl"))
    assert v1 == [Event("delete", 1234567890123456789, user_id=3198576760,
                        event_at=datetime(2024, 3, 5, 14, 22, 31, 123000, tzinfo=UTC))]
    assert v2 == [Event("delete", 601430178305220608, user_id=3198576760,
                        event_at=datetime(2022, 12, 23, 12, 34, 56, 789000, tzinfo=UTC))]
    assert v2_quote[0].tweet_id == 1346889436626259968
    assert v2_quote[0].extra == {"quote_tweet_id": "1346889436626259968"}


# --- behaviour details -------------------------------------------------------------------------


def _v1(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "created_at": "Wed Oct 10 20:19:24 +0000 2018", "id": 1050118621198921728,
        "id_str": "1050118621198921728", "text": "hello &lt;b&gt; &amp;amp; #tag",
        "user": {"id": 6253282, "id_str": "6253282", "screen_name": "api"},
        "source": '<a href="http://x.com" rel="nofollow">Web &amp; more</a>',
        "in_reply_to_status_id": None, "lang": None,
        "entities": {"hashtags": [{"text": "tag", "indices": [25, 29]}], "user_mentions": [],
                     "symbols": [], "urls": []},
    }
    doc.update(over)
    return doc


def _raw(doc: Any) -> bytes:
    return orjson.dumps(doc)


def test_v1_details() -> None:
    t = _one_tweet(_raw(_v1()))
    assert t.text == "hello <b> &amp; #tag"  # exactly one level of the API's escaping undone
    assert (t.source, t.lang, t.kind) == ("Web & more", "und", "original")
    assert t.created_at == datetime(2018, 10, 10, 20, 19, 24, 211000, tzinfo=UTC)  # ms from id
    assert t.created_at == snowflake_time(t.tweet_id)
    t = _one_tweet(_raw(_v1(timestamp_ms="1539202764123")))
    assert t.created_at.microsecond == 123000
    t = _one_tweet(_raw(_v1(id_str="1050118621198921729", id=1.0501186211989217e18)))
    assert t.tweet_id == 1050118621198921729  # id_str wins over a float-mangled id
    t = _one_tweet(_raw(_v1(created_at="Wed Oct 10 22:19:24 +0200 2018")))
    assert t.created_at.hour == 20


def test_v2_without_referenced_tweets_field_detects_retweet_by_prefix() -> None:
    base = {"id": "1577658245286875136", "edit_history_tweet_ids": ["1577658245286875136"]}
    assert _one_tweet(_raw({"data": {**base, "text": "RT @a_b: hi"}})).kind == "retweet"
    assert _one_tweet(_raw({"data": {**base, "text": "RT me @a_b: hi"}})).kind == "original"
    refs = {"referenced_tweets": [{"type": "replied_to", "id": "1577658245286875135"}]}
    t = _one_tweet(_raw({"data": {**base, **refs, "text": "RT @a_b: hi"}}))
    assert (t.kind, t.replied_to_id) == ("reply", 1577658245286875135)


def test_domains() -> None:
    urls = {"urls": [{"url": "https://t.co/a", "expanded_url": u} for u in (
        "https://WWW.BBC.co.uk/news", "http://192.168.0.1:8080/x", "https://t.co/x", "nope")]}
    t = _one_tweet(_raw({"data": {"id": "1577658245286875136", "text": "x", "entities": urls}}))
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


def test_invalid_payload_pickles_with_its_code() -> None:
    err = pickle.loads(pickle.dumps(InvalidPayload("boom", "wrong_type")))
    assert (str(err), err.reason_code) == ("boom", "wrong_type")
    assert isinstance(err, ValueError)


_FUTURE = (datetime.now(UTC) + timedelta(days=3)).strftime("%a %b %d %H:%M:%S +0000 %Y")
_MALFORMED: list[tuple[str, bytes, str, str]] = [
    ("invalid json", b'{"data": {', "invalid_json", "invalid JSON"),
    ("empty", b"", "invalid_json", "invalid JSON"),
    ("invalid utf-8", b'{"data": {"id": "1", "text": "\xff"}}', "invalid_utf8",
     "invalid UTF-8 at byte 30"),
    ("not an object", b"[1, 2]", "unknown_shape", "array"),
    ("unknown shape", b'{"limit": {"track": 5}}', "unknown_shape",
     "payload is not a Tweet, a v2 stream message or a delete event"),
    ("unsupported compliance", b'{"data": {"withheld": {}}}', "unknown_shape", "withheld"),
    ("bare v2 tweet", b'{"id": "1", "text": "x", "edit_history_tweet_ids": ["1"]}',
     "unknown_shape", "bare v2"),
    ("v2 missing id", b'{"data": {"text": "x"}}', "missing_field", "v2 Tweet has no 'id'"),
    ("v2 missing text", b'{"data": {"id": "1577658245286875136"}}', "missing_field",
     "has no 'text'"),
    ("v1 missing id", _raw(_v1(id=None, id_str=None)), "missing_field", "no 'id_str' or 'id'"),
    ("v1 missing user", _raw(_v1(user=None)), "missing_field", "v1.1 Tweet has no 'user' object"),
    ("v1 missing created_at", _raw(_v1(created_at=None)), "missing_field", "'created_at'"),
    ("id as list", b'{"data": {"id": [1], "text": "x"}}', "wrong_type",
     "Tweet id [1] is not an integer"),
    ("id not a number", b'{"data": {"id": "abc", "text": "x"}}', "invalid_value",
     "Tweet id 'abc' is not an integer"),
    ("id zero", b'{"data": {"id": 0, "text": "x"}}', "invalid_value", "between 1 and 2**63-1"),
    ("id too big", b'{"data": {"id": "9223372036854775808", "text": "x"}}', "invalid_value",
     "between 1 and 2**63-1"),
    ("id as float", b'{"data": {"id": 1.5, "text": "x"}}', "wrong_type", "not an integer"),
    ("text not a string", b'{"data": {"id": "1577658245286875136", "text": 5}}', "wrong_type",
     "'text' is an integer, expected a string"),
    ("data a string", b'{"data": "x"}', "wrong_type", "'data' is a string"),
    ("v1 user not an object", _raw(_v1(user="api")), "wrong_type", "'user' is a string"),
    ("v1 entities wrong", _raw(_v1(entities={"hashtags": "x"})), "wrong_type", "'hashtags'"),
    ("metrics wrong", b'{"data": {"id": "1577658245286875136", "text": "x", '
     b'"public_metrics": {"like_count": "5"}}}', "wrong_type", "'like_count'"),
    ("bad created_at", _raw(_v1(created_at="yesterday")), "invalid_value", "created_at"),
    ("v2 naive created_at", b'{"data": {"id": "1577658245286875136", "text": "x", '
     b'"created_at": "2022-10-05T12:00:00"}}', "invalid_value", "no time zone"),
    ("far future v1", _raw(_v1(created_at=_FUTURE)), "future_timestamp",
     "more than 1 day in the future"),
    ("far future v2", b'{"data": {"id": "1", "text": "x", "created_at": "2100-01-01T00:00:00Z"}}',
     "future_timestamp", "created_at 2100-01-01T00:00:00.000Z is more than 1 day in the future"),
    ("far future snowflake", b'{"data": {"id": "9223372036854775807", "text": "x"}}',
     "future_timestamp", "in the future"),
    ("pre-snowflake id without time", b'{"data": {"id": "20", "text": "x"}}', "missing_field",
     "predates Snowflake"),
    ("oversize", b'{"data": {"id": "1", "text": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}}',
     "oversize", f"payload of {MAX_PAYLOAD_BYTES + 33} bytes exceeds the 1 MiB limit"),
    ("delete without status", b'{"delete": {}}', "missing_field", "no 'status'"),
    ("v2 delete without tweet", b'{"data": {"delete": {"event_at": "2022-01-01T00:00:00Z"}}}',
     "missing_field", "no 'tweet'"),
    ("errors only", b'{"errors": [{"title": "ConnectionException"}]}', "unknown_shape",
     "ConnectionException"),
]


@pytest.mark.parametrize(("raw", "code", "message"), [m[1:] for m in _MALFORMED],
                         ids=[m[0] for m in _MALFORMED])
def test_malformed_inputs(raw: bytes, code: str, message: str) -> None:
    with pytest.raises(InvalidPayload) as exc:
        parse_payload(raw)
    assert exc.value.reason_code == code
    assert message in str(exc.value)


def test_non_bytes_input() -> None:
    with pytest.raises(InvalidPayload) as exc:
        parse_payload("{}")  # type: ignore[arg-type]
    assert exc.value.reason_code == "wrong_type"


# --- properties: nothing but InvalidPayload escapes -------------------------------------------


def _parses_or_rejects(raw: bytes) -> None:
    try:
        events = parse_payload(raw)
    except InvalidPayload as exc:
        assert exc.reason_code != PARSER_ERROR, str(exc)  # a bug here, not the input's fault
        assert str(exc)
        return
    assert events and all(isinstance(e, Event) for e in events)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_invalid_payload(raw: bytes) -> None:
    _parses_or_rejects(raw)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_arbitrary_json_only_raises_invalid_payload(doc: Any) -> None:
    _parses_or_rejects(json.dumps(doc).encode())


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key/index path in a JSON document (the root excluded)."""
    out: list[tuple] = []
    if isinstance(doc, dict):
        items: Any = doc.items()
    else:
        items = enumerate(doc) if isinstance(doc, list) else ()
    for k, v in items:
        out.append((*prefix, k))
        out.extend(_paths(v, (*prefix, k)))
    return out


def _valid_docs() -> list[Any]:
    files = [DATA / "v2_expanded_stream.jsonl", DATA / "deletes.jsonl"]
    if PAYLOADS.is_dir():
        files.append(PAYLOADS / "v1_original_format.jsonl")
    return [json.loads(line) for f in files for line in _lines(f)]


_VALID = _valid_docs()


@st.composite
def _mutated(draw: st.DrawFn, pool: list[Any] = _VALID) -> Any:
    """A valid payload with one value anywhere inside replaced by arbitrary JSON (or removed)."""
    doc = json.loads(json.dumps(draw(st.sampled_from(pool))))
    path = draw(st.sampled_from(_paths(doc)))
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(_json)
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_mutated_valid_payloads_only_raise_invalid_payload(doc: Any) -> None:
    _parses_or_rejects(json.dumps(doc).encode())


# --- the v2 fast path gives exactly what the dict path gives ---------------------------------
# parse_payload decodes common v2 stream messages with msgspec (`_parse_v2_fast`) and hands
# everything else to the dict path; `_parse_reference` is the dict path alone. Same events
# (compared by value and by repr, so a tzinfo or type difference shows), same errors.

_NOW_MS = int(time.time() * 1000)


def _outcome(parse: Callable[[bytes], list[Event]], raw: bytes) -> Any:
    try:
        events = parse(raw)
    except InvalidPayload as exc:
        return ("rejected", str(exc), exc.reason_code)
    return events, repr(events)


def _assert_same_as_reference(raw: bytes) -> None:
    assert _outcome(parse_payload, raw) == _outcome(_parse_reference, raw), raw[:300]


def _synthetic(seed: int, count: int, **kwargs: Any) -> list[bytes]:
    start = _NOW_MS - 3 * 3600_000
    return [m[1] for m in generate(seed, start_ms=start, count=count, rate=20, **kwargs)]


_SYNTHETIC = _synthetic(3, 400, bursts=[Burst(_NOW_MS - 3 * 3600_000, _NOW_MS)])


@needs_fixtures
def test_fast_path_matches_reference_on_external_fixtures() -> None:
    payloads = [raw for f in sorted(PAYLOADS.glob("*.jsonl")) for raw in _lines(f)]
    payloads += [f.read_bytes() for f in sorted((PAYLOADS / "broken").glob("*.json"))]
    assert payloads
    for raw in payloads:
        _assert_same_as_reference(raw)


def test_fast_path_matches_reference_on_own_fixtures() -> None:
    for f in (DATA / "v2_expanded_stream.jsonl", DATA / "deletes.jsonl"):
        for raw in _lines(f):
            _assert_same_as_reference(raw)
    for _, raw, _, _ in _MALFORMED:
        _assert_same_as_reference(raw)


@pytest.mark.parametrize("seed", [1, 2, 7])
def test_fast_path_matches_reference_on_synthetic_stream(seed: int) -> None:
    bursts = [Burst(_NOW_MS - 3 * 3600_000, _NOW_MS - 2 * 3600_000, share=0.5)]
    msgs = _synthetic(seed, 1500, bursts=bursts, delete_fraction=0.03)
    kinds = {"delete": 0, "retweet": 0, "quote": 0, "reply": 0, "original": 0}
    for raw in msgs:
        events = parse_payload(raw)
        assert events == _parse_reference(raw) and repr(events) == repr(_parse_reference(raw))
        ev = events[0]
        kinds["delete" if ev.tweet is None else ev.tweet.kind] += 1
        if ev.kind == "tweet":  # the fast path took it (else this test would prove nothing)
            fast = _parse_v2_fast(raw, time.time() + 86400)
            assert fast is not None and type(fast[0]) is Event and type(fast[0].tweet) is Tweet
            assert hash(fast[0].tweet) == hash(ev.tweet)
    assert all(kinds.values()), kinds


def test_fast_path_events_behave_like_constructed_ones() -> None:
    # the fast path fills Tweet's and Event's slots directly: no __post_init__ may be skipped
    assert not hasattr(Tweet, "__post_init__") and not hasattr(Event, "__post_init__")
    ev = parse_payload(_SYNTHETIC[0])[0]
    assert ev.tweet is not None
    assert pickle.loads(pickle.dumps(ev)) == ev
    rebuilt = Tweet(**{f: getattr(ev.tweet, f) for f in Tweet.__dataclass_fields__})
    assert rebuilt == ev.tweet and hash(rebuilt) == hash(ev.tweet)
    with pytest.raises(AttributeError):  # still frozen
        ev.tweet.text = "x"  # type: ignore[misc]
    assert ev.extra == {} and ev.extra is not parse_payload(_SYNTHETIC[0])[0].extra


def _retweet_doc() -> dict[str, Any]:
    for raw in _SYNTHETIC:
        doc = orjson.loads(raw)
        data = doc["data"]
        if data.get("referenced_tweets", [{}])[0].get("type") == "retweeted" and any(
                "entities" in t for t in doc["includes"]["tweets"]):
            return doc
    raise AssertionError("no retweet in the synthetic sample")


def _edited(path: str, value: Any) -> bytes:
    """The synthetic retweet with the value at a dotted path (list indexes as numbers) set, or
    removed for `...`."""
    doc = _retweet_doc()
    *parents, last = path.split(".")
    node: Any = doc
    for k in parents:
        node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})
    key: Any = int(last) if isinstance(node, list) else last
    if value == _IN_3_DAYS:
        value = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return json.dumps(doc, ensure_ascii=False).encode()  # orjson refuses ints beyond 64 bits


_RT = "includes.tweets.0"
_IN_3_DAYS = "<created_at 3 days ahead>"  # set when the test runs (a stable test id)
_EDITS: list[tuple[str, Any]] = [
    ("data.note_tweet", None), ("data.note_tweet", {"text": "long &amp; full"}),
    ("data.delete", None), ("data.unknown_field", 1), ("data.entities.mentions.0.extra", 1),
    ("includes.users.0.description", "x"), ("data.entities", None), ("data.entities", ...),
    ("data.entities.urls", [{"url": "https://t.co/a", "media_key": None}]),
    ("data.entities.urls", [{"url": "https://t.co/a", "unwound_url": "", "expanded_url": ""}]),
    ("data.entities.urls", [{"expanded_url": "https://WWW.Example.CO.UK:8080/x"}]),
    ("data.entities.urls", [{"url": 5, "unwound_url": "https://x.org/"}]),
    ("data.entities.hashtags", [{"tag": "a", "start": 1e400}]),
    ("data.entities.hashtags", [{"tag": None}]), ("data.entities.hashtags", "x"),
    ("data.id", "0" + "1" * 18), ("data.id", "9" * 20), ("data.id", "0"), ("data.id", -5),
    ("data.id", 1577658245286875136), ("data.id", " 1577658245286875136"),
    ("data.author_id", "0042"), ("data.author_id", None), ("data.author_id", "1_000"),
    ("data.conversation_id", "123"), ("data.conversation_id", ""),
    ("data.edit_history_tweet_ids", []), ("data.edit_history_tweet_ids", ["1", "2"]),
    ("data.edit_history_tweet_ids", [1]), ("data.in_reply_to_user_id", "12"),
    ("data.created_at", "2100-01-01T00:00:00.000Z"), ("data.created_at", "2024-03-05T14:22:31"),
    ("data.created_at", _IN_3_DAYS),
    ("data.created_at", "2024-03-05T16:22:31.123+02:00"), ("data.created_at", None),
    ("data.created_at", ...), ("data.created_at", "yesterday"),
    ("data.public_metrics.like_count", -1), ("data.public_metrics.like_count", 2**63),
    ("data.public_metrics.like_count", None), ("data.public_metrics.like_count", "5"),
    ("data.public_metrics.like_count", 5.0), ("data.public_metrics.like_count", True),
    ("data.public_metrics.bookmark_count", 10**30), ("data.public_metrics", None),
    ("data.possibly_sensitive", None), ("data.possibly_sensitive", 1),
    ("data.lang", None), ("data.lang", ""), ("data.source", None), ("data.source", "<a>A &amp; B</a>"),
    ("data.text", "RT @someone: x &amp; y"), ("data.text", None),
    ("data.referenced_tweets", []), ("data.referenced_tweets", None),
    ("data.referenced_tweets", [{"type": "mystery", "id": 5}]),
    ("data.referenced_tweets", [{"type": "retweeted"}]),
    ("data.referenced_tweets", [{"type": "quoted", "id": "1577658245286875135"},
                                {"type": "replied_to", "id": "1577658245286875134"}]),
    ("data.geo", {"place_id": "nowhere"}), ("data.geo", {"place_id": ""}),
    ("data.geo", {"place_id": "01a9"}), ("includes.places", [{"id": "01a9", "country_code": "us"}]),
    ("data.geo", {"coordinates": {"type": "Point", "coordinates": [1.5, 2.5]}}),
    ("includes", None), ("includes", ...), ("includes.users", None), ("includes.users", []),
    ("includes.tweets", None), ("includes.tweets", [{"id": "1"}]),
    (f"{_RT}.text", "&lt;3 original"), (f"{_RT}.entities", None), (f"{_RT}.entities.mentions", []),
    (f"{_RT}.note_tweet", {"text": "long"}), (f"{_RT}.author_id", 7),
    ("data.text", "not a retweet prefix"), ("matching_rules", None), ("matching_rules", []),
    ("matching_rules", [{"tag": None}, {"tag": ""}, {"tag": "b"}, {"tag": "a"}]),
    ("matching_rules", [{"id": "1"}]), ("matching_rules", "x"), ("errors", [{"title": "x"}]),
    ("data", [{"id": "1577658245286875136", "text": "a"}]), ("data", None),
]


@pytest.mark.parametrize(("path", "value"), _EDITS, ids=[f"{p}={v!r}"[:60] for p, v in _EDITS])
def test_fast_path_matches_reference_on_edited_messages(path: str, value: Any) -> None:
    _assert_same_as_reference(_edited(path, value))


def test_fast_path_takes_messages_with_every_documented_field() -> None:
    doc = _retweet_doc()
    data, inc = doc["data"], doc["includes"]
    data.update(
        context_annotations=[{"domain": {"id": "46", "name": "Business Taxonomy",
                                         "description": "Categories within Brand Verticals"},
                              "entity": {"id": "1557", "name": "Data"}}],
        edit_controls={"edits_remaining": 5, "is_edit_eligible": True,
                       "editable_until": "2024-03-05T15:22:31.000Z"},
        display_text_range=[0, 140], reply_settings="everyone",
        withheld={"copyright": False, "country_codes": ["DE"], "scope": "tweet"},
        attachments={"media_keys": ["3_1"], "poll_ids": ["1199786642468413448"]},
        geo={"coordinates": {"type": "Point", "coordinates": [-73.99, 40.73]}})
    data["entities"]["annotations"] = [{"start": 0, "end": 3, "probability": 0.9,
                                        "type": "Place", "normalized_text": "Paris"}]
    data["entities"]["urls"] = [{"start": 0, "end": 23, "url": "https://t.co/a", "status": 200,
                                 "expanded_url": "https://x.org/a", "title": "T", "description": "D",
                                 "images": [{"url": "https://pbs.twimg.com/a.jpg", "width": 1,
                                             "height": 2}]}]
    inc["users"][0].update(
        created_at="2013-12-14T04:35:55.000Z", description="#data @x", location="Lisboa",
        pinned_tweet_id="1", profile_image_url="https://pbs.twimg.com/p.jpg", protected=False,
        url="https://t.co/b", verified=False, verified_type="none",
        public_metrics={"followers_count": 5, "following_count": 6, "tweet_count": 7,
                        "listed_count": 8, "like_count": 9, "media_count": 1},
        entities={"url": {"urls": [{"start": 0, "end": 23, "url": "https://t.co/b"}]},
                  "description": {"hashtags": [{"start": 0, "end": 5, "tag": "data"}]}})
    inc["media"] = [{"media_key": "3_1", "type": "video", "duration_ms": 1000, "alt_text": "a",
                     "preview_image_url": "https://pbs.twimg.com/v.jpg", "width": 1, "height": 2,
                     "public_metrics": {"view_count": 3},
                     "variants": [{"bit_rate": 1, "content_type": "video/mp4", "url": "https://v"}]}]
    inc["polls"] = [{"id": "1199786642468413448", "voting_status": "closed", "duration_minutes": 5,
                     "end_datetime": "2019-11-28T20:26:41.000Z",
                     "options": [{"position": 1, "label": "a", "votes": 7}]}]
    inc["places"] = [{"id": "01a9", "full_name": "Manhattan, NY", "country": "United States",
                      "country_code": "US", "name": "Manhattan", "place_type": "city",
                      "contained_within": [], "geo": {"type": "Feature", "bbox": [-74.0, 40.6,
                                                                                  -73.9, 40.8],
                                                      "properties": {}}}]
    raw = orjson.dumps(doc)
    assert _parse_v2_fast(raw, time.time() + 86400) is not None
    _assert_same_as_reference(raw)


def test_fast_path_takes_the_last_of_duplicate_includes() -> None:
    doc = _retweet_doc()
    inc, data = doc["includes"], doc["data"]
    inc["users"] += [{**u, "username": u["username"] + "_2"} for u in inc["users"]]
    inc["tweets"] += [{**t, "text": t["text"] + " (2)"} for t in inc["tweets"]]
    data["text"] = "no RT prefix: the handle comes from includes.users"
    data["geo"] = {"place_id": "p1"}
    inc["places"] = [{"id": "p1", "country_code": "fr"}, {"id": "p1", "country_code": "de"}]
    raw = orjson.dumps(doc)
    _assert_same_as_reference(raw)
    t = parse_payload(raw)[0].tweet
    assert t is not None and t.country == "DE" and t.text.endswith(" (2)")


def test_fast_path_matches_reference_on_json_oddities() -> None:
    raw = orjson.dumps(_retweet_doc())
    user_name = orjson.dumps(_retweet_doc()["includes"]["users"][0]["name"])
    variants = [
        raw.replace(user_name, b'"bad \xff utf-8"', 1),  # in a field the fast path ignores
        raw.replace(user_name, b'"\xed\xa0\x80"', 1),  # an encoded surrogate
        raw.replace(user_name, b'"\\ud800"', 1),
        raw.replace(b'"bookmark_count":0', b'"bookmark_count":1e400', 1),
        raw.replace(b'"bookmark_count":0', b'"bookmark_count":' + b"9" * 400, 1),
        raw.replace(b'"bookmark_count":0', b'"bookmark_count":18446744073709551616', 1),
        raw.replace(b'{"data":', b'{"\\u0064ata":', 1),
        raw.replace(b'"text":', b'"\\u0074ext":', 1),
        raw[:-1] + b',"data":' + orjson.dumps(_retweet_doc()["includes"]["tweets"][0]) + b"}",
        raw[:-1] + b',"extra":' + b"[" * 2000 + b"]" * 2000 + b"}",
        raw[:-1] + b',"extra":"\xff"}', raw[:-1] + b',"extra":1e400}',  # what msgspec would skip
        raw + b" \n", b" " + raw, raw + b"x", raw[:-1], b"\xef\xbb\xbf" + raw,
    ]
    for v in variants:
        _assert_same_as_reference(v)


def test_fast_domain_matches_domain() -> None:
    urls = ["https://www.bbc.co.uk/news", "http://WWW.BBC.co.uk", "https://example.com?q=1",
            "https://example.com#x", "https://example.com.", "https://a.b.c.example.com/x/y",
            "https://t.co/abc", "https://localhost/", "http://192.168.0.1/x", "https://user@host.com/",
            "https://host.com:8080/", "https://[::1]/", "https:///path", "https://", "nope",
            "HTTPS://Example.com/", "https://exa\tmple.com/", "https://exämple.de/", "ftp://x.org/",
            "https://x_y.example.org/", "https://-dash-.example.net/", "https://example.com/\n"]
    for url in urls:
        assert _fast_domain(url) == _domain(url), url


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated([orjson.loads(raw) for raw in _SYNTHETIC[:40]]))
def test_fast_path_matches_reference_on_mutated_synthetic_messages(doc: Any) -> None:
    _assert_same_as_reference(json.dumps(doc).encode())


_SNIPPETS = [b"\xff", b"\xed\xa0\x80", b"1e400", b"-", b"\\ud800", b"null", b'"', b"{", b"}", b"[",
             b",", b":", b"0", b"99999999999999999999", b"\\u0041", b"true", b" ", b"\x00"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_SYNTHETIC[:40]), st.integers(0, 2000), st.integers(0, 3),
       st.sampled_from(_SNIPPETS))
def test_fast_path_matches_reference_on_corrupted_bytes(raw: bytes, at: int, cut: int,
                                                        snippet: bytes) -> None:
    at %= len(raw)
    _assert_same_as_reference(raw[:at] + snippet + raw[at + cut:])
