"""Client factories: the one place that turns settings into Kafka, ClickHouse, Redis and gRPC
clients.

Kafka: `kafka_config` is every librdkafka client's configuration, so the secured-cluster
settings (SASL, TLS, a properties file) reach producers, consumers, admin clients, Dagster and
the bench alike; `kafka_metadata` turns a refused password or certificate into KafkaAccessError
within half a second of the refusal (`tweetflow lag` with a wrong password: 0.8-0.9 s in all,
0.6 s of it Python's start-up), where librdkafka alone retries until the caller's timeout (10 s,
then "Broker transport failure").
"""

from __future__ import annotations

import functools
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from tweetflow.settings import Settings, get_settings

# librdkafka property -> (Settings field, environment variable) of the security settings.
SECURITY_SETTINGS = {
    "security.protocol": ("kafka_security_protocol", "KAFKA_SECURITY_PROTOCOL"),
    "sasl.mechanism": ("kafka_sasl_mechanism", "KAFKA_SASL_MECHANISM"),
    "sasl.username": ("kafka_sasl_username", "KAFKA_SASL_USERNAME"),
    "sasl.password": ("kafka_sasl_password", "KAFKA_SASL_PASSWORD"),
    "ssl.ca.location": ("kafka_ssl_ca_location", "KAFKA_SSL_CA_LOCATION"),
}
# librdkafka's other names for the same properties, so a file cannot set one behind a setting.
PROPERTY_ALIASES = {"metadata.broker.list": "bootstrap.servers", "sasl.mechanisms": "sasl.mechanism"}


class KafkaAccessError(RuntimeError):
    """The broker refused this client: its SASL credentials or a TLS handshake (say, a broker
    certificate the configured CA did not sign). Not retried: the settings are wrong."""


_refused = threading.local()  # .error: the refusal noted while this thread polled a client


def kafka_config(settings: Settings | None = None, **overrides: Any) -> dict[str, Any]:
    """librdkafka configuration of every producer, consumer and admin client (product code,
    Dagster, bench and tests alike): a connection or security setting added here reaches them all,
    so nobody builds a `bootstrap.servers` dict by hand.

    Layers, later winning: the KAFKA_CLIENT_PROPERTIES file (any librdkafka property), the
    settings (KAFKA_BOOTSTRAP_SERVERS, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*,
    KAFKA_SSL_CA_LOCATION; a file setting one of these differently is an error, not a silent
    override), then `overrides`, the calling program's own choices (group, commits, acks).
    An `error_cb` notes authentication and TLS failures for kafka_metadata to raise."""
    settings = settings or get_settings()
    config = _client_properties(settings.kafka_client_properties)
    for prop, value in _settings_properties(settings).items():
        if prop in config and config[prop] != value:
            env = SECURITY_SETTINGS.get(prop, (None, "KAFKA_BOOTSTRAP_SERVERS"))[1]
            raise ValueError(f"KAFKA_CLIENT_PROPERTIES={settings.kafka_client_properties} sets "
                             f"{prop}, which {env} sets differently: keep one of them")
        config[prop] = value
    if any(k.startswith("sasl.") for k in config) and not str(
            config.get("security.protocol", "")).upper().startswith("SASL_"):
        raise ValueError("SASL settings are given but KAFKA_SECURITY_PROTOCOL is "
                         f"{config.get('security.protocol') or 'unset (plaintext)'}: set it to "
                         "SASL_SSL or SASL_PLAINTEXT")
    return {**config, "error_cb": functools.partial(_note_access_error, settings), **overrides}


def _settings_properties(settings: Settings) -> dict[str, str]:
    """The librdkafka properties the settings give (those left empty are not given)."""
    values = {"bootstrap.servers": settings.kafka_bootstrap_servers}
    for prop, (field, _) in SECURITY_SETTINGS.items():
        value = getattr(settings, field)
        values[prop] = value.get_secret_value() if isinstance(value, SecretStr) else value
    return {prop: value for prop, value in values.items() if value}


