"""Never a silently stale answer: a mart answers a day only once it has caught up with that day.

Tried as a user backfilling an archive would: marts built, then Tweets (and deletes) for older days
consumed. Every answer must equal the raw data at once, with Dagster not running at all (dbt is
run by hand here, as Dagster would), and come from the marts again once they are rebuilt.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from qs_support import METADATA, build_marts, serving, tweet, write_events

from tweetflow.clients import clickhouse_client, redis_client
from tweetflow.model import Event
from tweetflow.settings import Settings
from tweetflow.v1 import analytics_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUILT = datetime(2026, 1, 10, 12, tzinfo=UTC)  # data the marts are first built with
ARCHIVE = [datetime(2019, 5, 1, 1, tzinfo=UTC) + timedelta(days=d, hours=h)
           for d in range(3) for h in range(0, 24, 6)]  # 4 Tweets a day on 3 days of 2019


def _volume(settings: Settings, start: datetime, end: datetime) -> pb.TweetVolumeResponse:
    with serving(settings) as served, served.channel() as channel:
        return served.stub(channel).TweetVolume(pb.TweetVolumeRequest(
            start=Timestamp(seconds=int(start.timestamp())),
            end=Timestamp(seconds=int(end.timestamp())), granularity=pb.GRANULARITY_DAY),
            metadata=METADATA)


def _per_day(answer: pb.TweetVolumeResponse) -> dict[str, int]:
    return {b.bucket.ToDatetime().date().isoformat(): b.count for b in answer.buckets if b.count}


def _archive(seq0: int) -> list[Event]:
    return [tweet(t, seq0 + i, hashtags=("backfill",)) for i, t in enumerate(ARCHIVE)]


def _delete(event: Event) -> Event:
    return Event("delete", event.tweet_id, user_id=1, event_at=datetime.now(UTC))


def test_archive_after_the_marts_were_built_is_answered_exactly_at_once(
        test_settings: Settings) -> None:
    s = test_settings
    write_events(s, [tweet(BUILT, 1), tweet(BUILT, 2)], hot=False)
    build_marts(s)
    span = (datetime(2019, 5, 1, tzinfo=UTC), datetime(2019, 5, 8, tzinfo=UTC))
    assert _per_day(_volume(s, *span)) == {}

    archive = _archive(100)
    write_events(s, archive, hot=False)
    fresh = _volume(s, *span)
    assert _per_day(fresh) == {"2019-05-01": 4, "2019-05-02": 4, "2019-05-03": 4}
    assert fresh.origin in (pb.ANSWER_SOURCE_RAW, pb.ANSWER_SOURCE_MIXED)

    write_events(s, [_delete(archive[0]), _delete(archive[5])], hot=False)  # old Tweets deleted
    assert _per_day(_volume(s, *span)) == {"2019-05-01": 3, "2019-05-02": 3, "2019-05-03": 4}

    build_marts(s)  # what Dagster's sensor would request; here by hand
    _forget_answers(s)  # the cached answer is still exact; forgotten to see the marts answer
    rebuilt = _volume(s, *span)
    assert _per_day(rebuilt) == {"2019-05-01": 3, "2019-05-02": 3, "2019-05-03": 4}
    assert rebuilt.origin == pb.ANSWER_SOURCE_MART


def test_a_late_tweet_on_a_built_day_moves_only_that_day_to_raw(test_settings: Settings) -> None:
    s = test_settings
    write_events(s, _archive(200), hot=False)
    build_marts(s)
    span = (datetime(2019, 5, 1, tzinfo=UTC), datetime(2019, 5, 4, tzinfo=UTC))
    assert _volume(s, *span).origin == pb.ANSWER_SOURCE_MART

    write_events(s, [tweet(datetime(2019, 5, 2, 23, 59, tzinfo=UTC), 300)], hot=False)
    late = _volume(s, *span)
    assert _per_day(late) == {"2019-05-01": 4, "2019-05-02": 5, "2019-05-03": 4}
    assert late.origin == pb.ANSWER_SOURCE_MIXED  # 1 May and 3 May from the mart, 2 May raw


def test_a_mart_build_that_fails_halfway_leaves_its_days_to_the_raw_tables(
        test_settings: Settings) -> None:
    s = test_settings
    write_events(s, _archive(400), hot=False)
    build_marts(s)
    write_events(s, [tweet(datetime(2019, 5, 1, 1, tzinfo=UTC), 500)], hot=False)
    # The hourly volume mart reads the minutely one: without it the build fails after its
    # pre-hooks (window invalidated, window rows deleted) and before its rows are in.
    _command(s, "RENAME TABLE tweet_volume_minutely TO tweet_volume_minutely_away")
    try:
        failed = build_marts(s, "--vars", "{start: '2019-05-01', end: '2019-05-03'}",
                             select=("tweet_volume_hourly",), check=False)
    finally:
        _command(s, "RENAME TABLE tweet_volume_minutely_away TO tweet_volume_minutely")
    assert failed.returncode != 0
    answer = _volume(s, datetime(2019, 5, 1, tzinfo=UTC), datetime(2019, 5, 4, tzinfo=UTC))
    assert _per_day(answer) == {"2019-05-01": 5, "2019-05-02": 4, "2019-05-03": 4}
    assert answer.origin == pb.ANSWER_SOURCE_MIXED  # 3 May is still the mart's


def _forget_answers(settings: Settings) -> None:
    r = redis_client(settings)
    for key in r.scan_iter(match=f"{settings.redis_prefix}:q:*"):
        r.delete(key)


def _command(settings: Settings, sql: str) -> None:
    client = clickhouse_client(settings)
    try:
        client.command(sql)
    finally:
        client.close()
