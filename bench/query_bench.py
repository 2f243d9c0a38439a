"""Query path benchmark: the hot path over gRPC (ghz) against the same question asked of
ClickHouse directly over HTTP, next to the floor grpcio itself sets on this machine; then the
same service over Connect (wrk, JSON and binary, cached and uncached, the ClickHouse path) next to
a no-op Connect floor (bench/connect_bench.py).

    .venv/bin/python -m bench.query_bench [--requests 50000] [--concurrency 32] [--processes 2]
        [--transports both|grpc|connect] [--wrk-seconds 6] [--wrk-connections 32]

The question is "trending hashtags over the last hour" (with each one's 24-hour baseline). The
script needs the stack up; when Redis and ClickHouse hold no Tweets from the last hour it seeds
a small synthetic day (the real sinks, a watermark of its own so consumers are not disturbed). It
installs ghz into <data dir>/bin with `go install` if missing, starts `query_service.server` on a
free port and, with the same ghz settings, a no-op grpc.aio server with the same process layout
answering the same response bytes (bench/grpc_floor.py), and runs ghz against each in alternating
rounds; then it runs the equivalent SQL against ClickHouse for `--duration` s.
It prints req/s, p50, p99, errors, server and ghz CPU per call (from /proc and wait4), how much
lower the gRPC p50 is, and PASS/FAIL against the targets (TARGET_RPS, TARGET_P99_MS,
TARGET_P50_REDUCTION). The floor is context, not a target: ghz shares the cores with the server,
so the floor's req/s bounds what any grpcio service can reach here.
Not a test: numbers depend on the machine (and whatever else shares its cores); CPU per call and
the service/floor ratios, measured in alternating rounds, are the figures other load disturbs
least.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from bench.harness import (  # noqa: E402
    BENCH_API_KEY,
    child_env,
    free_port,
    group_cpu_seconds,
    wait_serving,
)
from tweetflow.settings import Settings, get_settings  # noqa: E402

GHZ_MODULE = "github.com/bojand/ghz/cmd/ghz@latest"
SEED_TOPIC = "bench.seed"  # the hot sink's watermark for seeded data lives under this name
WINDOW = 3600
METHOD = "TrendingHashtags"
TARGET_RPS = 10_000
TARGET_P99_MS = 10.0
TARGET_P50_REDUCTION = 85.0  # percent below ClickHouse's p50


@dataclass
class Result:
    name: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    client_cpu_us: float = float("nan")  # CPU per call of the load generator (ghz)
    server_cpu_us: float = float("nan")  # CPU per call of the server's processes together

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
    hot.close()
    from streaming.healer import Healer  # what the consumers' watch over the hot tier does

    Healer(settings).run(retry=False)  # starts the hot tier's history: Redis answers the hot horizon
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


def start_server(settings: Settings, port: int, processes: int,
                 http_port: int = 0) -> subprocess.Popen:
    """The query service on `port` (gRPC) and, unless 0, `http_port` (Connect)."""
    env = child_env(settings, TWEETFLOW_API_KEYS=BENCH_API_KEY)
    server = subprocess.Popen(
        [sys.executable, "-m", "query_service.server", "--port", str(port), "--metrics-port", "0",
         "--processes", str(processes), "--http-port", str(http_port)], cwd=PROJECT_ROOT,
        env=env, start_new_session=True)
    if wait_serving(port, 60):
        time.sleep(1.0 if processes > 1 else 0.2)  # let every worker finish starting
        return server
    server.kill()
    raise SystemExit("the query server did not start")


def trending_request() -> bytes:
    """The request ghz repeats, serialized (binary call data costs ghz less CPU than JSON)."""
    from google.protobuf.duration_pb2 import Duration

    from tweetflow.v1 import analytics_pb2 as pb

    return pb.TrendingHashtagsRequest(window=Duration(seconds=WINDOW),
                                      limit=10).SerializeToString()


def call_raw(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """One call of METHOD with the bench key, returning the response's wire bytes."""
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(f"/tweetflow.v1.AnalyticsService/{METHOD}")
        return call(request, metadata=(("x-api-key", BENCH_API_KEY),), timeout=timeout)


