"""The Definitions load, validate, and wire lineage, partitions, jobs and automation as intended."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from dagster import AssetKey, BackfillPolicy, DailyPartitionsDefinition

from tweetflow.settings import PROJECT_ROOT

MARTS = {"entity_counts_hourly", "entity_counts_daily", "hashtag_counts_hourly",
         "hashtag_counts_daily", "trending_hashtags", "tweet_volume_minutely",
         "tweet_volume_hourly", "user_activity_daily", "engagement_daily", "top_domains_daily",
         "mention_graph_daily"}


def test_definitions_have_the_jobs_schedules_sensors_and_assets() -> None:
    from analytics_pipeline.definitions import defs

    repo = defs.get_repository_def()
    assert {"marts", "staging", "observe_sources", "audit", "replay_validation"} <= {
        j.name for j in repo.get_all_jobs()}
    assert {s.name for s in repo.schedule_defs} == {
        "marts_hourly", "observe_sources_every_15_minutes", "audit_hourly"}
    assert {s.name for s in repo.sensor_defs} == {"raw_data_moved"}
    marts_job = defs.resolve_job_def("marts")
    assert {k.to_user_string() for k in marts_job.asset_layer.selected_asset_keys} == {
        "stg_tweets", *MARTS}
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert keys == {"tweets_raw_topic", "raw_tweets", "tweet_deletes", "redis_hot_aggregates",
                    "stg_tweets", *MARTS}


def test_lineage_joins_dbt_sources_to_the_raw_table_assets() -> None:
    from analytics_pipeline.definitions import defs

    graph = defs.get_repository_def().asset_graph
    assert graph.get(AssetKey("stg_tweets")).parent_keys == {AssetKey("raw_tweets"),
                                                             AssetKey("tweet_deletes")}
    assert graph.get(AssetKey("raw_tweets")).parent_keys == {AssetKey("tweets_raw_topic")}
    assert graph.get(AssetKey("redis_hot_aggregates")).parent_keys == {
        AssetKey("tweets_raw_topic")}
    assert graph.get(AssetKey("trending_hashtags")).parent_keys == {
        AssetKey("hashtag_counts_hourly")}


def test_marts_are_day_partitioned_with_single_run_backfills_and_freshness() -> None:
    from analytics_pipeline.definitions import defs

    graph = defs.get_repository_def().asset_graph
    for mart in MARTS:
        node = graph.get(AssetKey(mart))
        assert isinstance(node.partitions_def, DailyPartitionsDefinition), mart
        assert node.backfill_policy == BackfillPolicy.single_run(), mart
        assert node.freshness_policy is not None, mart
    assert graph.get(AssetKey("stg_tweets")).partitions_def is None


def test_dbt_tests_and_custom_checks_are_asset_checks() -> None:
    from analytics_pipeline.definitions import defs

    checks = defs.get_repository_def().asset_graph.asset_check_keys
    names = {(c.asset_key.to_user_string(), c.name) for c in checks}
    assert ("stg_tweets", "no_duplicate_tweet_ids") in names
    assert ("stg_tweets", "unique_stg_tweets_tweet_id") in names
    assert ("tweet_volume_hourly", "volume_within_trailing_average") in names
    assert ("redis_hot_aggregates", "matches_clickhouse_closed_minutes") in names
    assert {a for a, _ in names} >= MARTS  # every mart has dbt tests


def test_dagster_definitions_validate(tmp_path: Path) -> None:
    """The CLI loads workspace.yaml against an instance built from the repo's dagster.yaml."""
    shutil.copy(PROJECT_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"], cwd=PROJECT_ROOT,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)}, capture_output=True, text=True,
        timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "All code locations passed validation" in result.stdout + result.stderr
