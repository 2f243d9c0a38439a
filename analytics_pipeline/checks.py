"""Asset checks beyond dbt's tests (which dagster-dbt turns into checks by itself): a duplicate
audit of staging, a volume anomaly check, and Redis-versus-ClickHouse agreement. (Mart freshness
is a FreshnessPolicy on each mart, see dbt_models.py: Dagster supersedes freshness checks with it.)

Each check returns the counts that justify its verdict as metadata, so a failure is explained in
the UI without rerunning a query by hand.
"""

import time
from collections.abc import Mapping
from datetime import UTC, datetime

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    MetadataValue,
    asset_check,
)

from analytics_pipeline.ingestion import HOT_AGGREGATES_KEY
from analytics_pipeline.resources import TweetflowResource
from tweetflow.hot_keys import bucket_start, tweets_key
from tweetflow.platforms import PLATFORMS

STG_TWEETS = AssetKey("stg_tweets")
TWEET_VOLUME_HOURLY = AssetKey("tweet_volume_hourly")

# The latest closed hour may be this many times above or below its trailing 24-hour average.
VOLUME_FACTOR = 5.0
# Below this trailing hourly average there is too little history to call anything an anomaly.
VOLUME_MIN_BASELINE = 10.0
# Redis agreement: this many closed minutes back from now, a minute being closed this long after
# its end (the consumers flush every batch within seconds; late events are rare).
AGREEMENT_MINUTES = 60
AGREEMENT_GRACE_SECONDS = 120


@asset_check(asset=STG_TWEETS, name="no_duplicate_tweet_ids", description=(
    "Staging has exactly one row per Tweet, an edited one's versions included (its dedup works), "
    "and how many raw versions are waiting for a merge (information only: staging reads through "
    "them)."))
def no_duplicate_tweet_ids(tweetflow: TweetflowResource) -> AssetCheckResult:
    client = tweetflow.clickhouse()
    try:
        rows, ids = client.query(
            "SELECT count(), uniqExact(chain_root_id) FROM stg_tweets").result_rows[0]
        samples = client.query(
            "SELECT chain_root_id, count() AS copies FROM stg_tweets GROUP BY chain_root_id "
            "HAVING copies > 1 ORDER BY copies DESC, chain_root_id LIMIT 10").result_rows
        raw_rows, raw_ids = client.query(
            "SELECT count(), uniqExact(tweet_id) FROM raw_tweets").result_rows[0]
    finally:
        client.close()
    return AssetCheckResult(
        passed=rows == ids,
        metadata={
            "rows": rows,
            "distinct_tweets": ids,  # edit chains
            "duplicate_rows": rows - ids,
            "duplicate_samples": MetadataValue.json([{"chain_root_id": t, "copies": c}
                                                     for t, c in samples]),
            "raw_versions_not_yet_merged": raw_rows - raw_ids,
        },
    )


def volume_verdict(latest: int, baseline: float, *, factor: float = VOLUME_FACTOR,
                   min_baseline: float = VOLUME_MIN_BASELINE) -> tuple[bool, str]:
    """Whether an hour's volume is plausible against its trailing average, and why."""
    if baseline < min_baseline:
        return True, f"trailing average {baseline:.1f} < {min_baseline}: too little history"
    ratio = latest / baseline
    if ratio > factor:
        return False, f"{ratio:.2f}x the trailing average (limit {factor}x): a spike"
    if ratio < 1 / factor:
        return False, f"{ratio:.2f}x the trailing average (limit 1/{factor}): a drop"
    return True, f"{ratio:.2f}x the trailing average"


@asset_check(asset=TWEET_VOLUME_HOURLY, name="volume_within_trailing_average", description=(
    "The newest closed hour's Tweet volume is within a factor of its trailing 24-hour hourly "
    "average (hours without Tweets count as zero)."))
