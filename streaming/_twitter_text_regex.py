"""Compiled twitter-text patterns (port of twitter-text 3.x ``Regex.java`` / ``regex.rb``).

The structure and character sets follow the reference implementation one to one, so that the
upstream conformance suite (``conformance/extract.yml``) holds. Deliberate deviations, each
noted where it happens:

* ASCII classes are spelled ``[a-zA-Z]`` instead of using a global IGNORECASE flag: Python's
  Unicode case folding would let ``[a-z]`` match U+212A KELVIN SIGN or U+017F LONG S, which
  Java's ``CASE_INSENSITIVE`` (ASCII-only) never does.
* ``regex`` supports union inside character classes only in V1 mode, so Java's nested sets
  (``[[...]\\-]``) are written as alternations.
* The TLD list comes from the Public Suffix List snapshot bundled with ``tldextract`` (offline)
  rather than twitter-text's frozen ``tld_lib.yml``.
"""

from __future__ import annotations

import regex
import tldextract

# --- Character sets (bodies, without the surrounding brackets) ------------------------------

INVALID_CHARS = "\\ufffe\\ufeff\\uffff"
DIRECTIONAL_CHARS = "\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069"
UNICODE_SPACES = (
    "\\x09-\\x0d\\x20\\x85\\xa0\\u1680\\u180e\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
)
ASCII_CONTROL = "\\x00-\\x1f\\x7f"
# Latin-1, Latin Extended A/B, some IPA, Hawaiian okina, combining diacritics, Latin Extended
# Additional. Excludes U+00D7 and U+00F7 (multiplication/division signs).
LATIN_ACCENTS = (
    "\\xc0-\\xd6\\xd8-\\xf6\\xf8-\\xff\\u0100-\\u024f\\u0253\\u0254\\u0256\\u0257\\u0259"
    "\\u025b\\u0263\\u0268\\u026f\\u0272\\u0289\\u028b\\u02bb\\u0300-\\u036f\\u1e00-\\u1eff"
)
CYRILLIC = "\\u0400-\\u04ff"
AT_SIGNS = "@\\uff20"
# ASCII punctuation as in Regex.java's PUNCTUATION_CHARS, escaped for use inside a class.
PUNCTUATION = "\\-_!\"#$%&'()*+,./:;<=>?@\\[\\]^`{|}~"

# Hashtag letters: \p{L}\p{M} plus the extras twitter-text generated for older Unicode
# versions. Against the Unicode tables of `regex` every extra is already L/M except this
# private-use block, which is kept for fidelity. All numeral extras are \p{Nd} by now.
HASHTAG_LETTERS_AND_MARKS = (
    "\\p{L}\\p{M}\\uf870-\\uf87f\\uf882\\uf884-\\uf89f\\uf8b8\\uf8c1-\\uf8d6"
)
HASHTAG_NUMERALS = "\\p{Nd}"
HASHTAG_SPECIAL_CHARS = (
    "_"  # underscore
    "\\u200c\\u200d"  # zero width non-joiner / joiner
    "\\ua67e"  # Cyrillic kavyka
    "\\u05be\\u05f3\\u05f4"  # Hebrew maqaf, geresh, gershayim
    "\\uff5e\\u301c"  # fullwidth tilde, wave dash
    "\\u309b\\u309c\\u30a0\\u30fb"  # kana voiced marks, double hyphen, middle dot
    "\\u3003"  # ditto mark
    "\\u0f0b\\u0f0c"  # Tibetan tsheg marks
    "\\u00b7"  # middle dot
)
HASHTAG_ALNUM = HASHTAG_LETTERS_AND_MARKS + HASHTAG_NUMERALS + HASHTAG_SPECIAL_CHARS


def _load_tlds() -> list[str]:
    """Top-level labels of the bundled PSL snapshot, longest first (never touches the network)."""
    extractor = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    labels = {suffix.rsplit(".", 1)[-1].lstrip("*!").lower() for suffix in extractor.tlds}
    labels.discard("")
    return sorted(labels, key=lambda tld: (-len(tld), tld))


