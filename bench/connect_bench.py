"""Connect throughput of the query service, with wrk, beside two no-op floors measured in the same
run (bench/connect_floor.py, same granian layout answering fixed bytes): through connectrpc (what
a cache miss pays) and as a bare ASGI answer (what granian alone costs; cache hits skip
connectrpc).

    .venv/bin/python -m bench.query_bench      # runs this beside the grpcio path
    .venv/bin/python -m bench.connect_bench    # = query_bench --transports connect

Cases, all POSTs of the Connect protocol over HTTP/1.1 keep-alive connections:
- hot path, cached: TrendingHashtags (1 h window), JSON and binary; the same request every time,
  so after the first call every answer is an in-process cache hit (what a dashboard sees).
  Measured in `--connect-rounds` rounds alternating with the floors, so load from elsewhere on
  the machine falls on all alike.
- hot path, uncached: TopMentions over the last hour with a different `start` nanosecond on every
  request (wrk's Lua), so each one misses the cache and is read from Redis.
- ClickHouse path, uncached: EngagementSummary (ClickHouse only) over 12 closed hours, likewise.
- the uncached case's question with a fixed `start`, so answered from the cache after the first.
- the uncached question asked of ClickHouse directly: the SQL the service runs for TopMentions over
  the same hour when it reads raw rows (query_service.marts.top_entities over stg_tweets), POSTed
  to ClickHouse's HTTP interface by wrk with the same connections as the uncached hot path, so
  the two latencies compare like for like (issue 19: the gain of the hot path and of the cache
  over ClickHouse, at the same concurrency, in one run).
Server CPU per call is read from /proc for the server's process group, wrk's from wait4.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from bench.harness import BENCH_API_KEY, free_port, group_cpu_seconds  # noqa: E402
from bench.query_bench import Result, _stop, start_server, trending_request  # noqa: E402
from tweetflow.settings import Settings  # noqa: E402

SERVICE = "tweetflow.v1.AnalyticsService"
JSON, PROTO = "application/json", "application/proto"
TARGET_RPS, TARGET_P99_MS = 10_000, 10.0  # Connect JSON, hot path


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    content_type: str
    body: bytes  # with `unique`, a template whose `%09d` each request fills differently
    unique: bool = False
    connections: int | None = None  # None: the run's --connections
    url: str | None = None  # a whole URL instead of the service's method path (ClickHouse direct)
    headers: tuple[tuple[str, str], ...] = (("x-api-key", BENCH_API_KEY),)


def cases(now: float) -> dict[str, Case]:
    hour = int(now) // 3600 * 3600
    trending_json = b'{"window":"3600s","limit":10}'
    return {
        "json": Case("Connect JSON, hot path, cached", "TrendingHashtags", JSON, trending_json),
        "binary": Case("Connect binary, hot path, cached", "TrendingHashtags", PROTO,
                       trending_request()),
        "uncached": Case("Connect JSON, hot path, uncached", "TopMentions", JSON,
                         f'{{"start":"{_iso(hour - 3600)}.%09dZ","limit":10}}'.encode(), unique=True),
        "mentions": Case("Connect JSON, same question, cached", "TopMentions", JSON,
                         f'{{"start":"{_iso(hour - 3600)}Z","limit":10}}'.encode()),
        "clickhouse": Case("Connect JSON, ClickHouse, uncached", "EngagementSummary", JSON,
                           f'{{"start":"{_iso(hour - 13 * 3600)}.%09dZ",'
                           f'"end":"{_iso(hour - 3600)}Z"}}'.encode(), unique=True, connections=8),
    }


def direct_case(settings: Settings, now: float) -> Case:
    """The uncached case's question (top mentions since the last hour's start) as the SQL the
    service runs when it reads raw rows, for ClickHouse's HTTP interface (`param_*` binds)."""
    from urllib.parse import urlencode

    from query_service.marts import top_entities
    from query_service.planner import Part, Source

    hour = int(now) // 3600 * 3600
    query = top_entities("mention", [Part(Source.RAW, hour - 3600, hour + 3600, 0)], 10)
    params = {f"param_{k}": v for k, v in query.params.items()}
    params["database"] = settings.clickhouse_database
    return Case("ClickHouse direct SQL, same question", "", "text/plain", query.sql.encode(),
                url=f"{settings.clickhouse_http_url}/?{urlencode(params)}",
                headers=(("X-ClickHouse-User", settings.clickhouse_user),
                         ("X-ClickHouse-Key", settings.clickhouse_password)))


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def lua(case: Case) -> str:
    """wrk's script: the request, and a `done` that prints the figures as one JSON line."""
    body = "".join(f"\\{b}" for b in case.body)  # decimal escapes: binary-safe in Lua
    lines = ['wrk.method = "POST"', f'wrk.headers["Content-Type"] = "{case.content_type}"',
             *(f'wrk.headers["{name}"] = "{value}"' for name, value in case.headers)]
    if case.unique:
        lines += ["local n, threads = 0, 0",  # `id` is set per thread by setup()
                  "function setup(thread) threads = threads + 1; thread:set('id', threads) end",
                  f'local template = "{body}"',
                  "function request() n = n + 1",
                  "  return wrk.format(nil, nil, nil,"
                  " string.format(template, ((id or 0) * 100000000 + n) % 1000000000)) end"]
    else:
        lines.append(f'wrk.body = "{body}"')
    lines.append(
        "function done(s, latency, _)\n"
        "  local e = s.errors\n"
        '  io.write(string.format("WRK %d %d %d %d %d %d\\n", s.requests, s.duration,\n'
        "    e.connect + e.read + e.write + e.timeout, e.status,\n"
        "    latency:percentile(50), latency:percentile(99)))\nend")
    return "\n".join(lines) + "\n"


