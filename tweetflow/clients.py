"""Client factories: the one place that turns settings into Kafka, ClickHouse and Redis clients."""

from __future__ import annotations

from typing import Any

from tweetflow.settings import Settings, get_settings


def kafka_config(settings: Settings | None = None, **overrides: Any) -> dict[str, Any]:
    """librdkafka configuration of every producer, consumer and admin client (product code,
    Dagster, bench and tests alike): a connection or security setting added here reaches them all,
    so nobody builds a `bootstrap.servers` dict by hand."""
    settings = settings or get_settings()
    return {"bootstrap.servers": settings.kafka_bootstrap_servers, **overrides}


def kafka_admin(settings: Settings | None = None):
    from confluent_kafka.admin import AdminClient

    return AdminClient(kafka_config(settings, log_level=4))  # warnings and worse only


def ensure_topics(settings: Settings | None = None, *topics: str, partitions: int | None = None,
                  timeout: float = 30.0) -> list[str]:
    """Create the named topics (default: raw and dead-letter) if missing; returns those created.

    Why explicit: the broker runs with auto.create.topics.enable=false, so the partition count is
    always the project's choice rather than a broker default.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic

    settings = settings or get_settings()
    wanted = topics or (settings.topic_raw, settings.topic_dlq)
    admin = kafka_admin(settings)
    existing = set(admin.list_topics(timeout=timeout).topics)
    new = [NewTopic(t, partitions or settings.topic_partitions, 1) for t in wanted
           if t not in existing]
    if not new:
        return []
    created = []
    for topic, future in admin.create_topics(new, operation_timeout=timeout).items():
        try:
            future.result()
            created.append(topic)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return created


def clickhouse_client(settings: Settings | None = None, *, database: str | None = None,
                      user: str | None = None, password: str | None = None, **kwargs: Any):
    """A clickhouse-connect client for the configured server (embedded or real), alike."""
    import clickhouse_connect

    settings = settings or get_settings()
    return clickhouse_connect.get_client(
        host=settings.clickhouse_host, port=settings.clickhouse_port,
        secure=settings.clickhouse_secure,
        username=user or settings.clickhouse_user,
        password=settings.clickhouse_password if password is None else password,
        database=database or settings.clickhouse_database, **kwargs,
    )


def redis_client(settings: Settings | None = None, **kwargs: Any):
    """A redis-py client (hiredis parser when installed) for the configured Redis."""
    import redis

    settings = settings or get_settings()
    return redis.Redis.from_url(settings.redis_url, **kwargs)


def topic_id(settings: Settings | None = None, topic: str | None = None,
             timeout: float = 30.0) -> str:
    """The broker's id of a topic: it changes when a topic of the same name is created anew."""
    from confluent_kafka import TopicCollection

    settings = settings or get_settings()
    topic = topic or settings.topic_raw
    admin = kafka_admin(settings)  # keep a reference: a collected client never resolves futures
    future = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout)[topic]
    return str(future.result(timeout=timeout).topic_id)