def volume_within_trailing_average(tweetflow: TweetflowResource) -> AssetCheckResult:
    client = tweetflow.clickhouse()
    try:
        rows = client.query("""
            WITH (SELECT max(hour) FROM tweet_volume_hourly WHERE hour < toStartOfHour(now()))
                AS latest
            SELECT hour, sum(count_tweets) FROM tweet_volume_hourly
            WHERE hour >= latest - INTERVAL 24 HOUR AND hour <= latest
            GROUP BY hour ORDER BY hour""").result_rows
    finally:
        client.close()
    if not rows:
        return AssetCheckResult(passed=True, severity=AssetCheckSeverity.WARN,
                                metadata={"reason": "no closed hour yet"})
    latest_hour, latest = rows[-1]
    baseline = sum(n for _, n in rows[:-1]) / 24
    passed, reason = volume_verdict(latest, baseline)
    return AssetCheckResult(
        passed=passed, severity=AssetCheckSeverity.WARN,
        metadata={"hour": latest_hour.isoformat(), "count_tweets": latest,
                  "trailing_24h_hourly_average": round(baseline, 3), "reason": reason},
    )


def closed_minutes(now: float, minutes: int = AGREEMENT_MINUTES,
                   grace: int = AGREEMENT_GRACE_SECONDS) -> list[int]:
    """Starts (epoch seconds) of the last `minutes` minutes that ended `grace` s before now."""
    newest = bucket_start(now - grace, "m") - 60
    return [newest - 60 * i for i in range(minutes)][::-1]


def count_mismatches(redis_counts: Mapping[int, int], clickhouse_counts: Mapping[int, int]
                     ) -> list[dict[str, object]]:
    """Minutes whose counts differ, a missing side counting as zero."""
    out = []
    for bucket in sorted(set(redis_counts) | set(clickhouse_counts)):
        hot, cold = redis_counts.get(bucket, 0), clickhouse_counts.get(bucket, 0)
        if hot != cold:
            out.append({"minute": datetime.fromtimestamp(bucket, UTC).isoformat(),
                        "redis": hot, "clickhouse": cold})
    return out


@asset_check(asset=HOT_AGGREGATES_KEY, name="matches_clickhouse_closed_minutes", description=(
    "For each closed minute of the last hour, Redis's Tweet count (tf:n:m:{bucket}, summed over "
    "the platforms) equals the live Tweets ClickHouse staging has for that minute."))
def matches_clickhouse_closed_minutes(tweetflow: TweetflowResource) -> AssetCheckResult:
    settings = tweetflow.settings
    minutes = closed_minutes(time.time(), min(AGREEMENT_MINUTES, settings.hot_horizon_hours * 60))
    values = tweetflow.redis().mget([tweets_key(settings.redis_prefix, "m", b, platform=p)
                                     for b in minutes for p in PLATFORMS])
    hot: dict[int, int] = {}
    for b, v in zip((b for b in minutes for _ in PLATFORMS), values, strict=True):
        if v is not None:
            hot[b] = hot.get(b, 0) + int(v)
    client = tweetflow.clickhouse()
    try:
        cold = dict(client.query(
            "SELECT toUInt32(toStartOfMinute(created_at)) AS minute, count() FROM stg_tweets "
            "WHERE created_at >= fromUnixTimestamp({start:UInt32}) "
            "AND created_at < fromUnixTimestamp({end:UInt32}) GROUP BY minute",
            parameters={"start": minutes[0], "end": minutes[-1] + 60}).result_rows)
    finally:
        client.close()
    mismatches = count_mismatches(hot, cold)
    return AssetCheckResult(
        passed=not mismatches,
        metadata={
            "minutes_compared": len(minutes),
            "from": datetime.fromtimestamp(minutes[0], UTC).isoformat(),
            "to": datetime.fromtimestamp(minutes[-1] + 60, UTC).isoformat(),
            "tweets_redis": sum(hot.values()),
            "tweets_clickhouse": sum(cold.values()),
            "minutes_differing": len(mismatches),
            "differences": MetadataValue.json(mismatches[:20]),
        },
    )


custom_checks = [no_duplicate_tweet_ids, volume_within_trailing_average,
                 matches_clickhouse_closed_minutes]
