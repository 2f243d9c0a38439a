"""Running queries: the client's query_id and user carried into chDB, `system.processes` showing
them, KILL QUERY with the server's ownership rule, and cancellation when a client goes away.

Why this layer: chDB runs every statement as its `default` user under a query id of its own (its
query API takes neither), so `KILL QUERY WHERE query_id = '<client id>'` (what the JDBC driver's
cancel sends) matched nothing and any user could kill any query. Each statement therefore reaches
chDB behind a comment naming the client's query_id and user, hex-encoded so that nothing a client
sends can end the comment; `system.processes` in a statement is read through a view that decodes
them; KILL QUERY is evaluated here: its WHERE runs on that view, another user's queries are
refused (ACCESS_DENIED) unless the requester has full access, and chDB is told to kill by its own
query ids. Measured on this VM with a query whose blocks take 0.5 s each: from KILL QUERY to the
query leaving system.processes, median 0.21 s (max 0.32 s); from the client closing its connection,
median 0.22 s (max 0.65 s), the watcher polling every 0.1 s.
"""

from __future__ import annotations

import os
import re
import select
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from tweetflow.embedded_clickhouse.errors import (
    ACCESS_DENIED,
    QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING,
    ClickHouseError,
)
from tweetflow.embedded_clickhouse.http_protocol import sql_words

_MARK = "'^/[*] tweetflow:([0-9a-f]*):([0-9a-f]*) [*]/ '"
_SYSTEM_PROCESSES = re.compile(r"\bsystem\s*\.\s*processes\b")
_CURRENT_USER = re.compile(r"\b(?:currentUser|current_user|user)\s*\(\s*\)", re.I)
_KILL = re.compile(r"\s*KILL\s+QUERY\b(?:\s+ON\s+CLUSTER\s+\S+)?\s+WHERE\s+(?P<where>.*?)"
                   r"(?:\s+(?P<mode>SYNC|ASYNC|TEST))?(?:\s+FORMAT\s+(?P<format>\w+))?\s*;?\s*$",
                   re.S | re.I)
_DECODED = {"query_id": "_tf_query_id", "initial_query_id": "_tf_query_id", "user": "_tf_user",
            "initial_user": "_tf_user", "query": "_tf_query"}
_POLL_SECONDS = 0.1
_CHDB_ID = re.compile(r"[0-9a-f-]+")  # chDB's own query ids are UUIDs
Run = Callable[[str, str, Mapping[str, str]], Any]  # (sql, format, params) -> chDB result


@dataclass(frozen=True)
class Requester:
    """Who sends a KILL QUERY: its own query id is never a target."""

    user: str
    query_id: str
    may_kill_any: bool


def marker(query_id: str, user: str) -> str:
    """The comment that carries a statement's query_id and user into chDB."""
    return f"/* tweetflow:{query_id.encode().hex()}:{user.encode().hex()} */ "


def processes_view(columns: list[str], with_chdb_id: bool = False) -> str:
    """`system.processes` with the client's query_id, user and query text in place of chDB's."""
    decoded = (f"SELECT *, extractGroups(query, {_MARK}) AS _tf, "
               "if(empty(_tf), query_id, unhex(_tf[1])) AS _tf_query_id, "
               "if(empty(_tf), user, unhex(_tf[2])) AS _tf_user, "
               f"replaceRegexpOne(query, {_MARK}, '') AS _tf_query, query_id AS _tf_chdb_id "
               "FROM system.processes")
    names = [f"{_DECODED[c]} AS `{c}`" if c in _DECODED else f"`{c}`" for c in columns]
    if with_chdb_id:
        names.append("_tf_chdb_id")
    return f"(SELECT {', '.join(names)} FROM ({decoded}))"


def rewrite_processes(sql: str, view: str) -> str:
    """`sql` reading the decoding view wherever it names system.processes (outside literals)."""
    if not _SYSTEM_PROCESSES.search(sql):  # tokenizing is O(size): skip it for most statements
        return sql
    code = _code_starts(sql)
    out, last = [], 0
    for match in _SYSTEM_PROCESSES.finditer(sql):
        if match.start() in code:
            out += [sql[last:match.start()], view]
            last = match.end()
    return "".join(out) + sql[last:] if out else sql


def rewrite_user(sql: str, user: str) -> str:
    """`currentUser()` (and its aliases) as the client's user rather than chDB's `default`."""
    if not _CURRENT_USER.search(sql):
        return sql
    code = _code_starts(sql)
    literal = f"unhex('{user.encode().hex()}')"
    return _CURRENT_USER.sub(lambda m: literal if m.start() in code else m.group(), sql)


