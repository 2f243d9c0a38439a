"""The X API v2 streams as a live source: filtered (`x-stream`), 1% sample (`x-sample`) and Tweet
compliance (`x-compliance`, one connection per partition, 1-4).

Protocol (X's docs; ../shared/docs/SOURCES.md): a long-lived GET with an app-only bearer token,
answered with one JSON object per `\\r\\n`-terminated line, and a bare `\\r\\n` keep-alive about
every 20 s. Each line goes to Kafka unchanged, keyed by its Tweet id (`streaming.producer.keyed`),
so parsing and deduplication stay in the consumers; a line cut by a dropped connection is
incomplete and dropped (`backfill_minutes` re-sends it where the account has it).

Where X's rules are applied:
* keep-alive: the read timeout is `STALL_SECONDS` (20 s); a read that times out is a stall, and
  the connection is dropped and reconnected (`_connect_once`, `httpx.ReadTimeout`);
* reconnection delays: `streaming.sources.backoff.ReconnectPolicy`, reset by each HTTP 200;
* in-stream `errors` objects (no `data`): logged and counted, never published; one announcing a
  disconnect (`disconnect_type`, or the title `operational-disconnect`) makes the client drop the
  connection and reconnect at once (`_control`);
* HTTP errors: 429 and 5xx (and the old 420) are retried per the policy; a 429 whose body says
  `TooManyConnections` is logged as such (one connection per app on pay-per-use); any other status
  (400, 401, 403, 404...) ends the run with X's own title and detail: retrying cannot fix it;
* `backfill_minutes` (settings.x_backfill_minutes) on every reconnect, when set.

Why httpx: a maintained client with streaming bodies, a read timeout per socket read (which is
exactly the keep-alive rule) and chunked decoding; the standard library's http.client has no
per-read timeout on a response body without reaching into its socket.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from streaming.metrics import SOURCE_KEEPALIVES, SOURCE_MESSAGES, SOURCE_STREAM_ERRORS
from streaming.producer import Message, keyed
from streaming.sources.backoff import Failure, ReconnectPolicy
from streaming.sources.live import LiveSource
from tweetflow.settings import Settings

log = logging.getLogger(__name__)

STREAMS: dict[str, str] = {
    "x-stream": "/2/tweets/search/stream",
    "x-sample": "/2/tweets/sample/stream",
    "x-compliance": "/2/tweets/compliance/stream",
}
COMPLIANCE_PARTITIONS = (1, 2, 3, 4)
STALL_SECONDS = 20.0  # X: a keep-alive about every 20 s; nothing for 20 s means a stalled stream
# What the parser reads (streaming/parsing/v2.py): the Tweet fields, the author's username, the
# retweeted Tweet and its author (to rebuild a truncated retweet), the place's country.
FIELD_PARAMS: dict[str, str] = {
    "tweet.fields": "attachments,author_id,conversation_id,created_at,edit_history_tweet_ids,"
                    "entities,geo,in_reply_to_user_id,lang,note_tweet,possibly_sensitive,"
                    "public_metrics,referenced_tweets,source",
    "expansions": "author_id,referenced_tweets.id,referenced_tweets.id.author_id,geo.place_id",
    "user.fields": "username",
    "place.fields": "country_code",
}
_ERROR_BODY_LIMIT = 64 * 1024


def x_client(settings: Settings, read_timeout: float = 30.0,
             transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """An httpx client for the X API v2 with the app's bearer token; ValueError without one."""
    token = settings.x_bearer_token.get_secret_value()
    if not token:
        raise ValueError("X_BEARER_TOKEN is not set: create an app in the X developer portal "
                         "and export its bearer token (README: Connecting an X app)")
    return httpx.Client(
        base_url=settings.x_api_base_url.rstrip("/"), transport=transport,
        headers={"Authorization": f"Bearer {token}", "User-Agent": "tweetflow"},
        timeout=httpx.Timeout(10.0, read=read_timeout))


