"""The dbt project as Dagster assets: the staging view, and the marts partitioned by event day.

Why two `@dbt_assets`: the marts are incremental by day and get a partitioned, single-run-backfill
definition whose time window reaches dbt as `--vars`; the staging view has no partitions.
"""

# No `from __future__ import annotations` in the modules defining Dagster ops, assets and
# sensors: Dagster inspects the `context` parameter's annotation when it builds the definition.

import json
import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    BackfillPolicy,
    FreshnessPolicy,
    TimeWindow,
    apply_freshness_policy,
)
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from analytics_pipeline.partitions import daily_partitions
from analytics_pipeline.resources import TweetflowResource, dbt_environment
from tweetflow.settings import PROJECT_ROOT

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
MARTS_TAG = "daily_partitioned"
MARTS_SELECTION = f"tag:{MARTS_TAG}"
STAGING_SELECTION = "path:models/staging"
# The marts are rebuilt hourly (schedule) and when raw data moves (sensor): a mart not
# materialized for two hours means runs are failing or not happening. Evaluated by the daemon.
MART_FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(hours=2),
                                             warn_window=timedelta(hours=1, minutes=15))
STAGING_SELECTION = "path:models/staging"
# Concurrency pool of every run that writes the marts (limit 1 in dagster.yaml): a day is replaced
# in one step whatever runs at once, but its coverage record is exact only if runs do not overlap.
MARTS_POOL = "clickhouse_marts"

# The dbt installed beside this interpreter: `.venv/bin/python -m ...` runs without an activated
# virtualenv, and dagster-dbt's own preparer looks for `dbt` on PATH.
DBT_EXECUTABLE = shutil.which("dbt") or str(Path(sys.executable).parent / "dbt")
if shutil.which("dbt") is None:
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def _sources_newer_than(path: Path) -> bool:
    """True if any project file changed after `path` was written (or it does not exist)."""
    if not path.exists():
        return True
    built = path.stat().st_mtime
    files = [DBT_PROJECT_DIR / "dbt_project.yml", DBT_PROJECT_DIR / "profiles.yml"]
    for folder in ("models", "macros", "tests"):
        files.extend(p for p in (DBT_PROJECT_DIR / folder).rglob("*") if p.is_file())
    return any(f.stat().st_mtime > built for f in files)


def prepare_manifest() -> Path:
    """A current manifest.json: `dbt parse` under `dagster dev`, or when the project changed.

    Why more than prepare_if_dev(): `tweetflow ui` and tests load the definitions without
    `dagster dev`; parsing only when a file is newer than the manifest keeps their start fast.
    """
    dbt_project.prepare_if_dev()
    if _sources_newer_than(dbt_project.manifest_path):
        dbt_project.preparer.prepare(dbt_project)
    return dbt_project.manifest_path


class TweetflowDbtTranslator(DagsterDbtTranslator):
    """dbt sources get the keys of the raw-table assets, so lineage runs Kafka -> raw -> marts;
    marts get a freshness policy."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return AssetKey(dbt_resource_props["name"])
        return super().get_asset_key(dbt_resource_props)

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str,
                       project: DbtProject | None) -> AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] == "model" and MARTS_TAG in props.get("tags", []):
            spec = apply_freshness_policy(spec, MART_FRESHNESS)
        return spec

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "source":
            return "ingestion"
        fqn = dbt_resource_props.get("fqn", [])
        return fqn[1] if len(fqn) > 2 else "default"


def _utc(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def dbt_build_args(window: TimeWindow | None = None, *, full_refresh: bool = False,
                   command: str = "build") -> list[str]:
    """The dbt arguments for one run: the [start, end) event-time window as --vars, if any.

    No window rebuilds everything (each mart is swapped whole for its recomputed rows);
    full_refresh recreates the tables instead (a schema change).
    """
    if full_refresh and window is not None:
        raise ValueError("a full refresh rebuilds every day; it takes no window")
    args = [command]
    if window is not None:
        if window.end <= window.start:
            raise ValueError(f"empty window: {window.start} .. {window.end}")
        args += ["--vars", json.dumps({"start": _utc(window.start), "end": _utc(window.end)})]
    if full_refresh:
        args.append("--full-refresh")
    return args


translator = TweetflowDbtTranslator()
_manifest = prepare_manifest()


@dbt_assets(manifest=_manifest, select=STAGING_SELECTION, name="dbt_staging",
            dagster_dbt_translator=translator, project=dbt_project)
def dbt_staging(context: AssetExecutionContext, dbt: DbtCliResource,
                tweetflow: TweetflowResource) -> Iterator[Any]:
    """The staging view over the raw tables (rebuilt when its SQL changes)."""
    yield from _run_dbt(context, dbt, tweetflow, dbt_build_args())


@dbt_assets(manifest=_manifest, select=MARTS_SELECTION, name="dbt_marts",
            dagster_dbt_translator=translator, project=dbt_project,
            partitions_def=daily_partitions, backfill_policy=BackfillPolicy.single_run(),
            pool=MARTS_POOL)
def dbt_marts(context: AssetExecutionContext, dbt: DbtCliResource,
              tweetflow: TweetflowResource) -> Iterator[Any]:
    """The marts, recomputed for the run's days (one dbt build for a whole backfill range)."""
    yield from _run_dbt(context, dbt, tweetflow, dbt_build_args(context.partition_time_window))


def _run_dbt(context: AssetExecutionContext, dbt: DbtCliResource, tweetflow: TweetflowResource,
             args: list[str]) -> Iterator[Any]:
    context.log.info("dbt %s (database %s)", " ".join(args), tweetflow.settings.clickhouse_database)
    with dbt_environment(tweetflow.settings):
        invocation = dbt.cli(args, context=context)
    yield from invocation.stream()


if __name__ == "__main__":
    # `python -m analytics_pipeline.dbt_models`: parse the project now if it changed
    # (`tweetflow ui up` does this once before starting the webserver and the daemon).
    print(prepare_manifest())
