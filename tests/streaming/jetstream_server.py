"""A local Jetstream: a WebSocket server replaying a list of events as Jetstream's README says.

`/subscribe?wantedCollections=...&cursor=...&compress=true`: events whose `time_us` is at or after
`cursor` (all of them without one, as a replay of the test's history), commits filtered by the
wanted collections, identity and account events always; with `compress=true` each message is a
zstd frame made with Jetstream's dictionary. Misbehaviour is scripted per connection: how many
events to send, then drop the TCP connection without a close frame (what Jetstream does to a
subscriber that falls behind), close normally, or hold the connection open; or refuse the
handshake with an HTTP status.

Also builds events: posts with facets, replies, quotes, deletes and identity events, with record
keys that are TIDs of their time (encoded here from the atproto spec, not with the code under test).
"""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import zstandard
from websockets.http11 import Response
from websockets.sync.server import ServerConnection, serve

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DICTIONARY = PROJECT_ROOT / "streaming" / "sources" / "jetstream_zstd_dictionary"
_S32 = "234567abcdefghijklmnopqrstuvwxyz"


def tid(time_us: int, clock_id: int) -> str:
    value = (time_us << 10) | (clock_id & 1023)
    return "".join(_S32[(value >> (5 * i)) & 31] for i in range(12, -1, -1))


@dataclass
class Connection:
    """What one connection does: send up to `send` events (None: all), then `then`:
    "drop" (TCP closed, no close frame), "close" (a normal close) or "hold"; or answer the
    handshake with `refuse` (an HTTP status)."""

    send: int | None = None
    then: str = "hold"
    refuse: int = 0


@dataclass
class Seen:
    cursor: int | None
    query: dict[str, list[str]]
    sent: list[dict[str, Any]] = field(default_factory=list)


