"""The HTTP side of ClickHouse's wire contract, free of any engine: bodies, codecs, SQL boundaries.

Why hand-written: these are the few rules of ClickHouse's HTTP interface (where INSERT data starts,
which codecs a body may use, which status an error maps to) that no library implements; everything
else (HTTP framing, compression codecs, the SQL engine) comes from the stdlib, lz4, zstandard, chDB.
"""

from __future__ import annotations

import base64
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import lz4.frame
import zstandard

CHUNK_SIZE = 1 << 20

# Where the real server maps an error name to an HTTP status (exceptionCodeToHTTPStatus.cpp).
_STATUS_BY_NAME: dict[int, str] = {
    401: "REQUIRED_PASSWORD",
    403: "UNKNOWN_USER WRONG_PASSWORD AUTHENTICATION_FAILED SET_NON_GRANTED_ROLE ACCESS_DENIED",
    400: "BAD_ARGUMENTS CANNOT_COMPILE_REGEXP CANNOT_PARSE_TEXT CANNOT_PARSE_ESCAPE_SEQUENCE "
         "CANNOT_PARSE_QUOTED_STRING CANNOT_PARSE_DATE CANNOT_PARSE_DATETIME CANNOT_PARSE_NUMBER "
         "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING CANNOT_PARSE_IPV4 CANNOT_PARSE_IPV6 "
         "CANNOT_PARSE_INPUT_ASSERTION_FAILED CANNOT_PARSE_UUID DUPLICATE_COLUMN ILLEGAL_COLUMN "
         "UNKNOWN_ELEMENT_IN_AST UNKNOWN_TYPE_OF_AST_NODE THERE_IS_NO_COLUMN TOO_DEEP_AST "
         "TOO_BIG_AST UNEXPECTED_AST_STRUCTURE SYNTAX_ERROR INCORRECT_DATA TYPE_MISMATCH "
         "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
    404: "UNKNOWN_TABLE UNKNOWN_FUNCTION UNKNOWN_IDENTIFIER UNKNOWN_TYPE UNKNOWN_STORAGE "
         "UNKNOWN_DATABASE UNKNOWN_SETTING UNKNOWN_DIRECTION_OF_SORTING UNKNOWN_AGGREGATE_FUNCTION "
         "UNKNOWN_FORMAT UNKNOWN_DATABASE_ENGINE UNKNOWN_TYPE_OF_QUERY UNKNOWN_ROLE",
    413: "QUERY_IS_TOO_LARGE", 501: "NOT_IMPLEMENTED", 411: "HTTP_LENGTH_REQUIRED",
    503: "SOCKET_TIMEOUT CANNOT_OPEN_FILE CANNOT_SCHEDULE_TASK", 408: "TIMEOUT_EXCEEDED",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def http_status(error_name: str) -> int:
    """The HTTP status the real server answers for an error name (500 when unlisted)."""
    return next((s for s, names in _STATUS_BY_NAME.items() if error_name in names.split()), 500)


# ---------------------------------------------------------------- credentials


def credentials(headers: Mapping[str, str], params: Mapping[str, str]) -> tuple[str, str]:
    """(user, password) from X-ClickHouse-* headers, Basic auth or URL params, like the server."""
    if "X-ClickHouse-User" in headers or "X-ClickHouse-Key" in headers:
        return headers.get("X-ClickHouse-User", "default"), headers.get("X-ClickHouse-Key", "")
    auth = headers.get("Authorization", "")
    if auth[:6].lower() == "basic ":
        user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        return user, password
    return params.get("user", "default"), params.get("password", "")


# ---------------------------------------------------------------- request bodies


def read_body(rfile: BinaryIO, headers: Mapping[str, str]) -> Iterator[bytes]:
    """The raw request body in chunks, from Content-Length or chunked transfer encoding."""
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        while size := int(_line(rfile).split(b";", 1)[0].strip() or b"0", 16):
            chunk = rfile.read(size)
            if len(chunk) < size:
                raise ConnectionError("request body ended early")
            yield chunk
            rfile.readline()  # the CRLF closing the chunk
        while rfile.readline() not in (b"\r\n", b"\n", b""):  # trailer headers, if any
            pass
        return
    remaining = int(headers.get("Content-Length") or 0)
    while remaining > 0:
        chunk = rfile.read(min(remaining, CHUNK_SIZE))
        if not chunk:
            raise ConnectionError("request body ended early")
        remaining -= len(chunk)
        yield chunk


def _line(rfile: BinaryIO) -> bytes:
    """A chunk-size line; the connection closing before the last (zero) chunk is an error, so a
    body cut short is never taken for a whole one."""
    line = rfile.readline()
    if not line:
        raise ConnectionError("request body ended early")
    return line


_DECOMPRESSORS: dict[str, Callable[[], Any]] = {
    "gzip": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
    "x-gzip": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
    "deflate": lambda: zlib.decompressobj(),
    "zstd": lambda: zstandard.ZstdDecompressor().decompressobj(),
    "lz4": lz4.frame.LZ4FrameDecompressor,
}


def decompress(chunks: Iterable[bytes], encoding: str) -> Iterator[bytes]:
    """Decode a Content-Encoding body chunk by chunk; raises ValueError for an unknown codec."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return iter(chunks)
    if encoding not in _DECOMPRESSORS:
        raise ValueError(f"Unsupported Content-Encoding: {encoding}")
    return _decoded(chunks, _DECOMPRESSORS[encoding])


def _decoded(chunks: Iterable[bytes], new: Callable[[], Any]) -> Iterator[bytes]:
    decoder = new()
    for chunk in chunks:
        while chunk:
            if out := decoder.decompress(chunk):
                yield out
            # clickhouse-connect compresses each block as its own frame: start a new one.
            chunk = decoder.unused_data if decoder.eof else b""
            if decoder.eof:
                decoder = new()


# ---------------------------------------------------------------- response compression


class _LZ4Frames:
    """lz4.frame's streaming compressor with the compressobj interface of zlib and zstandard."""

    def __init__(self) -> None:
        self._frames = lz4.frame.LZ4FrameCompressor()
        self._started = False

    def compress(self, data: bytes) -> bytes:
        head = b"" if self._started else self._frames.begin()
        self._started = True
        return head + self._frames.compress(data)

    def flush(self) -> bytes:
        return self.compress(b"") + self._frames.flush()


# Streaming compressors: `compress(chunk)` as a response is written, `flush()` at its end.
_COMPRESSORS: dict[str, Callable[[], Any]] = {
    "gzip": lambda: zlib.compressobj(wbits=16 + zlib.MAX_WBITS),
    "deflate": zlib.compressobj,
    "zstd": lambda: zstandard.ZstdCompressor().compressobj(),
    "lz4": _LZ4Frames,
}


def response_encoding(accept_encoding: str) -> str | None:
    """The first codec the client accepts that we can produce, in the client's order."""
    for item in accept_encoding.split(","):
        name = item.split(";", 1)[0].strip().lower()
        if name in _COMPRESSORS:
            return name
    return None


def compressor(encoding: str) -> Any:
    """A streaming compressor for a Content-Encoding named by `response_encoding`."""
    return _COMPRESSORS[encoding]()


# ---------------------------------------------------------------- SQL boundaries


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CLOSING_QUOTE = {"'": re.compile(r"(?:[^'\\]|\\.|'')*'", re.S),
                  '"': re.compile(r'(?:[^"\\]|\\.|"")*"', re.S),
                  "`": re.compile(r"(?:[^`\\]|\\.|``)*`", re.S)}


def sql_words(text: str) -> Iterator[tuple[str, int, int, int]]:
    """(WORD, start, end, paren depth) for bare words, skipping literals, quoted names, comments."""
    i, depth, n = 0, 0, len(text)
    while i < n:
        c = text[i]
        if c in _CLOSING_QUOTE:
            m = _CLOSING_QUOTE[c].match(text, i + 1)
            i = m.end() if m else n
        elif text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c in "([{":
            depth, i = depth + 1, i + 1
        elif c in ")]}":
            depth, i = depth - 1, i + 1
        elif (m := _WORD.match(text, i)) and (i == 0 or text[i - 1] not in ".$0123456789"):
            yield m.group().upper(), i, m.end(), depth
            i = m.end()
        else:
            i += 1


@dataclass(frozen=True)
class InsertData:
    """An `INSERT ... FORMAT name` statement and the offset where its inline data begins."""

    statement: str
    format: str
    data_offset: int


NEED_MORE = "need-more"
_FORMAT_NAME = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)")
_DATA_START = re.compile(r"[ \t]*(?:\r?\n)?")  # the server skips blanks and one line break
_TRAILING_FORMAT = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:;\s*$|$|SETTINGS\b)", re.I)