def _client_properties(path: str) -> dict[str, Any]:
    """The `key=value` lines of a librdkafka properties file (`#` and `!` start comments).

    Hand-written rather than a Java .properties parser: this is the format of librdkafka's own
    tools (kcat -F), and Java's escapes would alter values with backslashes (Windows paths)."""
    if not path:
        return {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ValueError(f"KAFKA_CLIENT_PROPERTIES={path}: cannot read it: {exc}") from exc
    properties = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{path}:{number}: expected `property=value`, got {line!r}")
        properties[PROPERTY_ALIASES.get(key.strip(), key.strip())] = value.strip()
    return properties


def _note_access_error(settings: Settings, error: Any) -> None:
    """error_cb of every client: note an authentication or TLS failure, as a KafkaAccessError, for
    the thread whose poll serves it (kafka_metadata raises it); other errors (a broker down,
    retried) are left to librdkafka's own log, which reports these too.

    Why not raise here: confluent-kafka re-raises it from poll(), but then never frees the client
    (measured: the refused client kept reconnecting after every reference was gone)."""
    from confluent_kafka import KafkaError

    if error.code() == KafkaError._AUTHENTICATION:
        who = (f"SASL {settings.kafka_sasl_mechanism or '(mechanism from the properties file)'} "
               f"as KAFKA_SASL_USERNAME={settings.kafka_sasl_username or '(from the file)'}")
    elif error.code() == KafkaError._SSL:
        who = f"TLS, KAFKA_SSL_CA_LOCATION={settings.kafka_ssl_ca_location or '(system roots)'}"
    else:
        return
    _refused.error = KafkaAccessError(
        f"Kafka refused this client at {settings.kafka_bootstrap_servers} ({who}): {error.str()}")


def kafka_metadata(client: Any, topic: str | None = None, timeout: float = 10.0) -> Any:
    """`client.list_topics(topic)`, raising KafkaAccessError as soon as the broker refuses the
    client's credentials or certificate (within a second of the refusal), KafkaException when no
    broker answers within `timeout`.

    Why: librdkafka reports such a refusal only as an error event and keeps retrying, so a bare
    list_topics (or an admin request) waits out its whole timeout and then says "transport
    failure" or "timed out" (confluent-kafka-python#1034). Serving the client's events between
    short metadata requests lets kafka_config's error_cb note the refusal. A consumer passed here
    must not have partitions assigned yet (its poll would take a message)."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            return client.list_topics(topic, timeout=max(0.01, min(0.5, remaining)))
        except KafkaException:
            _refused.error = None
            client.poll(0)  # serves the client's error events in this thread
            if _refused.error is not None:
                raise _refused.error from None
            if remaining <= 0.5:
                raise


def kafka_admin(settings: Settings | None = None, timeout: float = 10.0):
    """An admin client that reached the cluster (KafkaAccessError when it was refused)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(kafka_config(settings, log_level=4))  # warnings and worse only
    kafka_metadata(admin, timeout=timeout)
    return admin


def ensure_topics(settings: Settings | None = None, *topics: str, partitions: int | None = None,
                  timeout: float = 30.0) -> list[str]:
    """Create the named topics (default: raw and dead-letter) if missing; returns those created.

    Why explicit: the broker runs with auto.create.topics.enable=false, so the partition count is
    always the project's choice rather than a broker default. Replication: TOPIC_REPLICATION_FACTOR
    and TOPIC_MIN_INSYNC_REPLICAS, else the broker's own defaults (-1: KIP-464).
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic

    settings = settings or get_settings()
    wanted = topics or (settings.topic_raw, settings.topic_dlq)
    admin = kafka_admin(settings)
    existing = set(admin.list_topics(timeout=timeout).topics)
    config = ({"min.insync.replicas": str(settings.topic_min_insync_replicas)}
              if settings.topic_min_insync_replicas else {})
    new = [NewTopic(t, partitions or settings.topic_partitions,
                    replication_factor=settings.topic_replication_factor, config=config)
           for t in wanted if t not in existing]
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
    """A redis-py client (hiredis parser when installed) for the configured Redis: a
    `RedisCluster` that discovers every node from the one REDIS_URL names when REDIS_MODE is
    `cluster` (multi-key commands then need their keys in one slot: tweetflow/hot_keys.py)."""
    import redis

    settings = settings or get_settings()
    if settings.redis_mode == "cluster":
        return _slot_caching(redis.RedisCluster).from_url(settings.redis_url, **kwargs)
    return redis.Redis.from_url(settings.redis_url, **kwargs)


def redis_async_client(settings: Settings | None = None, **kwargs: Any):
    """The asyncio twin of `redis_client` (the query service runs on asyncio)."""
    import redis.asyncio as aioredis

    settings = settings or get_settings()
    if settings.redis_mode == "cluster":
        return _slot_caching(aioredis.RedisCluster).from_url(settings.redis_url, **kwargs)
    return aioredis.Redis.from_url(settings.redis_url, **kwargs)


@functools.cache
def _slot_caching(cluster: type) -> type:
    """`cluster` (redis-py's RedisCluster, sync or asyncio) remembering the slots of str and bytes
    keys. Why: redis-py hashes every key of every command to check they share a slot, and the
    hot tier's scripts name dozens of keys of a few hash tags (a 1 h trending question ~1,600 on
    6 shards): redis-py's own hashing took 2.2 of a question's 7.1 ms (p50 with and without this
    cache, three rounds of 300 of bench.hot_cluster_bench's questions over its data). The keys are
    few and reused (a bucket's keys for its horizon)."""

    class SlotCachingCluster(cluster):  # type: ignore[misc, valid-type]
        def keyslot(self, key: Any) -> int:
            if isinstance(key, str | bytes):
                return _key_slot(key)
            return super().keyslot(key)

    return SlotCachingCluster


@functools.lru_cache(maxsize=1 << 16)
def _key_slot(key: str | bytes) -> int:
    from redis.crc import key_slot

    return key_slot(key.encode() if isinstance(key, str) else key)


def topic_id(settings: Settings | None = None, topic: str | None = None,
             timeout: float = 30.0) -> str:
    """The broker's id of a topic: it changes when a topic of the same name is created anew."""
    from confluent_kafka import TopicCollection

    settings = settings or get_settings()
    topic = topic or settings.topic_raw
    admin = kafka_admin(settings)  # keep a reference: a collected client never resolves futures
    future = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout)[topic]
    return str(future.result(timeout=timeout).topic_id)


def grpc_channel(settings: Settings | None, address: str,
                 options: tuple[tuple[str, Any], ...] = ()):
    """A gRPC channel to a tweetflow service at `address`: TLS when the settings say the services
    use it (tweetflow.tls.client_uses_tls), with their CA and client certificate."""
    import grpc

    from tweetflow.tls import client_uses_tls, grpc_client_credentials

    settings = settings or get_settings()
    if client_uses_tls(settings):
        return grpc.secure_channel(address, grpc_client_credentials(settings), options=options)
    return grpc.insecure_channel(address, options=options)