class JetstreamServer:
    def __init__(self, events: list[dict[str, Any]], script: list[Connection]) -> None:
        self.events = sorted(events, key=lambda e: e["time_us"])
        self.script = list(script)
        self.connections: list[Seen] = []
        self._zstd = zstandard.ZstdCompressor(
            dict_data=zstandard.ZstdCompressionDict(DICTIONARY.read_bytes()))
        self._closing = threading.Event()
        self._server = serve(self._handle, "127.0.0.1", 0, process_request=self._refuse,
                             compression=None)
        self.url = f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}/subscribe"

    def _refuse(self, conn: ServerConnection, request: Any) -> Response | None:
        if self.script and self.script[0].refuse:
            status = self.script.pop(0).refuse
            self.connections.append(Seen(None, parse_qs(urlsplit(request.path).query)))
            return conn.respond(status, "unavailable\n")
        return None

    def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        query = parse_qs(urlsplit(ws.request.path).query)
        cursor = int(query["cursor"][0]) if "cursor" in query else None
        seen = Seen(cursor, query)
        self.connections.append(seen)
        plan = self.script.pop(0) if self.script else Connection()
        compress = query.get("compress") == ["true"]
        for event in self.replay(cursor, query.get("wantedCollections", []))[:plan.send]:
            data = orjson.dumps(event)
            ws.send(self._zstd.compress(data) if compress else data.decode())
            seen.sent.append(event)
        if plan.then == "drop":
            ws.socket.shutdown(socket.SHUT_RDWR)
            ws.socket.close()
        elif plan.then == "close":
            ws.close()
        else:
            while not self._closing.is_set():
                try:
                    ws.recv(timeout=0.1)
                except TimeoutError:
                    continue
                except Exception:
                    return

    def replay(self, cursor: int | None = None,
               wanted: list[str] = ["app.bsky.feed.post"]) -> list[dict[str, Any]]:  # noqa: B006
        """The events a subscription from `cursor` gets: commits of the wanted collections,
        identity and account events, at or after the cursor."""
        return [e for e in self.events if (cursor is None or e["time_us"] >= cursor) and (
            e["kind"] != "commit" or not wanted or e["commit"]["collection"] in wanted)]

    def sent_posts(self) -> list[dict[str, Any]]:
        """Every post commit sent, in order, repeats included."""
        return [e for c in self.connections for e in c.sent if is_post(e)]

    def start(self) -> JetstreamServer:
        threading.Thread(target=self._server.serve_forever, name="jetstream-server",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        self._closing.set()
        self._server.shutdown()


@contextmanager
def running(events: list[dict[str, Any]], script: list[Connection]) -> Iterator[JetstreamServer]:
    server = JetstreamServer(events, script).start()
    try:
        yield server
    finally:
        server.stop()


def is_post(event: dict[str, Any]) -> bool:
    return event["kind"] == "commit" and event["commit"]["collection"] == "app.bsky.feed.post"


# --- events --------------------------------------------------------------------------------------


def _facet(text: str, fragment: str, feature: dict[str, Any]) -> dict[str, Any]:
    start = text.encode().index(fragment.encode())
    return {"index": {"byteStart": start, "byteEnd": start + len(fragment.encode())},
            "features": [feature]}


def history(seed: int, start_us: int, n_posts: int, step_us: int = 1_000_000) -> list[dict]:
    """`n_posts` posts one `step_us` apart from `start_us` (some replies and quotes of earlier
    ones, multi-byte text before their facets), identity events and likes between them, and
    deletes of a few earlier posts at the end."""
    rng = random.Random(seed)
    dids = [f"did:plc:{rng.getrandbits(100):025x}" for _ in range(8)]
    events: list[dict[str, Any]] = []
    posts: list[tuple[str, str]] = []
    t = start_us
    for i in range(n_posts):
        did = rng.choice(dids)
        rkey = tid(t - 3_000, rng.randrange(1024))
        tag, who = rng.choice(["Python", "日本語", "ClickHouse"]), rng.choice(dids)
        text = f"{'é🎉' * rng.randrange(3)} post {i} #{tag} @friend{i}.bsky.social https://ex{i}.com/a"
        record: dict[str, Any] = {
            "$type": "app.bsky.feed.post", "text": text, "langs": [rng.choice(["en", "pt-BR", "ja"])],
            "createdAt": _iso(t - 3_000),
            "facets": [
                _facet(text, f"#{tag}", {"$type": "app.bsky.richtext.facet#tag", "tag": tag}),
                _facet(text, f"@friend{i}.bsky.social",
                       {"$type": "app.bsky.richtext.facet#mention", "did": who}),
                _facet(text, f"https://ex{i}.com/a",
                       {"$type": "app.bsky.richtext.facet#link", "uri": f"https://ex{i}.com/a"})]}
        if posts and i % 5 == 3:
            parent = f"at://{posts[-1][0]}/app.bsky.feed.post/{posts[-1][1]}"
            record["reply"] = {"root": {"uri": parent, "cid": "bafyroot"},
                               "parent": {"uri": parent, "cid": "bafyparent"}}
        elif posts and i % 7 == 4:
            quoted = f"at://{posts[0][0]}/app.bsky.feed.post/{posts[0][1]}"
            record["embed"] = {"$type": "app.bsky.embed.record",
                               "record": {"uri": quoted, "cid": "bafyq"}}
        events.append(_commit(did, t, "create", "app.bsky.feed.post", rkey, record))
        posts.append((did, rkey))
        if i % 6 == 2:
            events.append({"did": did, "time_us": t + step_us // 3, "kind": "identity",
                           "identity": {"did": did, "handle": f"user{i}.bsky.social",
                                        "seq": i, "time": _iso(t)}})
        if i % 4 == 1:
            events.append(_commit(did, t + step_us // 2, "create", "app.bsky.feed.like",
                                  tid(t, 1), {"$type": "app.bsky.feed.like"}))
        t += step_us
    for did, rkey in posts[1:n_posts:9]:
        events.append(_commit(did, t, "delete", "app.bsky.feed.post", rkey, None))
        t += step_us
    return events


def _commit(did: str, time_us: int, op: str, collection: str, rkey: str,
            record: dict[str, Any] | None) -> dict[str, Any]:
    commit: dict[str, Any] = {"rev": tid(time_us, 7), "operation": op, "collection": collection,
                              "rkey": rkey}
    if record is not None:
        commit.update(record=record, cid=f"bafy{time_us}")
    return {"did": did, "time_us": time_us, "kind": "commit", "commit": commit}


def _iso(time_us: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(time_us / 1e6, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
