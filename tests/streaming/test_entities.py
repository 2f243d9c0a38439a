"""Conformance of streaming.entities with twitter-text's conformance/extract.yml, plus own cases."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import regex
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming import _twitter_text_regex as rx
from streaming import entities as ent

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TWITTER_TEXT = PROJECT_ROOT / ".." / "shared" / "fixtures" / "twitter-text"
EXTRACT_YML = TWITTER_TEXT / "extract.yml"
TLD_LIB_YML = TWITTER_TEXT / "tld_lib.yml"
MISSING_REASON = f"twitter-text fixtures not found at {TWITTER_TEXT} (../shared/fixtures)"


def _indexed(key: str, items: list[Any]) -> list[dict[str, Any]]:
    return [{key: item.text, "indices": list(item.indices)} for item in items]


# What each conformance section calls, rendered the way extract.yml writes `expected`.
RUNNERS: dict[str, Callable[[str], Any]] = {
    "mentions": ent.extract_mentions,
    "mentions_with_indices": lambda t: _indexed(
        "screen_name", ent.extract_mentions_with_indices(t)
    ),
    "mentions_or_lists_with_indices": lambda t: [
        {"screen_name": m.screen_name, "list_slug": m.list_slug, "indices": list(m.indices)}
        for m in ent.extract_mentions_or_lists_with_indices(t)
    ],
    "replies": ent.extract_reply,
    "urls": ent.extract_urls,
    "urls_with_indices": lambda t: _indexed("url", ent.extract_urls_with_indices(t)),
    "urls_with_directional_markers": lambda t: _indexed("url", ent.extract_urls_with_indices(t)),
    "tco_urls_with_params": ent.extract_urls,
    "hashtags": ent.extract_hashtags,
    "hashtags_from_astral": ent.extract_hashtags,
    "hashtags_with_indices": lambda t: _indexed("hashtag", ent.extract_hashtags_with_indices(t)),
    "cashtags": ent.extract_cashtags,
    "cashtags_with_indices": lambda t: _indexed("cashtag", ent.extract_cashtags_with_indices(t)),
}


def _conformance_cases() -> list[Any]:
    if not EXTRACT_YML.is_file():
        return [pytest.param("-", {}, marks=pytest.mark.skip(reason=MISSING_REASON), id="absent")]
    sections = yaml.safe_load(EXTRACT_YML.read_text(encoding="utf-8"))["tests"]
    return [
        pytest.param(section, case, id=f"{section}: {case['description']}")
        for section, cases in sections.items()
        for case in cases
    ]


@pytest.mark.parametrize(("section", "case"), _conformance_cases())
def test_conformance(section: str, case: dict[str, Any]) -> None:
    assert section in RUNNERS, f"no runner for conformance section {section!r}"
    assert RUNNERS[section](case["text"]) == case["expected"]


# --- Upstream conformance cases beyond the fixture subset (twitter-text 3.x extract.yml) --------

UPSTREAM_CASES = [
    ("mentions", "Rt@username Rt:@mention Rt @test", ["username", "mention", "test"]),
    ("mentions", "@aliceìnheiro something something", []),
    ("mentions", "f@@kn", []),
    ("replies", "\u3000@username reply", "username"),
    ("replies", "@@username mention, not a reply", None),
    (
        "urls",
        "text http://en.wikipedia.org/wiki/Primer_(film)",
        ["http://en.wikipedia.org/wiki/Primer_(film)"],
    ),
    ("urls", "test http://example.comだよね.comtest/hogehoge", ["http://example.com"]),
    ("urls", "text http://domain.com-that-you-should-have-put-a-space-after", []),
    ("urls", "Email me at name.al-lastname@foo.com or name.al+lastname@foo.com", []),
    (
        "urls",
        "foo.baz foo.co.jp www.xxxxxxx.baz www.foo.co.uk wwwww.xxxxxxx foo.comm foo.somecom "
        "foo.govedu foo.jp",
        ["foo.co.jp", "www.foo.co.uk", "foo.jp"],
    ),
    ("urls", "@user Try http:// example.com/path", ["example.com/path"]),
    ("urls", "test http://twitter.c_o_m", []),
    ("urls", "I really like http://t.co/pbY2NfTZ's website", ["http://t.co/pbY2NfTZ"]),
    ("urls", "john.doe.gov@mail.com", []),
    (
        "urls_with_indices",
        "test http://xn--ls8h.XN--ls8h.la/",
        [{"url": "http://xn--ls8h.XN--ls8h.la/", "indices": [5, 33]}],
    ),
    ("hashtags", "a \U0001f468\u200d\U0001f469\u200d\U0001f467#hashtag here", ["hashtag"]),
    (
        "hashtags",
        "(#hashtag1 )#hashtag2 [#hashtag3 ]#hashtag4 \u2019#hashtag5\u2019#hashtag6",
        ["hashtag1", "hashtag2", "hashtag3", "hashtag4", "hashtag5", "hashtag6"],
    ),
    ("hashtags", "日本語ハッシュタグ#日本語ハッシュタグ", []),
    (
        "hashtags",
        "#云々 #学問のすゝめ #いすゞ #各〻 #各〃",
        ["云々", "学問のすゝめ", "いすゞ", "各〻", "各〃"],
    ),
    ("hashtags", "http://twitter.com/#hashtag twitter.com/#hashtag", []),
    ("hashtags", "#བོད་སྐད་ #བོད་སྐད", ["བོད་སྐད་", "བོད་སྐད"]),
    ("hashtags_from_astral", "#A\U000104a0", ["A\U000104a0"]),
    ("cashtags", "$123 $test123 $TE123ST", []),
    ("cashtags", "$TEST. $TEST_", ["TEST", "TEST"]),
]


@pytest.mark.parametrize(("section", "text", "expected"), UPSTREAM_CASES)
def test_upstream_conformance(section: str, text: str, expected: Any) -> None:
    assert RUNNERS[section](text) == expected


# --- Own cases ----------------------------------------------------------------------------------


def test_a_tld_followed_by_a_dash_or_plus_ends_no_url() -> None:
    """The reference ends a TLD with the lookahead (?=[^a-z0-9@+-]|$), in every port."""
    assert ent.extract_urls("see example.org+friends and example.net- or https://a.com-b") == []
    assert ent.extract_urls("but example.org/+friends and example.net.") == [
        "example.org/+friends", "example.net"]



def test_indices_count_code_points_after_astral_chars() -> None:
    text = "\U00010400 #tag \U0001f600 @user $ABC \U00020021 http://t.co/x"
    found = ent.extract_entities(text)
    assert [e.indices for e in found.hashtags] == [(2, 6)]
    assert [e.indices for e in found.mentions] == [(9, 14)]
    assert [e.indices for e in found.cashtags] == [(15, 19)]
    assert [e.indices for e in found.urls] == [(22, 35)]
    for entity in (*found.hashtags, *found.mentions, *found.cashtags):
        assert text[entity.indices[0] + 1 : entity.indices[1]] == entity.text


def test_extract_entities_resolves_overlaps_in_favour_of_urls() -> None:
    text = "RT @a: see https://example.com/@bob/#tag?x=$AB #real @list/members $XYZ"
    found = ent.extract_entities(text)
    assert [u.text for u in found.urls] == ["https://example.com/@bob/#tag?x=$AB"]
    assert [h.text for h in found.hashtags] == ["real"]
    assert [m.text for m in found.mentions] == ["a"]  # a list reference is not a mention
    assert [c.text for c in found.cashtags] == ["XYZ"]
    assert ent.extract_mentions_or_lists_with_indices(text)[-1].list_slug == "/members"


def test_entities_are_frozen_and_hashable() -> None:
    found = ent.extract_entities("#a @b $CD e.com")
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.hashtags = ()  # type: ignore[misc]
    assert hash(found) == hash(ent.extract_entities("#a @b $CD e.com"))
    assert ent.extract_entities("") == ent.Entities((), (), (), ())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\u202a@user hi", "user"),  # directional marks before a reply
        ("@user/list hi", "user"),
        ("@userxé hi", None),
        ("", None),
    ],
)
def test_extract_reply(text: str, expected: str | None) -> None:
    assert ent.extract_reply(text) == expected


def test_ascii_classes_do_not_case_fold_unicode() -> None:
    # Python's IGNORECASE would let [a-z] match KELVIN SIGN / LONG S; Java's does not.
    assert ent.extract_mentions("@\u212aelvin @\u017fam") == []
    assert ent.extract_cashtags("$\u212aO") == []


def test_pathological_inputs_finish() -> None:
    # The reference's regexes are prone to runaway backtracking on these shapes.
    dots = "http://example.com/path" + "." * 5000
    assert ent.extract_urls(dots) == ["http://example.com/path"]
    assert ent.extract_hashtags("#" + "1" * 5000 + "a") == ["1" * 5000 + "a"]
    assert ent.extract_urls("a-" * 3000 + ".com") == []
    long_host = "http://" + "あ" * 300 + ".com/x"
    assert ent.extract_urls(long_host) == []  # label > 63 chars once punycoded
    assert ent.extract_entities("@a #b $C x.com " * 300).urls[-1].text == "x.com"


def test_typical_tweet_throughput_smoke() -> None:
    """Runs the hot path many times (no timing assertion: shared CI machines are noisy)."""
    tweet = (
        "RT @NASA: Watch the launch live at https://t.co/AbCdEf1234 #Artemis #SpaceX - it's "
        "happening now! cc @elonmusk $TSLA stock up, more at nasa.gov"
    )
    results = {ent.extract_entities(tweet) for _ in range(500)}
    assert len(results) == 1


# --- TLDs -----------------------------------------------------------------------------------------


def test_tlds_come_from_the_bundled_psl_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the TLD list must load offline")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    tlds = rx._load_tlds()
    assert {"com", "co", "jp", "みんな", "xyz"} <= set(tlds)
    assert tlds == sorted(tlds, key=lambda tld: (-len(tld), tld))


def test_every_psl_tld_is_extracted() -> None:
    missed = [tld for tld in rx.TLDS if ent.extract_urls(f"http://example.{tld}/x") == []]
    assert missed == []


@pytest.mark.skipif(not TLD_LIB_YML.is_file(), reason=MISSING_REASON)
def test_twitter_text_tlds_differ_only_by_retired_ones() -> None:
    """twitter-text's frozen list vs the PSL: the differences are TLDs IANA has since retired."""
    lists = yaml.safe_load(TLD_LIB_YML.read_text(encoding="utf-8"))
    unrecognized = {
        kind: {tld for tld in lists[kind] if ent.extract_urls(f"http://example.{tld}") == []}
        for kind in ("country", "generic")
    }
    # ISO codes never delegated (bl, bq, eh, mf, um) or withdrawn (an, tp).
    assert unrecognized["country"] <= {"an", "bl", "bq", "eh", "mf", "tp", "um"}
    assert not unrecognized["generic"] & {"com", "net", "org", "edu", "gov", "info", "app", "dev"}
    assert len(unrecognized["generic"]) < 0.15 * len(lists["generic"])
    assert unrecognized["generic"] <= set(lists["generic"]) - set(rx.TLDS)