def _alternation(words: tuple[str, ...]) -> str:
    """Prefix-factored alternation of ``words`` (a trie), preferring longer words.

    Equivalent to ``"|".join(words)`` under the TLD lookahead, but ~10x faster: ``regex`` tries
    the branches of a flat 1,400-word alternation one by one.
    """
    trie: dict[str, dict] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}  # end of a word

    def build(node: dict[str, dict]) -> str:
        branches = [regex.escape(char) + build(child) for char, child in node.items() if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if "" in node:  # a word ends here: the longer words are optional, tried first
            body = (body if len(branches) > 1 or len(body) == 1 else f"(?:{body})") + "?"
        return body

    return build(trie)


TLDS: tuple[str, ...] = tuple(_load_tlds())

# --- Hashtags ---------------------------------------------------------------------------------

VALID_HASHTAG = regex.compile(
    f"(^|\\ufe0e|\\ufe0f|[^&{HASHTAG_ALNUM}])"  # 1: preceding char (VS15/VS16 are marks)
    "([#\\uff03])"  # 2: hash sign
    "(?![\\ufe0f\\u20e3])"  # not a keycap emoji
    f"([{HASHTAG_ALNUM}]*[{HASHTAG_LETTERS_AND_MARKS}][{HASHTAG_ALNUM}]*)"  # 3: tag
)
INVALID_HASHTAG_MATCH_END = regex.compile("[#\\uff03]|://")
HASH_SIGNS = regex.compile("[#\\uff03]")

# --- Mentions, lists and replies -------------------------------------------------------------

VALID_MENTION_OR_LIST = regex.compile(
    f"(^|[^a-zA-Z0-9_!#$%&*{AT_SIGNS}]|(?:^|[^a-zA-Z0-9_+~.\\-])[rR][tT]:?)"  # 1: preceding
    f"([{AT_SIGNS}])"  # 2: at sign (a single one, as in the JS and Ruby ports)
    "([a-zA-Z0-9_]{1,20})"  # 3: screen name
    "(/[a-zA-Z][a-zA-Z0-9_\\-]{0,24})?"  # 4: list slug
)
# Regex.java writes the directional marks as a sequence here; the Ruby port (a class) is meant.
VALID_REPLY = regex.compile(
    f"^[{UNICODE_SPACES}{DIRECTIONAL_CHARS}]*[{AT_SIGNS}]([a-zA-Z0-9_]{{1,20}})"
)
INVALID_MENTION_MATCH_END = regex.compile(f"[{AT_SIGNS}{LATIN_ACCENTS}]|://")
AT_SIGN = regex.compile(f"[{AT_SIGNS}]")

# --- Cashtags ---------------------------------------------------------------------------------

VALID_CASHTAG = regex.compile(
    f"(^|[{UNICODE_SPACES}{DIRECTIONAL_CHARS}])"  # 1: preceding space or start
    "(\\$)"  # 2: dollar sign
    "([a-zA-Z]{1,6}(?:[._][a-zA-Z]{1,2})?)"  # 3: symbol
    "(?=$|\\s|[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~])"  # Java's \p{Punct} is ASCII
)

DOLLAR_SIGN = regex.compile("\\$")

# --- URLs ---------------------------------------------------------------------------------------

_URL_VALID_PRECEDING_CHARS = (
    f"(?:[^a-zA-Z0-9@\\uff20$#\\uff03{INVALID_CHARS}]|[{DIRECTIONAL_CHARS}]|^)"
)
_URL_CHARS = f"a-zA-Z0-9{LATIN_ACCENTS}"
_URL_VALID_SUBDOMAIN = f"(?>(?:[{_URL_CHARS}][{_URL_CHARS}\\-_]*)?[{_URL_CHARS}]\\.)"
_URL_VALID_DOMAIN_NAME = f"(?:(?:[{_URL_CHARS}][{_URL_CHARS}\\-]*)?[{_URL_CHARS}]\\.)"
# Any non-space, non-punctuation character (Java: [^PUNCT\s\p{Z}\p{InGeneralPunctuation}]);
# control, invalid and directional characters are excluded too, as in the Ruby port.
_URL_UNICODE_CHAR = (
    f"[^{PUNCTUATION}\\s\\p{{Z}}\\u2000-\\u206f{ASCII_CONTROL}{INVALID_CHARS}{DIRECTIONAL_CHARS}]"
)
_URL_VALID_UNICODE_DOMAIN_NAME = (
    f"(?:(?:{_URL_UNICODE_CHAR}(?:{_URL_UNICODE_CHAR}|-)*)?{_URL_UNICODE_CHAR}\\.)"
)
_URL_PUNYCODE = "(?:[xX][nN]--[\\-0-9a-zA-Z]+)"
# A TLD ends where the reference ports end it, (?=[^a-z0-9@+-]|$) (Regex.java, validGTLD.js):
# a letter, digit, '@', '+' or '-' after it means it was no TLD ("http://domain.com-that-..." and
# "name.al+lastname@foo.com" hold no URL, as in twitter-text's conformance/extract.yml). Unicode
# case-insensitivity of the TLD itself matches the JS/Ruby ports.
_URL_VALID_TLD = f"(?:(?i:{_alternation(TLDS)})(?=[^0-9a-zA-Z@+\\-]|$))"
_PROTOCOL = "[hH][tT][tT][pP][sS]?://"
_URL_VALID_DOMAIN = (
    # optional sub-domains + domain + TLD, e.g. twitter.com, foo.co.jp, t.co
    f"(?:{_URL_VALID_SUBDOMAIN}*{_URL_VALID_DOMAIN_NAME}(?:{_URL_VALID_TLD}|{_URL_PUNYCODE}))"
    # protocol + unicode domain + TLD, e.g. http://ああ.com
    f"|(?:(?<={_PROTOCOL}){_URL_VALID_UNICODE_DOMAIN_NAME}{_URL_VALID_TLD})"
    # Regex.java's other two alternatives (domain + ccTLD after a protocol or before '/') are
    # subsumed by the first one once gTLDs and ccTLDs share one list.
)
_URL_PATH_CHARS = f"a-zA-Z0-9!*';:=+,.$/%#\\[\\]\\-\\u2013_~|&@{LATIN_ACCENTS}{CYRILLIC}"
_G = f"[{_URL_PATH_CHARS}]"
# Up to two nested levels of balanced parens: /Primer_(film), /S(dfd346)/, /a_(b_(c))/
_URL_BALANCED_PARENS = f"\\((?:{_G}+|(?:{_G}*\\({_G}+\\){_G}*))\\)"
# Valid end-of-path characters, so /foo. does not gobble the period.
_URL_PATH_ENDING = f"(?:[a-zA-Z0-9=_#/\\-+{LATIN_ACCENTS}{CYRILLIC}]|{_URL_BALANCED_PARENS})"
_URL_VALID_PATH = f"(?:(?:{_G}*(?:{_URL_BALANCED_PARENS}{_G}*)*{_URL_PATH_ENDING})|(?:@{_G}+/))"
_URL_QUERY_CHARS = "[a-zA-Z0-9!?*'();:&=+$/%#\\[\\]\\-_.,~|@]"
_URL_QUERY_ENDING_CHARS = "[a-zA-Z0-9\\-_&=#/]"

VALID_URL = regex.compile(
    f"(?P<before>{_URL_VALID_PRECEDING_CHARS})"
    "(?P<url>"
    f"(?P<protocol>{_PROTOCOL})?"
    f"(?P<domain>{_URL_VALID_DOMAIN})"
    "(?::(?P<port>[0-9]++))?"
    f"(?P<path>/{_URL_VALID_PATH}*+)?"
    f"(?P<query>\\?{_URL_QUERY_CHARS}*{_URL_QUERY_ENDING_CHARS})?"
    ")"
)
# Speed-up anchors (not in the reference): every URL match contains one of these TLD dots, and
# its domain is a run of characters outside URL_DOMAIN_BREAK, possibly after a protocol.
URL_TLD_DOT = regex.compile(f"\\.(?:{_URL_VALID_TLD}|{_URL_PUNYCODE})")
URL_DOMAIN_BREAK = regex.compile("(?r)[\\s!\"#$%&'()*+,/:;<=>?@\\[\\]^`{|}~]")
URL_PROTOCOL = regex.compile(_PROTOCOL)
VALID_TCO_URL = regex.compile(
    f"{_PROTOCOL}[tT]\\.[cC][oO]/(?P<slug>[a-zA-Z0-9]+)"
    f"(?:\\?{_URL_QUERY_CHARS}*{_URL_QUERY_ENDING_CHARS})?"
)
INVALID_URL_WITHOUT_PROTOCOL_PRECEDING_CHARS = frozenset("-_./")
