"""Entity extraction from Tweet text, conforming to twitter-text (``conformance/extract.yml``).

Used for Tweets that arrive without an ``entities`` object. The extraction logic is a port of
twitter-text's ``Extractor`` (Java/JS/Ruby); the patterns live in ``_twitter_text_regex``. It is
hand-written because no maintained PyPI package covers it: ``twitter-text-parser`` ports only
``parse_tweet``/URL extraction with a frozen TLD list, ``twitter-text-python`` is a 1.x port.

Indices are ``(start, end)`` in Unicode code points (Python ``str`` indices), as twitter-text
reports them; the span includes the leading ``#``/``@``/``$`` sign.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import regex

from streaming import _twitter_text_regex as rx

__all__ = [
    "Entities",
    "Entity",
    "MentionOrList",
    "extract_cashtags",
    "extract_cashtags_with_indices",
    "extract_entities",
    "extract_hashtags",
    "extract_hashtags_with_indices",
    "extract_mentions",
    "extract_mentions_or_lists_with_indices",
    "extract_mentions_with_indices",
    "extract_reply",
    "extract_urls",
    "extract_urls_with_indices",
]

MAX_URL_LENGTH = 4096
"""Longest URL (with protocol, host punycode-encoded) the Twitter backend accepts."""
MAX_TCO_SLUG_LENGTH = 40
_DEFAULT_PROTOCOL_LENGTH = len("https://")
_NO_PROTOCOL_INVALID_PRECEDING_CHARS = rx.INVALID_URL_WITHOUT_PROTOCOL_PRECEDING_CHARS


@dataclass(frozen=True, slots=True)
class Entity:
    """A hashtag, mention, cashtag or URL: ``text`` without its sign, URLs as written."""

    text: str
    indices: tuple[int, int]


@dataclass(frozen=True, slots=True)
class MentionOrList:
    """An ``@screen_name`` or ``@screen_name/list-slug``; ``list_slug`` is ``''`` or ``'/slug'``."""

    screen_name: str
    list_slug: str
    indices: tuple[int, int]

    @property
    def text(self) -> str:
        return self.screen_name


@dataclass(frozen=True, slots=True)
class Entities:
    """All entities of a Tweet, overlaps resolved like twitter-text's extractEntitiesWithIndices."""

    hashtags: tuple[Entity, ...]
    mentions: tuple[Entity, ...]
    cashtags: tuple[Entity, ...]
    urls: tuple[Entity, ...]


_Spanned = Entity | MentionOrList


# --- Anchored scanning ----------------------------------------------------------------------
# Equivalent to ``pattern.finditer(text)``, but the (costly, position-by-position) pattern search
# starts only a few characters before the next anchor every match must contain: a '#', '@', '$'
# or a '.'+TLD. Matches cannot start earlier, so the results are identical (tested).


def _anchored_finditer(
    pattern: regex.Pattern[str], anchor: regex.Pattern[str], lookback: int, text: str
) -> Iterator[regex.Match[str]]:
    """Matches of ``pattern`` that start at most ``lookback`` chars before an ``anchor``."""
    pos = 0
    while (hit := anchor.search(text, pos)) is not None:
        match = pattern.search(text, max(pos, hit.start() - lookback))
        if match is None:
            return
        yield match
        pos = match.end()


def _url_finditer(text: str) -> Iterator[regex.Match[str]]:
    """``VALID_URL.finditer(text)``, starting each search at the domain before a '.'+TLD."""
    pos = 0
    while (dot := rx.URL_TLD_DOT.search(text, pos)) is not None:
        brk = rx.URL_DOMAIN_BREAK.search(text, pos, dot.start())  # last non-domain char
        start = brk.end() if brk is not None else pos
        for length in (7, 8):  # "http://", "https://" right before the domain
            if start - length >= pos and rx.URL_PROTOCOL.fullmatch(text, start - length, start):
                start -= length
                break
        match = rx.VALID_URL.search(text, max(pos, start - 1))  # -1: the preceding char
        if match is None:
            return
        yield match
        pos = match.end()


# --- URLs ---------------------------------------------------------------------------------------


def _is_valid_host_and_length(url_length: int, protocol: str | None, host: str) -> bool:
    """RFC 3490 host check (labels of 1..63 chars once punycoded) and the 4096-char URL limit.

    Python's ``idna`` codec implements IDNA 2003 with unassigned code points allowed, the same
    algorithm as ``java.net.IDN.toASCII(host, ALLOW_UNASSIGNED)`` used by the reference.
    """
    try:
        ascii_host = host.encode("idna")
    except UnicodeError:
        return False
    if not ascii_host:
        return False
    url_length += len(ascii_host) - len(host)
    if not protocol:
        url_length += _DEFAULT_PROTOCOL_LENGTH
    return url_length <= MAX_URL_LENGTH


def extract_urls_with_indices(text: str) -> list[Entity]:
    """URLs with and without protocol (the latter only on a known TLD), as written."""
    if not text or "." not in text:  # every URL has a dot before its TLD
        return []
    urls: list[Entity] = []
    for match in _url_finditer(text):
        protocol = match.group("protocol")
        if not protocol and match.group("before") in _NO_PROTOCOL_INVALID_PRECEDING_CHARS:
            continue  # ".foo.com", "-foo.com", "_foo.com", "/foo.com"
        url = match.group("url")
        start, end = match.span("url")
        if protocol:
            tco = rx.VALID_TCO_URL.match(url)
            if tco is not None:
                # t.co slugs are alphanumeric: drop trailing path chars, reject overlong slugs.
                if len(tco.group("slug")) > MAX_TCO_SLUG_LENGTH:
                    continue
                url = tco.group(0)
                end = start + len(url)
        if _is_valid_host_and_length(len(url), protocol, match.group("domain")):
            urls.append(Entity(url, (start, end)))
    return urls


