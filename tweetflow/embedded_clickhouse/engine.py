"""The chDB side of the endpoint: users, connections, sessions, and running statements.

Concurrency, as measured on chDB 26.9: one process may open many connections to the same data
path; they share one embedded engine, each has its own session state (current database,
settings, temporary tables), queries on *different* connections run in parallel with the GIL
released, and queries on *one* connection are serialized. So every HTTP request gets a connection
of its own (opening one costs ~0.2 ms), a `session_id` maps to one long-lived connection, and a
long INSERT never stalls reads.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from chdb import _chdb

from tweetflow.embedded_clickhouse.errors import (
    READONLY,
    SESSION_IS_LOCKED,
    SESSION_NOT_FOUND,
    SYNTAX_ERROR,
    ClickHouseError,
)
from tweetflow.embedded_clickhouse.http_protocol import (
    from_infile,
    output_format,
    sql_string,
    sql_words,
)
from tweetflow.embedded_clickhouse.in_flight import DRAIN_SECONDS, InFlight
from tweetflow.embedded_clickhouse.processes import (
    Processes,
    Requester,
    marker,
    parse_kill,
    rewrite_processes,
    rewrite_user,
)
from tweetflow.embedded_clickhouse.profiles import check_limits, settings_sql
from tweetflow.settings import Settings

_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# URL parameters of the HTTP interface itself; every other parameter is a ClickHouse setting.
HTTP_PARAMS = frozenset({
    "query", "database", "default_format", "query_id", "session_id", "session_timeout",
    "session_check", "user", "password", "quota_key", "compress", "decompress", "buffer_size",
    "wait_end_of_query", "client_protocol_version", "enable_http_compression", "stacktrace",
})


@dataclass(frozen=True)
class User:
    name: str
    password: str
    readonly: bool


def users_from_settings(settings: Settings) -> dict[str, User]:
    """The full-access user and the read-only analyst, as configured in the environment."""
    full = User(settings.clickhouse_user, settings.clickhouse_password, readonly=False)
    analyst = User(settings.clickhouse_analyst_user, settings.clickhouse_analyst_password, True)
    return {analyst.name: analyst, full.name: full}


@dataclass
class Request:
    """What one HTTP request asks the engine to do, already decoded from the URL and headers."""

    user: User
    readonly_method: bool  # GET implies readonly=2 on the real server
    database: str | None = None
    default_format: str = "TabSeparated"
    session_id: str | None = None
    session_timeout: float = 60.0
    session_check: bool = False
    decompress: bool = False  # the body is in ClickHouse's compressed blocks (`decompress=1`)
    stream: bool = False  # a result may be sent as it is produced (no wait_end_of_query=1)
    query_id: str = ""
    settings: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    ignored_settings: list[str] = field(default_factory=list)


@dataclass
class Result:
    body: bytes = b""
    format: str | None = None  # set when the statement produces a result set
    read_rows: int = 0
    read_bytes: int = 0
    written_rows: int = 0
    written_bytes: int = 0
    result_rows: int = 0
    result_bytes: int = 0
    more: Iterator[bytes] | None = None  # the rest of a streamed result, after `body`

    @classmethod
    def from_chdb(cls, res: Any, fmt: str | None) -> Result:
        return cls(res.bytes() or b"", fmt, res.storage_rows_read(), res.storage_bytes_read(),
                   res.rows_written(), res.bytes_written(), res.rows_read(), res.bytes_read())

    def add(self, res: Any) -> None:
        """Count one more chunk of a streamed result."""
        self.read_rows += res.storage_rows_read()
        self.read_bytes += res.storage_bytes_read()
        self.result_rows += res.rows_read()
        self.result_bytes += res.bytes_read()


def _run(conn: Any, sql: str, fmt: str = "TabSeparated", params: Mapping[str, str] | None = None
         ) -> Any:
    try:
        return conn.query(sql, fmt, params=dict(params or {}))
    except RuntimeError as exc:
        raise ClickHouseError.from_engine(exc) from None


@dataclass
class _Session:
    conn: Any
    lock: threading.Lock = field(default_factory=threading.Lock)
    expires: float = 0.0


class Engine:
    """One chDB data directory, shared by every request of the process."""

    def __init__(self, path: str, users: Mapping[str, User]) -> None:
        self.path = path
        self.users = dict(users)
        # The anchor keeps the embedded engine alive while request connections come and go.
        self._anchor = _chdb.connect(path)
        self.timezone = _run(self._anchor, "SELECT timezone()").bytes().decode().strip()
        columns = _run(self._anchor, "SELECT name FROM system.columns WHERE database = 'system' "
                       "AND table = 'processes' AND default_kind != 'ALIAS'").bytes().decode().split()
        self.processes = Processes(lambda sql, fmt, params: _run(self._anchor, sql, fmt, params),
                                   columns)
        self._sessions: dict[tuple[str, str], _Session] = {}
        self._sessions_lock = threading.Lock()
        self.in_flight = InFlight()  # close() waits for these: see in_flight.py

    def close(self, drain_timeout: float = DRAIN_SECONDS) -> None:
        """Refuse new statements, let running requests finish (those outliving `drain_timeout`
        are cancelled), then shut the engine down; left open if something still runs, since
        shutting it down beneath a statement crashes chDB."""
        if not self.in_flight.drain(drain_timeout, self._cancel_all):
            return
        with self._sessions_lock:
            for session in self._sessions.values():
                session.conn.close()
            self._sessions.clear()
        self._anchor.close()

    # -------------------------------------------------------------- connections

    @contextmanager
    def connection(self, req: Request) -> Iterator[Any]:
        """A connection prepared for `req`: user's readonly level, settings, database."""
        self.in_flight.admit()
        with self._open(req) as conn:
            yield conn

    @contextmanager
    def _open(self, req: Request) -> Iterator[Any]:
        if req.session_id:
            with self._session(req) as conn:
                yield self._prepare(conn, req)
            return
        conn = _chdb.connect(self.path)
        try:
            if req.user.readonly:  # the client's settings apply, then the connection turns readonly
                _run(conn, settings_sql())
                self._prepare(conn, req)
                _run(conn, "SET readonly = 1")
                yield conn
            else:
                if req.readonly_method:
                    _run(conn, "SET readonly = 2")
                yield self._prepare(conn, req)
        finally:
            conn.close()

    def _prepare(self, conn: Any, req: Request) -> Any:
        if req.user.readonly:
            check_limits(req.settings)
        self._apply_settings(conn, req)
        if req.database:
            _run(conn, f"USE `{req.database.replace('`', '``')}`")
        return conn

    @staticmethod
    def _apply_settings(conn: Any, req: Request) -> None:
        """SET the request's settings; ones the engine rejects (unknown, readonly) are skipped.

        Why lenient: clients send HTTP-only settings chDB does not know, and the real server lets
        a readonly user resend a setting's current value; a skipped setting is logged.
        """
        settings = {k: v for k, v in req.settings.items() if _SETTING_NAME.match(k)}
        req.ignored_settings.extend(k for k in req.settings if k not in settings)
        if not settings:
            return
        try:
            _run(conn, "SET " + ", ".join(f"{k} = {sql_string(v)}" for k, v in settings.items()))
        except ClickHouseError:
            for key, value in settings.items():
                try:
                    _run(conn, f"SET {key} = {sql_string(value)}")
                except ClickHouseError:
                    req.ignored_settings.append(key)

    @contextmanager
    def _session(self, req: Request) -> Iterator[Any]:
        """The session's own connection, locked for this request like the server locks it."""
        key = (req.user.name, req.session_id or "")
        now = time.monotonic()
        with self._sessions_lock:
            self._expire(now)
            session = self._sessions.get(key)
            if session is None:
                if req.session_check:
                    raise ClickHouseError(SESSION_NOT_FOUND, f"Session {req.session_id} not found")
                session = self._sessions[key] = _Session(_chdb.connect(self.path))
                if req.user.readonly:
                    _run(session.conn, settings_sql())
                    _run(session.conn, "SET readonly = 1")
            if not session.lock.acquire(blocking=False):
                raise ClickHouseError(
                    SESSION_IS_LOCKED, f"Session {req.session_id} is locked by a concurrent client")
        try:
            yield session.conn
        finally:
            session.expires = time.monotonic() + req.session_timeout
            session.lock.release()

    def _expire(self, now: float) -> None:
        for key, session in list(self._sessions.items()):
            if session.expires and session.expires < now and session.lock.acquire(blocking=False):
                del self._sessions[key]
                session.conn.close()

    # -------------------------------------------------------------- statements

    def query(self, conn: Any, req: Request, sql: str) -> Result:
        """Run one statement; result-producing ones report the format they were written in."""
        try:
            info = conn.classify_query(sql)
        except RuntimeError as exc:
            raise ClickHouseError.from_engine(exc) from None
        if info["statement_count"] > 1:
            raise ClickHouseError(SYNTAX_ERROR, "Multi-statements are not allowed")
        query_class = info["query_class"].name
        if req.readonly_method and req.session_id and not _allowed_on_get(sql, query_class):
            raise ClickHouseError(READONLY, "Cannot execute query in readonly mode")
        fmt = output_format(sql) or req.default_format
        mark = marker(req.query_id, req.user.name)

        def run(statement: str, fmt: str, params: Mapping[str, str]) -> Any:
            return _run(conn, mark + statement, fmt, params)

        if kill := parse_kill(sql):
            requester = Requester(req.user.name, req.query_id, may_kill_any=not req.user.readonly)
            return Result.from_chdb(self.processes.kill(run, kill, requester, req.default_format,
                                                        req.params), kill["format"] or fmt)
        statement = rewrite_user(rewrite_processes(sql, self.processes.view), req.user.name)
        if req.stream and query_class == "READ_ONLY" and _is_select(sql):
            return _stream(conn, mark + statement, req, fmt)
        res = run(statement, req.default_format, req.params)
        result = Result.from_chdb(res, fmt)
        if not result.body and query_class != "READ_ONLY":
            result.format = None  # no result set: the server sends no X-ClickHouse-Format
        return result

    def insert(self, conn: Any, statement: str, fmt: str, chunks: Iterable[bytes],
               mark: str = "") -> Result:
        """Stream `chunks` of `fmt`-encoded rows into `statement`; every error raises.

        Why not chDB's streaming-insert calls (`send_insert`, `insert_append`, `insert_done`): on
        chDB 26.9 they drop any error raised while the table writes its parts (more partitions in a
        block than `max_partitions_per_insert_block`, a CHECK constraint) and report the rows as
        written, so the endpoint acknowledged inserts that stored nothing (docs/embedded-clickhouse.md).
        `INSERT ... FROM INFILE` runs through the query path, which raises every error; reading the
        file from the read end of a pipe keeps memory constant, and the rows stream into the engine
        while the body is still being read from the socket. Measured: the same speed as
        `send_insert` (about 41 ms for 10,000 rows of 1 KB).
        """
        read_fd, write_fd = os.pipe()
        pipe_path = f"/proc/self/fd/{read_fd}"  # unique among running queries while it is open
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["result"] = _run(conn, mark + from_infile(statement, pipe_path, fmt))
            except BaseException as exc:
                outcome["error"] = exc
            finally:
                os.close(read_fd)  # reading is over: a write still blocked on the pipe gets EPIPE

        reader = threading.Thread(target=run, name="insert-from-pipe", daemon=True)
        reader.start()
        try:
            self._feed(write_fd, chunks)
        except BaseException:
            self._cancel(pipe_path)  # a body cut short must not be stored as if it were whole
            os.close(write_fd)
            reader.join()
            raise
        os.close(write_fd)  # end of data
        reader.join()
        if "error" in outcome:
            raise outcome["error"]
        res = outcome["result"]
        return Result(written_rows=res.rows_written(), written_bytes=res.bytes_written())

    @staticmethod
    def _feed(write_fd: int, chunks: Iterable[bytes]) -> None:
        """Write the body into the pipe; stop quietly when the engine stops reading (its error
        says why)."""
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(write_fd, view):]
        except BrokenPipeError:
            pass

    def _cancel_all(self) -> None:
        """KILL every running statement (but this one)."""
        with suppress(ClickHouseError):
            _run(self._anchor, "KILL QUERY WHERE query_id != queryID() ASYNC")

    def _cancel(self, pipe_path: str) -> None:
        """KILL the INSERT reading `pipe_path`, so that closing the pipe is no end of data."""
        with suppress(ClickHouseError):
            _run(self._anchor, "KILL QUERY WHERE query LIKE {p:String} ASYNC",
                 params={"p": f"%FROM INFILE {sql_string(pipe_path)}%"})


