"""`tweetflow stack up --profile cluster`: three KRaft Kafka brokers (each also a controller of a
three-voter quorum; topics get replication factor 3 and min.insync.replicas 2 by the brokers'
defaults) and a six-node Redis Cluster (three masters, three replicas), from the same Maven jars
and Debian packages as the single-node stack; the embedded ClickHouse endpoint stays single.

Why a profile rather than settings: the profile's nodes sit on their own ports (`ClusterPorts`),
beside the single-node stack; `stack up --profile cluster` prints the settings that point
tweetflow at them (KAFKA_BOOTSTRAP_SERVERS, REDIS_URL, REDIS_MODE=cluster).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tweetflow.app.stack.components import ComponentStatus, Kafka
from tweetflow.app.stack.process import StackError, wait_until
from tweetflow.app.stack.redis_cluster import RedisCluster
from tweetflow.settings import Settings

BROKERS = 3


@dataclass(frozen=True)
class ClusterPorts:
    """Where the profile's nodes listen (the defaults sit beside the single-node stack's)."""

    kafka: tuple[int, ...] = (9192, 9193, 9194)
    controllers: tuple[int, ...] = (9292, 9293, 9294)
    redis: tuple[int, ...] = (7001, 7002, 7003, 7004, 7005, 7006)
    redis_bus: tuple[int, ...] = field(default=())  # default: each Redis port + 10000

    def settings(self, base: Settings) -> Settings:
        """`base` pointed at the profile's nodes."""
        return base.model_copy(update={
            "kafka_bootstrap_servers": ",".join(f"127.0.0.1:{p}" for p in self.kafka),
            "redis_url": f"redis://127.0.0.1:{self.redis[0]}/0", "redis_mode": "cluster"})

    def environment(self, base: Settings) -> dict[str, str]:
        s = self.settings(base)
        return {"KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers, "REDIS_URL": s.redis_url,
                "REDIS_MODE": "cluster"}


class KafkaNode(Kafka):
    """One of the three brokers: node.id 1..3, a voter of the static controller quorum."""

    heap = "512m"  # three brokers beside the rest on a laptop

    def __init__(self, settings: Settings, ports: ClusterPorts, index: int) -> None:
        self.ports, self.index = ports, index
        self.name = f"kafka-{index + 1}"
        super().__init__(settings)

    def marker(self) -> str:
        return f"kafka.Kafka {self.settings.data_dir / self.name / 'server.properties'}"

    @property
    def managed(self) -> bool:
        return True

    def address(self) -> str:
        return f"127.0.0.1:{self.ports.kafka[self.index]}"

    def answers(self) -> bool:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.address(), "socket.timeout.ms": 2000,
                             "log_level": 0})
        brokers = admin.list_topics(timeout=2).brokers
        return len(brokers) == BROKERS

    def format_options(self) -> list[str]:
        return []  # the static quorum of controller.quorum.voters

    def cluster_id(self) -> str:
        """The id all three share, made by the first to format."""
        shared = self.settings.data_dir / "kafka-cluster.id"
        if not shared.exists():
            shared.parent.mkdir(parents=True, exist_ok=True)
            shared.write_text(super().cluster_id())
        return shared.read_text().strip()

    def server_properties(self) -> dict[str, str]:
        props = super().server_properties()
        p, node = self.ports, self.index
        voters = ",".join(f"{i + 1}@127.0.0.1:{port}" for i, port in enumerate(p.controllers))
        props.pop("controller.quorum.bootstrap.servers", None)
        props.update({
            "node.id": str(node + 1), "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{p.kafka[node]},"
                         f"CONTROLLER://127.0.0.1:{p.controllers[node]}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{p.kafka[node]}",
            "default.replication.factor": str(BROKERS), "min.insync.replicas": "2",
            "offsets.topic.replication.factor": str(BROKERS),
            "transaction.state.log.replication.factor": str(BROKERS),
            "transaction.state.log.min.isr": "2",
            "share.coordinator.state.topic.replication.factor": str(BROKERS),
            "share.coordinator.state.topic.min.isr": "2",
        })
        return props


@dataclass
class ClusterProfile:
    """The profile's nodes: brought up together (a broker answers once a quorum of controllers
    runs), reported and stopped one by one."""

    settings: Settings
    ports: ClusterPorts = field(default_factory=ClusterPorts)

    @property
    def brokers(self) -> list[KafkaNode]:
        return [KafkaNode(self.settings, self.ports, i) for i in range(BROKERS)]

    @property
    def redis(self) -> RedisCluster:
        return RedisCluster(self.settings, list(self.ports.redis), list(self.ports.redis_bus))

    def up(self, timeout: float = 180.0) -> None:
        brokers = self.brokers
        for broker in brokers:
            if broker.proc.pid() is None:
                broker.start()
        if not wait_until(lambda: all(b.proc.pid() is not None and b.answers() for b in brokers),
                          timeout):
            raise StackError("the three Kafka brokers did not form a cluster; logs: " +
                             ", ".join(str(b.proc.log_file) for b in brokers))
        self.redis.up()

    def down(self) -> list[str]:
        return self.redis.down() + [b.name for b in reversed(self.brokers) if b.down()]

    def status(self) -> list[ComponentStatus]:
        return [b.status() for b in self.brokers] + self.redis.status()
