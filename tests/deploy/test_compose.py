"""deploy/docker-compose.yml: the services the code needs, their health checks, and environment
variables that tweetflow really reads (checked against Settings, not a hand-kept list)."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
from deploy_support import (
    COMPOSE_FILE,
    DEPLOY,
    ENV_EXAMPLE,
    PROJECT_ROOT,
    compose,
    compose_env,
    dagster_instance_env_names,
    env_example,
    is_tweetflow_env,
    load_script,
    load_yaml,
    settings_env_names,
    tweetflow_services,
)

from tweetflow.app.cli import build_parser
from tweetflow.settings import Settings

REQUIRED_SERVICES = {
    "kafka", "clickhouse", "redis", "postgres", "dagster-webserver", "dagster-daemon",
    "dagster-code", "consumer", "query", "ingest",
}
DATA_SERVICES = ("kafka", "clickhouse", "redis")


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return compose()


def test_every_needed_service_is_there_with_a_healthcheck(spec: dict[str, Any]) -> None:
    services = spec["services"]
    assert set(services) >= REQUIRED_SERVICES, REQUIRED_SERVICES - set(services)
    for name in REQUIRED_SERVICES:
        check = services[name].get("healthcheck", {})
        assert check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), name


def test_images_are_pinned(spec: dict[str, Any]) -> None:
    images = {name: s["image"] for name, s in spec["services"].items()}
    assert images["kafka"] == f"apache/kafka:{Settings().kafka_version}"  # as the local stack
    assert images["clickhouse"].startswith("clickhouse/clickhouse-server:25.8")
    assert images["redis"] == "redis:7.4"
    for name, image in images.items():
        assert ":" in image and not image.endswith(":latest"), (name, image)


def test_init_runs_once_and_gates_the_tweetflow_services(spec: dict[str, Any]) -> None:
    services = spec["services"]
    init = services["init"]
    assert init["restart"] == "no"
    assert "/app/deploy/scripts/init_stack.py" in init["command"]
    for name in DATA_SERVICES:
        assert init["depends_on"][name]["condition"] == "service_healthy"
    for name in ("consumer", "query", "ingest", "dagster-code"):
        depends = services[name]["depends_on"]
        assert depends["init"]["condition"] == "service_completed_successfully", name
        for data in DATA_SERVICES:
            assert depends[data]["condition"] == "service_healthy", (name, data)


def test_tweetflow_services_get_only_variables_tweetflow_reads(spec: dict[str, Any]) -> None:
    assert {"KAFKA_BOOTSTRAP_SERVERS", "CLICKHOUSE_URL", "REDIS_URL"} <= settings_env_names()
    dagster_names = dagster_instance_env_names()
    services = tweetflow_services(spec)
    assert {"consumer", "query", "ingest", "init", "dagster-code"} <= set(services)
    for name, service in services.items():
        for variable in service.get("environment") or {}:
            assert is_tweetflow_env(variable) or variable in dagster_names, (
                f"{name}: {variable} is neither a Settings field nor read by tweetflow's code")


def test_compose_environment_yields_external_services(monkeypatch: pytest.MonkeyPatch,
                                                      spec: dict[str, Any]) -> None:
    """Settings built from the compose environment point at the compose services, so `init`
    and the services never try to start a local stack."""
    env = compose_env(spec["services"]["consumer"])
    for name in list(settings_env_names()):
        monkeypatch.delenv(name, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert settings.clickhouse_host == "clickhouse" and settings.clickhouse_port == 8123
    assert settings.redis_url.endswith("@redis:6379/0")
    assert settings.clickhouse_password == env_example()["CLICKHOUSE_PASSWORD"]
    assert str(settings.data_dir) == "/var/lib/tweetflow"
    assert settings.topic_partitions == int(env_example()["TWEETFLOW_TOPIC_PARTITIONS"])
    assert load_script("init_stack").local_components(settings) == []


def test_commands_are_real_cli_invocations(spec: dict[str, Any]) -> None:
    variables = env_example()
    parser = build_parser()
    for name in ("consumer", "query", "ingest"):
        command = [re.sub(r"\$\{(\w+):-(\w+)\}", lambda m: variables.get(m[1], m[2]), part)
                   for part in spec["services"][name]["command"]]
        assert command[0] == "tweetflow"
        parser.parse_args(command[1:])  # exits (fails the test) on an unknown flag


def test_consumers_do_not_outnumber_partitions(spec: dict[str, Any]) -> None:
    variables = env_example()
    replicas = spec["services"]["consumer"]["deploy"]["replicas"]
    consumers = replicas * int(variables["TWEETFLOW_CONSUMER_WORKERS"])
    assert consumers <= int(variables["TWEETFLOW_TOPIC_PARTITIONS"])
    assert replicas == 3


def test_kafka_is_kraft_without_implicit_topics(spec: dict[str, Any]) -> None:
    env = spec["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_env_example_and_compose_agree() -> None:
    text = COMPOSE_FILE.read_text()
    used = set(re.findall(r"\$\{(\w+)", text))
    required = set(re.findall(r"\$\{(\w+):\?", text))
    example = env_example()
    assert required <= set(example), required - set(example)
    assert set(example) <= used, f"unused in compose: {set(example) - used}"
    assert not any(v for k, v in example.items() if "PASSWORD" in k and v != "CHANGE_ME")


def test_clickhouse_users_get_their_passwords_from_the_service_env(spec: dict[str, Any]) -> None:
    users_xml = DEPLOY / "clickhouse" / "users.d" / "tweetflow.xml"
    from_env = set(re.findall(r'from_env="(\w+)"', users_xml.read_text()))
    service = spec["services"]["clickhouse"]
    assert from_env <= set(service["environment"]), from_env - set(service["environment"])
    mounts = " ".join(service["volumes"])
    assert "./clickhouse/users.d/tweetflow.xml:/etc/clickhouse-server/users.d/" in mounts
    assert Settings().clickhouse_analyst_user == "analyst"  # the user name users.xml defines


def test_dagster_instance_config_is_valid_and_limits_match_the_repo(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from dagster._core.instance.config import dagster_instance_config

    for name in dagster_instance_env_names() - {"DAGSTER_HOME"}:
        monkeypatch.setenv(name, "x")
    deploy_config, _ = dagster_instance_config(str(DEPLOY / "dagster"))
    root_config = load_yaml(PROJECT_ROOT / "dagster.yaml")
    assert "postgres" in deploy_config["storage"]
    for key in ("concurrency", "retention"):
        assert deploy_config[key] == root_config[key], key


def test_dagster_workspace_points_at_the_code_location(spec: dict[str, Any]) -> None:
    workspace = load_yaml(DEPLOY / "dagster" / "workspace.yaml")
    (entry,) = workspace["load_from"]
    server = entry["grpc_server"]
    code = spec["services"][server["host"]]
    command = code["command"]
    assert command[:3] == ["dagster", "code-server", "start"]
    assert command[command.index("-p") + 1] == str(server["port"])
    assert command[command.index("-m") + 1] == "analytics_pipeline.definitions"
    for name in ("dagster-webserver", "dagster-daemon"):
        assert "/opt/dagster/workspace.yaml" in spec["services"][name]["command"]


def _compose_cli() -> bool:
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return result.returncode == 0


@pytest.mark.skipif(not _compose_cli(), reason="the docker compose plugin is not installed "
                    "(`docker compose version` fails); the YAML checks above still ran")
def test_docker_compose_config_accepts_the_file() -> None:
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "--env-file", str(ENV_EXAMPLE),
         "config", "--quiet"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
