"""The operating-system side of the bench's child processes: their environment, dying with the
bench, stopping them, what /proc says about them (children, liveness, CPU), and free ports.

Linux only (prctl, /proc), like the bench itself: these are measurements of one machine.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

from tweetflow.settings import Settings


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the bench process dies (Linux prctl), so a crashed
    or killed bench leaves no consumers, load generators or servers behind."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1", **extra}


def proc_stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, the fields of /proc/<pid>/stat after the command name) of every process; fields[0]
    is the state, fields[1] the parent pid, fields[2] the process group, fields[11:13] utime and
    stime in clock ticks."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            yield int(stat.parent.name), stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue


def children_of(pid: int) -> list[int]:
    """Live child pids of `pid` (Linux /proc)."""
    return [child for child, fields in proc_stats() if int(fields[1]) == pid and fields[0] != "Z"]


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds used so far by every process of a process group (Linux /proc)."""
    ticks = sum(int(fields[11]) + int(fields[12]) for _, fields in proc_stats()
                if int(fields[2]) == pgid)
    return ticks / os.sysconf("SC_CLK_TCK")


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def stop_process(proc: subprocess.Popen, timeout: float = 30.0) -> int | None:
    """SIGTERM the process (it forwards to its workers), SIGKILL its group if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> int:
    """The first of `n` consecutive free ports (the workers take metrics_port + i)."""
    for _ in range(100):
        base = random.randint(20000, 40000)
        try:
            for i in range(n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
    raise RuntimeError("no free port range for worker metrics")