def wrk_path() -> str:
    from tweetflow.app.stack.system_packages import WRK, ensure_command

    return ensure_command(WRK)


def run_wrk(wrk: str, url: str, case: Case, seconds: float, connections: int,
            server_pgid: int, prefix: str = f"/{SERVICE}") -> Result:
    """wrk for `seconds` on one thread (the other core is the server's), its figures with the
    server's and wrk's CPU per call."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(lua(case))
        script.flush()
        cmd = [wrk, "-t1", f"-c{case.connections or connections}", f"-d{seconds:g}s",
               "--latency", "-s", script.name, case.url or f"{url}{prefix}/{case.method}"]
        before = group_cpu_seconds(server_pgid)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        output = proc.stdout.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)  # wait4, not wait: wrk's own rusage
        server_cpu = group_cpu_seconds(server_pgid) - before
    line = next((x for x in output.splitlines() if x.startswith("WRK ")), None)
    if os.waitstatus_to_exitcode(status) != 0 or line is None:
        raise RuntimeError(f"wrk failed: {output[-2000:]}")
    requests, duration_us, errors, non2xx, p50_us, p99_us = map(int, line.split()[1:])
    calls = max(1, requests)
    return Result(case.name, requests, errors + non2xx, duration_us / 1e6,
                  p50_us / 1000, p99_us / 1000,
                  client_cpu_us=(usage.ru_utime + usage.ru_stime) / calls * 1e6,
                  server_cpu_us=server_cpu / calls * 1e6)


def post(url: str, case: Case, body: bytes | None = None) -> bytes:
    request = urllib.request.Request(case.url or f"{url}/{SERVICE}/{case.method}",
                                     data=body or case.body,
                                     headers={"Content-Type": case.content_type,
                                              **dict(case.headers)})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def ensure_marts(settings: Settings) -> None:
    """dbt's stg_tweets and marts in the database (the ClickHouse case reads them), built once."""
    from bench.harness import run_dbt
    from bench.scenarios.query import MART_MODELS
    from tweetflow.clients import clickhouse_client

    client = clickhouse_client(settings)
    built = client.query("SELECT count() FROM system.tables WHERE database = {db:String} AND "
                         "name = 'engagement_daily'",
                         parameters={"db": settings.clickhouse_database}).result_rows[0][0]
    client.close()
    if not built:
        print("building stg_tweets and the marts with dbt (for the ClickHouse case)")
        with tempfile.TemporaryDirectory() as tmp:
            run_dbt(settings, "run", "--select", *MART_MODELS, work_dir=Path(tmp))


def wait_http(url: str, timeout: float) -> None:
    """Until something answers HTTP on `url` (any status: the floor has no /healthz)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def merge(name: str, runs: list[Result]) -> Result:
    """One Result over alternating rounds: calls, errors and seconds summed, CPU per call
    averaged by calls, p50 and p99 the worst round's (wrk reports no raw latencies)."""
    calls = sum(r.requests for r in runs) or 1
    return Result(name, sum(r.requests for r in runs), sum(r.errors for r in runs),
                  sum(r.seconds for r in runs), max(r.p50_ms for r in runs),
                  max(r.p99_ms for r in runs),
                  sum(r.client_cpu_us * r.requests for r in runs) / calls,
                  sum(r.server_cpu_us * r.requests for r in runs) / calls)


@dataclass
class ConnectRun:
    results: list[Result]  # the service's cases, then the floors'
    loads: list[float]  # the 1-minute load average before each round
    round_p99: dict[str, list[float]]  # result name -> each round's p99 (a result's is the worst)


