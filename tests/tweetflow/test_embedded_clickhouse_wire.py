"""ClickHouse's own wire formats over HTTP, as the JDBC driver and clickhouse-go use them: the
`compress=1`/`decompress=1` block framing (CityHash128 checksums, LZ4/ZSTD/none) and Native output at
the revision a client announces in `client_protocol_version`.

Responses are decoded with clickhouse-driver's own readers (its decompressors and Native block
reader), an implementation independent of the endpoint's.
"""

from __future__ import annotations

import gzip
import http.client
import io
import struct
from contextlib import suppress
from typing import Any
from urllib.parse import urlencode

import pytest
import zstandard
from clickhouse_cityhash.cityhash import CityHash128
from clickhouse_driver.bufferedreader import CompressedBufferedReader  # type: ignore[import-not-found]
from clickhouse_driver.compression import get_decompressor_cls
from clickhouse_driver.compression.base import BaseCompressor, BaseDecompressor
from clickhouse_driver.compression.lz4 import Compressor as LZ4Compressor
from clickhouse_driver.connection import ServerInfo
from clickhouse_driver.context import Context
from clickhouse_driver.reader import read_binary_uint8, read_binary_uint128
from clickhouse_driver.streams.native import BlockInputStream
from endpoint_support import Endpoint

CLICKHOUSE_GO_REVISION = "54460"  # what clickhouse-go v2 sends as client_protocol_version


class ZstdCompressor(BaseCompressor):  # type: ignore[misc]
    """clickhouse-driver's ZSTD codec needs the `zstd` package; the same on `zstandard`."""

    method_byte = 0x90

    def compress_data(self, data: bytes) -> bytes:
        return zstandard.compress(data)


class ZstdDecompressor(BaseDecompressor):  # type: ignore[misc]
    method_byte = 0x90

    def decompress_data(self, data: bytes, uncompressed_size: int) -> bytes:
        return zstandard.ZstdDecompressor().decompress(data, max_output_size=uncompressed_size)


def _unframe(body: bytes) -> bytes:
    """The data inside ClickHouse compressed blocks, checksums verified by clickhouse-driver."""
    stream, out = io.BytesIO(body), []
    while stream.tell() < len(body):
        checksum = read_binary_uint128(stream)
        method = read_binary_uint8(stream)
        codec = ZstdDecompressor if method == 0x90 else get_decompressor_cls(method)
        out.append(codec(stream).get_decompressed_data(method, checksum, 1))
    return b"".join(out)


def _frame(data: bytes, compressor: Any = LZ4Compressor) -> bytes:
    """One compressed block as clickhouse-driver writes it."""
    comp = compressor()
    comp.write(data)
    block = bytes([comp.method_byte]) + comp.get_compressed_data(1)
    digest = CityHash128(block)
    return struct.pack("<QQ", digest >> 64, digest & (2**64 - 1)) + block


def _native_blocks(body: bytes, revision: int) -> list[Any]:
    """Native blocks decoded by clickhouse-driver as a client at `revision`."""
    ctx = Context()
    ctx.server_info = ServerInfo("ClickHouse", 26, 9, 2, revision, "UTC", "x", revision)
    ctx.settings = {}
    ctx.client_settings = {"strings_as_bytes": False, "strings_encoding": "utf-8",
                           "use_numpy": False, "input_format_null_as_default": False,
                           "namedtuple_as_json": False}
    pending = [body]

    def next_chunk() -> bytes:
        if not pending:
            raise EOFError
        return pending.pop()

    reader, blocks = BlockInputStream(CompressedBufferedReader(next_chunk, 1 << 16), ctx), []
    while True:
        try:
            blocks.append(reader.read())
        except EOFError:
            return blocks


def _rows(blocks: list[Any]) -> list[tuple[Any, ...]]:
    return [tuple(row) for block in blocks for row in block.get_rows()]


def test_compress_1_frames_the_response_in_checksummed_lz4_blocks(endpoint: Endpoint) -> None:
    status, body, headers = endpoint.request(
        query="SELECT number FROM numbers(100000) FORMAT TSV", compress="1")
    assert status == 200, body
    assert body[16] == 0x82  # LZ4, the server's default network_compression_method
    assert _unframe(body) == b"".join(b"%d\n" % i for i in range(100000))
    assert "Content-Encoding" not in headers


