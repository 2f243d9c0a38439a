"""streaming.parsing: anything that is not an accepted payload is an InvalidPayload with a reason a
DLQ reader can act on, and never any other exception."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parsing_support import MALFORMED, json_values, mutated

from streaming.parsing import PARSER_ERROR, InvalidPayload, parse_payload
from tweetflow.model import Event


def test_invalid_payload_pickles_with_its_code() -> None:
    err = pickle.loads(pickle.dumps(InvalidPayload("boom", "wrong_type")))
    assert (str(err), err.reason_code) == ("boom", "wrong_type")
    assert isinstance(err, ValueError)


@pytest.mark.parametrize(("raw", "code", "message"), [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
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


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_invalid_payload(raw: bytes) -> None:
    _parses_or_rejects(raw)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_only_raises_invalid_payload(doc: Any) -> None:
    _parses_or_rejects(json.dumps(doc).encode())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_valid_payloads_only_raise_invalid_payload(doc: Any) -> None:
    _parses_or_rejects(json.dumps(doc).encode())