def run_connect(settings: Settings, args: argparse.Namespace) -> ConnectRun:
    """Every case against the service and the cached ones against the floors, the cached ones in
    alternating rounds."""
    from bench import connect_floor

    wrk = wrk_path()
    ensure_marts(settings)
    all_cases = cases(time.time())
    port, http_port, floor_port = free_port(), free_port(), free_port()
    url, floor_url = f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{floor_port}"
    server = start_server(settings, port, args.processes, http_port)
    runs: dict[str, list[Result]] = {}
    loads: list[float] = []
    try:
        wait_http(url, 30)
        with tempfile.TemporaryDirectory() as tmp:
            answers = {}
            for name in ("json", "binary"):
                answers[name] = Path(tmp) / name
                answers[name].write_bytes(post(url, all_cases[name]))
            floor = connect_floor.start(floor_port, args.processes, answers["binary"],
                                        answers["json"])
            try:
                wait_http(floor_url, 30)
                time.sleep(1.0 if args.processes > 1 else 0.2)  # every worker started
                for _ in range(args.connect_rounds):
                    loads.append(os.getloadavg()[0])
                    for name in ("json", "binary"):
                        for who, target, proc, prefix in (
                                ("service", url, server, f"/{SERVICE}"),
                                ("connectrpc floor", floor_url, floor, f"/{SERVICE}"),
                                ("bare granian floor", floor_url, floor, "/bare")):
                            runs.setdefault(f"{who}:{name}", []).append(run_wrk(
                                wrk, target, all_cases[name], args.wrk_seconds,
                                args.wrk_connections, proc.pid, prefix))
            finally:
                _stop(floor)
        for name in ("uncached", "mentions", "clickhouse"):
            case = all_cases[name]  # a first call fails loudly if the service cannot answer it
            post(url, case, case.body % 0 if case.unique else None)
            loads.append(os.getloadavg()[0])
            runs[f"service:{name}"] = [run_wrk(wrk, url, all_cases[name], args.wrk_seconds,
                                               args.wrk_connections, server.pid)]
        direct = direct_case(settings, time.time())
        post(url, direct)  # fails loudly if ClickHouse cannot answer
        loads.append(os.getloadavg()[0])
        runs["direct"] = [run_wrk(wrk, url, direct, args.wrk_seconds, args.wrk_connections,
                                  server.pid)]
    finally:
        _stop(server)
    names = {k: (all_cases[k.split(":")[1]].name if k.startswith("service:")
                 else direct.name if k == "direct"
                 else f"{k.split(':')[0]}, {k.split(':')[1]} (no-op)") for k in runs}
    return ConnectRun([merge(names[k], v) for k, v in runs.items()], loads,
                      {names[k]: [r.p99_ms for r in v] for k, v in runs.items()})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wrk-seconds", type=float, default=6.0, help="seconds per wrk run")
    parser.add_argument("--wrk-connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--connect-rounds", type=int, default=3,
                        help="alternating service / floor wrk rounds of the cached cases")


def print_rows(results: list[Result]) -> None:
    for r in results:
        print(f"{r.name:<38} {r.requests:>9} {r.rps:>9.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} "
              f"{r.errors:>7} {r.server_cpu_us:>13.0f} us {r.client_cpu_us:>10.0f} us")


def verdict(results: list[Result]) -> tuple[bool, str]:
    json_hot = next(r for r in results if r.name == "Connect JSON, hot path, cached")
    ok = json_hot.rps >= TARGET_RPS and json_hot.p99_ms < TARGET_P99_MS and json_hot.errors == 0
    return ok, (f"Connect JSON hot path >= {TARGET_RPS:,} req/s, p99 < {TARGET_P99_MS:g} ms, no "
                f"errors: {json_hot.rps:,.0f} req/s, p99 {json_hot.p99_ms:.2f} ms, "
                f"{json_hot.errors} errors")


def print_gains(results: list[Result], args: argparse.Namespace) -> None:
    """How much lower the hot path's p50 is than ClickHouse's for the same question, at the same
    wrk connections, uncached and from the cache."""
    by_name = {r.name: r for r in results}
    direct = by_name["ClickHouse direct SQL, same question"]
    for name in ("Connect JSON, hot path, uncached", "Connect JSON, same question, cached"):
        r = by_name[name]
        print(f"{name}: p50 {100 * (1 - r.p50_ms / direct.p50_ms):.1f}% below ClickHouse direct "
              f"({r.p50_ms:.2f} vs {direct.p50_ms:.2f} ms, {args.wrk_connections} connections "
              f"each; req/s {r.rps:,.0f} vs {direct.rps:,.0f})")


def report(run: ConnectRun, args: argparse.Namespace) -> None:
    results, loads = run.results, run.loads
    print(f"\n{'Connect path (wrk)':<38} {'requests':>9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'errors':>7} {'server CPU/call':>16} {'wrk CPU/call':>13}")
    print_rows(results)
    print("p99 of each round, ms (the table shows the worst): " + "; ".join(
        f"{name}: {' / '.join(f'{v:.1f}' for v in values)}"
        for name, values in run.round_p99.items() if len(values) > 1))
    ok, text = verdict(results)
    print(f"\n{'PASS' if ok else 'FAIL'}  {text}")
    print_gains(results, args)
    print(f"(server processes: {args.processes}; wrk: 1 thread, {args.wrk_connections} "
          f"connections (8 for ClickHouse), {args.wrk_seconds:g} s per run, cached cases in "
          f"{args.connect_rounds} alternating rounds with the floor; 1-min load average "
          f"{min(loads):.1f}-{max(loads):.1f})")


if __name__ == "__main__":
    from bench.query_bench import main

    sys.exit(main(["--transports", "connect", *sys.argv[1:]]))
