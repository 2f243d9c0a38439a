"""Logs (tweetflow.logs): TWEETFLOW_LOG_FORMAT=json gives one JSON object per line with the
component, and the batch and partitions where known; TWEETFLOW_LOG_LEVEL filters. One setup
function serves every command, including the worker processes `tweetflow consume` spawns."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterator

import pytest
from streaming_support import produce, synthetic, total_lag

from tweetflow.logs import log_fields, setup_logging
from tweetflow.settings import PROJECT_ROOT, Settings


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_carry_component_batch_and_partition(
        capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(Settings(log_format="json", log_level="DEBUG"), component="consume")
    log = logging.getLogger("tweetflow.test")
    log.debug("before any batch")
    with log_fields(batch=7, partitions=[1, 4]):
        log.warning("clickhouse unavailable (%s)", "refused")
        with log_fields(partition=4):
            log.info("revoked")
    try:
        raise ValueError("bad row")
    except ValueError:
        log.exception("batch failed")
    first, inside, nested, failed = _json_lines(capsys.readouterr().err)
    assert {k: first[k] for k in ("component", "level", "logger", "message")} == {
        "component": "consume", "level": "debug", "logger": "tweetflow.test",
        "message": "before any batch"}
    assert "batch" not in first and "time" in first
    assert (inside["message"], inside["batch"], inside["partitions"]) == (
        "clickhouse unavailable (refused)", 7, [1, 4])
    assert (nested["batch"], nested["partition"]) == (7, 4)
    assert "batch" not in failed and "ValueError: bad row" in str(failed["exception"])


@pytest.mark.usefixtures("restore_logging")
def test_the_level_filters_and_text_stays_text(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(Settings(log_level="warning"), component="lag")
    setup_logging(Settings(log_level="warning"), component="lag")  # twice: still one handler
    log = logging.getLogger("tweetflow.test")
    log.info("hidden")
    log.warning("shown")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].endswith("WARNING MainProcess tweetflow.test: shown")


def test_a_bad_level_is_refused() -> None:
    with pytest.raises(ValueError, match="log_level"):
        Settings(log_level="LOUD")


def test_spawned_workers_log_json_with_their_batches(test_settings: Settings) -> None:
    s = test_settings
    produce(s, synthetic(4200, 120, delete_fraction=0))
    env = {"PATH": "/usr/bin:/bin", **s.to_env(), "TWEETFLOW_LOG_FORMAT": "json",
           "TWEETFLOW_LOG_LEVEL": "DEBUG"}
    result = subprocess.run(
        [str(PROJECT_ROOT / ".venv/bin/tweetflow"), "consume", "--workers", "1", "--until-idle",
         "2", "--metrics-port", "0"], env=env, capture_output=True, text=True, timeout=180,
        check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = _json_lines(result.stderr)  # every line is one JSON object
    assert {line["component"] for line in lines} == {"consume"}
    batches = [line for line in lines if "batch" in line]
    assert batches and all(line["process"] == "worker-0" for line in batches)
    assert sum(line["records"] for line in batches if line["message"].startswith("batch")) == 120
    assert total_lag(s) == 0