def _stream(conn: Any, sql: str, req: Request, fmt: str) -> Result:
    """A result read from chDB chunk by chunk (~1 MB each, whole Native blocks). One that fits in
    two chunks comes back whole; a longer one keeps the rest in `more`, which cancels the query
    if it is not read to the end (the client went away)."""
    try:
        handle = conn.send_query(sql, req.default_format, params=dict(req.params))
    except RuntimeError as exc:
        raise ClickHouseError.from_engine(exc) from None
    first = _fetch(conn, handle)
    result = Result.from_chdb(first, fmt)
    if not result.body:
        return result
    second = _fetch(conn, handle)
    result.add(second)
    if not second.bytes():
        return result
    result.more = _rest(conn, handle, result, second.bytes())
    return result


def _is_select(sql: str) -> bool:
    """chDB streams SELECTs only (EXISTS, SHOW, DESCRIBE: "Streaming query is not supported")."""
    first = next(sql_words(sql), None)
    return first is not None and first[0] in ("SELECT", "WITH")


def _fetch(conn: Any, handle: Any) -> Any:
    try:
        return conn.streaming_fetch_result(handle)
    except RuntimeError as exc:
        raise ClickHouseError.from_engine(exc) from None


def _rest(conn: Any, handle: Any, result: Result, pending: bytes) -> Iterator[bytes]:
    finished = False
    try:
        yield pending
        while chunk := (res := _fetch(conn, handle)).bytes():
            result.add(res)
            yield chunk
        finished = True
    finally:
        if not finished:
            with suppress(RuntimeError):
                conn.streaming_cancel_query(handle)


def _allowed_on_get(sql: str, query_class: str) -> bool:
    """GET in a session cannot use the engine's readonly level (it would stick to the session)."""
    return query_class == "READ_ONLY" or (
        query_class == "CONTROL" and re.match(r"\s*(SET|USE)\b", sql, re.I) is not None)
