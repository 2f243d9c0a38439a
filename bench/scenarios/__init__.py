"""The validation scenarios, one module each; every module has NAME, TITLE and run(ctx).

Order matters only for the report: cheap, self-contained scenarios first, the outage and cluster
scenarios (which start private stacks of their own) last.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench.harness import ProgressBar
from bench.report import ScenarioResult
from tweetflow.settings import Settings

SCENARIOS: tuple[str, ...] = ("throughput", "archive", "coverage", "burst", "freshness", "query",
                              "replay", "crash", "heal", "bad_input", "outages", "cluster")


@dataclass
class Context:
    """What a scenario gets: the stack's settings, quick or full, where to put plots and logs."""

    base: Settings
    quick: bool
    out_dir: Path
    bar: ProgressBar
    options: dict[str, Any] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        return self.out_dir / name

    def progress(self, fraction: float, text: str = "") -> None:
        self.bar.update(fraction, text)


class Scenario(Protocol):
    NAME: str
    TITLE: str

    def run(self, ctx: Context) -> ScenarioResult: ...


def load(name: str) -> Scenario:
    if name not in SCENARIOS:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    return importlib.import_module(f"bench.scenarios.{name}")  # type: ignore[return-value]
