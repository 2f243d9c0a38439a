"""Install the Debian packages the local stack needs (maven, redis-server) when they are missing,
and the tools the query bench and the live page's test need (wrk, Chromium) when they run, and
Prometheus (its `promtool` checks the monitoring config in the tests; `stack up --monitoring` runs
it).

The packages are wanted for their programs, which tweetflow starts itself with its own settings:
their system services (redis-server's, prometheus's) are never started by the installation, and
recommended extras (prometheus-node-exporter) are not installed. Debian's way to say so is a
policy-rc.d that answers 101 ("action forbidden"), present only while apt-get runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# command on PATH -> Debian package that provides it
REQUIRED = {"mvn": "maven", "redis-server": "redis-server"}
WRK = {"wrk": "wrk"}  # HTTP load generator of bench.connect_bench
CHROMIUM = {"chromium": "chromium"}  # headless browser of the live page's test
PROMETHEUS = {"promtool": "prometheus"}  # also installs the `prometheus` server
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


def missing_packages(commands: dict[str, str] = REQUIRED) -> list[str]:
    return sorted({pkg for cmd, pkg in commands.items() if shutil.which(cmd) is None})


def ensure_packages(commands: dict[str, str] = REQUIRED) -> list[str]:
    """apt-get install what is missing (one `apt-get update` first); returns what was installed."""
    packages = missing_packages(commands)
    if not packages:
        return []
    from tweetflow.app.stack.process import StackError

    if os.geteuid() != 0:
        raise StackError(f"missing system packages {packages}: run `sudo apt-get install {' '.join(packages)}`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with _services_not_started():
        for argv in (["apt-get", "update", "-qq"],
                     ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]):
            result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise StackError(f"{' '.join(argv)} failed:\n{result.stderr[-2000:]}")
    return packages


@contextmanager
def _services_not_started() -> Iterator[None]:
    """A policy-rc.d forbidding service starts while the body runs, unless one is there already."""
    if POLICY_RC_D.exists():
        yield
        return
    POLICY_RC_D.write_text("#!/bin/sh\n# tweetflow: installing packages for their programs only\nexit 101\n")
    POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        POLICY_RC_D.unlink(missing_ok=True)


def ensure_command(commands: dict[str, str]) -> str:
    """The path of the one command in `commands`, its Debian package installed if missing."""
    ensure_packages(commands)
    (command,) = commands
    found = shutil.which(command)
    if found is None:
        from tweetflow.app.stack.process import StackError

        raise StackError(f"{command} is still missing after installing {commands[command]}")
    return found
