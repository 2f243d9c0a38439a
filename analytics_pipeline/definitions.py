"""tweetflow's Dagster definitions: one code location (workspace.yaml loads this module).

Lineage: tweets_raw_topic -> raw_tweets, tweet_deletes (observed; the consumers write them)
-> stg_tweets (dbt view) -> the marts (dbt, day-partitioned); tweets_raw_topic ->
redis_hot_aggregates (observed). Runs: the `raw_data_moved` sensor and the `marts_hourly`
schedule rebuild mart partitions; `audit` runs the custom checks and dbt source freshness;
`replay_validation` proves the pipeline reproduces production from the Kafka log.
"""

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    Definitions,
    ScheduleDefinition,
    define_asset_job,
)
from dagster_dbt import DbtCliResource

from analytics_pipeline.automation import build_hourly_schedule, build_raw_change_sensor
from analytics_pipeline.checks import custom_checks
from analytics_pipeline.dbt_models import (
    DBT_EXECUTABLE,
    dbt_marts,
    dbt_project,
    dbt_staging,
)
from analytics_pipeline.ingestion import (
    raw_tables,
    redis_hot_aggregates,
    tweets_raw_topic,
)
from analytics_pipeline.replay_validation import replay_validation
from analytics_pipeline.resources import TweetflowResource
from analytics_pipeline.source_freshness import dbt_source_freshness

# Staging comes along (a view: recreating it is cheap), so a fresh database or a changed view
# definition never leaves the marts reading a missing or stale staging layer.
marts_job = define_asset_job(
    "marts", selection=AssetSelection.assets(dbt_staging, dbt_marts),
    tags={"tweetflow/writes": "marts"},
    description="Recreate staging and rebuild the marts for the run's event days "
                "(one dbt build for all of them).")
staging_job = define_asset_job(
    "staging", selection=AssetSelection.assets(dbt_staging),
    description="Recreate the staging view (after its SQL changed).")
observe_sources_job = define_asset_job(
    "observe_sources",
    selection=AssetSelection.assets(tweets_raw_topic, raw_tables, redis_hot_aggregates),
    description="Record offsets, lag, row counts and newest events of what the consumers write.")
audit_job = define_asset_job(
    "audit", selection=AssetSelection.checks(*custom_checks, dbt_source_freshness),
    description="Duplicate audit, volume anomaly, Redis/ClickHouse agreement and dbt source "
                "freshness of the raw tables.")

defs = Definitions(
    assets=[tweets_raw_topic, raw_tables, redis_hot_aggregates, dbt_staging, dbt_marts],
    asset_checks=[*custom_checks, dbt_source_freshness],
    jobs=[marts_job, staging_job, observe_sources_job, audit_job, replay_validation],
    schedules=[
        build_hourly_schedule(marts_job),
        ScheduleDefinition(name="observe_sources_every_15_minutes", job=observe_sources_job,
                           cron_schedule="*/15 * * * *", execution_timezone="UTC",
                           default_status=DefaultScheduleStatus.RUNNING),
        ScheduleDefinition(name="audit_hourly", job=audit_job, cron_schedule="20 * * * *",
                           execution_timezone="UTC", default_status=DefaultScheduleStatus.RUNNING),
    ],
    sensors=[
        build_raw_change_sensor(marts_job),
    ],
    resources={
        "tweetflow": TweetflowResource(),
        "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE),
    },
)
