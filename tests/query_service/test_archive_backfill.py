"""An archive spanning ten years, published to Kafka and consumed in one run, is stored whole.

The regression this pins (issue "Silent data loss"): a batch whose rows fell on more than 100 days
was acknowledged by the embedded endpoint and never written, and the consumers committed past it.
The expectation comes from the generator's own record of what it sent (the Kafka key is the Tweet
id, deletes are told apart by their payload's shape), not from the project's parser.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from qs_support import METADATA, build_marts, serving
from streaming_support import ch_rows, drain, produce

from streaming.synthetic import generate
from tweetflow.settings import Settings
from tweetflow.snowflake import snowflake_ms
from tweetflow.v1 import analytics_pb2 as pb

pytestmark = [pytest.mark.slow]

YEARS = 10
TWEETS = 4_000


def _archive(seed: int) -> tuple[list[tuple[bytes, bytes]], dict[int, str], set[int]]:
    """(messages, UTC day of each Tweet id, deleted ids) of a ten-year synthetic archive."""
    span_s = YEARS * 365.25 * 86400
    start_ms = int((time.time() - span_s - 120 * 86400) * 1000)  # ends before now, not after
    pairs, days, deleted = [], {}, set()
    for key, value, tweet_id in generate(seed, start_ms=start_ms, count=TWEETS,
                                         rate=TWEETS / span_s, delete_fraction=0.03):
        pairs.append((key, value))
        if "delete" in json.loads(value)["data"]:  # a compliance delete names the deleted id
            deleted.add(tweet_id)
        else:
            days[tweet_id] = datetime.fromtimestamp(snowflake_ms(tweet_id) / 1000, UTC).date().isoformat()
    return pairs, days, deleted


def test_ten_year_archive_reaches_clickhouse_the_marts_and_the_api(test_settings: Settings) -> None:
    s = test_settings
    pairs, days, deleted = _archive(seed=1018)
    per_day = Counter(days.values())
    assert len(per_day) > 2_000, "the archive must span far more than 100 day partitions"
    produce(s, pairs)
    drain(s, batch_size=10_000)

    stored = dict(ch_rows(s, "SELECT toString(toDate(created_at)), count() FROM raw_tweets FINAL "
                             "GROUP BY 1"))
    assert stored == dict(per_day)
    assert {r[0] for r in ch_rows(s, "SELECT DISTINCT tweet_id FROM tweet_deletes")} == deleted

    build_marts(s)
    kept = Counter(day for tweet_id, day in days.items() if tweet_id not in deleted)
    (mart_total,) = ch_rows(s, "SELECT sum(count_tweets) FROM tweet_volume_hourly")[0]
    assert mart_total == sum(kept.values())

    answered: Counter[str] = Counter()
    with serving(s) as served, served.channel() as channel:
        stub = served.stub(channel)
        for year in range(int(min(days.values())[:4]), int(max(days.values())[:4]) + 1):
            answer = stub.TweetVolume(pb.TweetVolumeRequest(  # at most 366 days per question
                start=_ts(datetime(year, 1, 1, tzinfo=UTC)),
                end=_ts(min(datetime(year + 1, 1, 1, tzinfo=UTC), datetime.now(UTC))),
                granularity=pb.GRANULARITY_DAY),
                metadata=METADATA)
            answered.update({b.bucket.ToDatetime().date().isoformat(): b.count
                             for b in answer.buckets if b.count})
    assert answered == kept


def _ts(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts
