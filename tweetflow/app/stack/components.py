"""The three services of the local stack, each able to start, stop and report itself.

A component is *managed* when its setting points at the default loopback address (tweetflow starts
it) and *external* otherwise (a real server the user runs; tweetflow only checks that it answers).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from tweetflow.app.stack.process import ManagedProcess, StackError, rss_mib, wait_until
from tweetflow.settings import PROJECT_ROOT, Settings

KAFKA_POM = Path(__file__).with_name("kafka-pom.xml")
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# The hot tier's dedup hashes stay compact listpacks up to this many fields (streaming/sinks/
# hot_shard.py sizes them at a quarter of it): 512 takes ~10.6 bytes an id, Redis' default 128
# ~12.3; a listpack of 512 small integers is still scanned in microseconds.
LISTPACK_OPTIONS = ("--hash-max-listpack-entries", "512")


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: str  # "up", "down" or "external-up"/"external-down"
    version: str
    address: str
    data_dir: str
    pid: int | None = None
    rss_mib: float = 0.0

    @property
    def ok(self) -> bool:
        return self.state in {"up", "external-up"}


class Component(Protocol):
    name: str
    system_packages: dict[str, str]

    @property
    def managed(self) -> bool: ...

    def up(self) -> None: ...
    def down(self) -> bool: ...
    def status(self) -> ComponentStatus: ...


class _Base:
    name = ""
    system_packages: dict[str, str] = {}  # command -> Debian package, installed when managed

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.data_dir / self.name
        self.proc = ManagedProcess(self.name, self.dir / f"{self.name}.pid",
                                   settings.data_dir / "logs" / f"{self.name}.log", self.marker())

    def marker(self) -> str:
        raise NotImplementedError

    @property
    def managed(self) -> bool:
        return True

    def answers(self) -> bool:
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def address(self) -> str:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def up(self) -> None:
        """Start unless already running; wait until it answers (idempotent)."""
        if not self.managed:
            if not wait_until(self.answers, 10):
                raise StackError(f"{self.name}: external server at {self.address()} does not answer")
            return
        if self.proc.pid() is None:
            if _safe(self.answers):
                raise StackError(
                    f"{self.name}: something already answers at {self.address()} but was not "
                    f"started from {self.settings.data_dir} (a stack of another checkout?); "
                    "stop it, or point the settings at it as an external server")
            self.start()
        if not wait_until(lambda: self.proc.pid() is not None and self.answers(), self.start_timeout):
            raise StackError(f"{self.name} did not become ready at {self.address()}; "
                             f"log {self.proc.log_file}:\n{self.proc.log_tail()}")

    start_timeout = 120.0  # Kafka on a busy 2-core machine can take a minute

    def down(self) -> bool:
        return self.proc.stop() if self.managed else False

    def status(self) -> ComponentStatus:
        pid = self.proc.pid() if self.managed else None
        answering = _safe(self.answers)
        state = ("up" if answering else "down") if self.managed else (
            "external-up" if answering else "external-down")
        return ComponentStatus(
            self.name, state, _safe(self.version, "") if answering else "", self.address(),
            str(self.dir) if self.managed else "-", pid, rss_mib(pid) if pid else 0.0,
        )


class Kafka(_Base):
    """A real Apache Kafka broker (KRaft, one combined broker+controller) from Maven Central jars."""

    name = "kafka"
    system_packages = {"mvn": "maven"}

    def marker(self) -> str:
        return "kafka.Kafka"

    @property
    def managed(self) -> bool:
        return self.settings.kafka_bootstrap_servers == f"127.0.0.1:{self.settings.kafka_port}"

    @property
    def libs(self) -> Path:
        # Keyed by the pom's content so a version bump fetches afresh and old jars never mix in.
        return self.settings.data_dir / "kafka-libs" / _digest(KAFKA_POM.read_bytes())

    def address(self) -> str:
        return self.settings.kafka_bootstrap_servers

    def up(self) -> None:
        """As every component; an external cluster that refuses the credentials or certificate
        is said so at once (KafkaAccessError) rather than "does not answer" after 10 s."""
        if not self.managed:
            from confluent_kafka import KafkaException

            from tweetflow.clients import kafka_admin

            with contextlib.suppress(KafkaException):  # unreachable: super().up() says so
                kafka_admin(self.settings, timeout=10)
        super().up()

    def ensure_jars(self) -> None:
        """Copy the broker's runtime jars from Maven Central once; later runs reuse them."""
        done = self.libs / ".complete"
        if done.exists():
            return
        self.libs.mkdir(parents=True, exist_ok=True)
        argv = ["mvn", "-q", "-B", "-f", str(KAFKA_POM), DEPENDENCY_PLUGIN,
                f"-DoutputDirectory={self.libs}", "-DincludeScope=runtime"]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise StackError(f"fetching Kafka jars failed:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")
        done.touch()

    def start(self) -> None:
        self.ensure_jars()
        config = self._write_config()
        java = shutil.which("java") or "java"
        classpath = f"{self.libs}/*"
        log4j = f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}"
        if not (self.dir / "data" / "meta.properties").exists():
            fmt = subprocess.run(
                [java, "-cp", classpath, log4j, "kafka.tools.StorageTool", "format",
                 *self.format_options(), "-t", self.cluster_id(), "-c", str(config), "-g"],
                capture_output=True, text=True, check=False)
            if fmt.returncode != 0:
                raise StackError(f"formatting Kafka storage failed:\n{fmt.stdout[-2000:]}{fmt.stderr[-2000:]}")
        self.proc.start([java, "-Xms256m", f"-Xmx{self.heap}", "-XX:+UseG1GC",
                         "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true", log4j,
                         "-cp", classpath, "kafka.Kafka", str(config)])

    heap = "1g"

    def format_options(self) -> list[str]:
        """StorageTool format's quorum options: this one node is the whole quorum."""
        return ["--standalone"]

    def cluster_id(self) -> str:
        """A new cluster id (StorageTool random-uuid)."""
        log4j = f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}"
        return subprocess.run([shutil.which("java") or "java", "-cp", f"{self.libs}/*", log4j,
                               "kafka.tools.StorageTool", "random-uuid"], capture_output=True,
                              text=True, check=True).stdout.strip().splitlines()[-1]

    def answers(self) -> bool:
        from confluent_kafka.admin import AdminClient

        from tweetflow.clients import kafka_config

        host, _, port = self.address().split(",")[0].rpartition(":")
        with socket.create_connection((host, int(port)), timeout=2):
            pass  # refused fast and quietly, before librdkafka would log connection errors
        admin = AdminClient(kafka_config(self.settings, **{"socket.timeout.ms": 2000}))
        return bool(admin.list_topics(timeout=2).brokers)

    def version(self) -> str:
        if not self.managed:
            return "external"
        jars = sorted(self.libs.glob("kafka_2.13-*.jar"))
        return jars[0].stem.removeprefix("kafka_2.13-") if jars else "?"

    def _write_config(self) -> Path:
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        config = self.dir / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in self.server_properties().items()))
        (self.dir / "log4j2.properties").write_text(_LOG4J2)
        return config

    def server_properties(self) -> dict[str, str]:
        """The broker's server.properties (a test's private broker adds secured listeners)."""
        s = self.settings
        return {
            "process.roles": "broker,controller", "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{s.kafka_controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
            "inter.broker.listener.name": "PLAINTEXT", "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.dir / "data"),
            "offsets.topic.replication.factor": "1", "offsets.topic.num.partitions": "6",
            "transaction.state.log.replication.factor": "1", "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0", "auto.create.topics.enable": "false",
            "num.partitions": str(s.topic_partitions), "log.retention.hours": "168",
        }


