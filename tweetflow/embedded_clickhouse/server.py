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
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import chain
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tweetflow.embedded_clickhouse.engine import (
    AUTHENTICATION_FAILED,
    BAD_ARGUMENTS,
    HTTP_PARAMS,
    NOT_IMPLEMENTED,
    READONLY,
    STD_EXCEPTION,
    SYNTAX_ERROR,
    VERSION,
    ClickHouseError,
    Engine,
    Request,
    Result,
    User,
    users_from_settings,
)
from tweetflow.embedded_clickhouse.http_protocol import (
    CHUNK_SIZE,
    NEED_MORE,
    InsertData,
    compress,
    content_type,
    credentials,
    decompress,
    http_status,
    read_body,
    response_encoding,
    split_insert,
)
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
        try:
            user_name, password = credentials(self.headers, params)
            req = self._request(_authenticate(engine.users, user_name, password), params, readonly)
            with engine.connection(req) as conn:
                result = self._execute(engine, conn, req, params.get("query", ""), body)
        except ClickHouseError as err:
            error: ClickHouseError | None = err
            if err.code == READONLY and req and readonly and not req.user.readonly:
                err.message += (". For queries over HTTP, method GET implies readonly. You should "
                                "use method POST for modifying queries")
        except Exception as exc:  # anything else still answers like the server: Code + 500
            log.exception("unexpected failure in query %s", query_id)
            error = ClickHouseError(STD_EXCEPTION, f"{type(exc).__name__}: {exc}")
        else:
            error = None
        elapsed = time.monotonic() - started
        headers["X-ClickHouse-Summary"] = _summary(result, elapsed)
        if error is None:
            if result.format:
                headers["X-ClickHouse-Format"] = result.format
            headers["Content-Type"] = content_type(result.format or "TabSeparated")
            encoding = None
            if params.get("enable_http_compression", "0").lower() in ("1", "true"):
                encoding = response_encoding(self.headers.get("Accept-Encoding", ""))
            self._send(200, result.body, headers, encoding)
        else:
            headers.update({"X-ClickHouse-Exception-Code": str(error.code),
                            "Content-Type": "text/plain; charset=UTF-8"})
            self._send(http_status(error.name), error.text().encode(), headers)
        rows = result.written_rows or result.result_rows
        ignored = f" ignored_settings={','.join(req.ignored_settings)}" if (
            req and req.ignored_settings) else ""
        outcome = f"error=Code:{error.code}:{error.name}" if error else "ok"
        log.info("%s user=%s %.1fms rows=%d %s query_id=%s%s | %s", self.command, user_name,
                 elapsed * 1000, rows, outcome, query_id, ignored,
                 " ".join(self._statement.split())[:200])

    def _request(self, user: User, params: dict[str, str], readonly: bool) -> Request:
        try:
            session_timeout = float(params.get("session_timeout") or 60)
        except ValueError:
            raise ClickHouseError(BAD_ARGUMENTS, "Invalid session timeout") from None
        if "1" in (params.get("compress"), params.get("decompress")):
            raise ClickHouseError(NOT_IMPLEMENTED, "ClickHouse's own compress/decompress=1 "
                                  "framing is not supported here: use Content-Encoding")
        return Request(
            user=user,
            readonly_method=readonly,
            database=params.get("database") or self.headers.get("X-ClickHouse-Database"),
            default_format=(params.get("default_format") or self.headers.get("X-ClickHouse-Format")
                            or "TabSeparated"),
            session_id=params.get("session_id") or None,
            session_timeout=session_timeout,
            session_check=params.get("session_check", "0") in ("1", "true"),
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
        stream = chain([(url_query + "\n").encode()] if url_query else [], data)
        head, split = b"", split_insert(b"", complete=False)
        while split == NEED_MORE and len(head) < _MAX_STATEMENT_SCAN:
            chunk = next(stream, None)
            head += chunk or b""
            split = split_insert(head, complete=chunk is None)
        if isinstance(split, InsertData):
            self._statement = f"{split.statement} FORMAT {split.format}"
            rows = chain([head[split.data_offset:]], stream)
            return engine.insert(conn, split.statement, split.format, rows)
        self._statement = sql = (head + b"".join(stream)).decode(errors="replace").strip()
        if not sql:
            raise ClickHouseError(SYNTAX_ERROR, "Empty query")
        return engine.query(conn, req, sql)

    def _send(self, status: int, body: bytes, headers: Mapping[str, str],
              encoding: str | None = None) -> None:
        if encoding and body:
            body = compress(body, encoding)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if encoding and body:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


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

    def close(self) -> None:
        """Stop accepting requests, then close every chDB connection (data is already on disk)."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()
        self.engine.close()

    def __enter__(self) -> EmbeddedClickHouse:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
