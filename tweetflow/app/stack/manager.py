"""`tweetflow stack up | down | status`: the local stack as one unit."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from tweetflow.app.stack.cluster_profile import ClusterProfile
from tweetflow.app.stack.components import ClickHouseEndpoint, Component, ComponentStatus, Kafka, Redis
from tweetflow.app.stack.system_packages import ensure_packages
from tweetflow.settings import Settings, get_settings


@dataclass
class Stack:
    settings: Settings
    monitoring: bool = False  # `up --monitoring`: also a local Prometheus (stack/monitoring.py)
    cluster: ClusterProfile | None = None  # `--profile cluster`: 3 brokers, a 6-node Redis Cluster

    @property
    def components(self) -> list[Component]:
        from tweetflow.app.stack.monitoring import Prometheus

        components: list[Component] = [*self._cluster_nodes(), *self._single_nodes(),
                                       ClickHouseEndpoint(self.settings)]
        prometheus = Prometheus(self.settings)
        if self.monitoring or prometheus.proc.pid() is not None:  # reported and stopped once up
            components.append(prometheus)
        return components

    def up(self) -> list[ComponentStatus]:
        """Install what is missing, start each component that is down, create topics and schema."""
        from tweetflow.clients import ensure_topics
        from tweetflow.schema import ensure_schema

        components = self.components
        needed: dict[str, str] = {}
        for component in components:
            if component.managed:  # external servers need nothing installed here
                needed.update(component.system_packages)
        ensure_packages(needed)
        nodes = {c.name for c in self._cluster_nodes()}
        if self.cluster is not None:
            self.cluster.up()  # together: a broker answers once a quorum of controllers runs
        for component in components:
            if component.name not in nodes:
                component.up()
        ensure_topics(self.cluster.ports.settings(self.settings) if self.cluster else self.settings)
        ensure_schema(self.settings)
        return self.status()

    def _single_nodes(self) -> list[Component]:
        return [] if self.cluster else [Kafka(self.settings), Redis(self.settings)]

    def _cluster_nodes(self) -> list[Component]:
        if self.cluster is None:
            return []
        return [*self.cluster.brokers, *self.cluster.redis.nodes]

    def down(self) -> list[str]:
        """Stop the platform's processes and the Dagster UI, then every managed component."""
        from tweetflow.app.services import stop_apps
        from tweetflow.app.ui import DagsterUI

        stopped = stop_apps(self.settings) + DagsterUI(self.settings).down()
        return stopped + [c.name for c in reversed(self.components) if c.down()]

    def status(self) -> list[ComponentStatus]:
        return [c.status() for c in self.components]


def stack_up(settings: Settings | None = None) -> list[ComponentStatus]:
    return Stack(settings or get_settings()).up()


def stack_down(settings: Settings | None = None) -> list[str]:
    return Stack(settings or get_settings()).down()


def stack_status(settings: Settings | None = None) -> list[ComponentStatus]:
    return Stack(settings or get_settings()).status()


def format_status(rows: list[ComponentStatus]) -> str:
    header = f"{'component':<11} {'state':<14} {'version':<10} {'address':<24} {'rss MiB':>8}  data dir"
    lines = [header]
    for r in rows:
        rss = f"{r.rss_mib:.0f}" if r.pid else "-"
        lines.append(f"{r.name:<11} {r.state:<14} {r.version or '-':<10} {r.address:<24} "
                     f"{rss:>8}  {r.data_dir}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["up", "down", "status"],
                        help="up: start what is not running and wait until it answers; down: stop "
                             "it; status: state, version, address, memory, data dir")
    parser.add_argument("--profile", choices=["single", "cluster"], default="single",
                        help="cluster: three KRaft Kafka brokers (replication factor 3, "
                             "min.insync.replicas 2) and a six-node Redis Cluster instead of one "
                             "broker and one Redis; `up` prints the settings that use it")
    parser.add_argument("--monitoring", action="store_true",
                        help="with up: also start a local Prometheus (TWEETFLOW_PROMETHEUS_PORT, "
                             "default 9090) scraping the consumers, query and ingest services "
                             "with the alert rules of deploy/monitoring (default: off)")


def run(args: argparse.Namespace) -> int:
    """Entry point of `tweetflow stack`."""
    settings = get_settings()
    cluster = ClusterProfile(settings) if args.profile == "cluster" else None
    stack = Stack(settings, monitoring=args.monitoring, cluster=cluster)
    if args.action == "up":
        print(format_status(stack.up()))
        if cluster is not None:
            print("\nto use it: " + " ".join(f"export {k}={v};" for k, v in
                                               cluster.ports.environment(settings).items()))
        return 0
    if args.action == "down":
        stopped = stack.down()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    rows = stack.status()
    print(format_status(rows))
    return 0 if all(r.ok for r in rows) else 1
