"""The bench's report and statistics: what a reader of reports/<timestamp>/report.md relies on."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from bench.report import (
    Figure,
    ScenarioResult,
    console_summary,
    format_value,
    percentile,
    rate_between,
    rates,
    render,
)


def test_percentile_interpolates_and_is_nan_without_values() -> None:
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_rate_between_ignores_start_up_and_stragglers() -> None:
    # 5 s of start-up, then 1,000 messages/s for 10 s, then a slow tail
    points = [(0.0, 0), (5.0, 0)] + [(5.0 + i, 1000 * i) for i in range(1, 11)] + [(30.0, 10_100)]
    assert rate_between(points, 0.1, 0.9) == pytest.approx(1000, rel=0.15)
    assert math.isnan(rate_between(points[:1], 0.1, 0.9))


def test_rates_over_a_span_smooth_step_counters() -> None:
    # a counter that moves 1,000 at a time every other sample (batch commits)
    points = [(i * 0.5, (i // 2) * 1000) for i in range(10)]
    one = [r for _, r in rates(points)]
    four = [r for _, r in rates(points, span=4)]
    assert set(one) == {0.0, 2000.0}
    assert all(r == pytest.approx(1000.0) for r in four)


@pytest.mark.parametrize(("value", "text"), [
    (1234567, "1,234,567"), (12345.6, "12,346"), (123.4, "123"), (12.34, "12.3"),
    (1.234, "1.23"), (0.01234, "0.0123"), (float("nan"), "n/a"), ("3 / 4", "3 / 4"),
])
def test_format_value(value, text: str) -> None:
    assert format_value(value) == text


def test_a_scenario_passes_only_when_every_checked_figure_does() -> None:
    result = ScenarioResult("demo", "A demo")
    result.add("context only", 3.0, "s")
    result.add("a target met", 30.0, "MB/s", ">= 29 MB/s", True)
    assert result.passed
    result.check("nothing lost", False, "2 missing")
    assert not result.passed
    assert [f.name for f in result.failures] == ["nothing lost"]
    errored = ScenarioResult("broken", "Raised", error="Traceback ...\nRuntimeError: boom")
    assert not errored.passed


def test_figures_carry_the_load_average_they_were_measured_under() -> None:
    figure = Figure("x", 1.0)
    assert len(figure.load) == 3 and all(x >= 0 for x in figure.load)


def test_console_summary_ends_with_the_pass_fail_line() -> None:
    result = ScenarioResult("throughput", "Rates")
    result.add("sustained", 4.2, "MB/s", ">= 28.9 MB/s", False)
    lines = console_summary(result).splitlines()
    assert "sustained: 4.20 MB/s (target >= 28.9 MB/s)  FAIL" in lines[1]
    assert lines[-1].startswith("FAIL throughput")


def test_markdown_report_has_a_summary_table_figures_notes_and_plots() -> None:
    ok = ScenarioResult("replay", "Replay", seconds=12.0)
    ok.check("counts identical", True)
    ok.note("a note")
    ok.plots.append("replay.png")
    bad = ScenarioResult("burst", "Burst", seconds=30.0, error="Traceback\nValueError: x")
    text = render([ok, bad], quick=True, started=datetime(2025, 1, 2, 3, 4, tzinfo=UTC),
                  stack=["kafka 4.1.1 (up)"], wall_seconds=42.0)
    assert text.startswith("# tweetflow bench — 2025-01-02 03:04 UTC (quick)")
    assert "Scenarios passed: 1/2." in text
    assert "| [replay](#replay) | PASS | 12 s |" in text
    assert "| [burst](#burst) | FAIL | 30 s |" in text
    assert "| counts identical | yes | yes | PASS |" in text
    assert "- a note" in text and "![replay.png](replay.png)" in text
    assert "ValueError: x" in text
