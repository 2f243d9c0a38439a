"""Install the Debian packages the local stack needs (maven, redis-server) when they are missing,
and the tools the query bench and the live page's test need (wrk, Chromium) when they run."""

from __future__ import annotations

import os
import shutil
import subprocess

# command on PATH -> Debian package that provides it
REQUIRED = {"mvn": "maven", "redis-server": "redis-server"}
WRK = {"wrk": "wrk"}  # HTTP load generator of bench.connect_bench
CHROMIUM = {"chromium": "chromium"}  # headless browser of the live page's test


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
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise StackError(f"{' '.join(argv)} failed:\n{result.stderr[-2000:]}")
    return packages


def ensure_command(commands: dict[str, str]) -> str:
    """The path of the one command in `commands`, its Debian package installed if missing."""
    ensure_packages(commands)
    (command,) = commands
    found = shutil.which(command)
    if found is None:
        from tweetflow.app.stack.process import StackError

        raise StackError(f"{command} is still missing after installing {commands[command]}")
    return found
