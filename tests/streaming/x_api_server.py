"""A local server speaking the X API v2 streaming protocol, scripted connection by connection.

What it does as X documents it (../shared/docs/SOURCES.md): a GET on a stream path answers 200
with a chunked body of `\\r\\n`-terminated JSON lines and bare `\\r\\n` keep-alives, or an HTTP
error with X's JSON error body (`{"title", "detail", "type"}`; a 429 for too many connections
carries `"connection_issue": "TooManyConnections"`). Misbehaviour is scripted per connection: a
socket cut in the middle of a line, an in-stream `operational-disconnect`, a silent stall, and the
repeats a `backfill_minutes` reconnect sends. The filtered stream's rules endpoint keeps rules in
memory and answers with X's shapes (`data`, `meta.summary`, `errors`).

Every request is recorded (path, query, Authorization) so tests can check what the client asked.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

# X's bodies, as documented (docs.x.com "Handling disconnections", "Response codes and errors").
SERVICE_UNAVAILABLE = {"title": "Service Unavailable", "detail": "Service Unavailable",
                       "type": "about:blank", "status": 503}
TOO_MANY_CONNECTIONS = {
    "title": "ConnectionException", "connection_issue": "TooManyConnections",
    "detail": "This stream is currently at the maximum allowed connection limit.",
    "type": "https://api.twitter.com/2/problems/streaming-connection"}
UNAUTHORIZED = {"title": "Unauthorized", "type": "about:blank", "status": 401,
                "detail": "Unauthorized"}
OPERATIONAL_DISCONNECT = {"errors": [{
    "title": "operational-disconnect", "disconnect_type": "UpstreamOperationalDisconnect",
    "detail": "This stream has been disconnected upstream for operational reasons.",
    "type": "https://api.twitter.com/2/problems/operational-disconnect"}]}


@dataclass
class Step:
    """One thing a scripted connection does, in order."""

    kind: str  # lines | keepalive | cut | stall | end | error_line | status
    lines: Sequence[bytes] = ()
    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)


def lines(items: Sequence[bytes]) -> Step:
    return Step("lines", items)


def keepalive() -> Step:
    return Step("keepalive")


def cut(partial: bytes) -> Step:
    """Send the first bytes of a line, then close the socket without ending the chunked body."""
    return Step("cut", (partial,))


def stall() -> Step:
    """Send nothing more and hold the connection until the client gives up on it."""
    return Step("stall")


def end() -> Step:
    """End the body properly (the server closed the stream)."""
    return Step("end")


def error_line(doc: dict[str, Any]) -> Step:
    return Step("error_line", (orjson.dumps(doc),))


def status(code: int, body: dict[str, Any]) -> Step:
    """Answer the connection with an HTTP error and X's JSON body."""
    return Step("status", status=code, body=body)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    authorization: str
    body: Any = None


