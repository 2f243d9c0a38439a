"""The embedded ClickHouse endpoint: a chDB data directory served over ClickHouse's HTTP interface.

Why a threaded stdlib server: chDB releases the GIL while a query runs and runs queries on
separate connections in parallel, so one thread per HTTP connection gives real concurrency; every
chDB call blocks, so an async server would only add a thread pool around the same calls.
"""

from __future__ import annotations

import hmac
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import chain
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tweetflow.embedded_clickhouse.compressed_blocks import unframe
from tweetflow.embedded_clickhouse.engine import (
    HTTP_PARAMS,
    Engine,
    Request,
    Result,
    User,
    users_from_settings,
)
from tweetflow.embedded_clickhouse.errors import (
    AUTHENTICATION_FAILED,
    BAD_ARGUMENTS,
    QUERY_WAS_CANCELLED,
    READONLY,
    STD_EXCEPTION,
    SYNTAX_ERROR,
    VERSION,
    ClickHouseError,
)
from tweetflow.embedded_clickhouse.http_protocol import (
    CHUNK_SIZE,
    NEED_MORE,
    InsertData,
    content_type,
    credentials,
    decompress,
    http_status,
    read_body,
    response_encoding,
    split_insert,
)
from tweetflow.embedded_clickhouse.in_flight import DRAIN_SECONDS
from tweetflow.embedded_clickhouse.processes import marker, name_user, on_disconnect
from tweetflow.embedded_clickhouse.responses import BodyEncoder, whole, write_chunked
from tweetflow.settings import Settings, get_settings