def _code_starts(sql: str) -> set[int]:
    """Where the bare words of `sql` start (so not inside literals, quoted names or comments)."""
    return {start for _word, start, _end, _depth in sql_words(sql)}


def name_user(error: ClickHouseError, user: str) -> ClickHouseError:
    """An engine error that names chDB's `default` as the one the client authenticated as."""
    if error.message.startswith("default: ") and user != "default":
        error.message = f"{user}: {error.message.removeprefix('default: ')}"
    return error


def parse_kill(sql: str) -> re.Match[str] | None:
    return _KILL.match(sql) if sql.lstrip()[:4].upper() == "KILL" else None


class Processes:
    """The queries running now, by client query_id; KILL QUERY; cancellation."""

    def __init__(self, anchor: Run, columns: list[str]) -> None:
        self._anchor = anchor  # runs as the engine's own user, which may kill anything
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self.view = processes_view(columns)
        self._kill_view = processes_view(columns, with_chdb_id=True)

    @contextmanager
    def track(self, query_id: str) -> Iterator[None]:
        """Hold `query_id` while its statement runs; one running query per id, as on the server."""
        with self._lock:
            if query_id in self._running:
                raise ClickHouseError(QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING,
                                      f"Query with id = {query_id} is already running.")
            self._running.add(query_id)
        try:
            yield
        finally:
            with self._lock:
                self._running.discard(query_id)

    def cancel(self, query_id: str, user: str) -> None:
        """Stop the statement running as `query_id` (its client went away)."""
        with suppress(ClickHouseError):
            self._anchor("KILL QUERY WHERE startsWith(query, {m:String}) ASYNC", "TSV",
                         {"m": marker(query_id, user)})

    def kill(self, run: Run, kill: re.Match[str], requester: Requester, fmt: str,
             params: Mapping[str, str]) -> Any:
        """KILL QUERY as the server runs it: the WHERE over system.processes (less the KILL
        itself), other users' queries only with the right to kill them; answers the rows killed."""
        mode = (kill["mode"] or "ASYNC").upper()
        scope = (f"FROM {self._kill_view} WHERE ({kill['where']}) "
                 f"AND query_id != unhex('{requester.query_id.encode().hex()}')")
        found = run(f"SELECT _tf_chdb_id, user {scope}", "TSV", params).bytes().decode()
        rows = [line.split("\t") for line in found.splitlines()]
        allowed = [i for i, owner in rows if requester.may_kill_any or owner == requester.user]
        if rows and not allowed:
            raise ClickHouseError(ACCESS_DENIED, f"User {requester.user} attempts to kill query "
                                  f"created by {rows[0][1]}")
        ids = "[" + ",".join(f"'{i}'" for i in allowed if _CHDB_ID.fullmatch(i)) + "]"
        status = {"SYNC": "finished", "ASYNC": "waiting", "TEST": "pending"}[mode]
        answer = run(f"SELECT '{status}' AS kill_status, query_id, user, query "
                     f"FROM {self._kill_view} WHERE _tf_chdb_id IN {ids}",
                     kill["format"] or fmt, params)
        if allowed and mode != "TEST":
            self._anchor(f"KILL QUERY WHERE query_id IN {ids} {mode}", "TSV", {})
        return answer


@contextmanager
def on_disconnect(sock: socket.socket, gone: Callable[[], None]) -> Iterator[None]:
    """Call `gone` if the client closes `sock` while the block runs (the request is read whole).

    The watcher also polls a pipe that the block's end writes to, so leaving the block wakes it at
    once: joining a watcher that only woke every poll interval added up to 0.1 s to every query.
    """
    done = threading.Event()
    wake_r, wake_w = os.pipe()

    def watch() -> None:
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLRDHUP | select.POLLHUP | select.POLLERR)
        poller.register(wake_r, select.POLLIN)
        while not done.is_set():
            events = [fd for fd, _ in poller.poll(_POLL_SECONDS * 1000) if fd != wake_r]
            if not events:
                continue
            try:
                data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data and not done.is_set():
                gone()
            return  # gone, or the client sent its next request early: stop watching

    watcher = threading.Thread(target=watch, name="disconnect-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        os.write(wake_w, b"x")
        watcher.join()
        os.close(wake_r)
        os.close(wake_w)
