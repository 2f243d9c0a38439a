"""`tweetflow stack up --monitoring`: a local Prometheus scraping the local platform with the alert
rules every deployment uses (deploy/monitoring/prometheus/rules).

Debian's `prometheus` package provides the server (installed when missing, its system service never
started: system_packages.py). Its config is written into the data dir at each start: the scrape
targets are the metrics ports of the platform's own processes as `tweetflow.app.services` starts
them (consumers, query and ingest services), so one list says where they are. A process that is
not running shows as a target down, which is what the TweetflowComponentDown alert reports.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import yaml

from tweetflow.app.services import APP_PROCESSES
from tweetflow.app.stack.components import _Base
from tweetflow.app.stack.system_packages import PROMETHEUS
from tweetflow.settings import PROJECT_ROOT, Settings

RULES = PROJECT_ROOT / "deploy" / "monitoring" / "prometheus" / "rules"
SCRAPE_INTERVAL = "5s"  # one machine, a handful of targets: fine-grained is cheap
RETENTION = "2d"


def local_targets() -> dict[str, list[str]]:
    """job -> host:port of every metrics endpoint the platform's processes serve locally."""
    jobs = {"consumers": "tweetflow-consumer", "query": "tweetflow-query", "ingest": "tweetflow-ingest"}
    targets: dict[str, list[str]] = {}
    for name, job in jobs.items():
        argv = APP_PROCESSES[name]
        if "--metrics-port" not in argv:
            continue
        port = int(argv[argv.index("--metrics-port") + 1])
        count = int(argv[argv.index("--workers") + 1]) if "--workers" in argv else 1
        targets[job] = [f"127.0.0.1:{port + i}" for i in range(count)]
    return targets


class Prometheus(_Base):
    """The local Prometheus server, on 127.0.0.1:Settings.prometheus_port."""

    name = "prometheus"
    system_packages = PROMETHEUS
    start_timeout = 60.0

    def __init__(self, settings: Settings, targets: dict[str, list[str]] | None = None) -> None:
        super().__init__(settings)
        self.targets = local_targets() if targets is None else targets

    @property
    def config_file(self) -> Path:
        return self.dir / "prometheus.yml"

    def marker(self) -> str:
        return str(self.config_file)

    def address(self) -> str:
        return f"http://127.0.0.1:{self.settings.prometheus_port}"

    def config(self) -> dict:
        """The scrape and rule configuration (the same rules as compose and Kubernetes)."""
        return {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
            "rule_files": [str(RULES / "*.yml")],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": hosts}]}
                               for job, hosts in self.targets.items()],
        }

    def start(self) -> None:
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        self.config_file.write_text("# Written by `tweetflow stack up --monitoring`; rewritten at "
                                    "each start.\n" + yaml.safe_dump(self.config(), sort_keys=False))
        self.proc.start(["prometheus", f"--config.file={self.config_file}",
                         f"--storage.tsdb.path={self.dir / 'data'}",
                         f"--storage.tsdb.retention.time={RETENTION}",
                         f"--web.listen-address=127.0.0.1:{self.settings.prometheus_port}"])

    def answers(self) -> bool:
        with urllib.request.urlopen(f"{self.address()}/-/ready", timeout=2) as response:
            return response.status == 200

    def version(self) -> str:
        try:
            with urllib.request.urlopen(f"{self.address()}/api/v1/status/buildinfo",
                                        timeout=2) as response:
                return str(json.load(response)["data"]["version"])
        except OSError:
            out = subprocess.run(["prometheus", "--version"], capture_output=True, text=True,
                                 check=False).stdout
            return out.split()[2] if len(out.split()) > 2 else "?"
