"""Edited Tweets count once: an edit chain is one Tweet with its newest version's hashtags and
language and its root's time, on the hot path, in the marts, through the query API and in
ClickHouse, whatever order its versions and deletes arrive in (issue 20).

Each case is a chain in a two-hour window of its own: the root 50 minutes into the first hour,
its edits in the second, so an edit that moved the Tweet to its own time would show. Payloads are
X's (v2 `edit_history_tweet_ids`, v1.1 `edit_history.edit_tweet_ids`, both oldest first), parsed
by the real parser and written by the real sinks, the versions of a chain on different Kafka
partitions, one message per batch, in the order given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from qs_support import METADATA, at, build_marts, serving, snowflake

from query_service.planner import HOUR
from streaming.healer import Healer
from streaming.parsing import parse_payload
from streaming.sinks.clickhouse import ClickHouseSink
from streaming.sinks.hot_aggregates import HotAggregatesSink, PartitionBatch
from tweetflow.clients import clickhouse_client, redis_client
from tweetflow.settings import Settings
from tweetflow.snowflake import snowflake_time
from tweetflow.v1 import analytics_pb2 as pb

pytestmark = pytest.mark.integration
PARTITIONS = 3


@dataclass
class Case:
    """A chain's versions (text, lang) and the order messages arrive in: "A", "B", "C" name the
    versions (oldest first), "-B" a delete of B; expected hashtag counts and language."""

    name: str
    versions: list[tuple[str, str]]
    arrivals: list[str]
    tags: dict[str, int]
    lang: str | None  # the counted version's language; None: the chain is deleted
    v1: bool = False
    ids: list[int] = field(default_factory=list)
    window: int = 0


CASES = [
    Case("original then edit", [("launch day #s1probe #s1typoo", "en"),
                                ("launch day #s1probe #s1typo", "en")], ["A", "B"],
         {"s1probe": 1, "s1typoo": 0, "s1typo": 1}, "en"),
    Case("edit then original (v1.1)", [("launch day #s2probe #s2typoo", "en"),
                                       ("launch day #s2probe #s2typo", "en")], ["B", "A"],
         {"s2probe": 1, "s2typoo": 0, "s2typo": 1}, "en", v1=True),
    Case("two edits, duplicates and a replay", [("#s3tag #s3old", "en"), ("#s3tag #s3mid", "en"),
                                                ("#s3tag #s3new", "en")],
         ["B", "C", "A", "B", "C", "A", "replay"], {"s3tag": 1, "s3old": 0, "s3mid": 0,
                                                    "s3new": 1}, "en"),
    Case("delete of the root", [("#s4tag one", "en"), ("#s4tag two", "en")], ["A", "B", "-A"],
         {"s4tag": 0}, None),
    Case("delete of an edit", [("#s5tag one", "en"), ("#s5tag two", "en"), ("#s5tag 3", "en")],
         ["A", "C", "B", "-B"], {"s5tag": 0}, None),
    Case("delete of an edit before the edit", [("#s6tag one", "en"), ("#s6tag two", "en")],
         ["-B", "A", "B", "A"], {"s6tag": 0}, None),
    Case("an edit removes a hashtag", [("#s7keep #s7gone", "en"), ("#s7keep", "en")], ["A", "B"],
         {"s7keep": 1, "s7gone": 0}, "en"),
    Case("an edit adds a hashtag", [("#s8keep", "en"), ("#s8keep #s8added", "en")], ["B", "A"],
         {"s8keep": 1, "s8added": 1}, "en", v1=True),
    Case("an edit changes the language", [("#s9tag hello", "en"), ("#s9tag hallo", "de")],
         ["A", "B"], {"s9tag": 1}, "de"),
]


def _payload(case: Case, version: int) -> bytes:
    tweet_id, (text, lang) = case.ids[version], case.versions[version]
    history = [str(i) for i in case.ids[:version + 1]]
    created = snowflake_time(tweet_id)
    if case.v1:
        return orjson.dumps({
            "id_str": str(tweet_id), "text": text, "lang": lang,
            "created_at": created.strftime("%a %b %d %H:%M:%S +0000 %Y"),
            "user": {"id_str": "42", "screen_name": "editor"},
            "edit_history": {"initial_tweet_id": history[0], "edit_tweet_ids": history}})
    return orjson.dumps({
        "data": {"id": str(tweet_id), "text": text, "lang": lang, "author_id": "42",
                 "created_at": created.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                 "edit_history_tweet_ids": history},
        "includes": {"users": [{"id": "42", "username": "editor"}]}})


def _delete(tweet_id: int) -> bytes:
    return orjson.dumps({"data": {"delete": {"tweet": {"id": str(tweet_id), "author_id": "42"}}}})


class Delivery:
    """The consumers' writes, one message per batch: raw rows to ClickHouse, hot aggregates with
    the partition's watermark to Redis."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clickhouse, self.hot = ClickHouseSink(settings), HotAggregatesSink(settings)
        self.next_offset = [0] * PARTITIONS
        self.log: list[tuple[int, int, bytes]] = []

    def send(self, partition: int, raw: bytes) -> None:
        offset = self.next_offset[partition]
        self.next_offset[partition] += 1
        self.log.append((partition, offset, raw))
        self._write(partition, offset, raw, expected=offset - 1)

    def replay(self, start: int) -> None:
        """Messages from log position `start` again at their offsets, as a worker that crashed
        before committing reads them: ClickHouse gets the rows twice, Redis skips them."""
        for partition, offset, raw in self.log[start:]:
            self._write(partition, offset, raw, expected=offset - 1)

    def _write(self, partition: int, offset: int, raw: bytes, expected: int) -> None:
        located = [(partition, offset, event) for event in parse_payload(raw)]
        self.clickhouse.write(located)
        self.hot.apply(PartitionBatch(partition, offset, [(o, e) for _, o, e in located]),
                       expected)

    def close(self) -> None:
        """Done delivering; the hot tier's history starts, as the consumers' watch does."""
        self.clickhouse.close()
        self.hot.close()
        assert Healer(self.settings).run(retry=False), "the hot tier's history did not start"


