"""`tweetflow ui [up|down|status] [--port]`: the Dagster webserver and daemon, detached.

Both run from the project root against workspace.yaml, with DAGSTER_HOME = <data dir>/dagster
holding a copy of the repo's dagster.yaml (SQLite storage there), so `make clean` removes the
instance with the rest of the local state. Dagster itself is only started here, never imported:
`tweetflow` stays quick and free of the orchestrator.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tweetflow.app.stack.process import ManagedProcess, StackError, wait_until
from tweetflow.settings import PROJECT_ROOT, Settings, get_settings

WORKSPACE = PROJECT_ROOT / "workspace.yaml"
INSTANCE_CONFIG = PROJECT_ROOT / "dagster.yaml"
HOST = "127.0.0.1"
# Loading the definitions (dagster-dbt reads the dbt manifest) takes a while on a busy machine.
START_TIMEOUT = 180.0


@dataclass(frozen=True)
class DagsterUI:
    settings: Settings
    port: int = 3000

    @property
    def home(self) -> Path:
        return self.settings.data_dir / "dagster"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _process(self, name: str) -> ManagedProcess:
        return ManagedProcess(name, self.home / f"{name}.pid",
                              self.settings.data_dir / "logs" / f"{name}.log", marker=name)

    @property
    def webserver(self) -> ManagedProcess:
        return self._process("dagster-webserver")

    @property
    def daemon(self) -> ManagedProcess:
        return self._process("dagster-daemon")

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/server_info", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def prepare(self) -> dict[str, str]:
        """DAGSTER_HOME with the current dagster.yaml, and a dbt manifest parsed once, up front
        (rather than by both processes racing to parse it on their first load)."""
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(INSTANCE_CONFIG, self.home / "dagster.yaml")
        parse = subprocess.run([sys.executable, "-m", "analytics_pipeline.dbt_models"],
                               cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
        if parse.returncode != 0:
            raise StackError(f"preparing the dbt manifest failed:\n{parse.stderr[-3000:]}")
        return {"DAGSTER_HOME": str(self.home)}

    def up(self) -> None:
        """Start whichever of the two is not running; wait until the webserver answers."""
        if self.webserver.pid() is None and self.answers():
            raise StackError(f"port {self.port} already serves something else")
        env = self.prepare()
        bin_dir = Path(sys.executable).parent
        if self.daemon.pid() is None:
            self.daemon.start([str(bin_dir / "dagster-daemon"), "run", "-w", str(WORKSPACE)],
                              env=env, cwd=PROJECT_ROOT)
        if self.webserver.pid() is None:
            self.webserver.start([str(bin_dir / "dagster-webserver"), "-h", HOST,
                                  "-p", str(self.port), "-w", str(WORKSPACE)],
                                 env=env, cwd=PROJECT_ROOT)
        if not wait_until(lambda: self.webserver.pid() is not None and self.answers(),
                          START_TIMEOUT, interval=1.0):
            raise StackError(f"the Dagster webserver did not answer at {self.url}; log "
                             f"{self.webserver.log_file}:\n{self.webserver.log_tail()}")
        if self.daemon.pid() is None:
            raise StackError(f"the Dagster daemon exited; log {self.daemon.log_file}:\n"
                             f"{self.daemon.log_tail()}")

    def down(self) -> list[str]:
        return [p.name for p in (self.webserver, self.daemon) if p.stop()]

    def status(self) -> list[tuple[str, str, int | None]]:
        web, daemon = self.webserver.pid(), self.daemon.pid()
        web_state = "up" if web and self.answers() else ("starting" if web else "down")
        return [("dagster-webserver", web_state, web), ("dagster-daemon",
                                                        "up" if daemon else "down", daemon)]


def format_status(ui: DagsterUI, rows: list[tuple[str, str, int | None]]) -> str:
    lines = [f"{'process':<18} {'state':<9} {'pid':>7}  address"]
    for name, state, pid in rows:
        address = ui.url if name == "dagster-webserver" else f"DAGSTER_HOME={ui.home}"
        lines.append(f"{name:<18} {state:<9} {pid or '-':>7}  {address}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", default="up", choices=["up", "down", "status"],
                        help="start, stop or report the Dagster webserver and daemon")
    parser.add_argument("--port", type=int, default=3000, help="the webserver's port")


def run(args: argparse.Namespace) -> int:
    """Entry point of `tweetflow ui`."""
    ui = DagsterUI(get_settings(), args.port)
    if args.action == "up":
        try:
            ui.up()
        except StackError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(format_status(ui, ui.status()))
        return 0
    if args.action == "down":
        stopped = ui.down()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    rows = ui.status()
    print(format_status(ui, rows))
    return 0 if all(state == "up" for _, state, _ in rows) else 1
