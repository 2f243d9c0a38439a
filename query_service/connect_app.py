"""The AnalyticsService over Connect: one ASGI application (served by granian beside the grpcio
server, see query_service.http_server) speaking the Connect protocol with JSON and binary protobuf
over HTTP/1.1 and HTTP/2, and gRPC-Web, through connectrpc's generated application
(tweetflow/v1/analytics_connect.py); plus `/healthz`, `/readyz` and the live page at `/`.

Same core, key and metrics as the grpcio server: the handlers call AnalyticsService with wire
bytes, check `x-api-key` (an HTTP header here), record the same Prometheus series, and map the
core's QueryError to Connect codes by name (connectrpc then sets the HTTP status: unauthenticated
401, invalid_argument 400, failed_precondition 400, unavailable 503, deadline_exceeded 504).

Why the codecs pass bytes through: connectrpc decodes every request into a message and encodes
every response, and google.protobuf's JSON printer alone capped a no-op Connect handler at ~9,000
JSON req/s here. These codecs hand the handler the body as it came (WireRequest) and send the
handler's bytes as they are; the handler answers binary requests with the core's wire bytes and
JSON ones with JSON encoded once per cache entry (query_service.json_answers).
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from query_service.errors import QueryError, Status
from query_service.json_answers import SERVICE, JsonAnswers
from query_service.metrics import SLOW_SECONDS, Series, end_request, log, start_request
from query_service.readiness import Readiness
from query_service.service import AnalyticsService
from tweetflow.auth import METADATA_KEY, ApiKeys
from tweetflow.v1.analytics_connect import AnalyticsServiceASGIApplication

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboard"
STATIC_ROUTE = "/static"  # served by granian itself from DASHBOARD_DIR / "static"


class WireRequest:
    """A request body as it came, and whether it is JSON (else binary protobuf)."""

    __slots__ = ("body", "json")

    def __init__(self, body: bytes, json: bool) -> None:
        self.body = body
        self.json = json


class PassThrough:
    """A connectrpc Codec that leaves bodies to the handler (see the module docstring)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._json = name == "json"

    def name(self) -> str:
        return self._name

    def encode(self, message: bytes) -> bytes:
        return message

    def decode(self, data: bytes | bytearray, _message_class: type) -> WireRequest:
        return WireRequest(bytes(data), self._json)