def run_ghz(ghz: str, port: int, total: int, concurrency: int, connections: int,
            cpus: int, server_pgid: int | None = None) -> tuple[Result, dict]:
    """`total` calls (a count, not a duration: with -z ghz cuts the calls in flight at the end
    and reports them as errors), the first 1% skipped as warm-up. ghz's CPU comes from wait4;
    the server's, when `server_pgid` is given, from /proc for that process group."""
    well_known = str(resources.files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "request.bin", Path(tmp) / "report.json"
        data.write_bytes(trending_request())
        cmd = [ghz, "--insecure",
               "--proto", str(PROJECT_ROOT / "proto/tweetflow/v1/analytics.proto"),
               "--import-paths", f"{PROJECT_ROOT / 'proto'},{well_known}",
               "--call", f"tweetflow.v1.AnalyticsService.{METHOD}", "-B", str(data),
               "-m", json.dumps({"x-api-key": BENCH_API_KEY}),
               "-n", str(total), "--skipFirst", str(total // 100), "-c", str(concurrency),
               "--connections", str(connections),
               "--cpus", str(cpus), "-O", "json", "-o", str(out), f"127.0.0.1:{port}"]
        server_before = group_cpu_seconds(server_pgid) if server_pgid else 0.0
        with open(Path(tmp) / "stderr", "w+b") as stderr:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
            _, status, usage = os.wait4(proc.pid, 0)  # wait4, not wait: ghz's own rusage
            server_cpu = group_cpu_seconds(server_pgid) - server_before if server_pgid else None
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                stderr.seek(0)
                raise subprocess.CalledProcessError(proc.returncode, cmd,
                                                    stderr=stderr.read().decode())
        report = json.loads(out.read_text())
    lat = {d["percentage"]: d["latency"] / 1e6 for d in report.get("latencyDistribution") or []}
    errors = sum(report.get("errorDistribution", {}).values()) if report.get(
        "errorDistribution") else 0
    count = int(report["count"])
    return Result("gRPC hot path (ghz)", count, errors,
                  count / report["rps"] if report.get("rps") else 0.0, lat.get(50, float("nan")),
                  lat.get(99, float("nan")),
                  client_cpu_us=(usage.ru_utime + usage.ru_stime) / total * 1e6,
                  server_cpu_us=(server_cpu / total * 1e6 if server_cpu is not None
                                 else float("nan"))), report


def run_grpc(settings: Settings, ghz: str, args: argparse.Namespace
             ) -> tuple[Result, Result, list[float]]:
    """ghz against the service and, with the same settings, against bench.grpc_floor answering
    the service's own response bytes: `args.rounds` alternating rounds of `args.requests /
    args.rounds` calls each, both servers up throughout (an idle one costs nothing), so load
    from elsewhere on the machine falls on both alike. Also returns the load average per round."""
    from bench import grpc_floor

    calls = args.requests // args.rounds
    runs: dict[str, list[tuple[Result, dict]]] = {"service": [], "floor": []}
    loads = []
    port, floor_port = free_port(), free_port()
    server = start_server(settings, port, args.processes)
    with tempfile.NamedTemporaryFile(suffix=".bin") as response:
        try:
            response.write(call_raw(port, trending_request()))
            response.flush()
            floor = grpc_floor.start(floor_port, args.processes, Path(response.name))
            try:
                if not wait_answering(floor_port, 30):
                    raise SystemExit("the no-op gRPC server did not start")
                time.sleep(1.0 if args.processes > 1 else 0.2)  # as start_server does
                for _ in range(args.rounds):
                    loads.append(os.getloadavg()[0])
                    for name, target, proc in (("service", port, server),
                                               ("floor", floor_port, floor)):
                        runs[name].append(run_ghz(ghz, target, calls, args.concurrency,
                                                  args.connections, args.ghz_cpus, proc.pid))
            finally:
                _stop(floor)
        finally:
            _stop(server)
    return (combine("gRPC hot path (ghz)", runs["service"]),
            combine("no-op grpc.aio server (floor)", runs["floor"]), loads)


def combine(name: str, runs: list[tuple[Result, dict]]) -> Result:
    """One Result over several ghz runs: calls, errors and seconds summed, CPU per call averaged
    by calls, p50 and p99 over every counted call's latency (the reports' details)."""
    latencies = sorted(d["latency"] / 1e6 for _, report in runs
                       for d in report.get("details") or ())
    calls = sum(r.requests for r, _ in runs)

    def mean(per_call: list[float]) -> float:
        return sum(v * r.requests for v, (r, _) in zip(per_call, runs, strict=True)) / calls

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * q))] if latencies else (
            float("nan"))

    return Result(name, calls, sum(r.errors for r, _ in runs), sum(r.seconds for r, _ in runs),
                  pct(0.50), pct(0.99), mean([r.client_cpu_us for r, _ in runs]),
                  mean([r.server_cpu_us for r, _ in runs]))


