"""What a scenario measured (figures with their targets), and the Markdown report made of it.

Why the load average travels with every figure: the benchmarks run on small machines shared with
other work, and a number without the load it was measured under cannot be compared with another.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


@dataclass
class Figure:
    """One measured number. `ok` is None for context figures that carry no target."""

    name: str
    value: float | int | str
    unit: str = ""
    target: str = ""
    ok: bool | None = None
    load: tuple[float, float, float] = field(default_factory=load_average)

    @property
    def verdict(self) -> str:
        return "" if self.ok is None else ("PASS" if self.ok else "FAIL")

    def formatted(self) -> str:
        return f"{format_value(self.value)} {self.unit}".strip()


@dataclass
class ScenarioResult:
    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)  # PNG file names in the report directory
    error: str = ""
    seconds: float = 0.0
    load_start: tuple[float, float, float] = field(default_factory=load_average)
    load_end: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def add(self, name: str, value: float | int | str, unit: str = "", target: str = "",
            ok: bool | None = None) -> Figure:
        figure = Figure(name, value, unit, target, ok)
        self.figures.append(figure)
        return figure

    def check(self, name: str, ok: bool, detail: str = "", target: str = "") -> Figure:
        """A yes/no requirement (nothing lost, no crash, ...)."""
        return self.add(name, detail or ("yes" if ok else "no"), "", target or "yes", ok)

    def note(self, text: str) -> None:
        self.notes.append(text)

    @property
    def passed(self) -> bool:
        return not self.error and all(f.ok is not False for f in self.figures)

    @property
    def failures(self) -> list[Figure]:
        return [f for f in self.figures if f.ok is False]


def format_value(value: float | int | str) -> str:
    if isinstance(value, (bool, str)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "n/a"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


# --- statistics --------------------------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100, linear interpolation); NaN for no values."""
    return float(np.percentile(values, q)) if len(values) else float("nan")


def rate_between(points: Sequence[tuple[float, float]], lo: float, hi: float) -> float:
    """Sustained rate of a cumulative counter [(time, total)] between the first times it reached
    `lo` and `hi` of its final total (start-up and the last stragglers left out)."""
    if len(points) < 2:
        return float("nan")
    final = points[-1][1]
    t_lo = next((t for t, v in points if v >= lo * final), None)
    t_hi = next((t for t, v in points if v >= hi * final), None)
    if t_lo is None or t_hi is None or t_hi <= t_lo:
        return float("nan")
    return (hi - lo) * final / (t_hi - t_lo)


def rates(points: Sequence[tuple[float, float]], span: int = 1) -> list[tuple[float, float]]:
    """Rate of a cumulative counter over `span` sampling intervals: [(time, delta / dt)]
    (a span of several intervals smooths counters that move in steps, like batch commits)."""
    out = []
    for i in range(span, len(points)):
        (t0, v0), (t1, v1) = points[i - span], points[i]
        if t1 > t0:
            out.append((t1, (v1 - v0) / (t1 - t0)))
    return out


# --- the machine -------------------------------------------------------------------------------

def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "?"
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": cpu, "cores": str(os.cpu_count()), "memory": memory,
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version()}


# --- plots ---------------------------------------------------------------------------------------

def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, out_dir: Path, name: str) -> str:
    path = out_dir / name
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return name


# --- Markdown ------------------------------------------------------------------------------------

def figures_table(figures: Iterable[Figure]) -> list[str]:
    lines = ["| figure | value | target | result | load (1/5/15 min) |",
             "| --- | ---: | --- | --- | --- |"]
    for f in figures:
        load = "/".join(f"{x:.1f}" for x in f.load)
        lines.append(f"| {f.name} | {f.formatted()} | {f.target} | {f.verdict} | {load} |")
    return lines


def render(results: Sequence[ScenarioResult], *, quick: bool, started: datetime,
           stack: Sequence[str], wall_seconds: float) -> str:
    m = machine()
    passed = sum(r.passed for r in results)
    lines = [
        f"# tweetflow bench — {started.astimezone(UTC):%Y-%m-%d %H:%M UTC}"
        + (" (quick)" if quick else ""),
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']} RAM, {m['os']}, "
        f"Python {m['python']}. Wall time {wall_seconds:.0f} s. "
        f"Scenarios passed: {passed}/{len(results)}.",
        "",
        "Stack: " + "; ".join(stack),
        "",
        "| scenario | result | time | load at start → end (1 min) |",
        "| --- | --- | ---: | --- |",
    ]
    for r in results:
        lines.append(f"| [{r.name}](#{r.name}) | {'PASS' if r.passed else 'FAIL'} | "
                     f"{r.seconds:.0f} s | {r.load_start[0]:.1f} → {r.load_end[0]:.1f} |")
    for r in results:
        lines += ["", f"## {r.name}", "", f"*{r.title}*", ""]
        if r.error:
            lines += ["**Error:**", "", "```", r.error.strip()[-3000:], "```", ""]
        if r.figures:
            lines += [*figures_table(r.figures), ""]
        for note in r.notes:
            lines += [f"- {note}"]
        if r.notes:
            lines.append("")
        for plot in r.plots:
            lines += [f"![{plot}]({plot})", ""]
    return "\n".join(lines) + "\n"


def console_summary(r: ScenarioResult) -> str:
    """The key figures of one scenario and its PASS/FAIL line, for the terminal."""
    lines = [f"== {r.name}: {r.title}"]
    for f in r.figures:
        target = f" (target {f.target})" if f.target else ""
        verdict = f"  {f.verdict}" if f.verdict else ""
        lines.append(f"   {f.name}: {f.formatted()}{target}{verdict}")
    if r.error:
        lines.append(f"   error: {r.error.strip().splitlines()[-1] if r.error.strip() else '?'}")
    lines.append(f"{'PASS' if r.passed else 'FAIL'} {r.name} ({r.seconds:.0f} s, load "
                 f"{r.load_start[0]:.1f} -> {r.load_end[0]:.1f})")
    return "\n".join(lines)


def timestamp_dir(root: Path) -> Path:
    """reports/<UTC timestamp>/, created."""
    path = root / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path.mkdir(parents=True, exist_ok=True)
    return path
