"""replay_validation: a clean replay of the topic matches production; a duplicate slipped into
ClickHouse behind the consumers' back fails it, and so do a row missing from production (data
loss) and an extra one, each with the differing rows in the metadata.

Production here is the real consumer (streaming.worker.Worker) reading a topic of synthetic
messages into the test's database. The shadow load is streaming.shadow_replay.replay_into (imported
here, so that a replay path that cannot be imported fails this module rather than skipping it), the
comparison analytics_pipeline.shadow_comparison. A missing row being caught also shows the shadow
was re-consumed from Kafka: a copy of production's tables would lack the row too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dagster import ExecuteInProcessResult
from raw_rows import query, run_dbt

from analytics_pipeline.replay_validation import replay_validation
from streaming.shadow_replay import replay_into
from tweetflow.clients import clickhouse_client
from tweetflow.settings import Settings

pytestmark = pytest.mark.integration
# Event times from 23:55 on 2024-03-05, 200 messages at 0.2/s: about 17 minutes across midnight.
START = datetime(2024, 3, 5, 23, 55, tzinfo=UTC)


def produce_and_consume(settings: Settings, count: int = 200) -> None:
    from streaming.producer import TweetProducer
    from streaming.synthetic import generate
    from streaming.worker import Worker, WorkerOptions

    producer = TweetProducer(settings)
    for key, value, _ in generate(seed=11, start_ms=int(START.timestamp() * 1000), count=count,
                                  rate=0.2):
        producer.produce(key, value)
    assert producer.flush(30).delivered == count
    Worker(settings, WorkerOptions(batch_size=50, batch_ms=200, idle_exit_s=3)).run()


def validate(resources: dict, **config: Any) -> ExecuteInProcessResult:
    return replay_validation.execute_in_process(
        run_config={"ops": {"plan_replay": {"config": config}}}, resources=resources,
        raise_on_error=False)


def failure_metadata(result: ExecuteInProcessResult) -> dict[str, Any]:
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    return {k: v.value for k, v in
            failure.step_failure_data.user_failure_data.metadata.items()}


def step_metadata(result: ExecuteInProcessResult, step: str) -> dict[str, Any]:
    """The output metadata a successful step reported."""
    (output,) = [e for e in result.events_for_node(step) if e.is_successful_output]
    return {k: v.value for k, v in output.step_output_data.metadata.items()}


def shadow_databases(settings: Settings) -> list[tuple]:
    return query(settings, "SELECT name FROM system.databases WHERE name LIKE "
                           f"'{settings.clickhouse_database}_shadow_%'")


def test_replay_validation_passes_clean_and_fails_on_a_slipped_duplicate(
        test_settings: Settings, resources: dict, tmp_path: Path) -> None:
    produce_and_consume(test_settings)
    run_dbt(test_settings, "run", work_dir=tmp_path)  # production's marts
    tweets = query(test_settings, "SELECT count() FROM stg_tweets")[0][0]
    assert tweets > 150

    clean = validate(resources)
    assert clean.success
    output = clean.output_for_node("compare_with_production")
    assert output["comparable_days"] == ["2024-03-05", "2024-03-06"]
    loaded = step_metadata(clean, "load_shadow")  # the consumer code replayed every message
    assert loaded["replayed_by"] == f"{replay_into.__module__}.{replay_into.__qualname__}"
    assert loaded["replayed_by"] == "streaming.shadow_replay.replay_into"
    assert loaded["messages_applied"] == 200
    assert shadow_databases(test_settings) == []  # dropped after comparing

    # Behind the consumers' back: a second copy of a consumed Tweet, same Kafka coordinates,
    # newer ingested_at and inflated metrics (as a buggy backfill script might write).
    client = clickhouse_client(test_settings)
    try:
        victim = client.query("SELECT min(tweet_id) FROM stg_tweets").result_rows[0][0]
        client.command(
            "INSERT INTO raw_tweets SELECT * REPLACE (like_count + 1000 AS like_count, "
            "now64(6) AS ingested_at) FROM raw_tweets WHERE tweet_id = {id:UInt64} LIMIT 1",
            parameters={"id": victim})
    finally:
        client.close()

    dirty = validate(resources)
    assert not dirty.success
    metadata = failure_metadata(dirty)
    assert set(metadata["differing_rows"]) == {"raw_tweets", "stg_tweets"}
    raw = metadata["differing_rows"]["raw_tweets"]
    (slipped,) = [r for r in raw if r["side"] == "production_only"]
    assert slipped["tweet_id"] == victim and slipped["like_count"] >= 1000
    # If a merge already collapsed the two versions, production lacks the original row too.
    assert {r["tweet_id"] for r in raw if r["side"] == "shadow_only"} <= {victim}
    assert metadata["tables"]["engagement_daily"]["production_only"] == 0  # marts not yet rebuilt
    assert shadow_databases(test_settings) == []


def test_replay_validation_compares_only_days_fully_inside_the_range(
        test_settings: Settings, resources: dict, tmp_path: Path) -> None:
    produce_and_consume(test_settings, count=60)
    run_dbt(test_settings, "run", work_dir=tmp_path)
    highs = query(test_settings, "SELECT kafka_partition, max(kafka_offset) + 1 FROM raw_tweets "
                                 "GROUP BY kafka_partition")
    # Every partition but its last message: the days those messages fall on are not comparable.
    offsets = {str(p): [0, int(high) - 1] for p, high in highs}
    result = validate(resources, offsets=offsets)
    assert result.success
    output = result.output_for_node("compare_with_production")
    assert "2024-03-06" not in output["comparable_days"]


def _one_plain_tweet(client: Any) -> int:
    """A Tweet with one row, never edited, never deleted: removing or copying it touches no other."""
    return client.query(
        "SELECT tweet_id FROM raw_tweets WHERE length(edit_history_tweet_ids) <= 1 AND tweet_id "
        "NOT IN (SELECT tweet_id FROM tweet_deletes) GROUP BY tweet_id HAVING count() = 1 "
        "ORDER BY tweet_id LIMIT 1").result_rows[0][0]


def test_replay_validation_catches_a_row_missing_from_production_and_an_extra_one(
        test_settings: Settings, resources: dict, tmp_path: Path) -> None:
    produce_and_consume(test_settings, count=60)
    client = clickhouse_client(test_settings)
    try:
        lost = _one_plain_tweet(client)
        client.command("ALTER TABLE raw_tweets DELETE WHERE tweet_id = {id:UInt64} "
                       "SETTINGS mutations_sync = 2", parameters={"id": lost})
        source = _one_plain_tweet(client)
        extra = int(client.query("SELECT max(tweet_id) + 1 FROM raw_tweets").result_rows[0][0])
        # Under the Kafka coordinates of a consumed message: inside the replayed range. (The
        # subquery: a WHERE beside REPLACE would see the replaced tweet_id.)
        client.command(
            "INSERT INTO raw_tweets SELECT * REPLACE ({new:UInt64} AS tweet_id, {new:UInt64} AS "
            "chain_root_id, [{new:UInt64}] AS edit_history_tweet_ids) FROM (SELECT * FROM "
            "raw_tweets WHERE tweet_id = {id:UInt64})", parameters={"new": extra, "id": source})
    finally:
        client.close()
    run_dbt(test_settings, "run", work_dir=tmp_path)

    result = validate(resources)
    assert not result.success
    metadata = failure_metadata(result)
    for table in ("raw_tweets", "stg_tweets"):
        assert metadata["tables"][table]["shadow_only"] == 1  # the lost row, only in the replay
        assert metadata["tables"][table]["production_only"] == 1  # the extra row
        rows = {r["side"]: r["tweet_id"] for r in metadata["differing_rows"][table]}
        assert rows == {"shadow_only": lost, "production_only": extra}
    assert shadow_databases(test_settings) == []
