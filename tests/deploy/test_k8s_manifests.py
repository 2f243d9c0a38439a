"""deploy/k8s and deploy/helm: manifests parse, every tweetflow container runs the image with the
ConfigMap and Secret, the HPA stays within the partitions, the Dagster values match the repo."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
import yaml
from deploy_support import (
    HELM_VALUES,
    K8S,
    PROJECT_ROOT,
    TWEETFLOW_IMAGE_NAME,
    is_tweetflow_env,
    load_yaml,
    load_yaml_documents,
)

from tweetflow.app.cli import build_parser

CONFIG_MAP, SECRET = "tweetflow-config", "tweetflow-secrets"
DEPLOYMENTS = {"tweetflow-consumer", "tweetflow-query", "tweetflow-ingest"}
MONITORING_DEPLOYMENTS = {"tweetflow-prometheus", "tweetflow-grafana"}  # pinned public images


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    """tweetflow's own objects (the files listed; the monitoring kustomization it includes is
    checked by test_monitoring.py)."""
    kustomization = load_yaml(K8S / "kustomization.yaml")
    docs = []
    for name in kustomization["resources"]:
        if (K8S / name).is_file():
            docs.extend(load_yaml_documents(K8S / name))
    return docs


def _by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return workload["spec"]["template"]["spec"]["containers"]


def test_every_file_is_listed_and_parses(objects: list[dict[str, Any]]) -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    resources = set(kustomization["resources"])
    assert {r for r in resources if (K8S / r).is_file()} == files
    for other in resources - files:  # other kustomizations (deploy/monitoring)
        assert (K8S / other / "kustomization.yaml").is_file(), other
    for obj in objects:
        assert obj["apiVersion"] and obj["kind"] and obj["metadata"]["name"], obj
    (image,) = kustomization["images"]
    assert image["name"] == TWEETFLOW_IMAGE_NAME


def test_deployments_run_the_image_with_config_and_secret(objects: list[dict[str, Any]]) -> None:
    deployments = _by_kind(objects, "Deployment")
    assert set(deployments) == DEPLOYMENTS
    workloads = [*deployments.values(), *_by_kind(objects, "Job").values()]
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in _containers(workload):
            assert container["image"] == TWEETFLOW_IMAGE_NAME
            sources = container["envFrom"]
            assert {"configMapRef": {"name": CONFIG_MAP}} in sources
            assert {"secretRef": {"name": SECRET}} in sources


def test_deployment_commands_are_real_cli_invocations(objects: list[dict[str, Any]]) -> None:
    parser = build_parser()
    subcommands = set()
    for deployment in _by_kind(objects, "Deployment").values():
        (container,) = _containers(deployment)
        command = container["command"]
        assert command[0] == "tweetflow"
        subcommands.add(parser.parse_args(command[1:]).command)
        assert container.get("livenessProbe"), deployment["metadata"]["name"]
    assert subcommands == {"consume", "serve", "ingest"}


def test_config_and_secret_hold_only_variables_tweetflow_reads(
        objects: list[dict[str, Any]]) -> None:
    config = _by_kind(objects, "ConfigMap")[CONFIG_MAP]["data"]
    secret = _by_kind(objects, "Secret")[SECRET]["stringData"]
    for name in [*config, *secret]:
        assert is_tweetflow_env(name), f"{name} is neither a Settings field nor read by the code"
    assert {"CLICKHOUSE_PASSWORD", "REDIS_URL", "TWEETFLOW_API_KEYS"} <= set(secret)
    assert not {"CLICKHOUSE_PASSWORD", "REDIS_URL"} & set(config), "secrets in the ConfigMap"
    assert config["CLICKHOUSE_URL"].startswith("http"), "an empty URL would start chDB"


def test_consumer_autoscaling_is_bounded_by_partitions(objects: list[dict[str, Any]]) -> None:
    hpa = _by_kind(objects, "HorizontalPodAutoscaler")["tweetflow-consumer"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "tweetflow-consumer"}
    partitions = int(_by_kind(objects, "ConfigMap")[CONFIG_MAP]["data"]
                     ["TWEETFLOW_TOPIC_PARTITIONS"])
    (container,) = _containers(_by_kind(objects, "Deployment")["tweetflow-consumer"])
    workers = int(container["command"][container["command"].index("--workers") + 1])
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    assert hpa["maxReplicas"] * workers <= partitions


def test_services_select_their_deployments(objects: list[dict[str, Any]]) -> None:
    deployments = _by_kind(objects, "Deployment")
    for service in _by_kind(objects, "Service").values():
        selector = service["spec"]["selector"]
        targets = [d for d in deployments.values()
                   if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(targets) == 1, service["metadata"]["name"]
        port_names = {p["name"] for c in _containers(targets[0]) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, (service["metadata"]["name"], port)


def test_dagster_helm_values_run_the_tweetflow_code_location(
        objects: list[dict[str, Any]]) -> None:
    values = load_yaml(HELM_VALUES)
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    (image,) = load_yaml(K8S / "kustomization.yaml")["images"]
    assert deployment["image"]["repository"] == image["newName"]
    assert deployment["image"]["tag"] == image["newTag"]
    assert deployment["codeServerArgs"] == ["-m", "analytics_pipeline.definitions"]
    assert (PROJECT_ROOT / "analytics_pipeline" / "definitions.py").exists()
    assert deployment["envConfigMaps"] == [{"name": CONFIG_MAP}]
    assert deployment["envSecrets"] == [{"name": SECRET}]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    assert launcher["config"]["k8sRunLauncher"]["envConfigMaps"] == [{"name": CONFIG_MAP}]
    assert values["postgresql"]["enabled"] is False


def test_dagster_helm_concurrency_matches_the_repo_instance() -> None:
    values = load_yaml(HELM_VALUES)["concurrency"]
    repo = load_yaml(PROJECT_ROOT / "dagster.yaml")["concurrency"]
    assert values["enabled"] is True
    assert values["pools"]["defaultLimit"] == repo["pools"]["default_limit"]
    assert values["runs"]["maxConcurrentRuns"] == repo["runs"]["max_concurrent_runs"]
    assert values["runs"]["tagConcurrencyLimits"] == repo["runs"]["tag_concurrency_limits"]


@pytest.mark.skipif(shutil.which("kubectl") is None,
                    reason="kubectl is not installed (its kustomize renders the manifests)")
def test_kustomize_renders_namespaced_objects_with_the_tagged_image() -> None:
    result = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True,
                            check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    (image,) = load_yaml(K8S / "kustomization.yaml")["images"]
    tagged = f"{image['newName']}:{image['newTag']}"
    workloads = [o for o in rendered if o["kind"] in {"Deployment", "Job"}
                 and o["metadata"]["name"] not in MONITORING_DEPLOYMENTS]
    assert len(workloads) == len(DEPLOYMENTS) + 1
    for workload in workloads:
        assert {c["image"] for c in _containers(workload)} == {tagged}
    for obj in rendered:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "tweetflow", obj["metadata"]["name"]
