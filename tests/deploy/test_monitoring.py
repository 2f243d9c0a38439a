"""deploy/monitoring: Prometheus configs that promtool accepts, alert rules whose unit tests fire and
stay silent, dashboards and rules naming only metrics tweetflow exports, and the same monitoring
wired into docker compose, Kubernetes and `tweetflow stack up --monitoring`."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import DEPLOY, K8S, compose, env_example, load_yaml, load_yaml_documents

from tweetflow.app.stack.process import StackError
from tweetflow.settings import Settings

MONITORING = DEPLOY / "monitoring"
PROMETHEUS_DIR = MONITORING / "prometheus"
RULES = PROMETHEUS_DIR / "rules" / "tweetflow.yml"
RULE_TESTS = PROMETHEUS_DIR / "tests" / "tweetflow.test.yml"
DASHBOARDS = MONITORING / "grafana" / "dashboards"
DATASOURCES = MONITORING / "grafana" / "provisioning" / "datasources" / "datasources.yml"
JOB_PORTS = {"tweetflow-consumer": 9400, "tweetflow-query": 9500, "tweetflow-ingest": 9600}


@pytest.fixture(scope="module")
def promtool() -> str:
    """Debian's promtool, installed by the project's own code when missing."""
    from tweetflow.app.stack.system_packages import PROMETHEUS, ensure_command

    try:
        return ensure_command(PROMETHEUS)
    except StackError as exc:  # not root and not installed: it cannot be had here
        pytest.skip(f"promtool (Debian package prometheus) is missing and cannot be installed: {exc}")


def _run(argv: list[str], cwd: Path | None = None) -> str:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def test_promtool_accepts_every_prometheus_config(promtool: str, tmp_path: Path) -> None:
    from tweetflow.app.stack.monitoring import Prometheus

    local = tmp_path / "local.yml"
    local.write_text(yaml.safe_dump(Prometheus(Settings(), targets={}).config()))
    for config in (PROMETHEUS_DIR / "prometheus.yml", PROMETHEUS_DIR / "prometheus-k8s.yml", local):
        _run([promtool, "check", "config", str(config)])
    assert "SUCCESS: 10 rules found" in _run([promtool, "check", "rules", str(RULES)])


def test_alert_rule_unit_tests_pass(promtool: str) -> None:
    assert "SUCCESS" in _run([promtool, "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent)


def test_every_alert_has_a_case_that_fires_and_one_that_stays_silent() -> None:
    alerts = {rule["alert"] for group in load_yaml(RULES)["groups"] for rule in group["rules"]
              if "alert" in rule}
    fires, silent = set(), set()
    for case in load_yaml(RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check["exp_alerts"] else silent).add(check["alertname"])
    assert alerts == fires == silent, (alerts - fires, alerts - silent)
    assert {"TweetflowConsumerLagHigh", "TweetflowConsumerLagGrowing",
            "TweetflowEventFreshnessOver5s", "TweetflowDeadLetterRate", "TweetflowQueryErrorRate",
            "TweetflowQueryLatencyP99", "TweetflowComponentDown"} <= alerts


def _exported_metric_names() -> set[str]:
    """Every sample name the consumers, the query service and the ingest service export."""
    from prometheus_client import REGISTRY

    import ingest_service.service  # noqa: F401  (registers its metrics)
    import query_service.metrics  # noqa: F401
    import streaming.metrics  # noqa: F401
    import tweetflow.hot_history  # noqa: F401  (the hot tier's completeness, both sides)

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",), "summary": ("_sum", "_count", "")}
    return {family.name + suffix for family in REGISTRY.collect()
            for suffix in suffixes.get(family.type, ("",))}


def _queried_metrics() -> dict[str, set[str]]:
    """file -> the tweetflow_* metric names its PromQL expressions use (rules and dashboards)."""
    exprs = {RULES.name: [r["expr"] for g in load_yaml(RULES)["groups"] for r in g["rules"]]}
    for path in DASHBOARDS.glob("*.json"):
        exprs[path.name] = [t.get("expr", "") for p in json.loads(path.read_text())["panels"]
                            for t in p["targets"]]
    return {name: set(re.findall(r"\b(tweetflow_[a-z0-9_]+)", " ".join(texts)))
            for name, texts in exprs.items()}


def test_rules_and_dashboards_use_only_metrics_tweetflow_exports() -> None:
    exported = _exported_metric_names()
    used = _queried_metrics()
    assert used[RULES.name] and used["ingest.json"] and used["query.json"]
    for name, metrics in used.items():
        assert metrics <= exported, f"{name}: {sorted(metrics - exported)} is exported by nobody"
    assert {"tweetflow_consumer_lag", "tweetflow_event_freshness_seconds",
            "tweetflow_query_latency_seconds_bucket"} <= exported


def test_dashboards_are_provisioned_against_the_provisioned_datasources() -> None:
    uids = {d["uid"] for d in load_yaml(DATASOURCES)["datasources"]}
    titles = set()
    for path in DASHBOARDS.glob("*.json"):
        board = json.loads(path.read_text())
        titles.add(board["title"])
        assert board["panels"], path.name
        for panel in board["panels"]:
            assert panel["targets"], (path.name, panel["title"])
            for target in [panel, *panel["targets"]]:
                assert target["datasource"]["uid"] in uids, (path.name, panel["title"])
    assert titles == {"tweetflow: ingest", "tweetflow: query", "tweetflow: Dagster runs"}


def _dns_ports(config: dict[str, Any]) -> dict[str, dict[str, set[int]]]:
    """job -> DNS name -> ports of a config's dns_sd scrape jobs."""
    out: dict[str, dict[str, set[int]]] = {}
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            for name in sd["names"]:
                out.setdefault(job["job_name"], {}).setdefault(name, set()).add(sd["port"])
    return out