def test_tld_trie_matches_the_flat_alternation() -> None:
    flat = regex.compile("(?i:" + "|".join(map(regex.escape, rx.TLDS)) + ")(?=[^0-9a-zA-Z@]|$)")
    trie = regex.compile(f"(?i:{rx._alternation(rx.TLDS)})(?=[^0-9a-zA-Z@]|$)")
    probes = [*rx.TLDS, *(t + "x" for t in rx.TLDS), *(t[:-1] for t in rx.TLDS), "COM.", "Co/"]
    for probe in probes:
        expected, got = flat.match(probe), trie.match(probe)
        assert (expected and expected.span()) == (got and got.span()), probe


# --- Anchored scanning == plain finditer ----------------------------------------------------------

FRAGMENTS = [
    *"ab xRTrt09.-_/:#@$\uff03\uff20&*!?()'\"…。 \u3000\u00a0\u202a\u2066\ufe0f\u200dé",
    "http://",
    "https://",
    "t.co/",
    "com",
    "co.jp",
    "xn--",
    "みんな",
    "ああ",
    ".tv",
    "✌",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join))
def test_anchored_scans_find_exactly_the_finditer_matches(text: str) -> None:
    def spans(matches: Any) -> list[tuple[tuple[int, int], tuple[Any, ...]]]:
        return [(m.span(), m.groups()) for m in matches]

    assert spans(ent._url_finditer(text)) == spans(rx.VALID_URL.finditer(text))
    for pattern, anchor, lookback in [
        (rx.VALID_HASHTAG, rx.HASH_SIGNS, 1),
        (rx.VALID_MENTION_OR_LIST, rx.AT_SIGN, 4),
        (rx.VALID_CASHTAG, rx.DOLLAR_SIGN, 1),
    ]:
        anchored = ent._anchored_finditer(pattern, anchor, lookback, text)
        assert spans(anchored) == spans(pattern.finditer(text))
