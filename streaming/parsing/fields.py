"""Typed access to decoded JSON: each getter returns the value or raises `InvalidPayload` that
names the field, its type and the reason code.

Why by hand: orjson gives dicts and lists; these checks (`type(v) is typ`, no isinstance, no
schema library) are the dict path's cheapest way to reject exactly what does not fit, with a
message a dead-letter reader can act on. `null` counts as absent; any other mismatch is rejected.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any, NoReturn

from streaming.parsing.errors import INVALID_VALUE, MISSING_FIELD, WRONG_TYPE, InvalidPayload
from tweetflow.model import TweetKind
from tweetflow.schema import COUNT_LIMIT

ID_LIMIT = 1 << 63
_JSON_TYPE_NAMES = {dict: "an object", list: "an array", str: "a string", int: "an integer",
                    float: "a number", bool: "a boolean", type(None): "null"}


def type_name(v: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(v), type(v).__name__)


def short(v: Any, n: int = 60) -> str:
    r = repr(v)
    return r if len(r) <= n else r[: n - 3] + "..."


def wrong(what: str, v: Any, expected: type) -> NoReturn:
    raise InvalidPayload(f"{what} is {type_name(v)}, expected {_JSON_TYPE_NAMES[expected]}",
                         WRONG_TYPE)


def opt(obj: dict, key: str, typ: type, where: str) -> Any:
    """obj[key] if it has type `typ`, None if absent or null; anything else is rejected."""
    v = obj.get(key)
    if v is None or type(v) is typ:
        return v
    wrong(f"{where} '{key}'", v, typ)


def req(obj: dict, key: str, typ: type, where: str) -> Any:
    v = obj.get(key)
    if type(v) is typ:
        return v
    if v is None:
        raise InvalidPayload(f"{where} has no '{key}'", MISSING_FIELD)
    wrong(f"{where} '{key}'", v, typ)


def parse_id(v: Any, what: str) -> int:
    """A positive id below 2**63 from a decimal string or an integer."""
    t = type(v)
    if t is str:
        if not (v.isascii() and v.isdigit() and len(v) <= 19):
            raise InvalidPayload(f"{what} {short(v)} is not an integer", INVALID_VALUE)
        n = int(v)
    elif t is int:
        n = v
    else:
        raise InvalidPayload(f"{what} {short(v)} is not an integer", WRONG_TYPE)
    if 0 < n < ID_LIMIT:
        return n
    raise InvalidPayload(f"{what} {n} is not between 1 and 2**63-1", INVALID_VALUE)


def opt_id(obj: dict, key: str, what: str) -> int:
    v = obj.get(key)
    return 0 if v is None else parse_id(v, what)


def id_str_first(obj: dict, key: str, what: str) -> int:
    """v1.1 ids: `<key>_str` first, as JSON numbers above 2**53 lose digits in many producers."""
    v = obj.get(key + "_str")
    if v is None:
        v = obj.get(key)
    return 0 if v is None else parse_id(v, what)


def count(obj: dict, key: str, where: str, limit: int = COUNT_LIMIT) -> int:
    """A public metric. Why the limit: the raw table stores engagement counts as UInt32, so a
    larger value (no Tweet has 4 billion likes) is bad data for the dead-letter topic, not a
    row that would fail the batch's insert again and again."""
    v = obj.get(key)
    if v is None:
        return 0
    if type(v) is not int:
        wrong(f"{where} '{key}'", v, int)
    if 0 <= v < limit:
        return v
    raise InvalidPayload(f"{where} '{key}' {v} is not a count (0 to {limit - 1})", INVALID_VALUE)


def epoch_ms(v: Any, what: str) -> int:
    """Milliseconds since the Unix epoch from a decimal string or an integer."""
    if type(v) is int and v >= 0:
        return v
    if type(v) is str and v.isascii() and v.isdigit() and len(v) <= 16:
        return int(v)
    raise InvalidPayload(f"{what} {short(v)} is not a millisecond timestamp",
                         INVALID_VALUE if type(v) in (int, str) else WRONG_TYPE)


def matching_rules(doc: dict) -> tuple[str, ...]:
    rules = opt(doc, "matching_rules", list, "payload")
    if not rules:
        return ()
    tags = []
    for r in rules:
        if type(r) is not dict:
            wrong("'matching_rules' item", r, dict)
        tag = opt(r, "tag", str, "matching rule")
        if tag:
            tags.append(tag)
    return tuple(tags)


def id_list(v: Any, where: str, key: str) -> tuple[int, ...]:
    if v is None:
        return ()
    if type(v) is not list:
        wrong(f"{where} '{key}'", v, list)
    return tuple(parse_id(x, f"{where} '{key}' item") for x in v)


def is_edit_chain(ids: tuple[int, ...], tweet_id: int) -> bool:
    """An edit history X can send: empty (not given), or its versions' ids, oldest (the chain's
    root) first, listing the Tweet itself. Anything else would give the chain a wrong root."""
    return not ids or (tweet_id in ids and all(a < b for a, b in pairwise(ids)))


def edit_chain(v: Any, tweet_id: int, where: str, key: str) -> tuple[int, ...]:
    """The Tweet's edit history (v2 `edit_history_tweet_ids`, v1.1 `edit_tweet_ids`)."""
    ids = id_list(v, where, key)
    if is_edit_chain(ids, tweet_id):
        return ids
    raise InvalidPayload(f"{where} '{key}' {short(list(ids))} is not an edit chain of Tweet "
                         f"{tweet_id} (its versions' ids, oldest first)", INVALID_VALUE)


def tweet_kind(retweeted: bool, quoted: bool, replied: bool) -> TweetKind:
    if retweeted:
        return "retweet"
    if quoted:
        return "quote"
    return "reply" if replied else "original"


def flag(obj: dict, key: str, where: str) -> bool:
    return bool(opt(obj, key, bool, where))
