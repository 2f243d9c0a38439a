"""One settings object, read from the environment, shared by every tweetflow component.

Why one object: the CLI, the consumers, the query service, dbt's profile and Dagster must agree on
where Kafka, ClickHouse and Redis are; reading the environment in one place keeps them agreeing.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_CLICKHOUSE_HOST = "127.0.0.1"


def _env(name: str) -> AliasChoices:
    """Accept the documented unprefixed name and the `TWEETFLOW_`-prefixed one."""
    return AliasChoices(name, f"TWEETFLOW_{name}")


class Settings(BaseSettings):
    """Where the services are and how tweetflow uses them; every field has a documented default."""

    model_config = SettingsConfigDict(env_prefix="TWEETFLOW_", frozen=True, extra="ignore")

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS")
    )
    # How every Kafka client authenticates (tweetflow.clients.kafka_config); empty = not set.
    kafka_security_protocol: Literal["", "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "", validation_alias=_env("KAFKA_SECURITY_PROTOCOL"),
        description="librdkafka's security.protocol; empty = plaintext (or the properties file's).")
    kafka_sasl_mechanism: str = Field(
        "", validation_alias=_env("KAFKA_SASL_MECHANISM"),
        description="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or GSSAPI.")
    kafka_sasl_username: str = Field("", validation_alias=_env("KAFKA_SASL_USERNAME"))
    kafka_sasl_password: SecretStr = Field(
        SecretStr(""), validation_alias=_env("KAFKA_SASL_PASSWORD"))
    kafka_ssl_ca_location: str = Field(
        "", validation_alias=_env("KAFKA_SSL_CA_LOCATION"),
        description="PEM file of the CA(s) that signed the brokers' certificates; empty = the "
                    "system's trusted roots.")
    kafka_client_properties: str = Field(
        "", validation_alias=_env("KAFKA_CLIENT_PROPERTIES"),
        description="A file of `key=value` lines: any other librdkafka property, for every "
                    "client (mTLS keys, OAuth, timeouts, client.id...).")
    clickhouse_url: str = Field(
        "", validation_alias=_env("CLICKHOUSE_URL"),
        description="A real ClickHouse server's HTTP URL; empty starts the embedded endpoint.",
    )
    clickhouse_user: str = Field("default", validation_alias=_env("CLICKHOUSE_USER"))
    clickhouse_password: str = Field("", validation_alias=_env("CLICKHOUSE_PASSWORD"))
    clickhouse_database: str = Field("tweetflow", validation_alias=_env("CLICKHOUSE_DATABASE"))
    clickhouse_analyst_user: str = Field(
        "analyst", validation_alias=_env("CLICKHOUSE_ANALYST_USER")
    )
    clickhouse_analyst_password: str = Field(
        "analyst", validation_alias=_env("CLICKHOUSE_ANALYST_PASSWORD")
    )
    clickhouse_cluster: str = Field(
        "", validation_alias=_env("CLICKHOUSE_CLUSTER"),
        description="Cluster name; when set, raw tables are Replicated with a Distributed table.",
    )
    clickhouse_max_partitions_per_insert: int = Field(
        100, ge=1, validation_alias=_env("CLICKHOUSE_MAX_PARTITIONS_PER_INSERT"),
        description="raw_tweets partitions one consumer INSERT may touch; a batch spanning more is split "
                    "(the server's max_partitions_per_insert_block, 100 by default).",
    )
    clickhouse_verify_inserts: bool = Field(
        True, validation_alias=_env("CLICKHOUSE_VERIFY_INSERTS"),
        description="After each INSERT the consumers read back one row per part it wrote and "
                    "refuse to commit offsets past rows that are not there.",
    )
    embedded_clickhouse_port: int = 8123
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias=_env("REDIS_URL"))
    redis_mode: Literal["standalone", "cluster"] = Field(
        "standalone", validation_alias=_env("REDIS_MODE"),
        description="`cluster`: REDIS_URL names any node of a Redis Cluster (the client finds the "
                    "rest) and the hot tier is sharded by hash tag (tweetflow/hot_keys.py).")
    hot_shards: int = Field(
        0, ge=0, validation_alias=_env("HOT_SHARDS"),
        description="Hash-tagged shards of the hot tier; 0 = 1 standalone, the raw topic's "
                    "partitions in cluster mode. Fixed for the life of a key prefix.")
    redis_wait_replicas: int = Field(
        -1, ge=-1, validation_alias=_env("REDIS_WAIT_REPLICAS"),
        description="Replicas that must hold a batch's hot writes before its Kafka offsets are "
                    "committed (WAIT); -1 = 1 in cluster mode, 0 standalone. A master with fewer "
                    "replicas connected is waited for by those it has.")
    redis_wait_timeout_ms: int = Field(
        2000, ge=1, validation_alias=_env("REDIS_WAIT_TIMEOUT_MS"),
        description="How long one WAIT for the replicas may block before the batch is retried.")
    data_dir: Path = Field(
        PROJECT_ROOT / ".tweetflow", validation_alias=_env("TWEETFLOW_DATA_DIR")
    )
    topic_raw: str = "tweets.raw"
    topic_dlq: str = "tweets.dlq"
    topic_partitions: int = 6
    topic_replication_factor: int = Field(
        -1, validation_alias=_env("TOPIC_REPLICATION_FACTOR"),
        description="Replicas of each topic tweetflow creates; -1 = the broker's "
                    "default.replication.factor (1 on the local single broker).")
    topic_min_insync_replicas: int = Field(
        0, ge=0, validation_alias=_env("TOPIC_MIN_INSYNC_REPLICAS"),
        description="min.insync.replicas of each topic tweetflow creates; 0 = the broker's own.")
    consumer_group: str = "tweetflow-consumers"
    hot_horizon_hours: int = 48
    redis_prefix: str = Field("tf", description="Prefix of every Redis key tweetflow writes.")
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_version: str = "4.1.1"
    # The gRPC services and metrics endpoints. Ports are command options; listen addresses and
    # process counts are settings because deployments set them (deploy/ sets 0.0.0.0).
    query_host: str = Field("127.0.0.1", description="Where `tweetflow serve` listens.")
    query_processes: int = Field(
        1, description="Processes of `tweetflow serve` sharing its port (SO_REUSEPORT).")
    query_addr: str = Field("127.0.0.1:50051", description="Where `tweetflow query` asks.")
    query_http_port: int = Field(
        8080, description="Port of `tweetflow serve`'s Connect API, health endpoints and live page "
        "(HTTP/1.1 and HTTP/2 on the query host); 0 = gRPC only.")
    ingest_host: str = Field("127.0.0.1", description="Where `tweetflow ingest` listens.")
    ingest_metrics_port: int = Field(0, description="`tweetflow ingest`'s metrics port; 0 = none.")
    metrics_host: str = Field("127.0.0.1", description="Where the consumers serve their metrics.")
    prometheus_port: int = Field(
        9090, description="Port of the local Prometheus `tweetflow stack up --monitoring` starts.")
    # TLS of the gRPC services and the Connect/HTTP server (tweetflow.grpc_server), and of the
    # local clients that call them (tweetflow.clients.grpc_channel). PEM file paths.
    tls_cert: str = Field(
        "", description="Certificate chain the services present; with tls_key, they serve TLS "
        "only (gRPC and HTTP); empty = plaintext.")
    tls_key: str = Field("", description="Private key of tls_cert.")
    tls_client_ca: str = Field(
        "", description="CA whose client certificates the services require (mutual TLS); "
        "empty = no client certificate asked.")
    tls_ca: str = Field(
        "", description="CA local clients trust for the services (default: the system's roots); "
        "clients use TLS when this or tls_cert is set.")
    tls_client_cert: str = Field("", description="Certificate local clients present (mutual TLS).")
    tls_client_key: str = Field("", description="Private key of tls_client_cert.")
    log_format: Literal["text", "json"] = Field(
        "text", description="`json`: one JSON object per line (tweetflow.logs).")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")
    api_keys: SecretStr = Field(
        SecretStr(""), description="Comma-separated keys the gRPC services accept; `off` turns "
        "checking off; empty = one key generated into <data dir>/api_key (tweetflow.auth).")
    api_key: SecretStr = Field(
        SecretStr(""), description="The key local clients send (default: the first of api_keys, "
        "or the generated one).")
    # Live sources of `tweetflow produce` (streaming/sources).
    x_bearer_token: SecretStr = Field(
        SecretStr(""), validation_alias=_env("X_BEARER_TOKEN"),
        description="App-only bearer token of an X developer app; required by the x-* sources "
                    "and `tweetflow rules`.")
    x_api_base_url: str = Field(
        "https://api.x.com", validation_alias=_env("X_API_BASE_URL"),
        description="Where the X API v2 is (a proxy, or a local server in tests).")
    x_backfill_minutes: int = Field(
        0, ge=0, le=5, validation_alias=_env("X_BACKFILL_MINUTES"),
        description="`backfill_minutes` asked on every reconnect (1-5; needs an access level "
                    "that has it; 0 = off): X re-sends that window, the consumers drop repeats.")
    jetstream_url: str = Field(
        "wss://jetstream2.us-east.bsky.network/subscribe", validation_alias=_env("JETSTREAM_URL"),
        description="A Bluesky Jetstream instance's /subscribe endpoint.")
    jetstream_compress: bool = Field(
        False, validation_alias=_env("JETSTREAM_COMPRESS"),
        description="Ask Jetstream for zstd frames (decoded with its published dictionary).")
    jetstream_rewind_seconds: float = Field(
        5.0, ge=0, validation_alias=_env("JETSTREAM_REWIND_SECONDS"),
        description="How far before the last event written to Kafka a resumed run asks to start.")

    @field_validator("kafka_security_protocol", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value  # librdkafka ignores case

    @field_validator("log_level", mode="after")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"log_level {value!r}: not one of DEBUG, INFO, WARNING, ERROR")
        return value.upper()

    @classmethod
    def env_names(cls) -> dict[str, tuple[str, ...]]:
        """Field -> the environment variables it is read from: its aliases, or TWEETFLOW_<FIELD>."""
        prefix = cls.model_config.get("env_prefix", "")
        names: dict[str, tuple[str, ...]] = {}
        for name, info in cls.model_fields.items():
            alias = info.validation_alias
            if isinstance(alias, AliasChoices):
                names[name] = tuple(c for c in alias.choices if isinstance(c, str))
            else:
                names[name] = (alias if isinstance(alias, str) else f"{prefix}{name}".upper(),)
        return names

    def to_env(self) -> dict[str, str]:
        """The environment that makes `Settings()` in a child process equal these settings.

        Every accepted name of every field is set (an unprefixed alias wins over the prefixed
        name in pydantic-settings), so a variable inherited from the parent cannot override one.
        Secrets are included in clear: this is for a child's environment, never for a log.
        """
        env: dict[str, str] = {}
        for name, env_names in self.env_names().items():
            value = getattr(self, name)
            text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            env.update(dict.fromkeys(env_names, text))
        return env

    @property
    def embedded_clickhouse(self) -> bool:
        """True when tweetflow runs its own ClickHouse endpoint instead of a real server."""
        return not self.clickhouse_url

    @property
    def clickhouse_http_url(self) -> str:
        """The HTTP URL every ClickHouse client uses, embedded or real."""
        if self.clickhouse_url:
            return self.clickhouse_url.rstrip("/")
        return f"http://{EMBEDDED_CLICKHOUSE_HOST}:{self.embedded_clickhouse_port}"

    @property
    def clickhouse_host(self) -> str:
        return urlsplit(self.clickhouse_http_url).hostname or EMBEDDED_CLICKHOUSE_HOST

    @property
    def clickhouse_port(self) -> int:
        parts = urlsplit(self.clickhouse_http_url)
        return parts.port or (8443 if parts.scheme == "https" else 8123)

    @property
    def clickhouse_secure(self) -> bool:
        return urlsplit(self.clickhouse_http_url).scheme == "https"

    @property
    def hot_shard_count(self) -> int:
        """Shards of the hot tier (see `hot_shards`)."""
        if self.hot_shards:
            return self.hot_shards
        return self.topic_partitions if self.redis_mode == "cluster" else 1

    @property
    def hot_wait_replicas(self) -> int:
        """Replicas a batch's hot writes wait for (see `redis_wait_replicas`)."""
        if self.redis_wait_replicas >= 0:
            return self.redis_wait_replicas
        return 1 if self.redis_mode == "cluster" else 0


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
