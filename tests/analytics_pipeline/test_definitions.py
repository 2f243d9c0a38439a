"""The Definitions load, validate, and wire lineage, partitions, jobs and automation as intended."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
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
    # raw_tweet_edits: the edit chains' table that a materialized view fills from raw_tweets (a dbt
    # source of stg_tweets since edits count once).
    assert keys == {"tweets_raw_topic", "raw_tweets", "tweet_deletes", "raw_tweet_edits",
                    "redis_hot_aggregates", "stg_tweets", *MARTS}


def test_lineage_joins_dbt_sources_to_the_raw_table_assets() -> None:
    from analytics_pipeline.definitions import defs

    graph = defs.get_repository_def().asset_graph
    assert graph.get(AssetKey("stg_tweets")).parent_keys == {
        AssetKey("raw_tweets"), AssetKey("tweet_deletes"), AssetKey("raw_tweet_edits")}
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


def _fresh_clone_env() -> dict[str, str]:
    """What a new user's shell has: no DAGSTER_HOME, no TWEETFLOW_ or other project variable."""
    return {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}


def test_definitions_validate_from_the_root_without_any_variable() -> None:
    """As workspace.yaml suggests, from a fresh clone's root: the instance comes from the root's
    dagster.yaml through a temporary DAGSTER_HOME that Dagster makes itself."""
    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"], cwd=PROJECT_ROOT,
        env=_fresh_clone_env(), capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "All code locations passed validation" in result.stdout + result.stderr
    assert not list(PROJECT_ROOT.glob(".tmp_dagster_home_*")), "the temporary home was left"


@pytest.mark.slow
def test_dagster_dev_starts_from_the_root_with_the_backfill_safe_run_limits() -> None:
    """`dagster dev -w workspace.yaml` without any variable serves the UI, and its instance
    queues runs with the root dagster.yaml's limits (no two runs rewrite the marts at once)."""
    from bench.harness import free_port

    port = free_port()
    dagster = Path(sys.executable).parent / "dagster"
    proc = subprocess.Popen(
        [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_ROOT, env=_fresh_clone_env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True)
    try:
        config = _run_queue_config(f"http://127.0.0.1:{port}", proc)
    finally:
        _stop(proc)
    assert config == _root_run_limits()
    assert {"key": "tweetflow/writes", "value": "marts", "limit": 1} in config["tagConcurrencyLimits"]
    assert not list(PROJECT_ROOT.glob(".tmp_dagster_home_*")), "the temporary home was left"


@pytest.mark.slow
def test_tweetflow_ui_serves_with_the_same_run_limits(tmp_path: Path) -> None:
    """`tweetflow ui` (DAGSTER_HOME in the data dir, a copy of the root dagster.yaml) still
    starts and queues runs with the same limits."""
    from bench.harness import free_port
    from tweetflow.app.ui import DagsterUI
    from tweetflow.settings import Settings

    ui = DagsterUI(Settings(_env_file=None, TWEETFLOW_DATA_DIR=str(tmp_path)), port=free_port())
    try:
        ui.up()
        config = _run_queue_config(ui.url)
    finally:
        ui.down()
    assert config == _root_run_limits()
    assert (ui.home / "history").is_dir(), "runs are stored in the data dir's Dagster home"


def _root_run_limits() -> dict:
    """The root dagster.yaml's run limits, as the webserver's runQueueConfig states them."""
    runs = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())["concurrency"]["runs"]
    return {"maxConcurrentRuns": runs["max_concurrent_runs"],
            "tagConcurrencyLimits": runs["tag_concurrency_limits"]}


def _run_queue_config(url: str, proc: subprocess.Popen[bytes] | None = None) -> dict:
    """The instance's run queue settings, asked from the webserver once it answers."""
    query = json.dumps({"query": "{ instance { runQueueConfig { maxConcurrentRuns "
                                 "tagConcurrencyLimitsYaml } } }"}).encode()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"dagster dev exited {proc.returncode}:\n"
                                 f"{proc.stdout.read().decode()[-4000:]}")  # type: ignore[union-attr]
        try:
            request = urllib.request.Request(f"{url}/graphql", data=query,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=5) as response:
                config = json.load(response)["data"]["instance"]["runQueueConfig"]
            return {"maxConcurrentRuns": config["maxConcurrentRuns"],
                    "tagConcurrencyLimits": yaml.safe_load(config["tagConcurrencyLimitsYaml"])}
        except OSError:
            time.sleep(1)
    raise AssertionError(f"the Dagster webserver at {url} did not answer within 240 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to dagster dev (it stops its webserver, daemon and code server and removes its
    temporary home); its process group is killed only if it does not exit."""
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
