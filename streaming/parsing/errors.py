"""Why a message was rejected: `InvalidPayload` and its reason codes.

Every failure of the parser is an `InvalidPayload`: a consumer must never crash on data, only route
the message to the dead-letter queue with a `reason_code` for headers and metrics.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "FUTURE_TIMESTAMP",
    "INVALID_JSON",
    "INVALID_UTF8",
    "INVALID_VALUE",
    "MISSING_FIELD",
    "OVERSIZE",
    "PARSER_ERROR",
    "UNKNOWN_SHAPE",
    "WRONG_TYPE",
    "InvalidPayload",
]

# reason codes (DLQ headers, metrics labels)
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
OVERSIZE = "oversize"
UNKNOWN_SHAPE = "unknown_shape"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
INVALID_VALUE = "invalid_value"
FUTURE_TIMESTAMP = "future_timestamp"
PARSER_ERROR = "parser_error"  # a bug in this module, never an input's fault


class InvalidPayload(ValueError):
    """A message that cannot become an Event; `str()` says exactly what is wrong."""

    def __init__(self, reason: str, reason_code: str = UNKNOWN_SHAPE) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reason_code = reason_code

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, self.reason_code))
