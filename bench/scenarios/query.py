"""Query: the same questions answered by the hot path (Redis), the dbt marts and raw ClickHouse
(`stg_tweets`), with their latency distributions; the answers must agree exactly. Then the gRPC
service end to end (uncached and cached) and ghz throughput (bench/query_bench.py), and the service
over Connect with wrk beside a no-op Connect floor (bench/connect_bench.py).

The three store paths run the query service's own readers and query builders
(query_service.hot_store, query_service.marts) over closed, hour-aligned windows inside the hot
horizon, so each store answers the whole question and the numbers are comparable one to one.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import harness
from bench.report import ScenarioResult, percentile, pyplot, save
from bench.scenarios import Context
from query_service import marts
from query_service.planner import HOUR, Part, Source

NAME = "query"
TITLE = ("Same questions via the hot path, the marts and raw ClickHouse; gRPC (ghz) and Connect (wrk) "
         "throughput")
MART_MODELS = ("stg_tweets", "entity_counts_hourly", "entity_counts_daily", "tweet_volume_hourly",
               "tweet_volume_minutely", "user_activity_daily", "engagement_daily")


def _normalize_top(rows) -> list[tuple[str, int]]:
    return [(str(k), int(n)) for k, n in rows]


def _by_bucket(rows) -> dict[int, int]:
    out: dict[int, int] = {}
    for row in rows:
        out[int(row[0])] = out.get(int(row[0]), 0) + int(row[-1])
    return {b: n for b, n in out.items() if n}


class Question:
    """One question: how each store answers it (hot: async on the service's HotStore)."""

    def __init__(self, name: str, start: int, end: int, hot: Callable[[Any, list[Part]], Awaitable],
                 sql: Callable[[list[Part]], marts.Query], normalize_hot, normalize_rows) -> None:
        self.name, self.start, self.end = name, start, end
        self.hot, self.sql = hot, sql
        self.normalize_hot, self.normalize_rows = normalize_hot, normalize_rows

    def parts(self, source: Source) -> list[Part]:
        return [Part(source, self.start, self.end, 0 if source is Source.RAW else HOUR)]


def questions(hour: int, top_tag: str) -> list[Question]:
    return [
        Question("top 10 hashtags, last 3 h", hour - 3 * HOUR, hour,
                 lambda store, parts: store.top("hashtag", parts, 10),
                 lambda parts: marts.top_entities("hashtag", parts, 10),
                 _normalize_top, _normalize_top),
        Question("Tweets per hour, last 12 h", hour - 12 * HOUR, hour,
                 lambda store, parts: store.volume(parts),
                 lambda parts: marts.volume(parts, HOUR),
                 lambda rows: {b: r.count for b, r in rows.items() if r.count},
                 _by_bucket),
        Question(f"hourly series of #{top_tag}, last 24 h", hour - 24 * HOUR, hour,
                 lambda store, parts: store.series("hashtag", top_tag, parts),
                 lambda parts: marts.entity_series("hashtag", top_tag, parts, HOUR),
                 lambda rows: {b: n for b, n in rows.items() if n}, _by_bucket),
    ]


async def _time_hot(settings, q: Question, n: int) -> tuple[list[float], Any]:
    from query_service.hot_store import HotStore, connect

    client = connect(settings)
    store = HotStore(client, settings.redis_prefix, settings.hot_shard_count)
    parts = q.parts(Source.HOT)
    latencies, answer = [], None
    try:
        for _ in range(n):
            began = time.perf_counter()
            answer = await q.hot(store, parts)
            latencies.append((time.perf_counter() - began) * 1000)
    finally:
        await client.aclose()
    return latencies, q.normalize_hot(answer)


def _time_sql(client, q: Question, source: Source, n: int) -> tuple[list[float], Any]:
    query = q.sql(q.parts(source))
    latencies, rows = [], []
    for _ in range(n):
        began = time.perf_counter()
        rows = client.query(query.sql, parameters=query.params).result_rows
        latencies.append((time.perf_counter() - began) * 1000)
    return latencies, q.normalize_rows(rows)


def _grpc_latencies(port: int, request_factory, method: str, n: int) -> tuple[list[float], Any]:
    import grpc

    from tweetflow.v1 import analytics_pb2_grpc as pb_grpc

    latencies, answer = [], None
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = getattr(pb_grpc.AnalyticsServiceStub(channel), method)
        metadata = (("x-api-key", harness.BENCH_API_KEY),)
        for i in range(n):
            request = request_factory(i)
            began = time.perf_counter()
            answer = call(request, metadata=metadata, timeout=10)
            latencies.append((time.perf_counter() - began) * 1000)
    return latencies, answer


def run(ctx: Context) -> ScenarioResult:
    from bench import query_bench
    from tweetflow.clients import clickhouse_client
    from tweetflow.v1 import analytics_pb2 as pb

    tweets, n, ghz_requests = (40_000, 60, 4_000) if ctx.quick else (200_000, 300, 30_000)
    result = ScenarioResult(NAME, TITLE)
    with harness.namespace(ctx.base, NAME) as ns:
        s = ns.settings
        ctx.progress(0.02, f"seeding {tweets:,} Tweets over 25 h")
        query_bench.seed(s, tweets, hours=25)
        ctx.progress(0.25, "dbt: staging and marts")
        with tempfile.TemporaryDirectory() as tmp:
            dbt_s = harness.run_dbt(s, "run", "--select", *MART_MODELS, work_dir=Path(tmp))
        result.add("dbt run of stg_tweets and the marts the service reads", dbt_s, "s")
        hour = int(time.time()) // HOUR * HOUR
        client = clickhouse_client(s, autogenerate_session_id=False)
        top_query = marts.top_entities("hashtag", [Part(Source.RAW, hour - 24 * HOUR, hour, 0)], 1)
        top = client.query(top_query.sql, parameters=top_query.params).result_rows
        top_tag = top[0][0] if top else "ai"
        latencies: dict[str, dict[str, list[float]]] = {}
        answers: dict[str, Any] = {}
        qs = questions(hour, top_tag)
        for i, q in enumerate(qs):
            ctx.progress(0.35 + 0.3 * i / len(qs), q.name)
            hot_ms, hot_answer = asyncio.run(_time_hot(s, q, n))
            mart_ms, mart_answer = _time_sql(client, q, Source.MART, n)
            raw_ms, raw_answer = _time_sql(client, q, Source.RAW, n)
            answers[q.name] = hot_answer
            latencies[q.name] = {"hot (Redis)": hot_ms, "marts": mart_ms, "raw (stg_tweets)": raw_ms}
            agree = hot_answer == mart_answer == raw_answer and bool(hot_answer)
            result.check(f"{q.name}: hot, marts and raw agree", agree,
                         "identical" if agree else
                         f"hot {str(hot_answer)[:120]} / marts {str(mart_answer)[:120]} / "
                         f"raw {str(raw_answer)[:120]}")
            hot50 = percentile(hot_ms, 50)
            for path, ms in latencies[q.name].items():
                result.add(f"{q.name}: {path} p50 / p99",
                           f"{percentile(ms, 50):.2f} / {percentile(ms, 99):.2f}", "ms")
            result.add(f"{q.name}: marts p50 / hot p50", percentile(mart_ms, 50) / hot50, "x",
                       "> 1 (hot faster)", percentile(mart_ms, 50) > hot50)
            result.add(f"{q.name}: raw p50 / hot p50", percentile(raw_ms, 50) / hot50, "x",
                       "> 1 (hot faster)", percentile(raw_ms, 50) > hot50)
        client.close()

        ctx.progress(0.68, "gRPC end to end")
        server, port = harness.start_query_server(s, ctx.path("query-server.log"))
        try:
            def volume(i: int, unique: bool = True) -> Any:
                r = pb.TweetVolumeRequest(granularity=pb.GRANULARITY_HOUR)
                r.start.seconds, r.end.seconds = hour - 12 * HOUR, hour
                r.start.nanos = i if unique else 0
                return r

            uncached, answer = _grpc_latencies(port, volume, "TweetVolume", n)
            cached, _ = _grpc_latencies(port, lambda i: volume(i, False), "TweetVolume", n)
            expected = sum(answers[qs[1].name].values())
            latencies["gRPC TweetVolume, 12 h"] = {"uncached": uncached, "cached": cached}
            result.add("gRPC TweetVolume 12 h, uncached: p50 / p99",
                       f"{percentile(uncached, 50):.2f} / {percentile(uncached, 99):.2f}", "ms")
            result.add("gRPC TweetVolume 12 h, cached: p50 / p99",
                       f"{percentile(cached, 50):.2f} / {percentile(cached, 99):.2f}", "ms")
            result.check("gRPC answer from the hot path and equal to the stores'",
                         answer.origin == pb.ANSWER_SOURCE_HOT and answer.total == expected,
                         f"origin {pb.AnswerSource.Name(answer.origin)}, total {answer.total:,} "
                         f"(expected {expected:,})")
            ctx.progress(0.75, f"ghz: {ghz_requests:,} TrendingHashtags calls")
            ghz = query_bench.ghz_path(s)
            ghz_result, _ = query_bench.run_ghz(ghz, port, ghz_requests, 16, 4, 1)
            result.add("ghz TrendingHashtags (1 h): throughput", ghz_result.rps, "req/s")
            result.add("ghz TrendingHashtags: p50 / p99",
                       f"{ghz_result.p50_ms:.2f} / {ghz_result.p99_ms:.2f}", "ms")
            result.check("ghz: no errors", ghz_result.errors == 0,
                         f"{ghz_result.errors} of {ghz_result.requests:,}")
            result.note("ghz repeats one request, so after the first call nearly every answer "
                        "comes from the result cache (in-process front, then Redis): the figure is "
                        "the service's ceiling, 16 concurrent calls over 4 connections, ghz on one "
                        "core, one server process, both on the same two cores.")
        finally:
            harness.stop_process(server)
        ctx.progress(0.82, "wrk: the service over Connect beside a no-op Connect floor")
        _connect(ctx, s, result)
        result.note(f"{tweets:,} synthetic Tweets over the last 25 h, written by the consumers' own "
                    f"sinks; {n} sequential calls per path and question; the hot path timed through "
                    "the service's asyncio HotStore, marts and raw through clickhouse-connect "
                    "(HTTP to the ClickHouse endpoint).")
        result.plots.append(_plot(ctx, latencies))
    return result


def _connect(ctx: Context, settings, result: ScenarioResult) -> None:
    """The service over Connect with wrk (bench/connect_bench.py): cached JSON and binary beside
    the no-op Connect floor, uncached hot path and ClickHouse path; the 10,000 req/s, p99 10 ms
    target applies to cached JSON."""
    import argparse

    from bench import connect_bench

    args = argparse.Namespace(processes=2, wrk_seconds=3.0 if ctx.quick else 6.0,
                              wrk_connections=32, connect_rounds=2 if ctx.quick else 3)
    run = connect_bench.run_connect(settings, args)
    results, loads = run.results, run.loads
    for r in results:
        result.add(f"{r.name}: req/s", round(r.rps), "req/s")
        result.add(f"{r.name}: p50 / p99", f"{r.p50_ms:.2f} / {r.p99_ms:.2f}", "ms")
        result.add(f"{r.name}: server CPU per call", round(r.server_cpu_us), "us")
        result.check(f"{r.name}: no errors", r.errors == 0, f"{r.errors} of {r.requests:,}")
    ok, text = connect_bench.verdict(results)
    result.add("Connect JSON hot path target", text, "", ">= 10,000 req/s, p99 < 10 ms", ok)
    result.note(f"wrk: 1 thread, {args.wrk_connections} connections (8 for ClickHouse), "
                f"{args.wrk_seconds:g} s per run, 2 server processes each serving gRPC and "
                f"Connect; 1-min load average {min(loads):.1f}-{max(loads):.1f}.")


def _plot(ctx: Context, latencies: dict[str, dict[str, list[float]]]) -> str:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(latencies), figsize=(4 * len(latencies), 4.2))
    for ax, (name, paths) in zip(axes, latencies.items(), strict=True):
        ax.boxplot(list(paths.values()), showfliers=True)
        ax.set_xticks(range(1, len(paths) + 1), list(paths), rotation=20, fontsize=8)
        ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("latency (ms)")
    return save(fig, ctx.out_dir, "query-latency.png")
