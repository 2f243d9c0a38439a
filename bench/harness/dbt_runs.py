"""dbt against a namespace's database, as a subprocess with the project's models.

Artifacts go to a work dir, not the project's target/ (which holds Dagster's manifest); the
project's partial-parse cache is copied there first, because a full parse costs seconds of a
shared core. One home for the bench (`run_dbt`, timed) and the dbt tests
(tests/dbt_project/raw_rows.py, which raise an assertion with dbt's log instead).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tweetflow.settings import PROJECT_ROOT, Settings

DBT_PROJECT = PROJECT_ROOT / "dbt_project"


def dbt(settings: Settings, *args: str, work_dir: Path, timeout: float | None = None
        ) -> subprocess.CompletedProcess[str]:
    """`dbt <args>` against `settings`' database, artifacts and logs in work_dir/dbt_target;
    the completed process, whatever its exit code."""
    from analytics_pipeline.resources import dbt_env

    target = work_dir / "dbt_target"
    target.mkdir(parents=True, exist_ok=True)
    cached = DBT_PROJECT / "target" / "partial_parse.msgpack"
    if cached.exists():
        shutil.copy(cached, target / cached.name)
    executable = shutil.which("dbt") or str(Path(sys.executable).parent / "dbt")
    argv = [executable, *args, "--project-dir", str(DBT_PROJECT), "--profiles-dir",
            str(DBT_PROJECT), "--target-path", str(target), "--log-path", str(target)]
    return subprocess.run(argv, env={**os.environ, **dbt_env(settings)}, capture_output=True,
                          text=True, check=False, timeout=timeout)


def run_dbt(settings: Settings, *args: str, work_dir: Path) -> float:
    """`dbt` for a scenario: the seconds it took; raises with dbt's log on failure."""
    began = time.monotonic()
    done = dbt(settings, *args, work_dir=work_dir)
    if done.returncode != 0:
        raise RuntimeError(f"dbt {' '.join(args)} failed:\n{done.stdout[-4000:]}")
    return time.monotonic() - began
