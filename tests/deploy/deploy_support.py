"""Shared helpers of the deployment tests: the files under deploy/, and the environment variable
names tweetflow actually reads (derived from Settings, never listed by hand)."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from tweetflow.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = PROJECT_ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
K8S = DEPLOY / "k8s"
HELM_VALUES = DEPLOY / "helm" / "dagster-values.yaml"
CODE_PACKAGES = ("tweetflow", "streaming", "ingest_service", "query_service", "analytics_pipeline")
TWEETFLOW_IMAGE_NAME = "tweetflow"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@cache
def settings_env_names() -> frozenset[str]:
    """Every environment variable name Settings reads: its aliases, or TWEETFLOW_<FIELD>."""
    # pydantic-settings matches names case-insensitively unless configured otherwise.
    return frozenset(name.upper() for names in Settings.env_names().values() for name in names)


def is_tweetflow_env(name: str) -> bool:
    """True for a variable Settings reads (every setting is there: no code reads the environment
    elsewhere, see tests/test_layers.py)."""
    return name.upper() in settings_env_names()


@cache
def dagster_instance_env_names() -> frozenset[str]:
    """DAGSTER_HOME plus the variables deploy/dagster/dagster.yaml reads (`env: NAME`)."""
    text = (DEPLOY / "dagster" / "dagster.yaml").read_text()
    return frozenset({"DAGSTER_HOME", *re.findall(r"env:\s*([A-Z][A-Z0-9_]*)", text)})


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


_INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: Any, variables: dict[str, str]) -> Any:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` with `variables` (the subset
    docker-compose.yml uses). Hand-written because the compose CLI is not always installed."""
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        current = variables.get(name, "")
        if op in (":-", "-"):
            return current or arg
        if op in (":?", "?") and not current:
            raise KeyError(f"{name} is required: {arg}")
        return current

    return _INTERPOLATION.sub(replace, value.replace("$$", "\0")).replace("\0", "$")


def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


def tweetflow_services(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The compose services that run the tweetflow image."""
    return {name: service for name, service in spec["services"].items()
            if "TWEETFLOW_IMAGE" in str(service.get("image", ""))}


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    """A compose service's environment, interpolated with deploy/.env.example's values."""
    variables = env_example()
    return {key: str(interpolate(value, variables))
            for key, value in (service.get("environment") or {}).items()}


@cache
def uv_lock_versions() -> dict[str, str]:
    lock = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())
    return {package["name"]: package["version"] for package in lock["package"]
            if "version" in package}


def dagster_library_version(dagster_version: str) -> str:
    """Dagster's integration libraries are versioned 0.(minor+16).patch alongside 1.minor.patch."""
    major, minor, patch = dagster_version.split(".")
    assert major == "1", dagster_version
    return f"0.{int(minor) + 16}.{patch}"


def load_script(name: str) -> ModuleType:
    """Import deploy/scripts/<name>.py (deploy/ is not a package)."""
    path = DEPLOY / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"deploy_scripts_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
