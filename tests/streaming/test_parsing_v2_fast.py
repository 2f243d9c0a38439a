"""streaming.parsing.v2_fast: the msgspec fast path gives exactly what the dict path gives."""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parsing_support import DATA, MALFORMED, PAYLOADS, mutated, needs_fixtures, read_lines

from streaming.parsing import InvalidPayload, parse_payload
from streaming.parsing.dispatch import parse_reference
from streaming.parsing.text_entities import domain
from streaming.parsing.v2_fast import fast_domain, parse_v2_fast
from streaming.synthetic import Burst, generate
from tweetflow.model import Event, Tweet

# --- the v2 fast path gives exactly what the dict path gives ---------------------------------
# parse_payload decodes common v2 stream messages with msgspec (`parse_v2_fast`) and hands
# everything else to the dict path; `parse_reference` is the dict path alone. Same events
# (compared by value and by repr, so a tzinfo or type difference shows), same errors.

_NOW_MS = int(time.time() * 1000)


def _outcome(parse: Callable[[bytes], list[Event]], raw: bytes) -> Any:
    try:
        events = parse(raw)
    except InvalidPayload as exc:
        return ("rejected", str(exc), exc.reason_code)
    return events, repr(events)


def _assert_same_as_reference(raw: bytes) -> None:
    assert _outcome(parse_payload, raw) == _outcome(parse_reference, raw), raw[:300]


def _synthetic(seed: int, count: int, **kwargs: Any) -> list[bytes]:
    start = _NOW_MS - 3 * 3600_000
    return [m[1] for m in generate(seed, start_ms=start, count=count, rate=20, **kwargs)]


_SYNTHETIC = _synthetic(3, 400, bursts=[Burst(_NOW_MS - 3 * 3600_000, _NOW_MS)])


@needs_fixtures
def test_fast_path_matches_reference_on_external_fixtures() -> None:
    payloads = [raw for f in sorted(PAYLOADS.glob("*.jsonl")) for raw in read_lines(f)]
    payloads += [f.read_bytes() for f in sorted((PAYLOADS / "broken").glob("*.json"))]
    assert payloads
    for raw in payloads:
        _assert_same_as_reference(raw)


def test_fast_path_matches_reference_on_own_fixtures() -> None:
    for f in (DATA / "v2_expanded_stream.jsonl", DATA / "deletes.jsonl"):
        for raw in read_lines(f):
            _assert_same_as_reference(raw)
    for _, raw, _, _ in MALFORMED:
        _assert_same_as_reference(raw)


@pytest.mark.parametrize("seed", [1, 2, 7])
def test_fast_path_matches_reference_on_synthetic_stream(seed: int) -> None:
    bursts = [Burst(_NOW_MS - 3 * 3600_000, _NOW_MS - 2 * 3600_000, share=0.5)]
    msgs = _synthetic(seed, 1500, bursts=bursts, delete_fraction=0.03)
    kinds = {"delete": 0, "retweet": 0, "quote": 0, "reply": 0, "original": 0}
    for raw in msgs:
        events = parse_payload(raw)
        assert events == parse_reference(raw) and repr(events) == repr(parse_reference(raw))
        ev = events[0]
        kinds["delete" if ev.tweet is None else ev.tweet.kind] += 1
        if ev.kind == "tweet":  # the fast path took it (else this test would prove nothing)
            fast = parse_v2_fast(raw, time.time() + 86400)
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
    assert parse_v2_fast(raw, time.time() + 86400) is not None
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


def test_fast_path_gives_an_edits_chain_as_the_dict_path_does() -> None:
    """Edits (a history of several ids) take the fast path; a history that is no chain is left to
    the dict path, which rejects it."""
    doc = _retweet_doc()
    own = int(doc["data"]["id"])
    histories = {"edit": [own - 5, own], "original fetched after its edit": [own, own + 5],
                 "not oldest first": [own + 5, own], "without the tweet": [own - 5, own - 1],
                 "unedited": [own]}
    for name, history in histories.items():
        doc["data"]["edit_history_tweet_ids"] = [str(i) for i in history]
        raw = orjson.dumps(doc)
        _assert_same_as_reference(raw)
        fast = parse_v2_fast(raw, time.time() + 86400)
        assert (fast is not None) == ("not" not in name and "without" not in name), name
        if fast is not None:
            assert fast[0].tweet is not None and fast[0].tweet.chain_root_id == history[0], name


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
        assert fast_domain(url) == domain(url), url


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated([orjson.loads(raw) for raw in _SYNTHETIC[:40]]))
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
