"""Archive backfill: ten years of Tweets consumed in one run, every one stored; its rate beside the
same number of messages shaped like live traffic (event times over the last hour), in the same run.

    .venv/bin/python -m bench.runner archive [--quick]   (also part of `tweetflow bench`)

Why: a batch of an archive touches one raw_tweets partition per day, thousands per batch, where a
live batch touches one or two. A server refuses an INSERT block spanning more than 100 partitions
(and the embedded endpoint once acknowledged such inserts without storing them), so the ClickHouse
sink splits a batch by day. The cost of that split, and of one new part per day touched, is what
this scenario measures: the archive's sustained rate against the live-shaped one.
"""

from __future__ import annotations

import time

from bench import harness
from bench.report import ScenarioResult, rate_between
from bench.scenarios import Context
from streaming.consume_cli import default_workers
from tweetflow.clients import clickhouse_client
from tweetflow.settings import Settings

NAME = "archive"
TITLE = "Archive backfill: ten years in one run, stored whole; rate vs live-shaped messages"
ARCHIVE_HOURS = 10 * 365.25 * 24
SHAPES = (("live-shaped (last hour)", 1.0), ("archive (ten years)", ARCHIVE_HOURS))


def run(ctx: Context) -> ScenarioResult:
    messages = int(ctx.options.get("messages") or (40_000 if ctx.quick else 150_000))
    workers = int(ctx.options.get("workers") or default_workers())
    result = ScenarioResult(NAME, TITLE)
    rates = {}
    for step, (label, hours) in enumerate(SHAPES):
        ctx.progress(step / len(SHAPES), f"{label}: {messages:,} messages")
        rates[label] = _one_run(ctx, result, label, hours, messages, workers)
    live, archive = (rates[label] for label, _ in SHAPES)
    result.add("archive rate / live-shaped rate", archive / live * 100 if live else 0, "%")
    result.note(f"{messages:,} synthetic messages per run (~3% deletes), {workers} workers; the "
                "rate is the sustained one (10%→90% of the messages applied).")
    return result


def _one_run(ctx: Context, result: ScenarioResult, label: str, hours: float, messages: int,
             workers: int) -> float:
    with harness.namespace(ctx.base, "archive") as ns:
        s = ns.settings
        harness.produce(s, "--rate", "0", "--duration", "0", "--count", str(messages // 2),
                        "--history-hours", str(hours), processes=2,
                        log_path=ctx.path("archive-loadgen.log"))
        consumers = harness.Consumers(s, ctx.path("archive-consumers.log"))
        began = time.monotonic()
        consumers.start(workers)
        done, points = harness.wait_applied(s, timeout=900)
        codes = consumers.stop()
        truth = harness.Truth.of(harness.read_topic(s))
        ch = harness.clickhouse_counts(s)
        days = _days(s)
        rate = rate_between([(t - began, n) for t, n in points], 0.1, 0.9)
        result.check(f"{label}: all applied, workers exited 0", done and set(codes) == {0},
                     f"exit codes {codes}")
        result.check(f"{label}: raw_tweets FINAL = unique Tweets sent, deletes all stored",
                     ch["raw_final"] == len(truth.tweets) and ch["deleted_ids"] == len(truth.deleted),
                     f"{ch['raw_final']:,}/{len(truth.tweets):,} Tweets, "
                     f"{ch['deleted_ids']:,}/{len(truth.deleted):,} deletes, over {days:,} days")
        result.add(f"{label}: sustained", rate, "msg/s")
        return rate


def _days(settings: Settings) -> int:
    """Day partitions of raw_tweets the run wrote into."""
    client = clickhouse_client(settings)
    try:
        return int(client.command("SELECT uniqExact(toDate(created_at)) FROM raw_tweets"))
    finally:
        client.close()
