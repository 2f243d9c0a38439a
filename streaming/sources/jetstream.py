"""Bluesky's Jetstream as a live source: `app.bsky.feed.post` commits from its WebSocket, published
as received (keyed by the post's platform-scoped id) and resumed from a durable cursor.

Protocol (Jetstream's README; ../shared/docs/SOURCES.md): `GET /subscribe` upgraded to a
WebSocket, with `wantedCollections=app.bsky.feed.post`, optionally `compress=true` (each message a
zstd frame made with Jetstream's published dictionary) and `cursor` (unix microseconds: replay from
that instant; absent = live). Each message is one JSON event `{"did", "time_us", "kind", ...}`;
identity and account events come whatever the filter and are not posts. The server pings every
30 s and drops, without a close frame, a subscriber that cannot keep up.

Exactly once, with at-least-once delivery underneath:
* resume: the reader remembers the `time_us` of the last event received, and every reconnect asks
  for `cursor` = that minus `jetstream_rewind_seconds` (5 s), so nothing between two connections is
  missed; the rewind's repeats carry the same ids and the consumers drop them;
* durable cursor: every `CHECKPOINT_SECONDS` the run flushes the producer and, if every message
  handed to it so far was acknowledged, stores the last such event's `time_us`
  (`<data dir>/jetstream_cursor.json`, replaced atomically); the next run starts from it, rewound.
  A failed delivery stops the checkpoints, so a restart replays from before the loss. Cost: one
  flush (~20-50 ms, the linger and a round trip) every 5 s.

Jetstream documents no reconnection schedule; X's (`backoff.ReconnectPolicy`) is used: at once after
a dropped connection, then linearly; exponentially after a refused handshake (5xx), from 60 s
after a 429. Why `websockets`: the maintained WebSocket library, with a thread-safe synchronous
client that answers the server's pings and pings back (20 s) to notice a dead peer.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import zstandard
from websockets.exceptions import ConnectionClosedError, InvalidStatus, WebSocketException
from websockets.sync.client import connect

from streaming.metrics import SOURCE_MESSAGES
from streaming.producer import Message, TweetProducer
from streaming.sources.backoff import Failure, ReconnectPolicy
from streaming.sources.live import LiveSource
from tweetflow.platforms import bluesky_post_id
from tweetflow.settings import Settings

POST_COLLECTION = "app.bsky.feed.post"
CHECKPOINT_SECONDS = 5.0
MAX_MESSAGE_BYTES = 4 << 20
# Jetstream's zstd dictionary (id 1612007021), as published in bluesky-social/jetstream
# (MIT / Apache-2.0): compressed frames cannot be read without it.
DICTIONARY = Path(__file__).with_name("jetstream_zstd_dictionary")
Item = tuple[bytes | None, bytes, int, int | None]  # (key, value, post id or 0, time_us)


class CursorStore:
    """The `time_us` of the last event written to Kafka, in a small JSON file that is replaced
    atomically (write, fsync, rename, fsync the directory): a crash leaves the old or the new."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> int | None:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ValueError(f"Jetstream cursor file {self.path} is unreadable ({exc}): "
                             "remove it to start from the live tail") from exc
        value = doc.get("time_us") if isinstance(doc, dict) else None
        if type(value) is not int or value < 0:
            raise ValueError(f"Jetstream cursor file {self.path} holds no time_us: remove it "
                             "to start from the live tail")
        return value

    def save(self, time_us: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as f:
            json.dump({"time_us": time_us}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def subscribe_url(base: str, cursor: int | None, compress: bool) -> str:
    """`base` with the query Jetstream needs (its own query parameters are kept)."""
    parts = urlsplit(base)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("cursor", "compress")]
    if not any(k == "wantedCollections" for k, _ in query):
        query.append(("wantedCollections", POST_COLLECTION))
    if compress:
        query.append(("compress", "true"))
    if cursor is not None:
        query.append(("cursor", str(cursor)))
    return urlunsplit(parts._replace(query=urlencode(query)))


class Jetstream(LiveSource):
    def __init__(self, settings: Settings, *, cursor_store: CursorStore | None = None,
                 checkpoint_seconds: float = CHECKPOINT_SECONDS,
                 sleep: Callable[[float], Any] | None = None) -> None:
        super().__init__("jetstream", sleep=sleep)
        self.url = settings.jetstream_url
        if urlsplit(self.url).scheme not in ("ws", "wss"):
            raise ValueError(f"JETSTREAM_URL {self.url!r} is not a ws:// or wss:// URL")
        self.compress = settings.jetstream_compress
        self.rewind_us = int(settings.jetstream_rewind_seconds * 1_000_000)
        self.store = cursor_store or CursorStore(settings.data_dir / "jetstream_cursor.json")
        self.checkpoint_seconds = checkpoint_seconds
        self._received = self._saved = self.store.load()  # time_us read last / stored last
        self._handed: int | None = None  # time_us of the last post handed to the run
        self._producer: TweetProducer | None = None
        self._lost = False  # a delivery failed: the stored cursor must not move any more
        self._next_checkpoint = time.monotonic() + checkpoint_seconds
        self._ws: Any = None
        self._zstd = (zstandard.ZstdDecompressor(
            dict_data=zstandard.ZstdCompressionDict(DICTIONARY.read_bytes()))
            if self.compress else None)

    # --- reader thread ---------------------------------------------------------------------

    def _readers(self) -> list[Callable[[], None]]:
        return [self._connection]

    def _disconnect(self) -> None:
        ws = self._ws
        if ws is not None:
            ws.close()

    def _connection(self) -> None:
        policy = ReconnectPolicy()
        while not self.stopped:
            try:
                failure = self._connect_once(policy)
            except Exception as exc:  # a bug here must end the run visibly, not hang it
                if not self.stopped:
                    self.fail(f"{type(exc).__name__}: {exc}")
                return
            if failure is None or not self.wait(failure, policy.delay(failure)):
                return

    def _connect_once(self, policy: ReconnectPolicy) -> Failure | None:
        cursor = None if self._received is None else max(0, self._received - self.rewind_us)
        self.note("connect", "live" if cursor is None else f"cursor {cursor}")
        try:
            with connect(subscribe_url(self.url, cursor, self.compress), open_timeout=10,
                         close_timeout=2, max_size=MAX_MESSAGE_BYTES, compression=None) as ws:
                self._ws = ws
                policy.connected()
                self.counts["connected"] += 1
                self.note("connected")
                for frame in ws:
                    if not self._frame(frame):
                        return None
                ended = "closed"
        except InvalidStatus as exc:
            return self._refused(exc.response.status_code)
        except ConnectionClosedError as exc:
            ended = f"dropped ({exc.rcvd.code if exc.rcvd else 1006})"
        except (OSError, TimeoutError, WebSocketException) as exc:
            ended = f"network {type(exc).__name__}"
        finally:
            self._ws = None
        if self.stopped:
            return None
        self.note("disconnect", ended)
        return Failure.NETWORK

    def _refused(self, status: int) -> Failure | None:
        self.note("http_error", str(status))
        if status == 429:
            return Failure.RATE_LIMIT
        if status >= 500:
            return Failure.HTTP
        self.fail(f"Jetstream at {self.url} refused the connection with HTTP {status}")
        return None

    def _frame(self, frame: str | bytes) -> bool:
        """Queue a post commit; remember every event's time_us. False once stopped."""
        raw = frame.encode() if isinstance(frame, str) else frame
        if self._zstd is not None and isinstance(frame, bytes):
            try:
                raw = self._zstd.decompressobj().decompress(frame)
            except zstandard.ZstdError:
                self.counts["undecodable frames"] += 1
                return self.put((None, frame, 0, None))  # the consumers dead-letter it
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return self.put((None, raw, 0, None))
        if not isinstance(doc, dict):
            return self.put((None, raw, 0, None))
        time_us = doc.get("time_us")
        if type(time_us) is int:
            self._received = time_us
        commit = doc.get("commit")
        if doc.get("kind") != "commit" or not isinstance(commit, dict) or commit.get(
                "collection") != POST_COLLECTION:
            self.counts[f"skipped {doc.get('kind')}"] += 1
            return True
        SOURCE_MESSAGES.labels(self.name).inc()
        try:
            post_id = bluesky_post_id(str(doc.get("did")), str(commit.get("rkey")))
        except ValueError:
            return self.put((None, raw, 0, time_us))  # the parser says why, in the DLQ
        return self.put((str(post_id).encode(), raw, post_id, time_us))

    # --- the run loop's side ------------------------------------------------------------------

    def message(self, item: Item) -> Message:
        key, value, post_id, time_us = item
        if time_us is not None:
            self._handed = time_us
        return key, value, post_id

    def bind(self, producer: TweetProducer) -> None:
        self._producer = producer

    def idle(self) -> None:
        if self._producer is not None and time.monotonic() >= self._next_checkpoint:
            self._next_checkpoint = time.monotonic() + self.checkpoint_seconds
            mark = self._handed
            if mark is not None and mark != self._saved and not self._lost:
                stats = self._producer.flush(30)
                self._checkpoint(mark, stats.failed == 0 and stats.undelivered == 0)

    def finish(self, delivered: bool) -> None:
        if self._handed is not None:
            self._checkpoint(self._handed, delivered)

    def _checkpoint(self, time_us: int, delivered: bool) -> None:
        if self._lost or time_us == self._saved:
            return
        if not delivered:  # never move past a message Kafka may not have
            self._lost = True
            self.note("checkpoint", f"stopped: deliveries failed; cursor stays at {self._saved}")
            return
        self.store.save(time_us)
        self._saved = time_us
        self.note("checkpoint", str(time_us))
