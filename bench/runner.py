"""`tweetflow bench [SCENARIO ...] [--quick]`: run validation scenarios against the real local stack,
print each one's key figures and PASS/FAIL, and write reports/<timestamp>/report.md with plots.

`make bench` runs the quick suite (under ten minutes on two cores). Each scenario works in a
namespace of its own (topic, consumer group, ClickHouse database, Redis prefix) that it removes
afterwards, so the bench can share the stack with a demo or a test run.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import ProgressBar
from bench.report import ScenarioResult, console_summary, load_average, render, timestamp_dir
from bench.scenarios import SCENARIOS, Context, load
from tweetflow.command_line import ArgumentParser
from tweetflow.settings import PROJECT_ROOT, get_settings

REPORTS = PROJECT_ROOT / "reports"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenarios", nargs="*",
                        help=f"scenarios to run (default: all of {', '.join(SCENARIOS)})")
    parser.add_argument("--quick", action="store_true",
                        help="shorter runs (`make bench`: under ten minutes on two cores)")


def run(args: argparse.Namespace) -> int:
    """Entry point of `tweetflow bench` (args.scenarios, args.quick)."""
    cli_setup()
    names = list(args.scenarios) or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"tweetflow bench: unknown scenario(s) {', '.join(unknown)}; "
              f"known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    return run_scenarios(names, quick=args.quick)


def cli_setup() -> None:
    """For command-line runs: quiet logs (the scenarios' lines are the output) and a traceback
    even if a native client library crashes the process."""
    import faulthandler
    import logging

    faulthandler.enable()
    logging.getLogger().setLevel(logging.WARNING)


def stack_lines() -> list[str]:
    from tweetflow.app.stack.manager import stack_status

    return [f"{r.name} {r.version or '?'} ({r.state}, {r.address})" for r in stack_status()]


def run_scenarios(names: Sequence[str], *, quick: bool, options: dict[str, Any] | None = None,
                  reports_root: Path = REPORTS) -> int:
    """Run the scenarios in order; 0 when every one passed."""
    from tweetflow.app.stack.manager import stack_up

    settings = get_settings()
    began, started = time.monotonic(), datetime.now(UTC)
    stack_up(settings)
    out_dir = timestamp_dir(reports_root)
    stack = stack_lines()
    print(f"tweetflow bench{' --quick' if quick else ''}: {', '.join(names)}; "
          f"report in {out_dir}", flush=True)
    results: list[ScenarioResult] = []
    for i, name in enumerate(names, 1):
        module = load(name)
        bar = ProgressBar(f"[{i}/{len(names)} {name}]")
        ctx = Context(settings, quick, out_dir, bar, dict(options or {}))
        t0 = time.monotonic()
        load_start = load_average()
        try:
            result = module.run(ctx)
        except Exception:
            result = ScenarioResult(name, module.TITLE, error=traceback.format_exc())
        except KeyboardInterrupt:
            bar.done()
            print(f"interrupted during {name}", file=sys.stderr)
            return 130
        result.seconds = time.monotonic() - t0
        result.load_start, result.load_end = load_start, load_average()
        bar.done()
        print(console_summary(result), flush=True)
        results.append(result)
        _write(out_dir, results, quick, started, stack, time.monotonic() - began)
    wall = time.monotonic() - began
    _write(out_dir, results, quick, started, stack, wall)
    passed = sum(r.passed for r in results)
    print(f"\n{passed}/{len(results)} scenarios passed in {wall:.0f} s "
          f"(load {load_average()[0]:.1f}); report: {out_dir / 'report.md'}", flush=True)
    return 0 if passed == len(results) else 1


def _write(out_dir: Path, results: list[ScenarioResult], quick: bool, started: datetime,
           stack: list[str], wall: float) -> None:
    text = render(results, quick=quick, started=started, stack=stack, wall_seconds=wall)
    (out_dir / "report.md").write_text(text)


if __name__ == "__main__":
    parser = ArgumentParser(prog="python -m bench.runner")
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
