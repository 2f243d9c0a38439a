"""Secured Kafka: every client's librdkafka configuration comes from tweetflow.clients.kafka_config,
which adds the KAFKA_SECURITY_PROTOCOL / KAFKA_SASL_* / KAFKA_SSL_CA_LOCATION settings and the
properties of the KAFKA_CLIENT_PROPERTIES file.

Against a private real broker (secured_kafka) with a SASL_PLAINTEXT (PLAIN) listener and an SSL
listener whose CA the test made: produce, consume (the real worker into ClickHouse and Redis),
`tweetflow lag --json` and `tweetflow replay` work through each, and a wrong password or an
untrusted certificate is a KafkaAccessError naming the cause instead of a metadata timeout.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from secured_kafka import PASSWORD, USER, SecuredBroker, secured_broker
from streaming_support import (
    assert_clickhouse_matches,
    cli_env,
    committed_offsets,
    drain,
    expect,
    produce,
    read_topic,
    synthetic,
)
from tls_support import Pki, make_pki

from streaming.offsets import group_lag
from streaming.producer import TweetProducer
from tweetflow import namespaces
from tweetflow.app import cli
from tweetflow.clients import KafkaAccessError, ensure_topics, kafka_admin, kafka_config
from tweetflow.schema import ensure_schema
from tweetflow.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.slow


# --- kafka_config: settings and the properties file, without a broker --------------------------


def _config(tmp_path: Path, properties: str | None = None, **fields: object) -> dict[str, object]:
    if properties is not None:
        path = tmp_path / "client.properties"
        path.write_text(properties)
        fields["kafka_client_properties"] = str(path)
    settings = Settings(**fields)  # type: ignore[arg-type]
    config = kafka_config(settings)
    assert callable(config.pop("error_cb"))
    return config


def test_unset_security_settings_add_nothing(tmp_path: Path) -> None:
    assert _config(tmp_path, kafka_bootstrap_servers="k:9092") == {"bootstrap.servers": "k:9092"}


def test_security_settings_become_librdkafka_properties(tmp_path: Path) -> None:
    config = _config(tmp_path, kafka_security_protocol="sasl_ssl",
                     kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="u",
                     kafka_sasl_password="p w", kafka_ssl_ca_location="/etc/ca.pem")
    assert config == {"bootstrap.servers": "127.0.0.1:9092", "security.protocol": "SASL_SSL",
                      "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "u",
                      "sasl.password": "p w", "ssl.ca.location": "/etc/ca.pem"}


def test_the_properties_file_passes_any_property_through(tmp_path: Path) -> None:
    config = _config(tmp_path, "# comment\n! also a comment\n\n client.id = ops-tool \n"
                               "ssl.endpoint.identification.algorithm=none\n"
                               "sasl.mechanisms=OAUTHBEARER\n"
                               "sasl.oauthbearer.config=principal=a scope=b\n",
                     kafka_security_protocol="SASL_SSL")
    assert config == {"bootstrap.servers": "127.0.0.1:9092", "client.id": "ops-tool",
                      "ssl.endpoint.identification.algorithm": "none",
                      "sasl.mechanism": "OAUTHBEARER",  # librdkafka's alias, one name
                      "sasl.oauthbearer.config": "principal=a scope=b",
                      "security.protocol": "SASL_SSL"}


def test_the_programs_own_properties_win(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text("enable.auto.commit=true\n")
    settings = Settings(kafka_client_properties=str(path))
    assert kafka_config(settings, **{"enable.auto.commit": False})["enable.auto.commit"] is False


@pytest.mark.parametrize(("properties", "fields", "message"), [
    ("bootstrap.servers=other:9092\n", {}, "KAFKA_BOOTSTRAP_SERVERS"),
    ("security.protocol=SSL\n", {"kafka_security_protocol": "SASL_SSL"},
     "KAFKA_SECURITY_PROTOCOL"),
    ("client.id=a\nno equals sign here\n", {}, "client.properties:2"),
    ("=value\n", {}, "client.properties:1"),
    ("", {"kafka_sasl_username": "u"}, "KAFKA_SECURITY_PROTOCOL"),
])
def test_a_bad_configuration_is_a_clear_error(tmp_path: Path, properties: str,
                                              fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _config(tmp_path, properties, **fields)


def test_a_missing_properties_file_is_a_clear_error(tmp_path: Path) -> None:
    settings = Settings(kafka_client_properties=str(tmp_path / "nope.properties"))
    with pytest.raises(ValueError, match=r"KAFKA_CLIENT_PROPERTIES=.*nope\.properties"):
        kafka_config(settings)


def test_the_password_is_secret() -> None:
    settings = Settings(kafka_sasl_password="hunter2")
    assert "hunter2" not in repr(settings)
    assert settings.to_env()["KAFKA_SASL_PASSWORD"] == "hunter2"  # children get it in clear


# --- against the private secured broker -----------------------------------------------------


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tweetflow-kafka-security-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def pki(workdir: Path) -> Pki:
    return make_pki(workdir / "pki")


@pytest.fixture(scope="module")
def broker(stack: Settings, pki: Pki, workdir: Path) -> Iterator[SecuredBroker]:
    with secured_broker(stack, pki, workdir / "kafka") as started:
        yield started


def secured(base: Settings, broker: SecuredBroker, pki: Pki, kind: str,
            workdir: Path | None = None, **changes: object) -> Settings:
    """`base` pointed at one of the broker's secured listeners."""
    sasl = {"kafka_bootstrap_servers": broker.sasl, "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_sasl_mechanism": "PLAIN", "kafka_sasl_username": USER,
            "kafka_sasl_password": SecretStr(PASSWORD)}
    fields: dict[str, object]
    if kind == "sasl":
        fields = sasl
    elif kind == "ssl":
        fields = {"kafka_bootstrap_servers": broker.ssl, "kafka_security_protocol": "SSL",
                  "kafka_ssl_ca_location": str(pki.ca)}
    else:  # the SASL listener, everything but the address in the properties file
        assert workdir is not None
        path = workdir / f"{uuid.uuid4().hex[:8]}.properties"
        path.write_text("security.protocol=SASL_PLAINTEXT\nsasl.mechanisms=PLAIN\n"
                        f"sasl.username={USER}\nsasl.password={PASSWORD}\n")
        fields = {"kafka_bootstrap_servers": broker.sasl, "kafka_client_properties": str(path)}
    return base.model_copy(update={**fields, **changes})


