"""Throw-away namespaces: the topics, consumer group, ClickHouse database and Redis key prefix that
one `Settings` names, all derived from one tag.

Why: tests, bench scenarios and shadow replays each work in a namespace of their own, so they never
see each other's data, and must remove all of it afterwards; a name left behind is one a user later
sees beside their own (a full test run once left ~110 test topics and their groups in the local
Kafka). Every deletion here waits for the broker's answer: an admin client collected before its
futures resolve never sends the request, which is how those topics outlived a `delete_topics` call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from tweetflow.clients import clickhouse_client, kafka_admin, redis_client
from tweetflow.settings import Settings


def scoped(base: Settings, tag: str, **updates: Any) -> Settings:
    """`base` with raw and dead-letter topics, group, database and key prefix named after `tag`."""
    return base.model_copy(update={
        "topic_raw": f"{tag}.raw", "topic_dlq": f"{tag}.dlq", "consumer_group": f"{tag}.group",
        "clickhouse_database": tag, "redis_prefix": tag, **updates})


def drop(settings: Settings, *, topics: Iterable[str] | None = None,
         timeout: float = 30.0) -> list[Exception]:
    """Remove the namespace: its database, Redis keys, consumer group and `topics` (default: raw
    and dead-letter). Every step runs even when another fails (a stopped store keeps its part);
    returns the failures. Refuses settings not made by `scoped` (production's, say)."""
    if (settings.consumer_group, settings.clickhouse_database) != (
            f"{settings.redis_prefix}.group", settings.redis_prefix):
        raise ValueError(f"not a throw-away namespace: group {settings.consumer_group!r}, "
                         f"database {settings.clickhouse_database!r}, "
                         f"prefix {settings.redis_prefix!r}")
    wanted = [settings.topic_raw, settings.topic_dlq] if topics is None else list(topics)
    steps: list[Callable[[], object]] = [
        lambda: drop_database(settings),
        lambda: delete_keys(settings),
        lambda: delete_groups(settings, [settings.consumer_group], timeout=timeout),
        lambda: delete_topics(settings, wanted, timeout=timeout),
    ]
    failures = []
    for step in steps:
        try:
            step()
        except Exception as exc:
            failures.append(exc)
    return failures


def drop_database(settings: Settings) -> None:
    client = clickhouse_client(settings, database="default")
    try:
        client.command(f"DROP DATABASE IF EXISTS `{settings.clickhouse_database}`")
    finally:
        client.close()


def delete_keys(settings: Settings, batch: int = 2000) -> int:
    """Delete every Redis key under the settings' prefix; returns how many."""
    r = redis_client(settings)
    keys: list[bytes] = []
    deleted = 0
    for key in r.scan_iter(match=f"{settings.redis_prefix}:*", count=batch):
        keys.append(key)
        if len(keys) >= batch:
            deleted += r.delete(*keys)
            keys = []
    if keys:
        deleted += r.delete(*keys)
    return deleted


def delete_topics(settings: Settings, topics: Iterable[str], timeout: float = 30.0) -> None:
    """Delete topics and wait for the broker; one that does not exist is not an error."""
    from confluent_kafka import KafkaError, KafkaException

    names = list(topics)
    if not names:
        return
    admin = kafka_admin(settings)  # keep a reference: a collected client never resolves futures
    for future in admin.delete_topics(names, operation_timeout=timeout).values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise


def _retried_codes() -> frozenset[int]:
    from confluent_kafka import KafkaError

    return frozenset({KafkaError.NON_EMPTY_GROUP, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                      KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE})


def delete_groups(settings: Settings, groups: Iterable[str], timeout: float = 30.0) -> None:
    """Delete consumer groups with their committed offsets; one that does not exist is not an
    error. The broker refuses a group that still has members, and a member killed without leaving
    stays one until its session times out (10 s for workers), so refusals are retried until
    `timeout`; so are a coordinator still loading its groups (a broker just started) and one
    that moved."""
    from confluent_kafka import KafkaError, KafkaException

    pending, retried = list(groups), _retried_codes()
    admin = kafka_admin(settings)
    deadline = time.monotonic() + timeout
    while pending:
        refused = []
        for group, future in admin.delete_consumer_groups(
                pending, request_timeout=timeout).items():
            try:
                future.result()
            except KafkaException as exc:
                code = exc.args[0].code()
                if code == KafkaError.GROUP_ID_NOT_FOUND:
                    continue
                if code not in retried or time.monotonic() > deadline:
                    raise
                refused.append(group)
        pending = refused
        if pending:
            time.sleep(0.5)
