"""Which failures of a store are about the data it was given, and which are about the store.

Why it matters: the batch processor retries a failed write until it succeeds, which is right when
the store is down, slow or overloaded (the same rows will go in later) and wrong when the store
refuses the rows themselves: retrying those stalls their partitions for ever. So a sink turns an
error about the data into `RowsRejected`, which the processor never retries: it splits the batch
until the refused messages are alone and dead-letters them with the store's own words
(streaming/pipeline.py).

What counts as "about the data" is a short list of ClickHouse error codes, each of which names a
value or a block the server cannot store whatever its state: input it cannot parse, a value out of
its column's range, a CHECK constraint, a block spanning more partitions than it takes at once (a
smaller block goes in, so splitting alone resolves it), a query's own memory limit. Anything else
is retried: the server down or overloaded (TOO_MANY_SIMULTANEOUS_QUERIES, the server's total
memory, too many parts awaiting merges), timeouts, and also configuration errors such as a missing
table or a wrong password, where every row would fail and dead-lettering them all would empty the
stream into the DLQ. `RowsNotStored` (an acknowledged INSERT whose rows cannot be read back) is
the server's fault, never the data's: retried.
"""

from __future__ import annotations

import re

from clickhouse_connect.driver.exceptions import DatabaseError

REJECTED_BY_STORE = "rejected_by_store"  # the dead letters' reason_code
REASON_CHARS = 2_000  # a Kafka header, not a log: the start of the server's message is enough

# ClickHouse error codes (src/Common/ErrorCodes.cpp) that are about the rows of an INSERT.
DATA_ERRORS = {
    6: "CANNOT_PARSE_TEXT",
    25: "CANNOT_PARSE_ESCAPE_SEQUENCE",
    26: "CANNOT_PARSE_QUOTED_STRING",
    27: "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
    38: "CANNOT_PARSE_DATE",
    41: "CANNOT_PARSE_DATETIME",
    53: "TYPE_MISMATCH",
    69: "ARGUMENT_OUT_OF_BOUND",
    70: "CANNOT_CONVERT_TYPE",
    72: "CANNOT_PARSE_NUMBER",
    117: "INCORRECT_DATA",
    130: "CANNOT_READ_ARRAY_FROM_TEXT",
    131: "TOO_LARGE_STRING_SIZE",
    190: "SIZES_OF_ARRAYS_DONT_MATCH",
    321: "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
    349: "CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN",
    395: "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO",
    407: "DECIMAL_OVERFLOW",
    469: "VIOLATED_CONSTRAINT",
}
# Codes shared by a data error and a server condition, told apart by the message.
TOO_MANY_PARTS, MEMORY_LIMIT_EXCEEDED = 252, 241
_BLOCK_TOO_WIDE = "partitions for single INSERT block"  # not "Too many parts ... merges"
_QUERY_MEMORY = re.compile(r"Memory limit \(for (query|user)\)")  # not "(total)": the server's
_SERVER_WORDS = re.compile(r"Code: \d+\..*", re.S)
_CLIENT_TRAILER = re.compile(r"\s*\(for url [^)]*\)\s*$")


class RowsRejected(Exception):
    """A store refused the rows it was given, for a reason retrying cannot change."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.code = reason, code


def rejection(exc: BaseException) -> RowsRejected | None:
    """`exc` as a RowsRejected when ClickHouse refused the data; None when it should be retried."""
    if isinstance(exc, RowsRejected):
        return exc
    if not isinstance(exc, DatabaseError) or exc.code is None:
        return None
    message = str(exc)
    if exc.code in DATA_ERRORS or (
            exc.code == TOO_MANY_PARTS and _BLOCK_TOO_WIDE in message) or (
            exc.code == MEMORY_LIMIT_EXCEEDED and _QUERY_MEMORY.search(message)):
        return RowsRejected(server_words(message), exc.code)
    return None


def server_words(message: str) -> str:
    """The server's own message ("Code: 469. DB::Exception: ..."), without clickhouse-connect's
    wrapping or the request's URL, cut to REASON_CHARS."""
    found = _SERVER_WORDS.search(message)
    words = _CLIENT_TRAILER.sub("", found.group(0) if found else message)
    return words[:REASON_CHARS]
