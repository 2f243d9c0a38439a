"""Shared by the parser's tests: fixture locations, payload builders, the malformed-input table and
the hypothesis strategies that mutate valid payloads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import strategies as st

from streaming.parsing import MAX_PAYLOAD_BYTES

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PAYLOADS = PROJECT_ROOT / ".." / "shared" / "fixtures" / "payloads"
DATA = PROJECT_ROOT / "tests" / "data"
needs_fixtures = pytest.mark.skipif(
    not PAYLOADS.is_dir(),
    reason=f"external fixtures not found at {PAYLOADS} (../shared/fixtures beside the project)")


def read_lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def v1_doc(**over: Any) -> dict[str, Any]:
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


def to_bytes(doc: Any) -> bytes:
    return orjson.dumps(doc)


_FUTURE = (datetime.now(UTC) + timedelta(days=3)).strftime("%a %b %d %H:%M:%S +0000 %Y")
MALFORMED: list[tuple[str, bytes, str, str]] = [
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
    ("v1 missing id", to_bytes(v1_doc(id=None, id_str=None)), "missing_field", "no 'id_str' or 'id'"),
    ("v1 missing user", to_bytes(v1_doc(user=None)), "missing_field", "v1.1 Tweet has no 'user' object"),
    ("v1 missing created_at", to_bytes(v1_doc(created_at=None)), "missing_field", "'created_at'"),
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
    ("v1 user not an object", to_bytes(v1_doc(user="api")), "wrong_type", "'user' is a string"),
    ("v1 entities wrong", to_bytes(v1_doc(entities={"hashtags": "x"})), "wrong_type", "'hashtags'"),
    ("metrics wrong", b'{"data": {"id": "1577658245286875136", "text": "x", '
     b'"public_metrics": {"like_count": "5"}}}', "wrong_type", "'like_count'"),
    ("bad created_at", to_bytes(v1_doc(created_at="yesterday")), "invalid_value", "created_at"),
    ("v2 naive created_at", b'{"data": {"id": "1577658245286875136", "text": "x", '
     b'"created_at": "2022-10-05T12:00:00"}}', "invalid_value", "no time zone"),
    ("far future v1", to_bytes(v1_doc(created_at=_FUTURE)), "future_timestamp",
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


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=12)


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
    return [json.loads(line) for f in files for line in read_lines(f)]


VALID_DOCS = _valid_docs()


@st.composite
def mutated(draw: st.DrawFn, pool: list[Any] = VALID_DOCS) -> Any:
    """A valid payload with one value anywhere inside replaced by arbitrary JSON (or removed)."""
    doc = json.loads(json.dumps(draw(st.sampled_from(pool))))
    path = draw(st.sampled_from(_paths(doc)))
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(json_values)
    return doc