def _flag(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_compose_scrapes_every_tweetflow_process_and_runs_prometheus_and_grafana() -> None:
    spec = compose()
    services = spec["services"]
    workers = int(env_example()["TWEETFLOW_CONSUMER_WORKERS"])
    expected = {"tweetflow-consumer": {"consumer": set(range(9400, 9400 + workers))},
                "tweetflow-query": {"query": {int(_flag(services["query"]["command"], "--metrics-port"))}},
                "tweetflow-ingest": {"ingest": {int(_flag(services["ingest"]["command"], "--metrics-port"))}}}
    assert _dns_ports(load_yaml(PROMETHEUS_DIR / "prometheus.yml")) == expected
    assert _flag(services["consumer"]["command"], "--metrics-port") == "9400"
    # Reachable from the Prometheus container, not only on each container's loopback.
    assert services["consumer"]["environment"]["TWEETFLOW_METRICS_HOST"] == "0.0.0.0"
    assert services["query"]["environment"]["TWEETFLOW_QUERY_HOST"] == "0.0.0.0"
    assert services["ingest"]["environment"]["TWEETFLOW_INGEST_HOST"] == "0.0.0.0"
    for name in ("prometheus", "grafana"):
        assert services[name]["healthcheck"]["test"], name
        for mount in services[name]["volumes"]:
            source = mount.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), (name, source)
    grafana_env = set(services["grafana"]["environment"])
    assert set(re.findall(r"\$\{(\w+)\}", DATASOURCES.read_text())) <= grafana_env


def _monitoring_objects() -> list[dict[str, Any]]:
    kustomization = load_yaml(MONITORING / "kustomization.yaml")
    docs = []
    for name in kustomization["resources"]:
        docs.extend(load_yaml_documents(MONITORING / name))
    for generator in kustomization["configMapGenerator"]:
        for entry in generator["files"]:
            assert (MONITORING / entry.split("=")[-1]).is_file(), entry
    return docs


