"""Query path benchmark: the hot path over gRPC (ghz) against the same question asked of
ClickHouse directly over HTTP.

    .venv/bin/python bench/query_bench.py [--requests 50000] [--concurrency 32] [--processes 2]

The question is "trending hashtags over the last hour" (with each one's 24-hour baseline). The
script needs the stack up; when Redis and ClickHouse hold no Tweets from the last hour it seeds
a small synthetic day (the real sinks, a watermark of its own so consumers are not disturbed). It
installs ghz into <data dir>/bin with `go install` if missing, starts `query_service.server` on a
free port, runs ghz, then runs the equivalent SQL against ClickHouse for `--duration` s, and
prints req/s, p50, p99, errors and how much lower the gRPC p50 is.
Not a test: numbers depend on the machine (and whatever else shares its cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from tweetflow.settings import Settings, get_settings  # noqa: E402

GHZ_MODULE = "github.com/bojand/ghz/cmd/ghz@latest"
BENCH_KEY = "bench-key"
SEED_TOPIC = "bench.seed"  # the hot sink's watermark for seeded data lives under this name
WINDOW = 3600


@dataclass
class Result:
    name: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


# --- data ------------------------------------------------------------------------------------

def has_recent_data(settings: Settings) -> tuple[bool, bool]:
    """(Redis has hashtags this or last hour, ClickHouse has Tweets from the last hour)."""
    from tweetflow.clients import clickhouse_client, redis_client
    from tweetflow.hot_keys import bucket_start, dimension_key

    hour = bucket_start(time.time(), "h")
    r = redis_client(settings)
    in_redis = any(r.exists(dimension_key(settings.redis_prefix, "hashtag", "h", h))
                   for h in (hour, hour - 3600))
    client = clickhouse_client(settings)
    in_clickhouse = client.query(
        "SELECT count() FROM raw_tweets WHERE created_at >= now() - INTERVAL 1 HOUR"
    ).result_rows[0][0] > 0
    client.close()
    return in_redis, in_clickhouse


def seed(settings: Settings, tweets: int, hours: float) -> None:
    """Synthetic Tweets over the last `hours`, through the consumers' own sinks."""
    from streaming.parsing import parse_payload
    from streaming.sinks.clickhouse import ClickHouseSink
    from streaming.sinks.hot_aggregates import HotAggregatesSink, PartitionBatch
    from streaming.synthetic import SyntheticSource

    seed_settings = settings.model_copy(update={"topic_raw": SEED_TOPIC})
    start_ms = int((time.time() - hours * 3600) * 1000)
    source = SyntheticSource(seed=7, start_ms=start_ms, rate=tweets / (hours * 3600))
    clickhouse, hot = ClickHouseSink(seed_settings), HotAggregatesSink(seed_settings)
    offset = hot.watermarks().get(0, -1)
    batch: list[tuple[int, object]] = []
    written = 0
    for message in source:
        for event in parse_payload(message[1]):
            offset += 1
            batch.append((offset, event))
        if len(batch) >= 2000 or written + len(batch) >= tweets:
            clickhouse.write([(0, o, e) for o, e in batch])
            hot.apply(PartitionBatch(0, offset, list(batch)), offset - len(batch))
            written += len(batch)
            batch.clear()
            if written >= tweets:
                break
    clickhouse.close()
    print(f"seeded {written} synthetic events over the last {hours:g} h")


# --- the gRPC side -------------------------------------------------------------------------------

