"""dbt's source freshness as asset checks on the raw tables the consumers write.

Why: the rules live in dbt (dbt_project/models/staging/__sources.yml: raw_tweets warns after an hour
without new rows and errs after six; tweet_deletes, rare by nature, only warns after a day), but
nothing ran `dbt source freshness`, so a stopped consumer group showed nowhere in Dagster. This
check runs it against the configured database (the `audit` job, hourly) and turns each source's
result into a check of that table's asset: passed on dbt's `pass`, failed with severity WARN on
`warn` and ERROR on `error` or a runtime error, with dbt's numbers as metadata. dagster-dbt turns
dbt tests into checks by itself, but not source freshness, hence this module.

Which sources get a check is read from the manifest (those with a warn_after or error_after), so a
rule added in YAML needs no code here.
"""

# No `from __future__ import annotations`: Dagster inspects the check function's annotations.

import json
from collections.abc import Iterator, Mapping
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    Failure,
    MetadataValue,
    multi_asset_check,
)
from dagster_dbt import DbtCliResource

from analytics_pipeline.dbt_models import prepare_manifest, translator
from analytics_pipeline.resources import TweetflowResource, dbt_environment

CHECK_NAME = "dbt_source_freshness"


def sources_with_freshness(manifest: Mapping[str, Any]) -> dict[str, AssetKey]:
    """unique_id -> asset key of every dbt source with a freshness rule."""
    out = {}
    for unique_id, source in manifest["sources"].items():
        rule = source.get("freshness") or {}
        if any((rule.get(bound) or {}).get("count") for bound in ("warn_after", "error_after")):
            out[unique_id] = translator.get_asset_key(source)
    return out


SOURCES = sources_with_freshness(json.loads(prepare_manifest().read_text()))


def check_result(result: Mapping[str, Any], key: AssetKey) -> AssetCheckResult:
    """One source's entry of dbt's sources.json as a check result."""
    status = result["status"]
    metadata: dict[str, Any] = {"status": status}
    for name in ("max_loaded_at", "snapshotted_at"):
        if result.get(name):
            metadata[name] = result[name]
    if result.get("max_loaded_at_time_ago_in_s") is not None:
        metadata["max_loaded_at_time_ago_in_s"] = float(result["max_loaded_at_time_ago_in_s"])
    if result.get("criteria"):
        metadata["criteria"] = MetadataValue.json(result["criteria"])
    if result.get("error"):
        metadata["error"] = str(result["error"])
    return AssetCheckResult(
        asset_key=key, check_name=CHECK_NAME, passed=status == "pass",
        severity=AssetCheckSeverity.WARN if status == "warn" else AssetCheckSeverity.ERROR,
        metadata=metadata)


@multi_asset_check(
    name=CHECK_NAME,
    specs=[AssetCheckSpec(CHECK_NAME, asset=key, description=(
        "dbt source freshness: the newest ingested_at against the source's warn_after and "
        "error_after (dbt_project/models/staging/__sources.yml)")) for key in SOURCES.values()],
    can_subset=False,
)
def dbt_source_freshness(dbt: DbtCliResource, tweetflow: TweetflowResource
                         ) -> Iterator[AssetCheckResult]:
    with dbt_environment(tweetflow.settings):
        invocation = dbt.cli(["source", "freshness"], raise_on_error=False)
    invocation.wait()  # dbt exits 1 when a source is stale: a verdict, not a failure of the check
    try:
        results = invocation.get_artifact("sources.json")["results"]
    except FileNotFoundError:
        raise Failure(f"dbt source freshness wrote no sources.json (exit "
                      f"{invocation.process.returncode})") from None
    for result in results:
        if (key := SOURCES.get(result["unique_id"])) is not None:
            yield check_result(result, key)