def test_kubernetes_scrapes_every_tweetflow_deployment_through_headless_services() -> None:
    assert "../monitoring" in load_yaml(K8S / "kustomization.yaml")["resources"]
    objects = _monitoring_objects()
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    own = [d for name in ("consumer.yaml", "query.yaml", "ingest.yaml")
           for d in load_yaml_documents(K8S / name) if d["kind"] == "Deployment"]
    config = load_yaml(PROMETHEUS_DIR / "prometheus-k8s.yml")
    for job, names in _dns_ports(config).items():
        ((dns, ports),) = names.items()
        service = services[dns.split(".")[0]]
        assert service["spec"]["clusterIP"] == "None", dns
        assert {p["port"] for p in service["spec"]["ports"]} == ports == {JOB_PORTS[job]}
        (deployment,) = [d for d in own if service["spec"]["selector"].items()
                         <= d["spec"]["template"]["metadata"]["labels"].items()]
        container_ports = {(p["name"], p["containerPort"])
                           for c in deployment["spec"]["template"]["spec"]["containers"]
                           for p in c.get("ports", [])}
        assert ("metrics", JOB_PORTS[job]) in container_ports, deployment["metadata"]["name"]
    assert set(_dns_ports(config)) == set(JOB_PORTS)
    data = load_yaml_documents(K8S / "configmap.yaml")[0]["data"]
    assert data["TWEETFLOW_METRICS_HOST"] == "0.0.0.0"


def test_kubernetes_prometheus_reads_its_config_and_rules_where_they_are_mounted() -> None:
    objects = _monitoring_objects()
    (prometheus,) = [o for o in objects if o["kind"] == "Deployment"
                     and o["metadata"]["name"] == "tweetflow-prometheus"]
    pod = prometheus["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    maps = {v["name"]: v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
    config_file = next(a for a in container["args"] if a.startswith("--config.file="))
    assert config_file == f"--config.file={mounts['config']}/prometheus.yml"
    assert maps["config"] == "tweetflow-prometheus-config"
    (rules_glob,) = load_yaml(PROMETHEUS_DIR / "prometheus-k8s.yml")["rule_files"]
    assert rules_glob == f"{mounts['rules']}/*.yml" and maps["rules"] == "tweetflow-prometheus-rules"


@pytest.mark.integration
def test_stack_up_monitoring_starts_a_prometheus_scraping_the_local_processes(
        promtool: str, tmp_path: Path) -> None:
    """The local Prometheus (`tweetflow stack up --monitoring`) from an empty data dir: it
    scrapes a live consumer metrics endpoint, loads the alert rules, and stops with the stack."""
    from prometheus_client import start_http_server

    import streaming.metrics  # noqa: F401  (the consumers' registry)
    from bench.harness import free_port
    from tweetflow.app.cli import build_parser
    from tweetflow.app.stack.manager import Stack
    from tweetflow.app.stack.monitoring import Prometheus

    assert build_parser().parse_args(["stack", "up", "--monitoring"]).monitoring is True
    settings = Settings(_env_file=None, TWEETFLOW_DATA_DIR=str(tmp_path), prometheus_port=free_port())
    assert [c.name for c in Stack(settings, monitoring=True).components][-1] == "prometheus"
    metrics_port = free_port()
    server, thread = start_http_server(metrics_port, addr="127.0.0.1")
    prometheus = Prometheus(settings, targets={"tweetflow-consumer": [f"127.0.0.1:{metrics_port}"]})
    try:
        prometheus.up()
        assert prometheus.status().state == "up"
        assert "prometheus" in [c.name for c in Stack(settings).components]  # listed once running
        _wait_for_series(prometheus.address(), 'up{job="tweetflow-consumer"} == 1')
        _wait_for_series(prometheus.address(), "tweetflow_consumed_messages_total")
        groups = _api(prometheus.address(), "/api/v1/rules")["groups"]
        assert {"tweetflow-consumers", "tweetflow-query", "tweetflow-components"} <= {
            g["name"] for g in groups}
    finally:
        stopped = prometheus.down()
        server.shutdown()
        thread.join(10)
    assert stopped and prometheus.proc.pid() is None


def _api(address: str, path: str) -> Any:
    with urllib.request.urlopen(f"{address}{path}", timeout=5) as response:
        return json.load(response)["data"]


def _wait_for_series(address: str, query: str) -> None:
    """Until the instant query returns a series (scrapes every 5 s); a deadline, not a timing."""
    from urllib.parse import quote

    from tweetflow.app.stack.process import wait_until

    found = wait_until(lambda: _api(address, f"/api/v1/query?query={quote(query)}")["result"], 60,
                       interval=1.0)
    assert found, f"Prometheus at {address} has no series for {query} after 60 s"
