"""Every mart is split by platform: built by dbt from a mixed input (synthetic X messages and
Bluesky Jetstream posts, through the real parser and ClickHouse sink), each mart's rows per
platform equal the truth computed from the input's events (tests/dbt_project/platform_mix.py)."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from platform_mix import (
    both_platforms,
    counts,
    day,
    distinct,
    entity_keys,
    floor,
    live_tweets,
    mixed_events,
)
from raw_rows import load_sample, query, run_dbt
from test_incremental import window

from tweetflow.model import Tweet
from tweetflow.platforms import PLATFORMS, platform_of
from tweetflow.settings import Settings

MARTS_DIR = Path(__file__).resolve().parents[2] / "dbt_project" / "models" / "marts"
START = datetime(2024, 3, 5, 20, 0, tzinfo=UTC)  # 8 hours, across a midnight
SPAN_MS = 8 * 3600 * 1000


# --- the marts' declarations (no stack needed) --------------------------------------------------

def mart_specs() -> dict[str, dict[str, Any]]:
    specs = {}
    for path in sorted(MARTS_DIR.glob("*.yml")):
        for model in yaml.safe_load(path.read_text())["models"]:
            specs[model["name"]] = model
    return specs


def test_every_mart_declares_a_platform_column_tested_against_the_platforms() -> None:
    specs = mart_specs()
    assert len(specs) == len(list(MARTS_DIR.glob("*.sql"))) == 11
    for name, model in specs.items():
        column = next(c for c in model["columns"] if c["name"] == "platform")
        tests = column["data_tests"]
        assert "not_null" in tests, name
        accepted = next(t["accepted_values"] for t in tests if isinstance(t, dict))
        assert accepted["arguments"]["values"] == list(PLATFORMS), name
        for test in model.get("data_tests", []):  # every compound key names the platform
            assert "platform" in test["unique_combination"]["arguments"]["columns"], name


# --- built from the mixed input -----------------------------------------------------------------

@pytest.fixture(scope="module")
def mixed(stack: Settings, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Settings, list[Tweet]]]:
    """A database of its own holding the mixed input, written as the consumers write it, and
    everything `dbt build` makes of it (its tests, the platform columns' included, must pass)."""
    from streaming.sinks.clickhouse import ClickHouseSink
    from tweetflow.clients import clickhouse_client
    from tweetflow.schema import ensure_schema

    settings = stack.model_copy(
        update={"clickhouse_database": f"dbt_platforms_{uuid.uuid4().hex[:10]}"})
    ensure_schema(settings)
    try:
        events = mixed_events(int(START.timestamp() * 1000), SPAN_MS)
        sink = ClickHouseSink(settings)
        try:
            sink.write([(0, offset, e) for offset, e in enumerate(events)])
        finally:
            sink.close()
        run_dbt(settings, "build", work_dir=tmp_path_factory.mktemp("dbt"))
        tweets = live_tweets(events)
        both_platforms(tweets)
        yield settings, tweets
    finally:
        clickhouse_client(settings, database="default").command(
            f"DROP DATABASE IF EXISTS `{settings.clickhouse_database}`")


def naive_rows(settings: Settings, sql: str) -> list[tuple]:
    """The query's rows, datetimes as naive UTC whether or not the client gave them a zone."""
    return [tuple(v.astimezone(UTC).replace(tzinfo=None)
                  if isinstance(v, datetime) and v.tzinfo else v for v in r)
            for r in query(settings, sql)]


def rows(settings: Settings, sql: str) -> dict[tuple, Any]:
    """The query's rows as {all columns but the last: the last}."""
    return {tuple(r[:-1]): r[-1] for r in naive_rows(settings, sql)}


integration = pytest.mark.integration


def hour(moment: datetime) -> datetime:
    return floor(moment, 3600)


@integration
def test_platform_is_a_low_cardinality_key_column_of_every_mart(mixed) -> None:
    settings, _ = mixed
    names = ", ".join(f"'{name}'" for name in mart_specs())  # the project's own names
    got = query(settings, "SELECT t.name, c.type, t.sorting_key FROM system.tables AS t "
                          "JOIN system.columns AS c "
                          "ON c.database = t.database AND c.table = t.name "
                          f"WHERE t.database = currentDatabase() AND c.name = 'platform' "
                          f"AND t.name IN ({names})")
    assert {name for name, _, _ in got} == set(mart_specs())
    for name, column_type, sorting_key in got:
        assert column_type == "LowCardinality(String)", name
        assert "platform" in sorting_key.split(", "), (name, sorting_key)


@integration
def test_every_mart_table_has_exactly_the_columns_its_yml_documents(mixed) -> None:
    """Else macros/mart_upgrade.sql would take it for an older version's, rebuilt on every run."""
    settings, _ = mixed
    got: dict[str, set[str]] = defaultdict(set)
    for table, column in query(settings, "SELECT table, name FROM system.columns "
                                         "WHERE database = currentDatabase()"):
        got[table].add(column)
    for name, model in mart_specs().items():
        assert got[name] == {c["name"] for c in model["columns"]}, name


@integration
def test_volume_marts_per_platform(mixed) -> None:
    settings, tweets = mixed
    for table, column, width in (("tweet_volume_minutely", "minute", 60),
                                 ("tweet_volume_hourly", "hour", 3600)):
        truth = counts(tweets, lambda t, w=width: iter([(floor(t.created_at, w), t.lang, t.kind)]))
        got = rows(settings, f"SELECT platform, {column}, lang, kind, count_tweets FROM {table}")
        assert got == dict(truth), table


@integration
def test_entity_marts_per_platform(mixed) -> None:
    settings, tweets = mixed
    hourly = counts(tweets, entity_keys(hour))
    daily = counts(tweets, entity_keys(day))
    assert rows(settings, "SELECT platform, hour, entity_type, entity, count_tweets "
                          "FROM entity_counts_hourly") == dict(hourly)
    assert rows(settings, "SELECT platform, day, entity_type, entity, count_tweets "
                          "FROM entity_counts_daily") == dict(daily)
    for table, truth in (("hashtag_counts_hourly", hourly), ("hashtag_counts_daily", daily)):
        column = "hour" if "hourly" in table else "day"
        expected = {(p, b, e): n for (p, b, kind, e), n in truth.items() if kind == "hashtag"}
        assert rows(settings, f"SELECT platform, {column}, hashtag, count_tweets "
                              f"FROM {table}") == expected, table


@integration
def test_engagement_and_user_activity_per_platform(mixed) -> None:
    settings, tweets = mixed
    engagement: dict[tuple, list[int]] = defaultdict(lambda: [0] * 8)
    for t in tweets:
        sums = engagement[(platform_of(t.tweet_id), day(t.created_at))]
        for i, value in enumerate((1, t.kind == "reply", t.kind == "retweet", t.kind == "quote",
                                   t.like_count, t.retweet_count, t.reply_count, t.quote_count)):
            sums[i] += int(value)
    got = query(settings, "SELECT platform, day, count_tweets, count_replies, count_retweets, "
                          "count_quotes, sum_like_count, sum_retweet_count, sum_reply_count, "
                          "sum_quote_count FROM engagement_daily")
    assert {(r[0], r[1]): list(r[2:]) for r in got} == dict(engagement)

    activity: dict[tuple, list[int]] = defaultdict(lambda: [0] * 5)
    last: dict[tuple, Tweet] = {}
    for t in tweets:
        if not t.author_id:
            continue
        key = (platform_of(t.tweet_id), day(t.created_at), t.author_id)
        totals = activity[key]
        totals[0] += 1
        totals[1 + ("original", "retweet", "reply", "quote").index(t.kind)] += 1
        newest = last.get(key)
        if newest is None or (t.created_at, t.tweet_id) > (newest.created_at, newest.tweet_id):
            last[key] = t
    expected = {k: [last[k].author_handle.lower(), *v] for k, v in activity.items()}
    got = query(settings, "SELECT platform, day, author_id, author_handle, count_tweets, "
                          "count_originals, count_retweets, count_replies, count_quotes "
                          "FROM user_activity_daily")
    assert {(r[0], r[1], r[2]): list(r[3:]) for r in got} == expected


@integration
def test_mention_graph_and_top_domains_per_platform(mixed) -> None:
    settings, tweets = mixed
    graph = counts([t for t in tweets if t.author_handle],
                   lambda t: ((day(t.created_at), t.author_handle.lower(), m)
                              for m in distinct(t.mentions)))
    assert rows(settings, "SELECT platform, day, source_handle, target_handle, count_mentions "
                          "FROM mention_graph_daily") == dict(graph)

    domains = counts(tweets, lambda t: ((day(t.created_at), d) for d in distinct(t.domains)))
    by_day: dict[tuple, list[tuple[str, int]]] = defaultdict(list)
    for (platform, when, domain), n in domains.items():
        by_day[(platform, when)].append((domain, n))
    expected = {(platform, when, domain): (n, rank)
                for (platform, when), ranked in by_day.items()
                for rank, (domain, n) in enumerate(sorted(ranked, key=lambda dn: (-dn[1], dn[0])),
                                                   start=1)}
    got = query(settings, "SELECT platform, day, domain, count_tweets, rank FROM top_domains_daily")
    assert {(r[0], r[1], r[2]): (r[3], r[4]) for r in got} == expected


@integration
def test_trending_baselines_per_platform(mixed) -> None:
    settings, tweets = mixed
    hourly = counts(tweets, lambda t: ((hour(t.created_at), h) for h in distinct(t.hashtags)))
    got = naive_rows(settings, "SELECT platform, hour, hashtag, count_tweets, baseline_avg "
                               "FROM trending_hashtags")
    assert {(r[0], r[1], r[2]): r[3] for r in got} == dict(hourly)
    for platform, when, hashtag, _, baseline in got:
        before = sum(n for (p, h, tag), n in hourly.items() if p == platform and tag == hashtag
                     and when - timedelta(hours=24) <= h <= when - timedelta(hours=1))
        assert baseline == pytest.approx(before / 24), (platform, when, hashtag)


@integration
def test_the_platforms_sum_to_every_tweet(mixed) -> None:
    settings, tweets = mixed
    per_platform = Counter(platform_of(t.tweet_id) for t in tweets)
    got = query(settings, "SELECT platform, sum(count_tweets) FROM engagement_daily GROUP BY 1")
    assert dict(got) == dict(per_platform)
    assert sum(per_platform.values()) == len(tweets)


@integration
def test_a_mart_built_before_the_platform_column_is_rebuilt_whole_by_a_windowed_run(
        test_settings: Settings, tmp_path: Path) -> None:
    """An older version's mart (no `platform`) is rebuilt whole by its next run, a window's too:
    every day back, and covered again (macros/mart_upgrade.sql)."""
    from tweetflow.clients import clickhouse_client

    s = test_settings
    load_sample(s)
    run_dbt(s, "run", work_dir=tmp_path / "first")
    full = sorted(query(s, "SELECT * FROM tweet_volume_hourly"), key=repr)
    client = clickhouse_client(s)
    try:  # the mart as the version before issue 14 built it
        client.command("CREATE TABLE tweet_volume_hourly_old ENGINE = MergeTree "
                       "PARTITION BY toYYYYMMDD(hour) ORDER BY (hour, lang, kind) "
                       "AS SELECT * EXCEPT (platform) FROM tweet_volume_hourly")
        client.command("EXCHANGE TABLES tweet_volume_hourly_old AND tweet_volume_hourly")
        client.command("DROP TABLE tweet_volume_hourly_old")
    finally:
        client.close()

    run_dbt(s, "run", "--select", "tweet_volume_hourly", *window("2024-03-05"),
            work_dir=tmp_path / "window")

    assert sorted(query(s, "SELECT * FROM tweet_volume_hourly"), key=repr) == full
    covered = query(s, "SELECT day, argMax(raw_version, built_at) > toDateTime64(0, 6, 'UTC') "
                       "FROM mart_day_versions WHERE mart = 'tweet_volume_hourly' GROUP BY day "
                       "ORDER BY day")
    days = query(s, "SELECT DISTINCT toDate(hour) FROM tweet_volume_hourly ORDER BY 1")
    assert covered == [(d, True) for (d,) in days] and len(days) == 2