log = logging.getLogger("tweetflow.embedded_clickhouse")
_MAX_STATEMENT_SCAN = 16 * CHUNK_SIZE  # give up looking for `FORMAT x` after this many bytes
_DISPLAY_NAME = socket.gethostname()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    engine: Engine


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clickhouse-connect's connection pool expects
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms stalls
    server: _Server
    _statement = ""  # what the log line shows

    def do_GET(self) -> None:
        self._serve(readonly_method=True)

    def do_POST(self) -> None:
        self._serve(readonly_method=False)

    def handle(self) -> None:
        """A client resetting a kept-alive connection (the JDBC driver's cancel does) is no error."""
        with suppress(ConnectionError):
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: `_serve` logs one line per query instead of one per HTTP exchange."""

    def _serve(self, readonly_method: bool) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        body = read_body(self.rfile, self.headers)
        try:
            if url.path in ("/ping", "/replicas_status") or (
                    url.path == "/" and readonly_method and "query" not in params):
                self._send(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
            elif url.path != "/":
                self._send(404, f"There is no handle {url.path}\n\nUse / or /ping for health "
                           "checks.\n".encode(), {"Content-Type": "text/plain; charset=UTF-8"})
            else:
                with self.server.engine.in_flight.request():  # a stop waits for the answer
                    self._serve_query(params, body, readonly_method)
        finally:
            with suppress(OSError, ValueError):  # a client gone mid-body has nothing left to read
                for _ in body:  # drain what the statement did not read: keep-alive stays in sync
                    pass

    def _serve_query(self, params: dict[str, str], body: Iterator[bytes], readonly: bool) -> None:
        engine = self.server.engine
        started = time.monotonic()
        query_id = params.get("query_id") or str(uuid.uuid4())
        headers = {"X-ClickHouse-Query-Id": query_id, "X-ClickHouse-Timezone": engine.timezone,
                   "X-ClickHouse-Server-Display-Name": _DISPLAY_NAME}
        user_name, result, req = "-", Result(), None
        error: ClickHouseError | None = None
        encoder, payload = BodyEncoder(), b""
        self._streaming = False
        self._watch = ExitStack()  # the disconnect watcher, while the statement runs and answers
        try:
            user_name, password = credentials(self.headers, params)
            req = self._request(_authenticate(engine.users, user_name, password), params, readonly)
            req.query_id = query_id
            with self._watch, engine.processes.track(query_id), engine.connection(req) as conn:
                result = self._execute(engine, conn, req, params.get("query", ""), body)
                encoder = self._encoder(params, result)
                if result.more is None:
                    payload = whole(encoder, result.body)
                else:  # sent while the connection is still open
                    self._answer(headers, result, encoder, started)
        except ClickHouseError as err:
            error = name_user(err, req.user.name) if req else err
            if err.code == READONLY and req and readonly and not req.user.readonly:
                err.message += (". For queries over HTTP, method GET implies readonly. You should "
                                "use method POST for modifying queries")
        except ConnectionError:
            error = ClickHouseError(QUERY_WAS_CANCELLED, "the client closed the connection")
        except Exception as exc:  # anything else still answers like the server: Code + 500
            log.exception("unexpected failure in query %s", query_id)
            error = ClickHouseError(STD_EXCEPTION, f"{type(exc).__name__}: {exc}")
        elapsed = time.monotonic() - started
        if self._streaming:
            self.close_connection = error is not None  # a body cut short: no final chunk
        elif error is None:
            self._answer(headers, result, encoder, started, payload)
        else:
            headers.update({"X-ClickHouse-Summary": _summary(result, elapsed),
                            "X-ClickHouse-Exception-Code": str(error.code),
                            "Content-Type": "text/plain; charset=UTF-8"})
            self._send(http_status(error.name), error.text().encode(), headers)
        rows = result.written_rows or result.result_rows
        ignored = f" ignored_settings={','.join(req.ignored_settings)}" if (
            req and req.ignored_settings) else ""
        outcome = f"error=Code:{error.code}:{error.name}" if error else "ok"
        log.info("%s user=%s %.1fms rows=%d %s%s query_id=%s%s | %s", self.command, user_name,
                 elapsed * 1000, rows, outcome, " streamed" if self._streaming else "", query_id,
                 ignored, " ".join(self._statement.split())[:200])

    def _encoder(self, params: Mapping[str, str], result: Result) -> BodyEncoder:
        encoding = None
        if _enabled(params.get("enable_http_compression")):
            encoding = response_encoding(self.headers.get("Accept-Encoding", ""))
        return BodyEncoder.for_request(
            result.format, _int(params.get("client_protocol_version")),
            _enabled(params.get("compress")), params.get("network_compression_method", "lz4"),
            encoding)

    def _answer(self, headers: dict[str, str], result: Result, encoder: BodyEncoder,
                started: float, payload: bytes | None = None) -> None:
        """A result: whole with its Content-Length, or streamed (`payload` None) as chunks."""
        headers["X-ClickHouse-Summary"] = _summary(result, time.monotonic() - started)
        if result.format:
            headers["X-ClickHouse-Format"] = result.format
        headers["Content-Type"] = content_type(result.format or "TabSeparated")
        if payload is not None:
            if payload and encoder.content_encoding:
                headers["Content-Encoding"] = encoder.content_encoding
            self._send(200, payload, headers)
            return
        if encoder.content_encoding:
            headers["Content-Encoding"] = encoder.content_encoding
        self._streaming = True
        self._send_headers(200, {**headers, "Transfer-Encoding": "chunked"})
        try:
            write_chunked(self.wfile, encoder, chain([result.body], result.more or []))
        finally:
            if result.more is not None:
                result.more.close()  # cancels the query unless it was read to the end

    def _request(self, user: User, params: dict[str, str], readonly: bool) -> Request:
        try:
            session_timeout = float(params.get("session_timeout") or 60)
        except ValueError:
            raise ClickHouseError(BAD_ARGUMENTS, "Invalid session timeout") from None
        return Request(
            user=user,
            readonly_method=readonly,
            database=params.get("database") or self.headers.get("X-ClickHouse-Database"),
            default_format=(params.get("default_format") or self.headers.get("X-ClickHouse-Format")
                            or "TabSeparated"),
            session_id=params.get("session_id") or None,
            session_timeout=session_timeout,
            session_check=_enabled(params.get("session_check")),
            decompress=_enabled(params.get("decompress")),
            stream=not _enabled(params.get("wait_end_of_query")),
            settings={k: v for k, v in params.items()
                      if k not in HTTP_PARAMS and not k.startswith("param_")},
            params={k[6:]: v for k, v in params.items() if k.startswith("param_")},
        )

    def _execute(self, engine: Engine, conn: Any, req: Request, url_query: str,
                 body: Iterator[bytes]) -> Result:
        """Run the statement formed, as on the server, by the URL query, a newline and the body.

        An `INSERT ... FORMAT x` streams whatever follows the format name into the engine;
        anything else is read whole and run as one statement.
        """
        try:
            data = decompress(body, self.headers.get("Content-Encoding", ""))
        except ValueError as exc:
            raise ClickHouseError(BAD_ARGUMENTS, str(exc)) from None
        if req.decompress:
            data = unframe(data)
        stream = chain([(url_query + "\n").encode()] if url_query else [], data)
        head, split = b"", split_insert(b"", complete=False)
        while split == NEED_MORE and len(head) < _MAX_STATEMENT_SCAN:
            chunk = next(stream, None)
            head += chunk or b""
            split = split_insert(head, complete=chunk is None)
        if isinstance(split, InsertData):
            self._statement = f"{split.statement} FORMAT {split.format}"
            rows = chain([head[split.data_offset:]], stream)
            return engine.insert(conn, split.statement, split.format, rows,
                                 marker(req.query_id, req.user.name))
        self._statement = sql = (head + b"".join(stream)).decode(errors="replace").strip()
        if not sql:
            raise ClickHouseError(SYNTAX_ERROR, "Empty query")
        # The request is read whole: from here on, the client closing its end means it gave up.
        self._watch.enter_context(on_disconnect(
            self.connection, lambda: engine.processes.cancel(req.query_id, req.user.name)))
        return engine.query(conn, req, sql)

    def _send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self._send_headers(status, {**headers, "Content-Length": str(len(body))})
        self.wfile.write(body)

    def _send_headers(self, status: int, headers: Mapping[str, str]) -> None:
        if self.server.engine.in_flight.closing:  # stopping: the client reconnects, to no one
            headers = {**headers, "Connection": "close"}
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()


def _enabled(value: str | None) -> bool:
    return (value or "0").lower() in ("1", "true")


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        raise ClickHouseError(BAD_ARGUMENTS, f"Not a number: {value!r}") from None


def _authenticate(users: Mapping[str, User], name: str, password: str) -> User:
    user = users.get(name)
    if user is None or not hmac.compare_digest(user.password.encode(), password.encode()):
        raise ClickHouseError(AUTHENTICATION_FAILED, f"{name}: Authentication failed: password "
                              "is incorrect, or there is no user with such name")
    return user


def _summary(result: Result, elapsed: float) -> str:
    """X-ClickHouse-Summary, with the server's habit of quoting every number."""
    fields = {"read_rows": result.read_rows, "read_bytes": result.read_bytes,
              "written_rows": result.written_rows, "written_bytes": result.written_bytes,
              "total_rows_to_read": result.read_rows, "result_rows": result.result_rows,
              "result_bytes": result.result_bytes, "elapsed_ns": int(elapsed * 1e9)}
    return "{" + ",".join(f'"{k}":"{v}"' for k, v in fields.items()) + "}"


class EmbeddedClickHouse:
    """A chDB data directory served on host:port; one per process (chDB allows one path)."""

    def __init__(self, data_dir: str | Path, host: str = "127.0.0.1", port: int = 8123,
                 settings: Settings | None = None) -> None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        self.engine = Engine(str(data_dir), users_from_settings(settings or get_settings()))
        self._httpd = _Server((host, port), _Handler)
        self._httpd.engine = self.engine
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._httpd.server_address[0]}:{self.port}"

    def serve_forever(self) -> None:
        log.info("embedded ClickHouse %s (chDB) serving %s on %s", VERSION, self.engine.path,
                 self.url)
        self._httpd.serve_forever()

    def start(self) -> EmbeddedClickHouse:
        """Serve from a background thread (for in-process use); returns self."""
        self._thread = threading.Thread(target=self.serve_forever, name="embedded-clickhouse",
                                        daemon=True)
        self._thread.start()
        return self

    def close(self, drain_timeout: float = DRAIN_SECONDS) -> None:
        """Stop accepting connections, let running requests finish (`Engine.close`), then close
        every chDB connection (data is already on disk)."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()
        self.engine.close(drain_timeout)

    def __enter__(self) -> EmbeddedClickHouse:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