def ghz_path(settings: Settings) -> str:
    found = shutil.which("ghz") or str(settings.data_dir / "bin" / "ghz")
    if Path(found).exists():
        return found
    print(f"installing ghz into {settings.data_dir / 'bin'} (go install {GHZ_MODULE})")
    (settings.data_dir / "bin").mkdir(parents=True, exist_ok=True)
    subprocess.run(["go", "install", GHZ_MODULE], check=True,
                   env={**os.environ, "GOBIN": str(settings.data_dir / "bin")})
    return str(settings.data_dir / "bin" / "ghz")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(settings: Settings, port: int, processes: int) -> subprocess.Popen:
    env = {**os.environ, "TWEETFLOW_API_KEYS": BENCH_KEY,
           "TWEETFLOW_CLICKHOUSE_DATABASE": settings.clickhouse_database,
           "TWEETFLOW_REDIS_PREFIX": settings.redis_prefix}
    server = subprocess.Popen(
        [sys.executable, "-m", "query_service.server", "--port", str(port), "--metrics-port", "0",
         "--processes", str(processes)], cwd=PROJECT_ROOT, env=env, start_new_session=True)
    if wait_serving(port, 60):
        time.sleep(1.0 if processes > 1 else 0.2)  # let every worker finish starting
        return server
    server.kill()
    raise SystemExit("the query server did not start")