def x_error(status: int, body: bytes) -> tuple[str, str]:
    """(title, description) of an X error response: `{"title", "detail", "type"}` or
    `{"errors": [{"message"}]}`, else the body's start."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        text = body[:200].decode(errors="replace").strip()
        return "", f"HTTP {status}" + (f": {text}" if text else "")
    first = doc["errors"][0] if isinstance(doc.get("errors"), list) and doc["errors"] else {}
    first = first if isinstance(first, dict) else {}
    title = str(doc.get("title") or first.get("title") or "")
    detail = str(doc.get("detail") or first.get("message") or first.get("detail") or "")
    issue = doc.get("connection_issue")
    words = [w for w in (title, str(issue) if issue else "", detail) if w]
    return (str(issue) if issue else title), f"HTTP {status}: " + ": ".join(words)


class XStream(LiveSource):
    """One of X's v2 streams (`STREAMS`), reconnected by X's rules."""

    def __init__(self, settings: Settings, source: str = "x-stream", *,
                 partitions: tuple[int, ...] = COMPLIANCE_PARTITIONS,
                 stall_seconds: float = STALL_SECONDS, sleep: Callable[[float], Any] | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        if source not in STREAMS:
            raise ValueError(f"unknown X stream {source!r}: one of {', '.join(STREAMS)}")
        if source == "x-compliance" and not (
                partitions and set(partitions) <= set(COMPLIANCE_PARTITIONS)):
            raise ValueError("compliance partitions are 1, 2, 3 and 4")
        super().__init__(source, sleep=sleep)
        self.path = STREAMS[source]
        self.partitions: tuple[int | None, ...] = (
            tuple(sorted(set(partitions))) if source == "x-compliance" else (None,))
        self.backfill_minutes = settings.x_backfill_minutes
        self._client = x_client(settings, stall_seconds, transport)

    def _readers(self) -> list[Callable[[], None]]:
        return [lambda p=p: self._connection(p) for p in self.partitions]

    def _disconnect(self) -> None:
        self._client.close()

    def message(self, item: bytes) -> Message:
        return keyed(item)

    def params(self, partition: int | None, reconnect: bool) -> dict[str, Any]:
        """The query of one connection: the fields the parser uses (not on compliance), the
        partition, and `backfill_minutes` on a reconnect when configured."""
        params: dict[str, Any] = dict(FIELD_PARAMS) if partition is None else {
            "partition": partition}
        if reconnect and self.backfill_minutes:
            params["backfill_minutes"] = self.backfill_minutes
        return params

    def _connection(self, partition: int | None) -> None:
        """One connection's life: connect, read, and reconnect by the policy until stopped."""
        tag = "" if partition is None else f"p{partition} "
        policy = ReconnectPolicy()
        attempt = 0
        while not self.stopped:
            try:
                failure = self._connect_once(partition, attempt > 0, policy, tag)
            except Exception as exc:  # a bug here must end the run visibly, not hang it
                if not self.stopped:
                    self.fail(f"{tag}{type(exc).__name__}: {exc}")
                return
            if failure is None or not self.wait(failure, policy.delay(failure), tag):
                return
            attempt += 1

    def _connect_once(self, partition: int | None, reconnect: bool, policy: ReconnectPolicy,
                      tag: str) -> Failure | None:
        """Connect and read until the connection ends; the failure to back off from, or None
        when stopped or failed for good."""
        self.note("connect", tag.strip())
        try:
            with self._client.stream("GET", self.path,
                                     params=self.params(partition, reconnect)) as response:
                if response.status_code != 200:
                    return self._http_failure(response, tag)
                policy.connected()
                self.counts["connected"] += 1
                self.note("connected", tag.strip())
                ended = self._read(response, tag)
        except httpx.ReadTimeout:
            ended = "stall"
        except httpx.TransportError as exc:
            if self.stopped:
                return None
            ended = f"network {type(exc).__name__}"
        if ended is None:
            return None
        self.note("disconnect", f"{tag}{ended}")
        return Failure.NETWORK

    def _http_failure(self, response: httpx.Response, tag: str) -> Failure | None:
        body = b""
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) >= _ERROR_BODY_LIMIT:
                break
        title, text = x_error(response.status_code, body)
        self.note("http_error", f"{tag}{response.status_code} {title}".rstrip())
        if response.status_code == 429:
            if title == "TooManyConnections":
                log.error("%s: X refused the connection: this app already holds every "
                          "connection its access level allows (one on pay-per-use); stop the "
                          "other client of this stream (another `tweetflow produce`?). %s",
                          self.name, text)
            return Failure.RATE_LIMIT
        if response.status_code >= 500 or response.status_code == 420:
            return Failure.HTTP
        self.fail(f"{tag}{text}")
        return None

    def _read(self, response: httpx.Response, tag: str) -> str | None:
        """Queue each complete line; returns why the connection ended ("closed" by the server,
        "stream_error"), or None when stopped."""
        pending = bytearray()
        for chunk in response.iter_bytes():
            pending += chunk
            start = 0
            while (end := pending.find(b"\n", start)) >= 0:
                line = bytes(pending[start:end]).rstrip(b"\r")
                start = end + 1
                if not line.strip():
                    self.counts["keep-alives"] += 1
                    SOURCE_KEEPALIVES.labels(self.name).inc()
                    continue
                control = self._control(line, tag)
                if control == "disconnect":
                    return "stream_error"
                if control is None:
                    SOURCE_MESSAGES.labels(self.name).inc()
                    if not self.put(line):
                        return None
            del pending[:start]
        if pending.strip():
            self.note("incomplete", f"{tag}{len(pending)} bytes dropped")
        return "closed"

    def _control(self, line: bytes, tag: str) -> str | None:
        """For an in-stream error message (`errors` and no `data`): "disconnect" if one of its
        errors announces one, else "info"; None for anything else (published)."""
        if line.startswith(b'{"data"'):
            return None
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(doc, dict) or "data" in doc or not isinstance(doc.get("errors"), list):
            return None
        disconnect = False
        for error in doc["errors"]:
            error = error if isinstance(error, dict) else {}
            kind = str(error.get("disconnect_type") or error.get("title") or "unknown")
            disconnect |= "disconnect_type" in error or error.get("title") == "operational-disconnect"
            self.counts[f"stream error {kind}"] += 1
            SOURCE_STREAM_ERRORS.labels(self.name, kind).inc()
            self.note("stream_error", f"{tag}{kind}")
            log.warning("%s: in-stream error %s", self.name, orjson.dumps(error).decode()[:500])
        return "disconnect" if disconnect else "info"
