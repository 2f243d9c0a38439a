"""`parse_payload`: size and type checks, the v2 fast path, else JSON decoding and dispatch by
shape to the v1.1, v2 or Bluesky Jetstream parser.

The dict path (`_parse_dicts`) is the source of every error; anything but `InvalidPayload` that
escapes a parser is a bug here and becomes `parser_error`, so a worker never crashes on data.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from streaming.parsing.errors import (
    INVALID_JSON,
    INVALID_UTF8,
    OVERSIZE,
    PARSER_ERROR,
    UNKNOWN_SHAPE,
    WRONG_TYPE,
    InvalidPayload,
)
from streaming.parsing.fields import short, type_name
from streaming.parsing.jetstream import is_jetstream_event, parse_jetstream
from streaming.parsing.v1 import parse_v1_delete, parse_v1_tweet
from streaming.parsing.v2 import parse_v2_message
from streaming.parsing.v2_fast import parse_v2_fast
from tweetflow.model import Event

MAX_PAYLOAD_BYTES = 1 << 20
MAX_FUTURE_SECONDS = 86_400.0


def parse_payload(raw: bytes) -> list[Event]:
    """Parse one Kafka message value into its events (several for a v2 `data` list).

    A common-shape v2 stream message takes the fast path (`parse_v2_fast`); every other payload,
    and every invalid one, the dict-based path, which alone decides on errors.
    """
    if type(raw) is not bytes or len(raw) > MAX_PAYLOAD_BYTES:
        _check_bytes(raw)
    limit = time.time() + MAX_FUTURE_SECONDS
    events = parse_v2_fast(raw, limit)
    return _parse_dicts(raw, limit) if events is None else events


def parse_reference(raw: bytes) -> list[Event]:
    """`parse_payload` without the fast path: the reference the fast path is tested against."""
    _check_bytes(raw)
    return _parse_dicts(raw, time.time() + MAX_FUTURE_SECONDS)


def _check_bytes(raw: Any) -> None:
    if not isinstance(raw, (bytes, bytearray, memoryview)):  # a tuple: `|` builds a Union per call
        raise InvalidPayload(f"payload is a {type(raw).__name__}, expected bytes", WRONG_TYPE)
    size = raw.nbytes if isinstance(raw, memoryview) else len(raw)
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidPayload(f"payload of {size} bytes exceeds the 1 MiB limit", OVERSIZE)


def _parse_dicts(raw: bytes | bytearray | memoryview, limit: float) -> list[Event]:
    """Every accepted format, via orjson's dicts and lists; the source of every error."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _json_error(raw, exc) from None
    try:
        return _dispatch(doc, limit)
    except InvalidPayload:
        raise
    except Exception as exc:  # safety net: a worker must never crash on data
        raise InvalidPayload(f"parser error: {type(exc).__name__}: {exc}", PARSER_ERROR) from exc


def _json_error(raw: bytes | bytearray | memoryview, exc: Exception) -> InvalidPayload:
    try:
        bytes(raw).decode("utf-8")
    except UnicodeDecodeError as err:
        return InvalidPayload(f"invalid UTF-8 at byte {err.start}", INVALID_UTF8)
    return InvalidPayload(f"invalid JSON: {exc}", INVALID_JSON)


def _dispatch(doc: Any, limit: float) -> list[Event]:
    if type(doc) is not dict:
        raise InvalidPayload(f"payload is {type_name(doc)}, expected a JSON object", UNKNOWN_SHAPE)
    if "data" in doc:
        return parse_v2_message(doc, limit)
    if is_jetstream_event(doc):
        return parse_jetstream(doc, limit)
    if "delete" in doc:
        return [parse_v1_delete(doc["delete"])]
    if "id_str" in doc or "id" in doc:
        if "verb" in doc and "actor" in doc:
            raise InvalidPayload("Activity Streams payloads are not supported", UNKNOWN_SHAPE)
        if "user" not in doc and ("edit_history_tweet_ids" in doc or "author_id" in doc):
            raise InvalidPayload(
                "bare v2 Tweet object: expected a stream message {\"data\": {...}}", UNKNOWN_SHAPE)
        tweet = parse_v1_tweet(doc, limit)
        return [Event("tweet", tweet.tweet_id, tweet)]
    if "errors" in doc:
        raise InvalidPayload(f"v2 message has only errors: {short(doc['errors'], 200)}",
                             UNKNOWN_SHAPE)
    raise InvalidPayload("payload is not a Tweet, a v2 stream message or a delete event",
                         UNKNOWN_SHAPE)
