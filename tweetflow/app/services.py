"""The platform's own long-running processes (consumers, query and ingest services, the demo's
live producer), started detached like the stack's services and stopped by `tweetflow stack down`.
"""

from __future__ import annotations

import sys

from tweetflow.app.stack.process import ManagedProcess, StackError, wait_until
from tweetflow.settings import PROJECT_ROOT, Settings

# name -> the `tweetflow` subcommand that runs it
APP_PROCESSES: dict[str, list[str]] = {
    "consumers": ["consume", "--workers", "2", "--metrics-port", "9400"],
    "query": ["serve", "--port", "50051", "--metrics-port", "9500"],  # + Connect on query_http_port
    "ingest": ["ingest", "--port", "50052", "--metrics-port", "9600"],
    "trickle": ["produce", "--rate", "50", "--duration", "0", "--seed", "99"],
    "jetstream": ["produce", "--source", "jetstream"],  # `make demo SOURCE=jetstream`
}


def app_process(settings: Settings, name: str) -> ManagedProcess:
    marker = f"tweetflow.app.cli {APP_PROCESSES[name][0]}"
    return ManagedProcess(name, settings.data_dir / "run" / f"{name}.pid",
                          settings.data_dir / "logs" / f"{name}.log", marker)


def start_app(settings: Settings, name: str) -> int:
    """Start one app process unless it runs already; returns its pid."""
    proc = app_process(settings, name)
    pid = proc.pid()
    if pid is None:
        pid = proc.start([sys.executable, "-m", "tweetflow.app.cli", *APP_PROCESSES[name]],
                         cwd=PROJECT_ROOT)
    if not wait_until(lambda: proc.pid() is not None, 3):
        raise StackError(f"{name} exited at once; log {proc.log_file}:\n{proc.log_tail()}")
    return pid


def stop_apps(settings: Settings) -> list[str]:
    """Stop every app process that runs (the live producer first, so nothing is left unread)."""
    order = ["trickle", "jetstream", "ingest", "query", "consumers"]
    return [name for name in order if app_process(settings, name).stop()]
