"""Kafka's own producer ceiling on this machine: `org.apache.kafka.tools.ProducerPerformance`
(kafka-producer-perf-test) appending the project's synthetic payloads, unpaced.

Why: what `tweetflow produce` reaches means little alone on a shared two-core VM; beside what
Kafka's own Java producer appends to the same broker, with the same settings and payloads,
measured in the same run, it says how much of the broker's pace the Python producer keeps.

The tool comes from the jars the stack already downloads (`kafka-tools` in
tweetflow/app/stack/kafka-pom.xml); it picks a random line of a payload file per record (here
20,000 synthetic messages, 1.24 KB on average) and sends them without keys, so its batches fill
by the sticky partitioner (Kafka's own best case). Its producer settings are `tweetflow
produce`'s (`streaming.producer.PRODUCER_CONFIG`): acks=all, idempotence, lz4, linger 20 ms,
1 MB batches, a 512 MiB buffer, a 120 s delivery timeout. Its rate is its own: first send to last
acknowledgement, the JVM's start excluded.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.harness import group_cpu_seconds
from tweetflow.settings import Settings

TOOL = "org.apache.kafka.tools.ProducerPerformance"
PAYLOADS = 20_000
_FINAL = re.compile(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\)")


@dataclass(frozen=True)
class Ceiling:
    records: int
    per_second: float
    mb_per_second: float
    load: tuple[float, float, float]  # the load average as it finished
    command: str
    cpu_seconds: float  # the JVM's CPU, all threads, its start-up and JIT included


def payload_file(path: Path, count: int = PAYLOADS, seed: int = 77) -> Path:
    """`count` synthetic payloads, one per line (the tool's --payload-file)."""
    from streaming.synthetic import SyntheticSource

    source = iter(SyntheticSource(seed))
    path.write_bytes(b"".join(next(source)[1] + b"\n" for _ in range(count)))
    return path


def java_producer_props(settings: Settings) -> list[str]:
    """`tweetflow produce`'s librdkafka settings in the Java producer's names."""
    from streaming.producer import PRODUCER_CONFIG as c

    return [f"bootstrap.servers={settings.kafka_bootstrap_servers}", f"acks={c['acks']}",
            f"enable.idempotence={str(c['enable.idempotence']).lower()}",
            f"compression.type={c['compression.type']}", f"linger.ms={c['linger.ms']}",
            f"batch.size={c['batch.size']}",
            f"buffer.memory={c['queue.buffering.max.kbytes'] * 1024}",
            f"delivery.timeout.ms={c['message.timeout.ms']}"]


def classpath(settings: Settings) -> str:
    """The stack's Kafka jars (fetched from Maven Central once, as `tweetflow stack up` does)."""
    from tweetflow.app.stack.components import Kafka

    kafka = Kafka(settings)
    kafka.ensure_jars()
    return f"{kafka.libs}/*"


def producer_performance(settings: Settings, records: int, payloads: Path) -> Ceiling:
    """Run the tool for `records` records into a fresh topic of the stack's partition count
    (deleted afterwards)."""
    from tweetflow import namespaces
    from tweetflow.clients import ensure_topics

    java = shutil.which("java")
    if java is None:
        raise RuntimeError("java is not on PATH (the stack's Kafka needs it too)")
    topic = f"bench_ceiling_{uuid.uuid4().hex[:8]}"
    argv = [java, "-Xmx1g", "-cp", classpath(settings), TOOL, "--topic", topic,
            "--num-records", str(records), "--throughput", "-1", "--payload-file", str(payloads),
            "--producer-props", *java_producer_props(settings)]
    ensure_topics(settings, topic)
    try:
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True,
                                    start_new_session=True)
            cpu = 0.0
            while proc.poll() is None:  # its CPU, read until it exits
                cpu = max(cpu, group_cpu_seconds(proc.pid))
                time.sleep(0.05)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
    finally:
        namespaces.delete_topics(settings, [topic])
    finals = _FINAL.findall(stdout)
    if proc.returncode != 0 or not finals:
        raise RuntimeError(f"{TOOL} failed (exit {proc.returncode}):\n{stdout[-1500:]}"
                           f"{stderr[-1500:]}")
    sent, rate, mb = finals[-1]
    command = " ".join(["java", "-cp", "<kafka jars>", *argv[4:]])
    return Ceiling(int(sent), float(rate), float(mb), os.getloadavg(), command, cpu)

