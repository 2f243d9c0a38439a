"""A local Redis Cluster: six Debian `redis-server` processes (three masters, three replicas) on
loopback, formed with `redis-cli --cluster create`; used by `tweetflow stack up --profile cluster`
and by the tests' private clusters.

Why six: the smallest cluster in which a master can die and its replica take over (Redis needs a
majority of masters to agree on the failover). The node timeout is 2 s, so a killed master's slots
move to its replica within a few seconds.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field

from tweetflow.app.stack.components import LISTPACK_OPTIONS, ComponentStatus, _Base, _safe
from tweetflow.app.stack.process import StackError, wait_until
from tweetflow.settings import Settings

NODE_TIMEOUT_MS = 2000
NODES = 6


class RedisClusterNode(_Base):
    """One node: append-only persistence and its cluster config (`nodes.conf`) in its data dir."""

    system_packages = {"redis-server": "redis-server", "redis-cli": "redis-tools"}

    def __init__(self, settings: Settings, port: int, bus_port: int = 0) -> None:
        self.port, self.bus_port = port, bus_port or port + 10000
        self.name = f"redis-{port}"
        super().__init__(settings)

    def marker(self) -> str:
        return f":{self.port} [cluster]"  # redis-server's process title

    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc.start(["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
                         "--cluster-enabled", "yes", "--cluster-port", str(self.bus_port),
                         "--cluster-config-file", str(self.dir / "nodes.conf"),
                         "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                         "--dir", str(self.dir), "--appendonly", "yes", "--save", "",
                         "--daemonize", "no", "--maxmemory-policy", "noeviction",
                         *LISTPACK_OPTIONS])

    def client(self, timeout: float = 2.0):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=timeout,
                           decode_responses=True)

    def answers(self) -> bool:
        return bool(self.client().ping())

    def version(self) -> str:
        info = self.client().info("replication")
        return f"{self.client().info('server')['redis_version']} {info['role']}"

    def info(self, section: str) -> dict:
        return dict(self.client().info(section))


@dataclass
class RedisCluster:
    """The six nodes as one unit: up (start, form once, wait for every slot), down, status."""

    settings: Settings
    ports: list[int]
    bus_ports: list[int] = field(default_factory=list)

    @property
    def nodes(self) -> list[RedisClusterNode]:
        bus = self.bus_ports or [0] * len(self.ports)
        return [RedisClusterNode(self.settings, p, b) for p, b in zip(self.ports, bus, strict=True)]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def up(self, timeout: float = 60.0) -> None:
        nodes = self.nodes
        for node in nodes:
            node.up()
        if not _safe(lambda: int(nodes[0].client().cluster("INFO")["cluster_known_nodes"]) > 1):
            self._create()
        if not wait_until(self.healthy, timeout):
            raise StackError(f"the Redis Cluster on {self.ports} did not reach cluster_state:ok")

    def _create(self) -> None:
        argv = ["redis-cli", "--cluster", "create", *(n.address() for n in self.nodes),
                "--cluster-replicas", "1", "--cluster-yes"]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
        if result.returncode != 0:
            raise StackError(f"redis-cli --cluster create failed:\n{result.stdout[-2000:]}"
                             f"{result.stderr[-2000:]}")

    def healthy(self) -> bool:
        """Every live node sees every slot served (cluster_state:ok), and every live replica has
        finished syncing from its master (until then it cannot confirm a WAIT)."""
        live = [n for n in self.nodes if n.proc.pid() is not None]
        return bool(live) and all(_safe(lambda n=n: n.client().cluster("INFO").get(
            "cluster_state") == "ok" and n.info("replication").get(
            "master_link_status", "up") == "up") for n in live)

    def masters(self, *, but_url_node: bool = False) -> list[RedisClusterNode]:
        """The nodes that are masters now; `but_url_node`: not the one `url` names (a client
        started while that node is down cannot find the cluster, so fault tests spare it)."""
        return [n for n in self.nodes if (not but_url_node or n.port != self.ports[0])
                and _safe(lambda n=n: n.info("replication")["role"]) == "master"]

    def down(self) -> list[str]:
        return [n.name for n in self.nodes if n.down()]

    def status(self) -> list[ComponentStatus]:
        return [n.status() for n in self.nodes]