def wait_serving(port: int, timeout: float) -> bool:
    """Poll grpc.health.v1 on 127.0.0.1:port until AnalyticsService is SERVING (or time runs out)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                status = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service="tweetflow.v1.AnalyticsService"),
                    timeout=1).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                return True
        except grpc.RpcError:
            time.sleep(0.2)
    return False


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds used so far by every process of a process group (Linux /proc)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields[0] is the state; pgrp is the 5th field overall
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def run_ghz(ghz: str, port: int, total: int, concurrency: int, connections: int,
            cpus: int) -> tuple[Result, dict]:
    """`total` calls (a count, not a duration: with -z ghz cuts the calls in flight at the end
    and reports them as errors), the first 1% skipped as warm-up."""
    well_known = str(resources.files("grpc_tools") / "_proto")
    cmd = [ghz, "--insecure", "--proto", str(PROJECT_ROOT / "proto/tweetflow/v1/analytics.proto"),
           "--import-paths", f"{PROJECT_ROOT / 'proto'},{well_known}",
           "--call", "tweetflow.v1.AnalyticsService.TrendingHashtags",
           "-d", json.dumps({"window": f"{WINDOW}s", "limit": 10}),
           "-m", json.dumps({"x-api-key": BENCH_KEY}),
           "-n", str(total), "--skipFirst", str(total // 100), "-c", str(concurrency),
           "--connections", str(connections),
           "--cpus", str(cpus), "-O", "json", f"127.0.0.1:{port}"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    report = json.loads(out)
    lat = {d["percentage"]: d["latency"] / 1e6 for d in report.get("latencyDistribution") or []}
    errors = sum(report.get("errorDistribution", {}).values()) if report.get(
        "errorDistribution") else 0
    count = int(report["count"])
    return Result("gRPC hot path (ghz)", count, errors,
                  count / report["rps"] if report.get("rps") else 0.0, lat.get(50, float("nan")),
                  lat.get(99, float("nan"))), report


# --- the ClickHouse side ---------------------------------------------------------------------

def direct_sql(settings: Settings) -> str:
    """The same question in SQL: top hashtags in the last hour, each with its 24 h baseline."""
    from tweetflow.clients import clickhouse_client

    client = clickhouse_client(settings)
    has_staging = client.query(
        "SELECT count() FROM system.tables WHERE database = {db:String} AND name = 'stg_tweets'",
        parameters={"db": settings.clickhouse_database}).result_rows[0][0] > 0
    client.close()
    source = ("stg_tweets" if has_staging else
              "(SELECT * FROM raw_tweets FINAL WHERE tweet_id NOT IN "
              "(SELECT tweet_id FROM tweet_deletes))")
    start = "toDateTime({start:UInt32}, 'UTC')"
    return (f"SELECT h, countIf(created_at >= {start}) AS c, "
            f"countIf(created_at < {start}) / 24 AS baseline "
            f"FROM {source} ARRAY JOIN arrayDistinct(hashtags) AS h "
            f"WHERE created_at >= {start} - INTERVAL 24 HOUR "
            f"GROUP BY h HAVING c > 0 ORDER BY c DESC, h LIMIT 10")


def run_clickhouse(settings: Settings, duration: float, threads: int) -> Result:
    """Closed loop: `threads` clients asking back to back for `duration` seconds, over HTTP."""
    from tweetflow.clients import clickhouse_client

    sql = direct_sql(settings)
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def worker() -> None:
        nonlocal errors
        client = clickhouse_client(settings, autogenerate_session_id=False)
        while time.monotonic() < stop_at:
            began = time.perf_counter()
            try:
                start = int(time.time()) // 60 * 60 + 60 - WINDOW
                client.query(sql, parameters={"start": start})
                took = time.perf_counter() - began
                with lock:
                    latencies.append(took * 1000)
            except Exception:
                with lock:
                    errors += 1
        client.close()

    began = time.monotonic()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    seconds = time.monotonic() - began
    latencies.sort()
    p50 = statistics.median(latencies) if latencies else float("nan")
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else p50
    return Result(f"ClickHouse direct SQL ({threads} clients)", len(latencies), errors, seconds,
                  p50, p99)


# --- main --------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50_000, help="gRPC calls ghz makes")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds of direct ClickHouse queries")
    parser.add_argument("--concurrency", type=int, default=32, help="ghz workers")
    parser.add_argument("--connections", type=int, default=8, help="ghz connections")
    parser.add_argument("--processes", type=int, default=2, help="query server processes")
    parser.add_argument("--ghz-cpus", type=int, default=1, help="cores ghz may use")
    parser.add_argument("--clickhouse-clients", type=int, default=4)
    parser.add_argument("--seed-tweets", type=int, default=30_000)
    parser.add_argument("--namespace", default="",
                        help="use ClickHouse database and Redis prefix NAME instead of the "
                             "configured ones (seeded if empty)")
    args = parser.parse_args()

    settings = get_settings()
    if args.namespace:
        from tweetflow.schema import ensure_schema

        settings = settings.model_copy(update={"clickhouse_database": args.namespace,
                                               "redis_prefix": args.namespace})
        ensure_schema(settings)
    in_redis, in_clickhouse = has_recent_data(settings)
    if not in_redis and not in_clickhouse:
        seed(settings, args.seed_tweets, hours=25)
    elif in_redis != in_clickhouse:
        print("warning: only one of Redis and ClickHouse holds Tweets from the last hour; "
              "the two sides answer from different data")
    ghz = ghz_path(settings)
    port = free_port()
    server = start_server(settings, port, args.processes)
    try:
        cpu_before = group_cpu_seconds(server.pid)
        grpc_result, _ = run_ghz(ghz, port, args.requests, args.concurrency, args.connections,
                                 args.ghz_cpus)
        server_cpu = group_cpu_seconds(server.pid) - cpu_before
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    ch_result = run_clickhouse(settings, args.duration, args.clickhouse_clients)

    print(f"\n{'path':<34} {'requests':>9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for r in (grpc_result, ch_result):
        print(f"{r.name:<34} {r.requests:>9} {r.rps:>9.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} "
              f"{r.errors:>7}")
    reduction = 100 * (1 - grpc_result.p50_ms / ch_result.p50_ms)
    print(f"\np50 reduction, gRPC hot path vs ClickHouse directly: {reduction:.1f}%")
    per_request_us = server_cpu / args.requests * 1e6
    print(f"server CPU per gRPC request: {per_request_us:.0f} us "
          f"(so {os.cpu_count()} cores free of the load generator would serve about "
          f"{os.cpu_count() * 1e6 / per_request_us:.0f} req/s)")
    print(f"(server processes: {args.processes}, ghz: {args.concurrency} workers over "
          f"{args.connections} connections on {args.ghz_cpus} core(s), {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