def extract_urls(text: str) -> list[str]:
    """URLs as written (see ``extract_urls_with_indices``)."""
    return [entity.text for entity in extract_urls_with_indices(text)]


# --- Hashtags -----------------------------------------------------------------------------------


def _hashtags(text: str) -> list[Entity]:
    if not text or ("#" not in text and "\uff03" not in text):
        return []
    tags: list[Entity] = []
    for match in _anchored_finditer(rx.VALID_HASHTAG, rx.HASH_SIGNS, 1, text):
        if rx.INVALID_HASHTAG_MATCH_END.match(text, match.end()):
            continue  # "#foo#bar" or "#http://..."
        tags.append(Entity(match.group(3), (match.start(2), match.end(3))))
    return tags


def extract_hashtags_with_indices(text: str) -> list[Entity]:
    """Hashtags (without ``#``) that are not part of a URL."""
    tags = _hashtags(text)
    if tags:
        urls = extract_urls_with_indices(text)
        if urls:
            kept = {id(e) for e in _remove_overlapping([*tags, *urls])}
            tags = [e for e in tags if id(e) in kept]
    return tags


def extract_hashtags(text: str) -> list[str]:
    """Hashtags without ``#`` (see ``extract_hashtags_with_indices``)."""
    return [entity.text for entity in extract_hashtags_with_indices(text)]


# --- Mentions, lists and replies ---------------------------------------------------------------


def extract_mentions_or_lists_with_indices(text: str) -> list[MentionOrList]:
    """``@screen_name`` mentions and ``@screen_name/list`` references."""
    if not text or ("@" not in text and "\uff20" not in text):
        return []
    found: list[MentionOrList] = []
    # lookback 4: the preceding char may be "xRT:" before the at sign
    for match in _anchored_finditer(rx.VALID_MENTION_OR_LIST, rx.AT_SIGN, 4, text):
        if rx.INVALID_MENTION_MATCH_END.match(text, match.end()):
            continue  # "@user@host", "@useré", "@http://"
        slug = match.group(4) or ""
        end = match.end(4) if slug else match.end(3)
        found.append(MentionOrList(match.group(3), slug, (match.start(3) - 1, end)))
    return found


def extract_mentions_with_indices(text: str) -> list[Entity]:
    """Screen-name mentions; list references (``@user/list``) are not mentions."""
    return [
        Entity(m.screen_name, m.indices)
        for m in extract_mentions_or_lists_with_indices(text)
        if not m.list_slug
    ]


def extract_mentions(text: str) -> list[str]:
    """Mentioned screen names without ``@`` (see ``extract_mentions_with_indices``)."""
    return [entity.text for entity in extract_mentions_with_indices(text)]


def extract_reply(text: str) -> str | None:
    """The screen name a Tweet replies to: an ``@mention`` preceded only by spaces."""
    if not text:
        return None
    match = rx.VALID_REPLY.match(text)
    if match is None or rx.INVALID_MENTION_MATCH_END.match(text, match.end()):
        return None
    return match.group(1)


# --- Cashtags -----------------------------------------------------------------------------------


def extract_cashtags_with_indices(text: str) -> list[Entity]:
    """``$SYMBOL`` cashtags (1-6 ASCII letters, optional ``.xx``/``_xx`` suffix)."""
    if not text or "$" not in text:
        return []
    return [
        Entity(match.group(3), (match.start(2), match.end(3)))
        for match in _anchored_finditer(rx.VALID_CASHTAG, rx.DOLLAR_SIGN, 1, text)
    ]


def extract_cashtags(text: str) -> list[str]:
    """Cashtags without ``$`` (see ``extract_cashtags_with_indices``)."""
    return [entity.text for entity in extract_cashtags_with_indices(text)]


# --- All entities -------------------------------------------------------------------------------


def _remove_overlapping(entities: list[_Spanned]) -> list[_Spanned]:
    """Keep the earliest-starting entity of any overlap (a URL over a #tag/@mention in it)."""
    kept: list[_Spanned] = []
    for entity in sorted(entities, key=lambda e: e.indices[0]):  # stable: earlier-listed wins
        if not kept or kept[-1].indices[1] <= entity.indices[0]:
            kept.append(entity)
    return kept


def extract_entities(text: str) -> Entities:
    """Hashtags, mentions, cashtags and URLs of ``text``, with no two entities overlapping."""
    urls = extract_urls_with_indices(text)
    hashtags = _hashtags(text)
    mentions = extract_mentions_or_lists_with_indices(text)
    cashtags = extract_cashtags_with_indices(text)
    if len(urls) + len(hashtags) + len(mentions) + len(cashtags) > 1:
        kept = {id(e) for e in _remove_overlapping([*urls, *hashtags, *mentions, *cashtags])}
        urls = [e for e in urls if id(e) in kept]
        hashtags = [e for e in hashtags if id(e) in kept]
        mentions = [e for e in mentions if id(e) in kept]
        cashtags = [e for e in cashtags if id(e) in kept]
    return Entities(
        hashtags=tuple(hashtags),
        mentions=tuple(Entity(m.screen_name, m.indices) for m in mentions if not m.list_slug),
        cashtags=tuple(cashtags),
        urls=tuple(urls),
    )