def _stop(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(30)


def wait_answering(port: int, timeout: float) -> bool:
    """Call METHOD on 127.0.0.1:port until it answers (or time runs out)."""
    import grpc

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            call_raw(port, trending_request(), timeout=1)
            return True
        except grpc.RpcError:
            time.sleep(0.2)
    return False


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

def main(argv: list[str] | None = None) -> int:
    from bench import connect_bench

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transports", choices=("both", "grpc", "connect"), default="both",
                        help="measure grpcio (ghz), Connect (wrk, bench/connect_bench.py) or both")
    connect_bench.add_arguments(parser)
    parser.add_argument("--requests", type=int, default=50_000, help="gRPC calls ghz makes")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds of direct ClickHouse queries")
    parser.add_argument("--concurrency", type=int, default=32, help="ghz workers")
    parser.add_argument("--connections", type=int, default=8, help="ghz connections")
    parser.add_argument("--processes", type=int, default=2, help="query server processes")
    parser.add_argument("--ghz-cpus", type=int, default=1, help="cores ghz may use")
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating service / floor ghz runs the calls are split into")
    parser.add_argument("--clickhouse-clients", type=int, default=4)
    parser.add_argument("--seed-tweets", type=int, default=30_000)
    parser.add_argument("--namespace", default="",
                        help="use ClickHouse database and Redis prefix NAME instead of the "
                             "configured ones (seeded if empty)")
    args = parser.parse_args(argv)

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
    if args.transports != "connect":
        service, floor, loads = run_grpc(settings, ghz_path(settings), args)
        clickhouse = run_clickhouse(settings, args.duration, args.clickhouse_clients)
        print_report(service, floor, clickhouse, args, loads)
    if args.transports != "grpc":
        connect_bench.report(connect_bench.run_connect(settings, args), args)
    return 0


def print_report(service: Result, floor: Result, clickhouse: Result, args: argparse.Namespace,
                 loads: list[float]) -> None:
    cores = os.cpu_count() or 1
    print(f"\n{'path':<34} {'requests':>9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'errors':>7} {'server CPU/call':>16} {'ghz CPU/call':>13}")
    for r in (service, floor, clickhouse):
        cpu = ("" if math.isnan(r.server_cpu_us) else  # not measured (ClickHouse)
               f"{r.server_cpu_us:>13.0f} us {r.client_cpu_us:>10.0f} us")
        print(f"{r.name:<34} {r.requests:>9} {r.rps:>9.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} "
              f"{r.errors:>7} {cpu}")
    reduction = 100 * (1 - service.p50_ms / clickhouse.p50_ms)
    print()
    for ok, text in (
            (service.rps >= TARGET_RPS and service.errors == 0,
             f"gRPC hot path >= {TARGET_RPS:,} req/s without errors: {service.rps:,.0f} req/s, "
             f"{service.errors} errors"),
            (service.p99_ms < TARGET_P99_MS,
             f"gRPC hot path p99 < {TARGET_P99_MS:g} ms: {service.p99_ms:.2f} ms"),
            (reduction >= TARGET_P50_REDUCTION,
             f"gRPC p50 >= {TARGET_P50_REDUCTION:g}% below ClickHouse's: {reduction:.1f}% "
             f"({service.p50_ms:.2f} vs {clickhouse.p50_ms:.2f} ms)")):
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    print(f"\ncontext, the floor (a no-op grpc.aio server, same processes, same ghz settings): "
          f"{floor.rps:,.0f} req/s, p99 {floor.p99_ms:.2f} ms; the service reaches "
          f"{100 * service.rps / floor.rps:.0f}% of its req/s at "
          f"{service.server_cpu_us / floor.server_cpu_us:.2f}x its server CPU per call")
    for r in (service, floor):
        print(f"  {r.name}: {r.server_cpu_us:.0f} us server + {r.client_cpu_us:.0f} us ghz CPU "
              f"per call, so {cores} cores would give at most "
              f"{cores * 1e6 / (r.server_cpu_us + r.client_cpu_us):,.0f} req/s with ghz on them, "
              f"{cores * 1e6 / r.server_cpu_us:,.0f} without")
    print(f"(server processes: {args.processes}, ghz: {args.concurrency} workers over "
          f"{args.connections} connections on {args.ghz_cpus} core(s), binary request data, "
          f"{service.requests:,} counted calls to each server in {args.rounds} alternating "
          f"rounds; {cores} cores; 1-min load average over the rounds "
          f"{min(loads):.1f}-{max(loads):.1f})")


if __name__ == "__main__":
    sys.exit(main())
