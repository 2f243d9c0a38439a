"""`tweetflow produce` beside Kafka's own producer, in the same run on the same broker.

    .venv/bin/python -m bench.producer_bench [--messages 1000000] [--rounds 2] [--processes 1]

Each round, each into a fresh topic (6 partitions, deleted afterwards), one after the other:
1. Kafka's ProducerPerformance (`bench.kafka_ceiling`): M synthetic payloads, unpaced;
2. `tweetflow produce --source synthetic --rate 0 --count M --duration 0`;
3. `tweetflow produce --source file:<M synthetic lines>.jsonl.gz --rate 0 --duration 0` (the
   file is written once, before the first round).
The rates are the producers' own: Kafka's tool from its first send to its last acknowledgement;
`tweetflow produce`'s summary line (every message acknowledged, from the start of its clock,
after the messages were made ahead), with the time spent making them beside it. Each figure
carries the load average it finished under: other work on the machine moves all three.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.kafka_ceiling import payload_file, producer_performance
from tweetflow.settings import PROJECT_ROOT, Settings, get_settings

_RATE = re.compile(r"throughput\s+([\d,]+) msg/s, ([\d.]+) MB/s")
_AHEAD = re.compile(r"made ahead\s+([\d,]+) messages in ([\d.]+) s")
_CPU = re.compile(r"^cpu\s+([\d.]+) µs per message", re.MULTILINE)
_DELIVERED = re.compile(r"^delivered\s+([\d,]+)", re.MULTILINE)  # the summary's, not progress


@dataclass(frozen=True)
class Figure:
    what: str
    per_second: float
    mb_per_second: float
    note: str
    load: tuple[float, float, float]


def produce(settings: Settings, *args: str) -> Figure:
    """`tweetflow produce ARGS` into a fresh topic; its summary's rate."""
    from tweetflow import namespaces

    topic = f"bench_produce_{uuid.uuid4().hex[:8]}"
    argv = [sys.executable, "-m", "tweetflow.app.cli", "produce", "--topic", topic, *args]
    began = time.monotonic()
    try:
        done = subprocess.run(argv, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    finally:
        namespaces.delete_topics(settings, [topic])
    wall = time.monotonic() - began
    rate, ahead = _RATE.search(done.stdout), _AHEAD.search(done.stdout)
    if done.returncode != 0 or rate is None:
        raise RuntimeError(f"tweetflow produce failed (exit {done.returncode}):\n"
                           f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    delivered, cpu = _DELIVERED.search(done.stdout), _CPU.search(done.stdout)
    note = (f"{delivered.group(1) if delivered else '?'} acknowledged; "
            f"{cpu.group(1) if cpu else '?'} µs of CPU per message while sending; made ahead "
            f"{ahead.group(1) if ahead else 0} in {ahead.group(2) if ahead else 0} s; "
            f"{wall:.1f} s in all")
    return Figure("tweetflow produce " + " ".join(args), float(rate.group(1).replace(",", "")),
                  float(rate.group(2)), note, os.getloadavg())


def archive(path: Path, count: int) -> Path:
    """`count` synthetic messages as a gzip'd JSON-lines archive."""
    from streaming.synthetic import SyntheticSource

    source = iter(SyntheticSource(99))
    with gzip.open(path, "wb", compresslevel=1) as out:
        for _ in range(count):
            out.write(next(source)[1] + b"\n")
    return path


def rounds(settings: Settings, messages: int, n: int, processes: int) -> list[Figure]:
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="producer-bench-") as tmp:
        payloads = payload_file(Path(tmp) / "payloads.txt")
        print(f"writing an archive of {messages:,} synthetic messages", flush=True)
        path = archive(Path(tmp) / "archive.jsonl.gz", messages)
        own = ("--processes", str(processes))
        for i in range(1, n + 1):
            kafka = producer_performance(settings, messages, payloads)
            figures.append(Figure(
                f"round {i}: Kafka ProducerPerformance", kafka.per_second, kafka.mb_per_second,
                f"{kafka.cpu_seconds / kafka.records * 1e6:.1f} µs of CPU per message (the JVM's "
                f"start included)", kafka.load))
            figures.append(produce(settings, "--source", "synthetic", "--rate", "0", "--count",
                                   str(messages), "--duration", "0", *own))
            figures.append(produce(settings, "--source", f"file:{path}", "--rate", "0",
                                   "--duration", "0", *own))
            for f in figures[-3:]:
                print(_row(f), flush=True)
            if i == n:
                print(f"\nKafka's tool ran as: {kafka.command}", flush=True)
    return figures


def _row(f: Figure) -> str:
    return (f"| {f.what} | {f.per_second:,.0f} | {f.mb_per_second:.1f} | "
            f"{f.load[0]:.1f} / {f.load[1]:.1f} | {f.note} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.producer_bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args(argv)
    settings = get_settings()
    print(f"producer bench: {args.messages:,} messages, {args.rounds} rounds, "
          f"{args.processes} process(es); load {os.getloadavg()[0]:.1f}", flush=True)
    print("| what | msg/s | MB/s | load 1 / 5 min | notes |\n| --- | ---: | ---: | --- | --- |",
          flush=True)
    rounds(settings, args.messages, args.rounds, args.processes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
