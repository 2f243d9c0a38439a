"""Dagster's view of tweetflow's settings, and the environment dbt's profile reads.

Why one resource over `tweetflow.settings`: Dagster code must reach the same Kafka, ClickHouse and
Redis as the consumers and the query service; the resource adds only per-run overrides (a test
database, replay validation's shadow database), never a second source of addresses or secrets.
"""

from __future__ import annotations

import os
import shlex
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from dagster import ConfigurableResource

from tweetflow.settings import Settings, get_settings

_OVERRIDABLE = ("clickhouse_database", "redis_prefix", "topic_raw", "consumer_group")


class TweetflowResource(ConfigurableResource):
    """tweetflow's settings (read from the environment as everywhere else), with optional overrides.

    Secrets (ClickHouse password, ...) stay in the environment `Settings` reads; none is config.
    """

    clickhouse_database: str | None = None
    redis_prefix: str | None = None
    topic_raw: str | None = None
    consumer_group: str | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> TweetflowResource:
        """A resource reproducing `settings` (as far as it differs from the environment's)."""
        return cls(**{name: getattr(settings, name) for name in _OVERRIDABLE})

    @property
    def settings(self) -> Settings:
        overrides = {n: v for n in _OVERRIDABLE if (v := getattr(self, n)) is not None}
        return get_settings().model_copy(update=overrides)

    def clickhouse(self, **kwargs: Any):
        from tweetflow.clients import clickhouse_client

        return clickhouse_client(self.settings, **kwargs)

    def redis(self):
        from tweetflow.clients import redis_client

        return redis_client(self.settings, decode_responses=True)


def dbt_env(settings: Settings) -> dict[str, str]:
    """The variables dbt_project/profiles.yml reads, derived from tweetflow's settings."""
    return {
        "TWEETFLOW_DBT_HOST": settings.clickhouse_host,
        "TWEETFLOW_DBT_PORT": str(settings.clickhouse_port),
        "TWEETFLOW_DBT_SECURE": "true" if settings.clickhouse_secure else "false",
        "TWEETFLOW_DBT_USER": settings.clickhouse_user,
        "TWEETFLOW_DBT_PASSWORD": settings.clickhouse_password,
        "TWEETFLOW_DBT_DATABASE": settings.clickhouse_database,
        "TWEETFLOW_DBT_THREADS": "1",
        "TWEETFLOW_DBT_CLUSTER": settings.clickhouse_cluster,
    }


_ENV_LOCK = threading.Lock()


@contextmanager
def dbt_environment(settings: Settings) -> Iterator[Mapping[str, str]]:
    """Run the body with dbt's profile variables set for `settings`, then restore the environment.

    Why patch os.environ: DbtCliResource starts dbt with a copy of this process's environment and
    has no parameter for extra variables; the subprocess has started by the time `cli()` returns,
    so the patch only needs to span that call. The lock keeps two threads from interleaving.
    """
    env = dbt_env(settings)
    with _ENV_LOCK:
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            yield env
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


if __name__ == "__main__":
    # `eval "$(python -m analytics_pipeline.resources)"` before running dbt by hand.
    for name, value in dbt_env(get_settings()).items():
        print(f"export {name}={shlex.quote(value)}")
