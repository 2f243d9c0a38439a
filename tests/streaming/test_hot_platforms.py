"""The hot tier per platform (issue 14): a stream mixing X's Tweets and Bluesky's posts, with
copies, an edit and deletes on each platform (an X edit chain, one chain deleted through its edit;
a Bluesky `update`, deleted posts), counts each platform exactly under its own keys, on one Redis
and on a Redis Cluster; every read of the query service's hot store answers for `x`, `bluesky` and
both (the default) what the input says; and a rebuild from the raw tables after Redis lost
everything restores each platform's counts.

The truth is computed here from the topic's bytes and the documented semantics (docs/
effectively-once.md, tweetflow/hot_keys.py): a chain counts once, with its newest version's
members at its root's time, under the platform of its root's id (bit 63: Bluesky); the same id
re-sent with other content counts the last one to arrive; a delete of any id of a chain removes
the chain; unique authors are those of every version counted (deletes cannot lower an HLL).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from confluent_kafka import TopicPartition
from jetstream_server import history, is_post
from streaming_support import (
    SNOWFLAKE_EPOCH_MS,
    KafkaRecord,
    Pair,
    drain,
    high_watermarks,
    members,
    platform_of_id,
    produce,
    read_hot,
    read_topic,
    synthetic,
    with_duplicates,
)

from query_service.hot_store import HotStore, VolumeRow, connect
from query_service.planner import HOUR, MINUTE, Part, Source
from streaming.healer import Healer
from streaming.parsing import parse_payload
from tweetflow import namespaces
from tweetflow.clients import kafka_admin, redis_client
from tweetflow.hot_history import heal_key
from tweetflow.hot_keys import selected_platforms
from tweetflow.model import Tweet
from tweetflow.platforms import bluesky_post_id
from tweetflow.settings import Settings

ALL = None  # a read of every platform
SELECTIONS: tuple[tuple[str, ...] | None, ...] = (("x",), ("bluesky",), ALL)
X_EDIT_TAG, X_GONE_TAG, BLUESKY_EDIT_TAG = "platformedit", "platformgone", "blueskyedit"


# --- the stream ---------------------------------------------------------------------------------


def _x_edit(doc: dict[str, Any], ms: int, tag: str, lang: str) -> Pair:
    """A later version of the Tweet `doc` (same author): a new id listing the root's, other
    text, hashtag and language."""
    data = doc["data"]
    edit_id = ((ms - SNOWFLAKE_EPOCH_MS) << 22) | (513 << 12)
    text = f"#{tag} fixed"
    edited = {**data, "id": str(edit_id), "text": text, "lang": lang,
              "edit_history_tweet_ids": [data["id"], str(edit_id)],
              "created_at": datetime.fromtimestamp(ms / 1000, UTC).strftime(
                  "%Y-%m-%dT%H:%M:%S.000Z"),
              "entities": {"hashtags": [{"start": 0, "end": len(tag) + 1, "tag": tag}]}}
    edited.pop("referenced_tweets", None)
    return str(edit_id).encode(), orjson.dumps({**doc, "data": edited})


def _x_pairs(seed: int) -> list[Pair]:
    """Synthetic Tweets (with their deletes) and copies; then two edits of original Tweets by
    authors who post other live Tweets, the second one deleted through its edit's id."""
    pairs = synthetic(seed, 1500)
    docs = [orjson.loads(v) for _, v in pairs]
    deleted = {d["data"]["delete"]["tweet"]["id"] for d in docs if "delete" in d["data"]}
    live = [d for d in docs if "delete" not in d["data"] and d["data"]["id"] not in deleted]
    authors = Counter(d["data"]["author_id"] for d in live)
    roots = [d for d in live if "referenced_tweets" not in d["data"]
             and authors[d["data"]["author_id"]] >= 3][:2]
    assert len(roots) == 2
    edits = []
    for doc, tag, lang in ((roots[0], X_EDIT_TAG, "de"), (roots[1], X_GONE_TAG, "nl")):
        root_ms = (int(doc["data"]["id"]) >> 22) + SNOWFLAKE_EPOCH_MS
        edits.append(_x_edit(doc, root_ms + 10 * 60_000, tag, lang))
    gone_key = edits[1][0]
    delete = {"data": {"delete": {"tweet": {"id": gone_key.decode(),
                                            "author_id": roots[1]["data"]["author_id"]},
                                  "event_at": datetime.now(UTC).strftime(
                                      "%Y-%m-%dT%H:%M:%S.000Z")}}}
    return [*with_duplicates(pairs, 0.1, seed), edits[0], edits[1], edits[0],
            (gone_key, orjson.dumps(delete))]


