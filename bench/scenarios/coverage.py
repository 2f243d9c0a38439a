"""Mart coverage: what the raw-change sensor and the query service's coverage lookup cost at scale.

    .venv/bin/python -m bench.runner coverage [--quick]   (also part of `tweetflow bench`)

The sensor used to fingerprint every event day from raw_tweets itself (distinct Tweets and newest
insert per day, and the same for deletes joined to their Tweets): a full scan each evaluation. It
now reads only raw_day_versions and mart_day_versions (docs/marts-coverage.md). Both run here on the
same generated data, 10 million raw rows over two years (1 million with --quick); the coverage
lookup (one query per mart, cached for a second by the query service) is timed beside them.
"""

from __future__ import annotations

import statistics
import time

from bench import harness
from bench.report import ScenarioResult
from bench.scenarios import Context
from query_service.marts import uncovered_days
from tweetflow.clients import clickhouse_client
from tweetflow.schema import MART_DAY_VERSIONS, RAW_DAY_VERSIONS

NAME = "coverage"
TITLE = "Mart coverage: the sensor's cost per evaluation (versions vs full scan), coverage lookups"
DAYS = 730
MARTS = ("entity_counts_hourly", "entity_counts_daily", "tweet_volume_minutely",
         "tweet_volume_hourly", "user_activity_daily", "engagement_daily")
# The sensor before: per-day fingerprints computed from the raw tables (the baseline).
FULL_SCAN_SQL = (
    "SELECT toDate(created_at) AS day, uniqExact(tweet_id), max(ingested_at) FROM raw_tweets "
    "GROUP BY day",
    "SELECT toDate(t.created_at) AS day, uniqExact(d.tweet_id), max(d.ingested_at) "
    "FROM tweet_deletes AS d INNER JOIN (SELECT DISTINCT tweet_id, created_at FROM raw_tweets) "
    "AS t USING (tweet_id) GROUP BY day",
)


def run(ctx: Context) -> ScenarioResult:
    rows = int(ctx.options.get("rows") or (1_000_000 if ctx.quick else 10_000_000))
    result = ScenarioResult(NAME, TITLE)
    with harness.namespace(ctx.base, "coverage") as ns:
        client = clickhouse_client(ns.settings, send_receive_timeout=1800)
        try:
            ctx.progress(0.05, f"generating {rows:,} raw rows over {DAYS} days")
            _generate(client, rows)
            ctx.progress(0.5, "the sensor before: fingerprints from the raw tables")
            scan = _median(lambda: [client.query(sql) for sql in FULL_SCAN_SQL], 3)
            ctx.progress(0.7, "the sensor now: the version tables")
            from analytics_pipeline.automation import _MART_VERSIONS_SQL, _RAW_VERSIONS_SQL

            versions = _median(lambda: [client.query(_RAW_VERSIONS_SQL),
                                        client.query(_MART_VERSIONS_SQL)], 20)
            lookup_q = uncovered_days("tweet_volume_hourly")
            lookup = _median(lambda: client.query(lookup_q.sql, parameters=lookup_q.params), 50)
            gaps = client.query(lookup_q.sql, parameters=lookup_q.params).result_rows
        finally:
            client.close()
    result.add(f"raw rows (over {DAYS} days)", rows, "")
    result.add("sensor before: per-day fingerprints from raw (full scan), median", scan * 1000, "ms")
    result.add("sensor now: the two version tables, median", versions * 1000, "ms",
               "< 100 ms", versions < 0.1)
    result.add("speed-up", scan / versions if versions else 0, "x")
    result.add("coverage lookup per mart (query service, cached 1 s), median", lookup * 1000, "ms")
    result.check("coverage finds exactly the one stale day", sum(1 for g in gaps if g[0]) == 1,
                 f"{sum(1 for g in gaps if g[0])} day(s)")
    result.note("Both sensor forms run on the same data in the same run; the version tables hold one "
                f"row per day ({DAYS}) and per mart and day ({len(MARTS)} marts), as after merges.")
    return result


def _generate(client, rows: int) -> None:
    """Raw Tweets over DAYS days, 1% of them deleted, every day versioned and built by every
    mart, one day's raw version newer than its marts'."""
    client.command(
        "INSERT INTO raw_tweets (tweet_id, author_id, created_at, lang, kind, hashtags, ingested_at) "
        f"SELECT number, number % 100000, now64(3) - toIntervalSecond(number % ({DAYS} * 86400)), "
        "'en', 'original', [concat('tag', toString(number % 1000))], now64(6) FROM numbers({n:UInt64})",
        parameters={"n": rows}, settings={"max_partitions_per_insert_block": 0})
    client.command("INSERT INTO tweet_deletes (tweet_id, deleted_at, ingested_at) "
                   "SELECT number * 100, now64(3), now64(6) FROM numbers({n:UInt64})",
                   parameters={"n": rows // 100})
    client.command(f"INSERT INTO {RAW_DAY_VERSIONS} (day, version) SELECT today() - number, "
                   f"now64(6) - 60 FROM numbers({DAYS})")
    for mart in MARTS:
        client.command(f"INSERT INTO {MART_DAY_VERSIONS} (mart, day, raw_version) SELECT "
                       "{m:String}, today() - number, now64(6) FROM numbers({d:UInt32})",
                       parameters={"m": mart, "d": DAYS})
    client.command(f"INSERT INTO {RAW_DAY_VERSIONS} (day) VALUES (today() - 100)")
    client.command(f"OPTIMIZE TABLE {RAW_DAY_VERSIONS} FINAL")


def _median(fn, times: int) -> float:
    spent = []
    for _ in range(times):
        t0 = time.perf_counter()
        fn()
        spent.append(time.perf_counter() - t0)
    return statistics.median(spent)