def test_compress_1_with_zstd_as_the_network_method(endpoint: Endpoint) -> None:
    status, body, _ = endpoint.request(query="SELECT 'zstd' FORMAT TSV", compress="1",
                                       network_compression_method="zstd")
    assert (status, body[16]) == (200, 0x90)
    assert _unframe(body) == b"zstd\n"


@pytest.mark.parametrize("compressor", [LZ4Compressor, ZstdCompressor])
def test_decompress_1_reads_framed_insert_data(endpoint: Endpoint, table: str,
                                               compressor: Any) -> None:
    rows = b"".join(b"%d\trow %d\n" % (i, i) for i in range(20000))
    half = len(rows) // 2
    body = _frame(rows[:half], compressor) + _frame(rows[half:], compressor)
    status, answer, _ = endpoint.request(body=body, query=f"INSERT INTO {table} (id, s) FORMAT TSV",
                                         decompress="1")
    assert status == 200, answer
    assert endpoint.client().query(f"SELECT count(), sum(id) FROM {table}").result_rows == [
        (20000, sum(range(20000)))]


def test_decompress_1_reads_a_framed_query(endpoint: Endpoint) -> None:
    status, body, _ = endpoint.request(body=_frame(b"SELECT 6 * 7"), decompress="1")
    assert (status, body) == (200, b"42\n")


def test_a_corrupted_block_is_refused_and_nothing_is_stored(endpoint: Endpoint,
                                                            table: str) -> None:
    framed = bytearray(_frame(b"1\tone\n"))
    framed[-1] ^= 0xFF
    status, body, headers = endpoint.request(
        body=bytes(framed), query=f"INSERT INTO {table} (id, s) FORMAT TSV", decompress="1")
    assert status == 500 and headers["X-ClickHouse-Exception-Code"] == "40", body
    assert b"(CHECKSUM_DOESNT_MATCH)" in body
    assert endpoint.client().command(f"SELECT count() FROM {table}") == 0


def test_errors_are_plain_text_even_when_compress_1(endpoint: Endpoint) -> None:
    status, body, headers = endpoint.request(query="SELECT * FROM no_such_table", compress="1")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (404, "60")
    assert body.startswith(b"Code: 60. DB::Exception:")


TYPED = (
    "SELECT number AS n, toString(number) AS s, [toString(number), 'x'] AS arr, "
    "if(number % 2 = 0, NULL, number / 2) AS maybe, toLowCardinality(toString(number % 3)) AS lc, "
    "toDateTime64('2024-01-02 03:04:05.678', 3, 'UTC') AS ts, map('k', number) AS m, "
    "tuple(number, 'y') AS tup, CAST('b', 'Enum8(\\'a\\' = 1, \\'b\\' = 2)') AS e, "
    "toFixedString('ab', 2) AS fs, toDecimal64(number, 2) AS dec, "
    "[toLowCardinality(toNullable(toString(number)))] AS lca, toUUID('00000000-0000-0000-0000-"
    "000000000001') AS u FROM numbers({rows:UInt32})"
)


@pytest.mark.parametrize("revision", [0, 54460, 54483])
def test_native_output_at_the_announced_revision(endpoint: Endpoint, revision: int) -> None:
    status, body, _ = endpoint.request(query=TYPED, param_rows="3", default_format="Native",
                                       client_protocol_version=str(revision))
    assert status == 200, body
    rows = _rows(_native_blocks(body, revision))
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        (0, "0", ["0", "x"], None, "0"), (1, "1", ["1", "x"], 0.5, "1"),
        (2, "2", ["2", "x"], None, "2")]
    first = rows[0]
    assert first[5].isoformat() == "2024-01-02T03:04:05.678000+00:00"
    assert first[6:11] == ({"k": 0}, (0, "y"), "b", "ab", 0)
    assert (first[11], str(first[12])) == (["0"], "00000000-0000-0000-0000-000000000001")


def test_native_at_a_revision_inside_compressed_blocks(endpoint: Endpoint) -> None:
    """What clickhouse-go sends with LZ4 compression on: Native, a revision and compress=1."""
    status, body, _ = endpoint.request(
        query="SELECT number, toString(number) FROM numbers(70000)", default_format="Native",
        client_protocol_version=CLICKHOUSE_GO_REVISION, compress="1")
    assert status == 200, body
    rows = _rows(_native_blocks(_unframe(body), int(CLICKHOUSE_GO_REVISION)))
    assert len(rows) == 70000 and rows[69999] == (69999, "69999")