@pytest.fixture
def namespace(stack: Settings) -> Settings:
    """A throw-away namespace's names (database, Redis prefix, topics, group); the test removes
    it through the secured settings it makes from these."""
    return namespaces.scoped(stack, f"sec_{uuid.uuid4().hex[:10]}")


def _lag(settings: Settings, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    with cli_env(settings):
        assert cli.main(["lag", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("kind", ["sasl", "ssl", "properties-file"])
def test_produce_consume_lag_and_replay_through_a_secured_listener(
        broker: SecuredBroker, pki: Pki, workdir: Path, namespace: Settings, kind: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    s = secured(namespace, broker, pki, kind, workdir)
    try:
        _round_trip(s, capsys)
    finally:
        assert not namespaces.drop(s)  # through the secured admin client too


def _round_trip(s: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert set(ensure_topics(s)) == {s.topic_raw, s.topic_dlq}
    ensure_schema(s)
    count = produce(s, synthetic(4100, 240, delete_fraction=0))

    lag = _lag(s, capsys)
    assert (lag["group"], lag["topic"], lag["total"]) == (s.consumer_group, s.topic_raw, count)

    drain(s)  # the real worker: Kafka -> ClickHouse + Redis, offsets committed
    assert_clickhouse_matches(s, expect(read_topic(s)))
    assert _lag(s, capsys)["total"] == 0
    consumed = committed_offsets(s)

    with cli_env(s):
        assert cli.main(["replay", "--to", "earliest"]) == 0
    plan = capsys.readouterr().out
    assert "--execute" in plan
    assert committed_offsets(s) == consumed  # a plan changes nothing
    with cli_env(s):
        assert cli.main(["replay", "--to", "earliest", "--execute"]) == 0
    assert "moved" in capsys.readouterr().out
    assert committed_offsets(s) == {p: 0 for p in consumed}
    assert _lag(s, capsys)["total"] == count


def _refused(settings: Settings) -> list[str]:
    """What each kind of client raises with `settings`: `stack up`, admin, look-ups, producer,
    worker, ingest service (the messages only: a traceback keeps the refused clients alive)."""
    from ingest_service.server import build
    from streaming.worker import Worker
    from tweetflow.app.stack.manager import stack_up

    attempts = [lambda: stack_up(settings), lambda: ensure_topics(settings),
                lambda: kafka_admin(settings),
                lambda: group_lag(settings), lambda: TweetProducer(settings).wait_ready(),
                lambda: Worker(settings), lambda: asyncio.run(build(settings))]
    errors = []
    for attempt in attempts:
        with pytest.raises(KafkaAccessError) as caught:
            attempt()
        errors.append(str(caught.value))
        del caught
    return errors


def test_a_wrong_password_is_a_clear_error(broker: SecuredBroker, pki: Pki,
                                           stack: Settings) -> None:
    wrong = secured(stack, broker, pki, "sasl", kafka_sasl_password=SecretStr("not-it"))
    for text in _refused(wrong):
        assert "Invalid username or password" in text
        assert f"KAFKA_SASL_USERNAME={USER}" in text and broker.sasl in text
        assert "not-it" not in text


def test_an_untrusted_broker_certificate_is_a_clear_error(broker: SecuredBroker, pki: Pki,
                                                          stack: Settings) -> None:
    untrusted = secured(stack, broker, pki, "ssl", kafka_ssl_ca_location=str(pki.stranger_ca))
    for text in _refused(untrusted):
        assert "certificate verify failed" in text and "KAFKA_SSL_CA_LOCATION" in text


def test_the_cli_reports_refused_credentials_and_exits(broker: SecuredBroker, pki: Pki,
                                                       stack: Settings) -> None:
    wrong = secured(stack, broker, pki, "sasl", kafka_sasl_password=SecretStr("not-it"))
    result = subprocess.run([str(PROJECT_ROOT / ".venv/bin/tweetflow"), "lag"],
                            env={"PATH": "/usr/bin:/bin", **wrong.to_env()}, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "Kafka refused" in result.stderr and "Invalid username or password" in result.stderr
    assert "Traceback" not in result.stderr
