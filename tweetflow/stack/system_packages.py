"""Install the Debian packages the local stack needs (maven, redis-server) when they are missing."""

from __future__ import annotations

import os
import shutil
import subprocess

# command on PATH -> Debian package that provides it
REQUIRED = {"mvn": "maven", "redis-server": "redis-server"}


def missing_packages(commands: dict[str, str] = REQUIRED) -> list[str]:
    return sorted({pkg for cmd, pkg in commands.items() if shutil.which(cmd) is None})


def ensure_packages(commands: dict[str, str] = REQUIRED) -> list[str]:
    """apt-get install what is missing (one `apt-get update` first); returns what was installed."""
    packages = missing_packages(commands)
    if not packages:
        return []
    from tweetflow.stack.process import StackError

    if os.geteuid() != 0:
        raise StackError(f"missing system packages {packages}: run `sudo apt-get install {' '.join(packages)}`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise StackError(f"{' '.join(argv)} failed:\n{result.stderr[-2000:]}")
    return packages
