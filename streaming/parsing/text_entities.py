"""A Tweet's text, source, entities and URL domains, whichever format it came in.

Entities come from the payload when it has them, else from `streaming.entities.extract_entities`
(the twitter-text rules) on the text; either way the parser sees the same `EntityTexts`. Domains
come from tldextract's bundled Public Suffix List snapshot (no network), cached per URL and host.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

import tldextract

from streaming.entities import extract_entities
from streaming.parsing.fields import opt, req, wrong

# suffix_list_urls=() and cache_dir=None: use the bundled snapshot, never the network or disk.
_TLD_EXTRACT = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def unescape(s: str) -> str:
    """Undo the API's escaping of exactly '&', '<', '>' (html.unescape would also decode
    entities the author typed literally, which the API leaves as written)."""
    if "&" in s:
        return s.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return s


@lru_cache(maxsize=1024)
def source_text(s: str) -> str:
    """'<a href="...">Twitter Web Client</a>' -> 'Twitter Web Client'; plain text stays.
    By hand: the API's anchor is fixed-form, an HTML parser would cost 100x more per Tweet.
    Cached: a stream has a few hundred distinct client names."""
    if s.startswith("<"):
        gt, lt = s.find(">"), s.rfind("<")
        if 0 < gt < lt:
            s = s[gt + 1 : lt]
    return unescape(s)


def _texts(ents: dict, key: str, field: str, where: str) -> tuple[str, ...]:
    items = opt(ents, key, list, where)
    if not items:
        return ()
    out = []
    for it in items:
        if type(it) is not dict:
            wrong(f"{where} '{key}' item", it, dict)
        out.append(req(it, field, str, f"{where} '{key}' item"))
    return tuple(out)


def _urls(ents: dict, where: str) -> tuple[str, ...]:
    items = opt(ents, "urls", list, where)
    if not items:
        return ()
    out = []
    w = where + " 'urls' item"
    for it in items:
        if type(it) is not dict:
            wrong(w, it, dict)
        if "media_key" in it:
            continue
        url = opt(it, "unwound_url", str, w)
        if url is None:
            unwound = opt(it, "unwound", dict, w)
            url = unwound and opt(unwound, "url", str, w)
        out.append(url or opt(it, "expanded_url", str, w) or req(it, "url", str, w))
    return tuple(out)


class EntityTexts:
    """Entity texts of one Tweet, whichever way they were obtained."""

    __slots__ = ("cashtags", "hashtags", "mentions", "urls")

    def __init__(self, hashtags: tuple[str, ...], mentions: tuple[str, ...],
                 cashtags: tuple[str, ...], urls: tuple[str, ...]) -> None:
        self.hashtags, self.mentions, self.cashtags, self.urls = hashtags, mentions, cashtags, urls


def _payload_entities(ents: dict, v2: bool, where: str) -> EntityTexts:
    w = where + " entities"
    if v2:
        return EntityTexts(_texts(ents, "hashtags", "tag", w),
                         _texts(ents, "mentions", "username", w),
                         _texts(ents, "cashtags", "tag", w), _urls(ents, w))
    return EntityTexts(_texts(ents, "hashtags", "text", w),
                     _texts(ents, "user_mentions", "screen_name", w),
                     _texts(ents, "symbols", "text", w), _urls(ents, w))


def extracted_entities(text: str) -> EntityTexts:
    e = extract_entities(text)  # its texts come without the '#', '@', '$' sign
    return EntityTexts(tuple(x.text for x in e.hashtags), tuple(x.text for x in e.mentions),
                     tuple(x.text for x in e.cashtags), tuple(x.text for x in e.urls))


def entity_texts(ents: dict | None, text: str, v2: bool, where: str) -> EntityTexts:
    return extracted_entities(text) if ents is None else _payload_entities(ents, v2, where)


@lru_cache(maxsize=65536)
def domain(url: str) -> str:
    """Registered domain ('bbc.co.uk'), else the host itself (IP addresses, 'localhost')."""
    try:
        host = urlsplit(url if "://" in url else "http://" + url).hostname
    except ValueError:
        return ""
    return host_domain(host) if host else ""


@lru_cache(maxsize=16384)
def host_domain(host: str) -> str:
    """The registered domain of a host, lower case; cached: URLs rarely repeat, their hosts do."""
    r = _TLD_EXTRACT.extract_str(host)
    return (r.top_domain_under_public_suffix or host).lower()
