"""Start, find and stop one detached service process, tracked by a pid file in the data dir.

Why hand-written rather than supervisord or systemd: the machines tweetflow targets have neither
running, and the stack needs only three processes whose life is tied to `stack up`/`stack down`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
KILL_WAIT = 10.0  # seconds a SIGKILLed process may take to exit (threads in a syscall finish it)


class StackError(RuntimeError):
    """A stack component could not be installed, started or stopped; the message says why."""


@dataclass(frozen=True)
class ManagedProcess:
    """One service process: its pid file, its log file and a marker found in its command line."""

    name: str
    pid_file: Path
    log_file: Path
    marker: str  # a string its /proc cmdline contains, so a recycled pid is not mistaken for it

    def pid(self) -> int | None:
        """The live pid of this service, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if _cmdline_contains(pid, self.marker):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(self, argv: Sequence[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> int:
        """Start the process in its own session, detached from ours, logging to its log file."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env={**os.environ, **(env or {})}, cwd=cwd,
            )
        self.pid_file.write_text(str(proc.pid))
        # Until exec completes, /proc shows our own command line; wait so pid() recognises it.
        wait_until(lambda: _cmdline_contains(proc.pid, self.marker) or not _alive(proc.pid), 10,
                   interval=0.02)
        return proc.pid

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM the process group and return once the process has exited, SIGKILLing the group
        (logged) if it still runs after `timeout`; True if something was stopped."""
        pid = self.pid()
        if pid is None:
            return False
        _terminate(self.name, pid, timeout)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log yet)"


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return True
        except Exception:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB, read from /proc (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def _terminate(name: str, pid: int, grace: float) -> None:
    """SIGTERM the group of `pid`, wait until that process has exited, SIGKILL after `grace`."""
    started = _start_time(pid)
    if started is None:
        return  # exited already: its pid may be another process's by now

    def exited() -> bool:
        return _exited(pid, started)

    _signal_group(pid, signal.SIGTERM)
    if wait_until(exited, grace, interval=0.05):
        return
    log.warning("%s (pid %d) still runs %.0f s after SIGTERM: sending SIGKILL", name, pid, grace)
    _signal_group(pid, signal.SIGKILL)
    if not wait_until(exited, KILL_WAIT, interval=0.05):
        raise StackError(f"{name} (pid {pid}) still runs {KILL_WAIT:.0f} s after SIGKILL")


def _alive(pid: int) -> bool:
    return not _exited(pid, _start_time(pid))


def _exited(pid: int, started: str | None) -> bool:
    """True once the process `pid` that started at `started` (see _start_time) has exited.

    A zombie has not always exited: a thread group's leader turns zombie while its other threads
    still run (and hold its ports and files) until they end. So our own child counts as exited
    once reaped here, another's zombie once it has no thread left but the leader's.
    """
    with contextlib.suppress(ChildProcessError):  # not our child
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    fields = _stat(pid)
    if fields is None or fields[19] != started:
        return True  # gone, or the pid is another process's by now
    if fields[0] not in ("Z", "X") or int(fields[1]) == os.getpid():
        return False  # running, or our child's threads still exiting (reaped on a later poll)
    try:
        return len(os.listdir(f"/proc/{pid}/task")) <= 1
    except FileNotFoundError:
        return True


def _start_time(pid: int) -> str | None:
    """When the process started (field 22 of /proc/PID/stat): with the pid, its identity."""
    fields = _stat(pid)
    return None if fields is None else fields[19]


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...), None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def _cmdline_contains(pid: int, marker: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return False
    return marker in cmdline and _alive(pid)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)
