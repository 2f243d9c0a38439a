"""Connect JSON for the AnalyticsService core, which speaks protobuf wire bytes only.

A JSON request is turned into wire bytes once (parsed with google.protobuf's json_format,
serialized deterministically, so the same question asked in JSON and in binary shares one cache
entry) and the mapping is kept; an answer is encoded to canonical proto3 JSON (int64/uint64 as
strings, RFC 3339 timestamps, durations as "3600s", enums by name, lowerCamelCase names) once per
in-process cache entry (ResultCache.local_json). So a JSON cache hit costs two dict look-ups and no
JSON work: google.protobuf's JSON printer (MessageToJson) measured ~80 us for a 10-hashtag answer,
MessageToDict + orjson (used here) ~40 us, either more than the rest of a hit.
"""

from __future__ import annotations

from collections import OrderedDict

from google.protobuf import json_format
from google.protobuf.message import Message

from query_service.errors import QueryError, Status
from query_service.service import AnalyticsService
from tweetflow.json_bytes import dumps_kept
from tweetflow.v1 import analytics_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["AnalyticsService"]
MAX_REMEMBERED_REQUESTS = 4096


def _message_class(name: str) -> type[Message]:
    return getattr(pb, name)


MESSAGE_TYPES: dict[str, tuple[type[Message], type[Message]]] = {
    m.name: (_message_class(m.input_type.name), _message_class(m.output_type.name))
    for m in SERVICE.methods}


def to_json(message: Message) -> bytes:
    """Canonical proto3 JSON of a message (compact), sized to keep in the answer cache."""
    return dumps_kept(json_format.MessageToDict(message))


def wire_from_json(method: str, body: bytes) -> bytes:
    """The request's wire bytes; QueryError(INVALID_ARGUMENT) when `body` is not a valid request.
    Unknown fields are ignored, as Connect's own JSON codecs do; an empty body means `{}`."""
    request = MESSAGE_TYPES[method][0]()
    try:
        json_format.Parse(body or b"{}", request, ignore_unknown_fields=True)
    except (json_format.ParseError, UnicodeDecodeError) as exc:
        raise QueryError(Status.INVALID_ARGUMENT,
                         f"the request is not a valid {request.DESCRIPTOR.name} in JSON: {exc}"
                         ) from exc
    return request.SerializeToString(deterministic=True)


class JsonAnswers:
    """The core's answers to JSON requests, in JSON."""

    def __init__(self, service: AnalyticsService) -> None:
        self.service = service
        self._wire: OrderedDict[tuple[str, bytes], bytes] = OrderedDict()

    def cached(self, method: str, body: bytes) -> bytes | None:
        """The in-process cached answer in JSON, or None (no I/O, no parsing)."""
        wire = self._wire.get((method, body))
        if wire is None:
            return None
        return self.service.b.cache.local_json(method, wire, self.encode)

    async def answer(self, method: str, body: bytes, timeout: float | None) -> bytes:
        """The answer in JSON (QueryError as the core raises it)."""
        payload = await self.service.answer(method, self.wire_request(method, body), timeout)
        return self.encode(method, payload)

    def wire_request(self, method: str, body: bytes) -> bytes:
        key = (method, body)
        wire = self._wire.get(key)
        if wire is None:
            wire = self._wire[key] = wire_from_json(method, body)
            if len(self._wire) > MAX_REMEMBERED_REQUESTS:
                self._wire.popitem(last=False)
        return wire

    @staticmethod
    def encode(method: str, payload: bytes) -> bytes:
        return to_json(MESSAGE_TYPES[method][1].FromString(payload))
