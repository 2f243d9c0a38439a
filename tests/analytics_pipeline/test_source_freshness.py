"""`dbt source freshness` as Dagster asset checks on the raw tables, with dbt's own verdicts
(dbt_project/models/staging/__sources.yml: raw_tweets warns after 1 h and errs after 6 h without
new rows; tweet_deletes only warns, after 24 h)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from dagster import AssetCheckSeverity
from raw_rows import delete, insert, tweet

from tweetflow.settings import Settings

pytestmark = pytest.mark.integration


def _results(resources: dict) -> dict:
    from analytics_pipeline.source_freshness import dbt_source_freshness

    return {r.asset_key.to_user_string(): r
            for r in dbt_source_freshness(dbt=resources["dbt"], tweetflow=resources["tweetflow"])}


def test_stale_raw_tables_fail_their_freshness_checks_with_dbt_s_severity(
        test_settings: Settings, resources: dict) -> None:
    now = datetime.now(UTC)
    insert(test_settings, "raw_tweets", [tweet(1, "2024-03-05 10:00:00",
                                               ingested_at=now - timedelta(hours=7))])
    insert(test_settings, "tweet_deletes", [delete(1, offset=2, ingested_at=now - timedelta(hours=30))])

    results = _results(resources)

    assert set(results) == {"raw_tweets", "tweet_deletes"}  # raw_tweet_edits has no rule
    stale, quiet = results["raw_tweets"], results["tweet_deletes"]
    assert (stale.passed, stale.severity) == (False, AssetCheckSeverity.ERROR)
    assert stale.metadata["status"].value == "error"
    assert 7 * 3600 - 60 < stale.metadata["max_loaded_at_time_ago_in_s"].value < 7 * 3600 + 600
    assert (quiet.passed, quiet.severity) == (False, AssetCheckSeverity.WARN)
    assert quiet.metadata["status"].value == "warn"


def test_fresh_rows_pass(test_settings: Settings, resources: dict) -> None:
    insert(test_settings, "raw_tweets", [tweet(1, "2024-03-05 10:00:00",
                                               ingested_at=datetime.now(UTC))])
    results = _results(resources)
    assert results["raw_tweets"].passed
    assert results["raw_tweets"].metadata["status"].value == "pass"


def test_the_audit_job_runs_the_freshness_checks() -> None:
    from analytics_pipeline.definitions import defs

    checks = {(k.asset_key.to_user_string(), k.name)
              for k in defs.resolve_job_def("audit").asset_layer.asset_graph.asset_check_keys}
    assert {("raw_tweets", "dbt_source_freshness"),
            ("tweet_deletes", "dbt_source_freshness")} <= checks
