"""A private Kafka broker for the secured-client tests: the stack's own broker (same Maven jars,
same KRaft configuration, tweetflow.app.stack.components.Kafka) in its own data dir on free ports,
with two more listeners: SASL_PLAINTEXT with the PLAIN mechanism and SSL with a certificate of a
CA the test made (tls_support). Stopped and its data dir removed afterwards.

Why a private broker rather than new listeners on the shared one: the shared broker serves every
other test and helper; restarting it with another configuration would break them.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from tls_support import Pki

from tweetflow.app.stack.components import Kafka
from tweetflow.app.stack.process import StackError, wait_until
from tweetflow.clients import kafka_config
from tweetflow.settings import Settings

USER, PASSWORD = "alice", "alice-secret"


@dataclass(frozen=True)
class SecuredBroker:
    plaintext: str  # host:port of each listener
    sasl: str
    ssl: str
    settings: Settings  # the broker's own settings (plaintext listener): its data dir, ports


class _SecuredKafka(Kafka):
    def __init__(self, settings: Settings, jars: Path, pki: Pki, ports: dict[str, int]) -> None:
        super().__init__(settings)
        self._jars, self._pki, self._ports = jars, pki, ports

    @property
    def libs(self) -> Path:
        return self._jars  # the shared stack's jars: nothing is fetched again

    def server_properties(self) -> dict[str, str]:
        props = super().server_properties()
        controller = f"CONTROLLER://127.0.0.1:{self.settings.kafka_controller_port}"
        listeners = ",".join([f"PLAINTEXT://127.0.0.1:{self.settings.kafka_port}",
                              f"SASL_PLAINTEXT://127.0.0.1:{self._ports['sasl']}",
                              f"SSL://127.0.0.1:{self._ports['ssl']}"])
        jaas = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
                f'user_{USER}="{PASSWORD}";')
        return {**props,
                "listeners": f"{listeners},{controller}",
                "advertised.listeners": f"{listeners},{controller}",
                "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
                                                  "SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL",
                "sasl.enabled.mechanisms": "PLAIN",
                "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
                "listener.name.ssl.ssl.keystore.type": "PEM",
                "listener.name.ssl.ssl.keystore.location": str(self._pki.server_pem),
                "listener.name.ssl.ssl.client.auth": "none"}


def _coordinator_ready(settings: Settings) -> bool:
    """A fresh cluster creates and loads __consumer_offsets on its first group request.

    Asked through a consumer, whose offset fetch waits out COORDINATOR_LOAD_IN_PROGRESS: the admin
    client's ListConsumerGroupOffsets answered that way crashed the Python process (SIGSEGV,
    confluent-kafka 2.16.1) in five of six tries here."""
    consumer = Consumer(kafka_config(settings, **{"group.id": "warm-up"}))
    try:
        consumer.committed([TopicPartition("warm-up", 0)], timeout=30)
    finally:
        consumer.close()
    return True


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def secured_broker(stack: Settings, pki: Pki, data_dir: Path) -> Iterator[SecuredBroker]:
    """Start the private broker (jars of the running stack), yield its listeners, stop it."""
    ports = {name: free_port() for name in ("plaintext", "controller", "sasl", "ssl")}
    settings = stack.model_copy(update={
        "data_dir": data_dir, "kafka_port": ports["plaintext"],
        "kafka_controller_port": ports["controller"],
        "kafka_bootstrap_servers": f"127.0.0.1:{ports['plaintext']}"})
    shared = Kafka(stack)
    shared.ensure_jars()
    broker = _SecuredKafka(settings, shared.libs, pki, ports)
    try:
        broker.up()
        if not wait_until(lambda: _coordinator_ready(settings), 90):
            raise StackError(f"the private broker's group coordinator never loaded:\n"
                             f"{broker.proc.log_tail()}")
        yield SecuredBroker(f"127.0.0.1:{ports['plaintext']}", f"127.0.0.1:{ports['sasl']}",
                            f"127.0.0.1:{ports['ssl']}", settings)
    finally:
        broker.down()
        shutil.rmtree(data_dir, ignore_errors=True)
