"""The `replay_validation` job: replay a Kafka range into a shadow database through the consumer
code (streaming.shadow_replay), rebuild the marts there with the same dbt project, and compare with
production (analytics_pipeline.shadow_comparison).

Exact match passes; any difference fails the run with the differing rows in its metadata.
The shadow database is dropped afterwards unless `keep_shadow` is set (for digging into a
failure with SQL).
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from dagster import (
    Config,
    Failure,
    In,
    MetadataValue,
    OpExecutionContext,
    Out,
    job,
    op,
)
from dagster_dbt import DbtCliResource

from analytics_pipeline import shadow_comparison as comparison
from analytics_pipeline.resources import TweetflowResource, dbt_environment
from streaming.shadow_replay import replay_into
from tweetflow.settings import Settings


class ReplayConfig(Config):
    """Which part of the raw topic to replay: explicit offsets, a time range, or (default) all."""

    offsets: dict[str, list[int]] | None = None  # partition -> [start, end), e.g. {"0": [0, 500]}
    from_time: str | None = None  # ISO-8601; first message at or after it
    to_time: str | None = None  # ISO-8601; first message not replayed
    keep_shadow: bool = False


def _ranges(plan: Mapping[str, Any]) -> comparison.OffsetRanges:
    return {int(p): (int(a), int(b)) for p, (a, b) in plan["ranges"].items()}


def _shadow(tweetflow: TweetflowResource, plan: Mapping[str, Any]) -> Settings:
    return comparison.shadow_settings(tweetflow.settings, plan["tag"])


def drop_shadow(tweetflow: TweetflowResource, plan: Mapping[str, Any]) -> None:
    """Remove the shadow database and any Redis keys under the shadow prefix."""
    shadow = _shadow(tweetflow, plan)
    client = tweetflow.clickhouse(database="default")
    try:
        client.command(f"DROP DATABASE IF EXISTS `{shadow.clickhouse_database}`")
    finally:
        client.close()
    r = tweetflow.redis()
    keys = list(r.scan_iter(match=f"{shadow.redis_prefix}:*", count=1000))
    if keys:
        r.delete(*keys)


@op(out=Out(dict))
def plan_replay(context: OpExecutionContext, config: ReplayConfig,
                tweetflow: TweetflowResource) -> dict[str, Any]:
    """Fix the offsets to replay now, so production's later progress is not part of the test."""
    if config.offsets:
        ranges = {int(p): (int(a), int(b)) for p, (a, b) in config.offsets.items()}
    else:
        ranges = comparison.plan_ranges(
            tweetflow.settings,
            from_time=datetime.fromisoformat(config.from_time) if config.from_time else None,
            to_time=datetime.fromisoformat(config.to_time) if config.to_time else None)
    plan = {"ranges": {str(p): [a, b] for p, (a, b) in ranges.items()},
            "tag": context.run_id.replace("-", "")[:12], "keep_shadow": config.keep_shadow}
    context.add_output_metadata({"messages": sum(b - a for a, b in ranges.values()),
                                 "ranges": MetadataValue.json(plan["ranges"])})
    return plan


@op(ins={"plan": In(dict)}, out=Out(dict))
def load_shadow(context: OpExecutionContext, plan: dict[str, Any],
                tweetflow: TweetflowResource) -> dict[str, Any]:
    """Create the shadow schema and replay the range into it through the consumer code."""
    from tweetflow.schema import ensure_schema

    shadow = _shadow(tweetflow, plan)
    try:
        ensure_schema(shadow)
        applied = replay_into(shadow, _ranges(plan))
    except Exception:
        if not plan["keep_shadow"]:
            drop_shadow(tweetflow, plan)
        raise
    context.add_output_metadata({"shadow_database": shadow.clickhouse_database,
                                 "messages_applied": applied,
                                 "replayed_by": f"{replay_into.__module__}.{replay_into.__qualname__}"})
    return plan


@op(ins={"plan": In(dict)}, out=Out(dict))
def build_shadow_marts(context: OpExecutionContext, plan: dict[str, Any],
                       tweetflow: TweetflowResource, dbt: DbtCliResource) -> dict[str, Any]:
    """Build staging and every mart in the shadow database (all days: no window)."""
    shadow = _shadow(tweetflow, plan)
    try:
        with dbt_environment(shadow):
            invocation = dbt.cli(["run"], raise_on_error=False)
        invocation.wait()
        if not invocation.is_successful():
            raise Failure(description="dbt run in the shadow database failed",
                          metadata={"dbt_log": MetadataValue.text(_log_tail(invocation))})
    except Exception:
        if not plan["keep_shadow"]:
            drop_shadow(tweetflow, plan)
        raise
    context.log.info("built the marts in %s", shadow.clickhouse_database)
    return plan


@op(ins={"plan": In(dict)}, out=Out(dict))
def compare_with_production(context: OpExecutionContext, plan: dict[str, Any],
                            tweetflow: TweetflowResource) -> dict[str, Any]:
    """Pass on an exact match; fail with the differing rows otherwise."""
    shadow = _shadow(tweetflow, plan)
    client = tweetflow.clickhouse()
    try:
        result = comparison.compare(client, tweetflow.settings.clickhouse_database,
                                shadow.clickhouse_database, _ranges(plan))
    finally:
        client.close()
        if not plan["keep_shadow"]:
            drop_shadow(tweetflow, plan)
    metadata = comparison_metadata(result)
    summary = comparison.summarize(result)
    context.log.info("replay comparison:\n%s", summary)
    if not result.passed:
        names = ", ".join(t.table for t in result.differing)
        raise Failure(description=f"replay differs from production in: {names}",
                      metadata=metadata)
    context.log.info("replay matches production exactly on %d day(s)",
                     len(result.comparable_days))
    context.add_output_metadata(metadata)
    return {"passed": True, "comparable_days": [d.isoformat() for d in result.comparable_days]}


def comparison_metadata(result: comparison.Comparison) -> dict[str, Any]:
    return {
        "production_database": result.production_database,
        "shadow_database": result.shadow_database,
        "comparable_days": MetadataValue.json([d.isoformat() for d in result.comparable_days]),
        "excluded_days": MetadataValue.json([d.isoformat() for d in result.excluded_days]),
        "tables": MetadataValue.json({t.table: {"production_only": t.production_only,
                                                "shadow_only": t.shadow_only,
                                                "compared_on": t.compared_on}
                                      for t in result.tables}),
        "differing_rows": MetadataValue.json({t.table: t.samples for t in result.differing}),
    }


def _log_tail(invocation: Any, lines: int = 40) -> str:
    try:
        text = (invocation.target_path / "dbt.log").read_text(errors="replace")
    except OSError:
        return "(no dbt.log)"
    return "\n".join(text.splitlines()[-lines:])


@job(name="replay_validation", tags={"tweetflow/kind": "validation"}, description=(
    "Replay a Kafka range into a shadow ClickHouse database through the consumer code, rebuild "
    "the marts there and compare with production: exact match passes, differences fail."))
def replay_validation() -> None:
    compare_with_production(build_shadow_marts(load_shadow(plan_replay())))