def split_insert(head: bytes, complete: bool) -> InsertData | str | None:
    """Split `INSERT ... FORMAT X <data>` where the server does; None for any other statement.

    Returns NEED_MORE when `head` is an unfinished prefix of the body and the split point may lie
    beyond it. Offsets are byte offsets (latin-1 keeps one char per byte while scanning).
    """
    text = head.decode("latin-1")
    words = sql_words(text)
    first = next(words, None)
    if first is None or first[0] != "INSERT":
        return None if (first or complete) else NEED_MORE
    previous, previous_end = "INSERT", first[2]
    for word, start, end, depth in words:
        if depth == 0 and word in ("VALUES", "SELECT", "WITH"):
            return None
        names_table = previous in ("INTO", "TABLE") and not text[previous_end:start].strip()
        if depth == 0 and word == "FORMAT" and not names_table:  # `INSERT INTO format ...`
            name = _FORMAT_NAME.match(text, end)
            if name is None or (name.end() == len(text) and not complete):
                return None if complete else NEED_MORE
            offset = _DATA_START.match(text, name.end()).end()  # type: ignore[union-attr]
            return InsertData(head[:start].decode().strip(), name.group(1), offset)
        previous, previous_end = word, end
    return None if complete else NEED_MORE


def from_infile(statement: str, path: str, fmt: str) -> str:
    """`INSERT INTO t [(cols)] FROM INFILE 'path' [SETTINGS ...] FORMAT fmt` from a split INSERT.

    FROM INFILE goes before a SETTINGS clause, as the grammar wants. `path` is made by the caller
    (never user input) but is quoted all the same.
    """
    settings_at = next((start for word, start, _end, depth in sql_words(statement)
                        if depth == 0 and word == "SETTINGS"), len(statement))
    parts = (statement[:settings_at].strip(), f"FROM INFILE {sql_string(path)}",
             statement[settings_at:].strip(), f"FORMAT {fmt}")
    return " ".join(part for part in parts if part)


def sql_string(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def output_format(sql: str) -> str | None:
    """The format named by a trailing `FORMAT X` clause of a query, if it has one."""
    found = None
    for word, _start, end, depth in sql_words(sql):
        if depth == 0 and word == "FORMAT" and (match := _TRAILING_FORMAT.match(sql, end)):
            found = match.group(1)
    return found


def content_type(fmt: str) -> str:
    """The Content-Type the server sends for an output format."""
    name = fmt.lower()
    if name.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if name.startswith("csv"):
        return "text/csv; charset=UTF-8; header=absent"
    if name.startswith("json") or name.startswith("ndjson"):
        return "application/json; charset=UTF-8"
    if name.startswith(("pretty", "vertical", "markdown", "values", "template", "raw")):
        return "text/plain; charset=UTF-8"
    return "application/octet-stream"