class Redis(_Base):
    """Debian's redis-server with append-only persistence in the data dir."""

    name = "redis"
    system_packages = {"redis-server": "redis-server"}

    def marker(self) -> str:
        return "redis-server"

    @property
    def _url(self):
        return urlsplit(self.settings.redis_url)

    @property
    def managed(self) -> bool:
        """A loopback standalone Redis; in cluster mode REDIS_URL names a node of a cluster
        someone else runs (or `stack up --profile cluster`), so nothing is started here."""
        return (self._url.hostname or "") in LOOPBACK and self.settings.redis_mode == "standalone"

    def address(self) -> str:
        return f"{self._url.hostname}:{self._url.port or 6379}"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc.start(["redis-server", "--bind", "127.0.0.1", "--port", str(self._url.port or 6379),
                         "--dir", str(self.dir), "--appendonly", "yes", "--save", "",
                         "--daemonize", "no", "--maxmemory-policy", "noeviction",
                         *LISTPACK_OPTIONS])

    def answers(self) -> bool:
        import redis

        return bool(redis.Redis.from_url(self.settings.redis_url, socket_timeout=2).ping())

    def version(self) -> str:
        import redis

        return str(redis.Redis.from_url(self.settings.redis_url, socket_timeout=2)
                   .info("server")["redis_version"])


class ClickHouseEndpoint(_Base):
    """The embedded ClickHouse endpoint (chDB behind the HTTP interface), or a real server's URL."""

    name = "clickhouse"
    start_timeout = 90.0

    def marker(self) -> str:
        return "tweetflow.embedded_clickhouse"

    @property
    def managed(self) -> bool:
        return self.settings.embedded_clickhouse

    def address(self) -> str:
        return self.settings.clickhouse_http_url

    def start(self) -> None:
        self.proc.start([sys.executable, "-m", "tweetflow.embedded_clickhouse",
                         "--data-dir", str(self.dir / "data"),
                         "--port", str(self.settings.embedded_clickhouse_port)], cwd=PROJECT_ROOT)

    def answers(self) -> bool:
        with urllib.request.urlopen(f"{self.address()}/ping", timeout=2) as response:
            return response.status == 200

    def version(self) -> str:
        from tweetflow.clients import clickhouse_client

        return str(clickhouse_client(self.settings, database="default").server_version)


def _safe(fn, default=False):
    try:
        return fn()
    except Exception:
        return default


def _digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()[:12]


_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""