def snake(name: str) -> str:
    """`TrendingHashtags` -> `trending_hashtags` (the generated application's handler names)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class ConnectHandlers:
    """One Connect handler per AnalyticsService method over the core."""

    def __init__(self, service: AnalyticsService, keys: ApiKeys | None) -> None:
        self.service = service
        self.json = JsonAnswers(service)
        self.keys = keys

    def endpoints(self) -> SimpleNamespace:
        """The service object the generated application expects (snake_case methods)."""
        return SimpleNamespace(**{snake(m.name): self.handler(m.name) for m in SERVICE.methods})

    def handler(self, method: str) -> Any:
        series = Series(method)
        perf_counter = time.perf_counter

        async def handle(request: WireRequest, ctx: RequestContext) -> bytes:
            started = perf_counter()
            info, token = start_request()
            code = "OK"
            try:
                return await self._answer(method, request, ctx, info)
            except QueryError as exc:
                code = exc.status.name
                raise ConnectError(Code[exc.status.name], exc.message) from None
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            finally:
                end_request(token)
                seconds = perf_counter() - started
                series.record(info.path, code, seconds)
                if code != "OK" or seconds > SLOW_SECONDS:
                    log.info("%s %s path=%s %.1fms peer=%s (Connect)", method, code, info.path,
                             seconds * 1000, ctx.client_address)

        return handle

    async def _answer(self, method: str, request: WireRequest, ctx: RequestContext,
                      info: Any) -> bytes:
        if self.keys is not None:
            refusal = self.keys.refusal_of(ctx.request_headers.get(METADATA_KEY))
            if refusal is not None:
                raise QueryError(Status.UNAUTHENTICATED, refusal)
        answer = (self.json.cached(method, request.body) if request.json
                  else self.service.cached(method, request.body))
        if answer is not None:
            info.path = "cache"
            return answer
        timeout_ms = ctx.timeout_ms
        timeout = None if timeout_ms is None else max(0.001, timeout_ms / 1000)
        if request.json:
            return await self.json.answer(method, request.body, timeout)
        return await self.service.answer(method, request.body, timeout)


class CacheHits:
    """The commonest Connect call answered without connectrpc: a unary POST in JSON or binary,
    uncompressed, with a known key, whose answer is in the in-process cache. Anything else (a
    miss, gRPC-Web, compression, a refused key, GET, a body in several chunks) goes to connectrpc
    with the body already read handed on, so it answers, refuses and counts as usual.

    Why by hand: connectrpc's per-request machinery (headers object, request context, deadline
    scope, disconnect watch, interceptor run, response helpers) measured ~30-50 us of Python per
    call here against ~1 us for a bare ASGI answer, and a cached answer needs none of it; this
    path costs a header scan, one or two dict look-ups and the metrics.
    """

    CONTENT_TYPES = {b"application/json": True, b"application/proto": False}

    def __init__(self, handlers: ConnectHandlers) -> None:
        self.handlers = handlers
        self.routes = {f"/{SERVICE.full_name}/{m.name}": (m.name, Series(m.name))
                       for m in SERVICE.methods}

    async def answer(self, scope: dict, receive: Any, send: Any, route: tuple[str, Series],
                     connect: Any) -> None:
        started = time.perf_counter()
        content_type = key = encoding = version = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"x-api-key":
                key = value
            elif name == b"content-encoding":
                encoding = value
            elif name == b"connect-protocol-version":
                version = value
        messages = await _read_body(receive)
        json = self.CONTENT_TYPES.get(content_type)  # type: ignore[arg-type]
        complete = messages[-1]["type"] == "http.request" and not messages[-1].get("more_body")
        if (complete and json is not None and encoding in (None, b"identity")
                and version in (None, b"1")
                and (self.handlers.keys is None or self.handlers.keys.refusal_of(key) is None)):
            method, series = route
            body = b"".join(m.get("body", b"") for m in messages)
            answer = (self.handlers.json.cached(method, body) if json
                      else self.handlers.service.cached(method, body))
            if answer is not None:
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", content_type)]})
                await send({"type": "http.response.body", "body": answer})
                series.record("cache", "OK", time.perf_counter() - started)
                return
        await connect(scope, _replay(messages, receive), send)


MAX_BODY = 64 * 1024  # a larger request is left to connectrpc (and its size limit)


async def _read_body(receive: Any) -> list[dict]:
    """The request's messages up to the body's end (granian may send the body in several, the
    last with `more_body` false), a disconnect, or MAX_BODY bytes."""
    messages = [await receive()]
    size = len(messages[0].get("body", b""))
    while (messages[-1]["type"] == "http.request" and messages[-1].get("more_body")
           and size <= MAX_BODY):
        messages.append(await receive())
        size += len(messages[-1].get("body", b""))
    return messages


def _replay(messages: list[dict], receive: Any) -> Any:
    """`receive` that first gives back the messages already read, in order."""
    pending = messages[::-1]

    async def again() -> dict:
        return pending.pop() if pending else await receive()

    return again


class HttpApp:
    """The ASGI application: `/healthz`, `/readyz`, the page at `/`, and Connect for the rest
    (cache hits first, see CacheHits)."""

    def __init__(self, service: AnalyticsService, keys: ApiKeys | None) -> None:
        handlers = ConnectHandlers(service, keys)
        self.connect = AnalyticsServiceASGIApplication(
            handlers.endpoints(),  # type: ignore[arg-type]
            codecs=[PassThrough("proto"), PassThrough("json")])
        self.hits = CacheHits(handlers)
        self.readiness = Readiness(service.b)
        self.page = (DASHBOARD_DIR / "index.html").read_bytes()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            if method == "POST":
                route = self.hits.routes.get(path)
                if route is not None:
                    return await self.hits.answer(scope, receive, send, route, self.connect)
            elif method in ("GET", "HEAD"):
                if path == "/healthz":
                    return await _respond(send, 200, b'{"status":"ok"}\n', b"application/json")
                if path == "/readyz":
                    ready, body = await self.readiness.check()
                    return await _respond(send, 200 if ready else 503, body, b"application/json")
                if path in ("/", "/index.html"):
                    return await _respond(send, 200, self.page, b"text/html; charset=utf-8")
        await self.connect(scope, receive, send)  # lifespan too: it has nothing to set up
        return None


async def _respond(send: Any, status: int, body: bytes, content_type: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})