class XApiServer:
    """Scripted streams (`scripts[partition or None]`: one list of steps per connection, in order;
    connections past the script stall) and an in-memory rules endpoint."""

    def __init__(self, scripts: dict[int | None, list[list[Step]]] | None = None) -> None:
        self.scripts = {k: list(v) for k, v in (scripts or {}).items()}
        self.requests: list[Request] = []
        self.rules: dict[str, dict[str, str]] = {}
        self._next_rule = 1580000000000000000
        self.closing = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self, "GET")

            def do_POST(self) -> None:
                server._handle(self, "POST")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def streams(self, path: str = "/2/tweets/search/stream") -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(h.headers.get("Content-Length") or 0)
        body = orjson.loads(h.rfile.read(length)) if length else None
        req = Request(method, parts.path, query, h.headers.get("Authorization", ""), body)
        with self._lock:
            self.requests.append(req)
        if req.authorization != "Bearer test-token":
            return _json(h, 401, UNAUTHORIZED)
        if parts.path == "/2/tweets/search/stream/rules":
            return self._rules(h, req)
        partition = int(query["partition"]) if "partition" in query else None
        with self._lock:
            queue = self.scripts.get(partition, [])
            steps = queue.pop(0) if queue else [stall()]
        self._play(h, steps)

    def _play(self, h: BaseHTTPRequestHandler, steps: list[Step]) -> None:
        if steps and steps[0].kind == "status":
            return _json(h, steps[0].status, steps[0].body)
        h.send_response(200)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.wfile.flush()
        try:
            for step in steps:
                if step.kind in ("lines", "error_line"):
                    for line in step.lines:
                        _chunk(h, line + b"\r\n")
                elif step.kind == "keepalive":
                    _chunk(h, b"\r\n")
                elif step.kind == "cut":
                    partial = step.lines[0]
                    h.wfile.write(b"%x\r\n" % (len(partial) + 100) + partial)
                    h.wfile.flush()
                    h.close_connection = True
                    return
                elif step.kind == "stall":
                    # hold until the client drops the connection (its read times out) or shutdown
                    while not self.closing.is_set() and not _peer_closed(h):
                        self.closing.wait(0.05)
                    h.close_connection = True
                    return
                elif step.kind == "end":
                    break
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        h.close_connection = True

    def _rules(self, h: BaseHTTPRequestHandler, req: Request) -> None:
        if req.method == "GET":
            ids = req.query.get("ids")
            data = [r for i, r in self.rules.items() if not ids or i in ids.split(",")]
            return _json(h, 200, {"data": data, "meta": {"sent": "2026-12-01T00:00:00.000Z",
                                                          "result_count": len(data)}}
                         if data else {"meta": {"sent": "2026-12-01T00:00:00.000Z",
                                                "result_count": 0}})
        dry = req.query.get("dry_run") == "true"
        body = req.body or {}
        if "add" in body:
            return self._add(h, body["add"], dry)
        if "delete" in body:
            return self._delete(h, body["delete"].get("ids", []), dry)
        return _json(h, 400, {"errors": [{"message": "Requests must have either an 'add' or "
                                                     "'delete' operation"}],
                              "title": "Invalid Request", "type": "about:blank"})

    def _add(self, h: BaseHTTPRequestHandler, add: list[dict[str, str]], dry: bool) -> None:
        created, errors = [], []
        for rule in add:
            value = rule["value"]
            if any(r["value"] == value for r in self.rules.values()):
                dup = next(i for i, r in self.rules.items() if r["value"] == value)
                errors.append({"value": value, "id": dup, "title": "DuplicateRule",
                               "type": "https://api.twitter.com/2/problems/duplicate-rules"})
            elif value.count("(") != value.count(")"):
                errors.append({"value": value, "title": "UnprocessableEntity",
                               "details": ["Unmatched parenthesis."],
                               "type": "https://api.twitter.com/2/problems/invalid-rules"})
            else:
                self._next_rule += 1
                created.append({"id": str(self._next_rule), "value": value,
                                **({"tag": rule["tag"]} if rule.get("tag") else {})})
        if not dry:
            self.rules.update((r["id"], r) for r in created)
        summary = {"created": len(created), "not_created": len(errors),
                   "valid": len(created), "invalid": len(errors)}
        doc: dict[str, Any] = {"meta": {"sent": "2026-12-01T00:00:00.000Z", "summary": summary}}
        if created:
            doc["data"] = created
        if errors:
            doc["errors"] = errors
        _json(h, 201 if created and not dry else 200, doc)

    def _delete(self, h: BaseHTTPRequestHandler, ids: list[str], dry: bool) -> None:
        found = [i for i in ids if i in self.rules]
        errors = [{"title": "Not Found Error", "detail": f"Could not find rule with id '{i}'",
                   "type": "https://api.twitter.com/2/problems/resource-not-found"}
                  for i in ids if i not in self.rules]
        if not dry:
            for i in found:
                del self.rules[i]
        doc: dict[str, Any] = {"meta": {"sent": "2026-12-01T00:00:00.000Z", "summary": {
            "deleted": len(found), "not_deleted": len(ids) - len(found)}}}
        if errors:
            doc["errors"] = errors
        _json(h, 200, doc)

    def start(self) -> XApiServer:
        threading.Thread(target=self._httpd.serve_forever, name="x-api-server",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        self.closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def _chunk(h: BaseHTTPRequestHandler, data: bytes) -> None:
    h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
    h.wfile.flush()


def _json(h: BaseHTTPRequestHandler, code: int, doc: dict[str, Any]) -> None:
    body = orjson.dumps(doc)
    h.send_response(code)
    h.send_header("Content-Type", "application/json; charset=utf-8")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)
    h.wfile.flush()


def _peer_closed(h: BaseHTTPRequestHandler) -> bool:
    """True once the client has closed its end (a readable socket with nothing to read)."""
    import select
    import socket

    sock = h.connection
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


@contextmanager
def running(scripts: dict[int | None, list[list[Step]]] | None = None) -> Iterator[XApiServer]:
    server = XApiServer(scripts).start()
    try:
        yield server
    finally:
        server.stop()