EDGES = (
    "SELECT NULL AS nothing, repeat('z', 300 + number) AS long_string, "
    "arrayMap(x -> toLowCardinality(toString(x)), range(number)) AS lc_maybe_empty, "
    "[[number], []] AS nested, CAST(tuple(1.5, 2.5), 'Point') AS pt, toIPv4('10.0.0.1') AS ip4, "
    "toIPv6('::1') AS ip6, number % 2 = 0 AS flag, toDate32('2100-01-01') AS far, "
    "CAST(map(number, [toString(number)]), 'Map(UInt64, Array(String))') AS m2, "
    "toInt256(number) - 5 AS big, CAST((number, 'n'), 'Tuple(a UInt64, `b c` String)') AS named "
    "FROM numbers(3)"
)


def test_native_reframing_keeps_every_value(endpoint: Endpoint) -> None:
    """Columns whose byte length depends on their values: re-framed, they decode as at revision 0."""
    decoded = []
    for revision in (0, int(CLICKHOUSE_GO_REVISION)):
        status, body, _ = endpoint.request(query=EDGES, default_format="Native",
                                           client_protocol_version=str(revision))
        assert status == 200, body
        decoded.append(_rows(_native_blocks(body, revision)))
    assert decoded[0] == decoded[1] and len(decoded[0]) == 3
    assert decoded[1][2][2] == ["0", "1"] and len(decoded[1][2][1]) == 302


def test_native_refuses_a_type_it_cannot_reframe(endpoint: Endpoint) -> None:
    status, body, headers = endpoint.request(
        query="SELECT 1::Variant(UInt8, String) AS v", default_format="Native",
        client_protocol_version=CLICKHOUSE_GO_REVISION)
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (501, "48"), body


MANY = "SELECT number FROM numbers(3000000) FORMAT TSV"
MANY_TSV_BYTES = sum(len(b"%d\n" % i) for i in range(3000000))


def _raw_get(endpoint: Endpoint, **params: str) -> tuple[int, dict[str, str], bytes]:
    """A GET read to the end of the connection's response, however it ends: (status, headers,
    body so far); a body cut short raises inside http.client, so read it chunk by chunk."""
    accept = params.pop("_accept", "")
    conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=60)
    try:
        conn.request("GET", "/?" + urlencode(params), headers={"Accept-Encoding": accept})
        resp = conn.getresponse()
        parts = []
        with suppress(http.client.IncompleteRead, ConnectionError):
            while chunk := resp.read1(1 << 16):
                parts.append(chunk)
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, b"".join(parts)
    finally:
        conn.close()


def test_a_large_result_streams_in_chunks(endpoint: Endpoint) -> None:
    status, headers, body = _raw_get(endpoint, query=MANY)
    assert (status, headers.get("transfer-encoding")) == (200, "chunked")
    assert len(body) == MANY_TSV_BYTES and body.endswith(b"\n2999999\n")


def test_a_streamed_result_in_compressed_blocks_and_gzip(endpoint: Endpoint) -> None:
    status, _, framed = _raw_get(endpoint, query=MANY, compress="1")
    assert status == 200 and len(_unframe(framed)) == MANY_TSV_BYTES
    status, headers, gzipped = _raw_get(endpoint, query=MANY, enable_http_compression="1",
                                        _accept="gzip")
    assert (status, headers["content-encoding"]) == (200, "gzip")
    assert len(gzip.decompress(gzipped)) == MANY_TSV_BYTES


def test_wait_end_of_query_answers_whole(endpoint: Endpoint) -> None:
    status, headers, _ = _raw_get(endpoint, query=MANY, wait_end_of_query="1")
    assert (status, headers.get("content-length")) == (200, str(MANY_TSV_BYTES))


def test_an_error_in_the_middle_of_a_stream_never_reads_as_complete(endpoint: Endpoint) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=60)
    query = "SELECT throwIf(number = 2000000) FROM numbers(3000000) FORMAT TSV"
    conn.request("GET", "/?" + urlencode({"query": query}))
    resp = conn.getresponse()
    assert resp.status == 200  # the first rows left before the error happened
    with pytest.raises(http.client.IncompleteRead) as cut:
        resp.read()
    assert b"Code: 395. DB::Exception:" in cut.value.partial[-2000:]
    conn.close()
