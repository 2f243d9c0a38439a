"""`tweetflow stack up | down | status`: the local stack as one unit."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from tweetflow.app.stack.components import ClickHouseEndpoint, Component, ComponentStatus, Kafka, Redis
from tweetflow.app.stack.system_packages import ensure_packages
from tweetflow.settings import Settings, get_settings


@dataclass
class Stack:
    settings: Settings

    @property
    def components(self) -> list[Component]:
        return [Kafka(self.settings), Redis(self.settings), ClickHouseEndpoint(self.settings)]

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
        for component in components:
            component.up()
        ensure_topics(self.settings)
        ensure_schema(self.settings)
        return self.status()

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
    parser.add_argument("action", choices=["up", "down", "status"])


def run(args: argparse.Namespace) -> int:
    """Entry point of `tweetflow stack`."""
    stack = Stack(get_settings())
    if args.action == "up":
        print(format_status(stack.up()))
        return 0
    if args.action == "down":
        stopped = stack.down()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    rows = stack.status()
    print(format_status(rows))
    return 0 if all(r.ok for r in rows) else 1
