"""One settings object, read from the environment, shared by every tweetflow component.

Why one object: the CLI, the consumers, the query service, dbt's profile and Dagster must agree on
where Kafka, ClickHouse and Redis are; reading the environment in one place keeps them agreeing.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field
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
    embedded_clickhouse_port: int = 8123
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias=_env("REDIS_URL"))
    data_dir: Path = Field(
        PROJECT_ROOT / ".tweetflow", validation_alias=_env("TWEETFLOW_DATA_DIR")
    )
    topic_raw: str = "tweets.raw"
    topic_dlq: str = "tweets.dlq"
    topic_partitions: int = 6
    consumer_group: str = "tweetflow-consumers"
    hot_horizon_hours: int = 48
    redis_prefix: str = Field("tf", description="Prefix of every Redis key tweetflow writes.")
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_version: str = "4.1.1"

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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