def _deliver(settings: Settings, now: int) -> None:
    hour = now // HOUR * HOUR
    delivery = Delivery(settings)
    try:
        for k, case in enumerate(CASES):
            case.window = hour - (2 * k + 4) * HOUR
            root = at(case.window + 50 * 60 + 7)
            times = [root + timedelta(minutes=12 + 9 * (i - 1)) if i else root
                     for i in range(len(case.versions))]
            case.ids = [snowflake(t, 100 + k) for t in times]
            start = len(delivery.log)
            for arrival in case.arrivals:
                if arrival == "replay":
                    delivery.replay(start)
                    continue
                version = ord(arrival[-1]) - ord("A")
                partition = (k + version) % PARTITIONS  # the versions of a chain on different ones
                raw = (_delete(case.ids[version]) if arrival.startswith("-")
                       else _payload(case, version))
                delivery.send(partition, raw)
        # a Tweet a minute ago: the marts are complete past every window
        delivery.send(0, orjson.dumps({"data": {"id": str(snowflake(at(now - 60), 1)),
                                                "text": "now", "edit_history_tweet_ids": [
                                                    str(snowflake(at(now - 60), 1))]}}))
    finally:
        delivery.close()


def _ask(settings: Settings, case: Case) -> tuple[dict[str, pb.TimeSeriesResponse],
                                                  pb.TweetVolumeResponse]:
    r = redis_client(settings)
    for key in r.scan_iter(match=f"{settings.redis_prefix}:q:*"):
        r.delete(key)
    start, end = Timestamp(seconds=case.window), Timestamp(seconds=case.window + 2 * HOUR)
    with serving(settings) as srv, srv.channel() as channel:
        stub = srv.stub(channel)
        series = {tag: stub.TimeSeries(pb.TimeSeriesRequest(
            entity_type=pb.ENTITY_TYPE_HASHTAG, entity=f"#{tag}", start=start, end=end,
            granularity=pb.GRANULARITY_HOUR), metadata=METADATA, timeout=30) for tag in case.tags}
        volume = stub.TweetVolume(pb.TweetVolumeRequest(start=start, end=end),
                                  metadata=METADATA, timeout=30)
    return series, volume


def _assert_counts(case: Case, series: dict[str, pb.TimeSeriesResponse],
                   volume: pb.TweetVolumeResponse, source: int) -> None:
    where = f"{case.name} ({pb.AnswerSource.Name(source)})"
    root_hour = case.window  # the root is in the first hour; its edits in the second
    for tag, expected in case.tags.items():
        answer = series[tag]
        assert answer.source == source, where
        assert answer.total == expected, f"{where}: #{tag}"
        assert [(p.bucket.seconds, p.count) for p in answer.points if p.count] == (
            [(root_hour, expected)] if expected else []), f"{where}: #{tag}"
    assert volume.source == source, where
    assert volume.total == (0 if case.lang is None else 1), where
    assert dict(volume.by_lang) == ({} if case.lang is None else {case.lang: 1}), where


def _clickhouse(settings: Settings, sql: str, **params: object) -> list[tuple]:
    client = clickhouse_client(settings)
    try:
        return [tuple(r) for r in client.query(sql, parameters=params).result_rows]
    finally:
        client.close()


def _utc(value: datetime) -> datetime:
    """clickhouse-connect gives naive UTC or aware datetimes, depending on the server's zone."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _assert_clickhouse(settings: Settings, case: Case) -> None:
    root, newest = case.ids[0], case.ids[-1]
    versions = _clickhouse(settings, "SELECT DISTINCT tweet_id FROM raw_tweets "
                           "WHERE chain_root_id = {r:UInt64} ORDER BY tweet_id", r=root)
    delivered = sorted({case.ids[ord(a[-1]) - ord("A")] for a in case.arrivals
                        if a[0] in "ABC"})
    assert [v for (v,) in versions] == delivered, f"{case.name}: raw keeps every version"
    staged = _clickhouse(settings, "SELECT tweet_id, chain_root_id, arraySort(hashtags), lang, "
                         "created_at FROM stg_tweets WHERE chain_root_id = {r:UInt64}", r=root)
    if case.lang is None:
        assert staged == [], case.name
    else:
        tags = sorted(t for t, n in case.tags.items() if n)
        assert [(*r[:4], _utc(r[4])) for r in staged] == [
            (newest, root, tags, case.lang, snowflake_time(root))], case.name
    marts = _clickhouse(
        settings, "SELECT entity, toUnixTimestamp(hour), count_tweets FROM entity_counts_hourly "
        "WHERE entity_type = 'hashtag' AND has({tags:Array(String)}, entity)", tags=list(case.tags))
    assert sorted(marts) == sorted((t, case.window, n) for t, n in case.tags.items() if n), case.name


def test_an_edit_chain_counts_once_with_its_newest_version(test_settings: Settings) -> None:
    _deliver(test_settings, int(time.time()))
    build_marts(test_settings)
    mart_settings = test_settings.model_copy(update={"hot_horizon_hours": 1})
    for case in CASES:
        _assert_counts(case, *_ask(test_settings, case), pb.ANSWER_SOURCE_HOT)
        _assert_counts(case, *_ask(mart_settings, case), pb.ANSWER_SOURCE_MART)
        _assert_clickhouse(test_settings, case)
