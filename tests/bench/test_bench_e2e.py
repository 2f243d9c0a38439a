"""One tiny end-to-end run of the bench on the real stack: the replay, crash and bad-input
scenarios at their smallest, through the runner that `tweetflow bench` uses, with its report.

The scenarios' own assertions are the PASS/FAIL lines; this checks that the suite runs, passes
and writes its report. (tests/streaming covers crash, replay and bad input as integration tests.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tweetflow.settings import Settings


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_tiny_replay_crash_and_bad_input_pass_and_write_a_report(stack: Settings,
                                                                  tmp_path: Path, capsys) -> None:
    from bench.runner import run_scenarios

    rc = run_scenarios(["replay", "crash", "bad_input"], quick=True, options={"tiny": True},
                       reports_root=tmp_path)
    out = capsys.readouterr().out
    assert rc == 0, out
    for name in ("replay", "crash", "bad_input"):
        assert f"\nPASS {name} (" in out
    (report_dir,) = tmp_path.iterdir()
    report = (report_dir / "report.md").read_text()
    assert "Scenarios passed: 3/3." in report
    assert (report_dir / "replay.png").stat().st_size > 0
    assert (report_dir / "crash.png").stat().st_size > 0