def _bluesky_pairs(seed: int) -> list[Pair]:
    """Jetstream posts and deletes (as the producer publishes them: keyed by the post's id) with
    copies, then an update of a post that is not deleted: its last content counts."""
    start_us = int((time.time() - 3 * 3600) * 1e6)
    events = [e for e in history(seed, start_us, 80, step_us=60_000_000) if is_post(e)]

    def key(e: dict[str, Any]) -> bytes:
        return str(bluesky_post_id(e["did"], e["commit"]["rkey"])).encode()

    pairs = [(key(e), orjson.dumps(e)) for e in events]
    gone = {key(e) for e in events if e["commit"]["operation"] == "delete"}
    post = next(e for e in events if key(e) not in gone and e["commit"]["operation"] == "create"
                and "reply" not in e["commit"]["record"] and "embed" not in e["commit"]["record"])
    text = f"#{BLUESKY_EDIT_TAG} fixed"
    record = {**post["commit"]["record"], "text": text, "langs": ["de"], "facets": [
        {"index": {"byteStart": 0, "byteEnd": len(text.split()[0])},
         "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": BLUESKY_EDIT_TAG}]}]}
    update = {**post, "time_us": events[-1]["time_us"] + 1,
              "commit": {**post["commit"], "operation": "update", "record": record,
                         "cid": "bafyupdate"}}
    return [*with_duplicates(pairs, 0.2, seed), (key(post), orjson.dumps(update))]


def _stream(seed: int) -> list[Pair]:
    """Both platforms' messages merged at random, each keeping its order (a post's delete comes
    after the post); the edits and the update last, after what they change."""
    x, bluesky = _x_pairs(seed), _bluesky_pairs(seed)
    rng = random.Random(seed)
    places = sorted(rng.uniform(0, len(x) - 4) for _ in bluesky[:-1])
    merged = sorted([(float(i), 0, p) for i, p in enumerate(x[:-4])]
                    + [(at, 1, p) for at, p in zip(places, bluesky[:-1], strict=True)],
                    key=lambda item: item[:2])
    return [*(p for _, _, p in merged), *x[-4:], bluesky[-1]]


# --- the truth ----------------------------------------------------------------------------------


@dataclass
class Truth:
    n: Counter[tuple[int, int]] = field(default_factory=Counter)  # (grain, bucket) -> Tweets
    z: dict[tuple[str, int, int], Counter[str]] = field(
        default_factory=lambda: defaultdict(Counter))  # (dim, grain, bucket) -> member counts
    authors: dict[tuple[int, int], set[int]] = field(default_factory=lambda: defaultdict(set))

    def summed(self, dim: str, parts: Sequence[Part]) -> Counter[str]:
        total: Counter[str] = Counter()
        for p in parts:
            for b in p.buckets():
                total.update(self.z.get((dim, p.grain, b), Counter()))
        return total


