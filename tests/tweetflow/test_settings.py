"""Settings: every setting read from the environment in one place, and handed to a child process
with `to_env` (no stack needed)."""

from __future__ import annotations

import pytest

from tweetflow.settings import Settings


def test_to_env_gives_a_child_process_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    custom = Settings().model_copy(update={"topic_raw": "bench_x.raw", "redis_prefix": "bench_x",
                                           "kafka_bootstrap_servers": "127.0.0.1:19092",
                                           "embedded_clickhouse_port": 18123})
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "elsewhere:9092")  # must not win
    for name, value in custom.to_env().items():
        monkeypatch.setenv(name, value)
    child = Settings()
    assert child == custom


def test_service_settings_keep_their_variables_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    names = {"TWEETFLOW_QUERY_HOST": "query_host", "TWEETFLOW_QUERY_PROCESSES": "query_processes",
             "TWEETFLOW_QUERY_ADDR": "query_addr", "TWEETFLOW_INGEST_HOST": "ingest_host",
             "TWEETFLOW_INGEST_METRICS_PORT": "ingest_metrics_port",
             "TWEETFLOW_METRICS_HOST": "metrics_host", "TWEETFLOW_API_KEYS": "api_keys",
             "TWEETFLOW_API_KEY": "api_key"}
    for name in names:
        monkeypatch.delenv(name, raising=False)
    defaults = Settings()
    assert (defaults.query_host, defaults.ingest_host, defaults.metrics_host) == ("127.0.0.1",) * 3
    assert (defaults.query_processes, defaults.ingest_metrics_port) == (1, 0)
    assert defaults.query_addr == "127.0.0.1:50051"
    assert defaults.api_keys.get_secret_value() == defaults.api_key.get_secret_value() == ""
    for name, field in names.items():
        assert Settings.env_names()[field] == (name,)
    monkeypatch.setenv("TWEETFLOW_QUERY_PROCESSES", "3")
    monkeypatch.setenv("TWEETFLOW_API_KEYS", "k1,k2")
    configured = Settings()
    assert configured.query_processes == 3
    assert configured.api_keys.get_secret_value() == "k1,k2"
    assert "k1" not in repr(configured)  # keys are secrets: never in a log line or traceback
    assert configured.to_env()["TWEETFLOW_API_KEYS"] == "k1,k2"