def _buckets(epoch: float) -> list[tuple[int, int]]:
    return [(grain, int(epoch) // grain * grain) for grain in (MINUTE, HOUR)]


def _truth(records: Sequence[KafkaRecord], platforms: tuple[str, ...] | None) -> Truth:
    latest: dict[int, Tweet] = {}  # id -> its content that arrived last (one partition per id)
    deleted: set[int] = set()
    for rec in sorted(records, key=lambda r: (r.partition, r.offset)):
        for ev in parse_payload(rec.value or b""):
            if platforms is not None and platform_of_id(ev.tweet_id) not in platforms:
                continue
            if ev.tweet is None:
                deleted.add(ev.tweet_id)
            else:
                latest[ev.tweet_id] = ev.tweet
    chains: dict[int, list[Tweet]] = defaultdict(list)
    for t in latest.values():
        chains[t.edit_history_tweet_ids[0] if t.edit_history_tweet_ids else t.tweet_id].append(t)
    truth = Truth()
    for root, versions in chains.items():
        first = next((t for t in versions if t.tweet_id == root), None)
        when = (first.created_at.timestamp() if first is not None
                else (((root & ~(1 << 63)) >> 22) + SNOWFLAKE_EPOCH_MS) / 1000)
        for bucket in _buckets(when):
            truth.authors[bucket].update(t.author_id for t in versions)
        if {i for t in versions for i in (t.tweet_id, *t.edit_history_tweet_ids)} & deleted:
            continue
        newest = max(versions, key=lambda t: t.tweet_id)
        for grain, bucket in _buckets(when):
            truth.n[(grain, bucket)] += 1
            for dim, member in members(newest):
                truth.z[(dim, grain, bucket)][member] += 1
    return truth


def _letter(grain: int) -> str:
    return "m" if grain == MINUTE else "h"


def _assert_keys_match(s: Settings, truth: Truth, platforms: tuple[str, ...] | None) -> None:
    """Every per-bucket key of the platforms, summed, equals the truth."""
    hot = read_hot(s, platforms=platforms)
    assert hot.n == {(_letter(g), b): n for (g, b), n in truth.n.items() if n}
    assert hot.z == {(dim, _letter(g), b): dict(c) for (dim, g, b), c in truth.z.items()
                     if any(c.values())}
    # A bucket whose every Tweet was deleted may lack an HLL after a rebuild from the raw tables
    # (a copy stored after its delete may be the row merges keep: replayed, it counts nothing).
    expected_authors = {(_letter(g), b): len(ids) for (g, b), ids in truth.authors.items()}
    live = {(_letter(g), b) for (g, b), n in truth.n.items() if n}
    assert live <= hot.authors.keys() <= expected_authors.keys()
    for bucket, count in hot.authors.items():
        assert abs(count - expected_authors[bucket]) <= max(2, 0.03 * count), bucket


# --- the reads ----------------------------------------------------------------------------------


@dataclass
class Answers:
    tops: dict[int | None, list[tuple[str, int]]]
    scores: dict[str, int]
    series: dict[int, int]
    volume: dict[int, VolumeRow]
    newest: int | None


def _read(s: Settings, platforms: tuple[str, ...] | None, parts: list[Part], minutes: list[Part],
          wanted: list[str], now: float) -> Answers:
    async def reads() -> Answers:
        client = connect(s)
        store = HotStore(client, s.redis_prefix, s.hot_shard_count)
        try:
            tops = {k: await store.top("hashtag", parts, k, platforms=platforms)
                    for k in (1, 5, None)}
            return Answers(
                tops, await store.scores("hashtag", wanted, parts, platforms=platforms),
                await store.series("lang", "en", minutes, platforms=platforms),
                await store.volume(minutes, platforms=platforms),
                await store.newest_minute(now, 5 * HOUR, platforms=platforms))
        finally:
            await client.aclose()

    return asyncio.run(reads())


def _assert_reads_match(s: Settings, records: list[KafkaRecord], now: float) -> None:
    hour = int(now) // HOUR * HOUR
    parts = [Part(Source.HOT, hour - 5 * HOUR, hour - 2 * HOUR, HOUR),
             Part(Source.HOT, hour - 2 * HOUR, hour, MINUTE)]
    minutes = [Part(Source.HOT, hour - 4 * HOUR, hour, MINUTE)]
    for platforms in SELECTIONS:
        truth = _truth(records, platforms)
        _assert_keys_match(s, truth, platforms)
        tags = truth.summed("hashtag", parts)
        ranked = sorted(((m, n) for m, n in tags.items() if n),
                        key=lambda kv: (-kv[1], kv[0].encode()))
        wanted = list(dict.fromkeys([*(m for m, _ in ranked[:4]), X_EDIT_TAG, BLUESKY_EDIT_TAG,
                                     "no-such-tag"]))
        got = _read(s, platforms, parts, minutes, wanted, now)
        for k, top in got.tops.items():
            assert top == (ranked if k is None else ranked[:k]), (platforms, k)
        assert got.scores == {m: tags.get(m, 0) for m in wanted}, platforms
        buckets = list(minutes[0].buckets())
        assert got.series == {b: truth.z[("lang", MINUTE, b)]["en"] for b in buckets}, platforms
        assert {b: (r.count, r.by_lang, r.by_kind) for b, r in got.volume.items()} == {
            b: (truth.n[(MINUTE, b)], _positive(truth.z[("lang", MINUTE, b)]),
                _positive(truth.z[("kind", MINUTE, b)])) for b in buckets}, platforms
        assert got.newest == max((b for (g, b), n in truth.n.items() if g == MINUTE and n),
                                 default=None), platforms


def _positive(counts: Counter[str]) -> dict[str, int]:
    return {m: n for m, n in counts.items() if n > 0}


def _assert_scenario(records: list[KafkaRecord]) -> None:
    """The stream does what the test claims: both platforms, an edit counted and a chain deleted
    on X, an update counted and deletes on Bluesky, copies on both."""
    x, bluesky = _truth(records, ("x",)), _truth(records, ("bluesky",))
    assert x.n and bluesky.n
    assert x.summed("hashtag", _all_hours(x))[X_EDIT_TAG] == 1
    assert x.summed("hashtag", _all_hours(x))[X_GONE_TAG] == 0
    assert bluesky.summed("hashtag", _all_hours(bluesky))[BLUESKY_EDIT_TAG] == 1
    kinds = {(platform_of_id(e.tweet_id), e.kind)
             for r in records for e in parse_payload(r.value or b"")}
    assert kinds == {(p, k) for p in ("x", "bluesky") for k in ("tweet", "delete")}
    copies = Counter(r.value for r in records)
    assert {platform_of_id(int(r.key or b"0")) for r in records if copies[r.value] > 1} == {
        "x", "bluesky"}


def _all_hours(truth: Truth) -> list[Part]:
    hours = sorted(b for g, b in truth.n if g == HOUR)
    return [Part(Source.HOT, hours[0], hours[-1] + HOUR, HOUR)] if hours else []


def _lose_and_rebuild_from_raw(s: Settings) -> None:
    """Kafka's retention took the history and Redis lost every key: the healer rebuilds the hot
    tier from raw_tweets and tweet_deletes."""
    admin = kafka_admin(s)  # referenced until its futures are done
    futures = admin.delete_records([TopicPartition(s.topic_raw, p, h)
                                    for p, h in high_watermarks(s).items() if h > 0])
    for future in futures.values():
        future.result(30)
    namespaces.delete_keys(s)
    healer = Healer(s)
    try:
        assert healer.run(wait=True, retry=False)
    finally:
        healer.close()
    r = redis_client(s, decode_responses=True)  # each shard's rebuild plan (hot_history.py)
    assert {r.hget(heal_key(s.redis_prefix, s.topic_raw, n), "source")
            for n in range(s.hot_shard_count)} == {"raw"}


# --- the tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["standalone", pytest.param("cluster", marks=pytest.mark.slow)])
def test_each_platform_counts_exactly_and_rebuilds_from_the_raw_tables(
        mode: str, request: pytest.FixtureRequest) -> None:
    s: Settings = request.getfixturevalue(
        "cluster_settings" if mode == "cluster" else "test_settings")
    produce(s, _stream({"standalone": 1501, "cluster": 1502}[mode]))
    drain(s)
    records = read_topic(s)
    _assert_scenario(records)
    now = time.time()
    _assert_reads_match(s, records, now)
    _lose_and_rebuild_from_raw(s)
    _assert_reads_match(s, records, now)


def test_a_read_names_known_platforms() -> None:
    assert selected_platforms(None) == ("x", "bluesky")
    assert selected_platforms(["bluesky", "x", "x"]) == ("x", "bluesky")
    assert selected_platforms("bluesky") == ("bluesky",)
    for bad in (["mastodon"], []):
        with pytest.raises(ValueError):
            selected_platforms(bad)
