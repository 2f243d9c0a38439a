"""What day partitions cost the marts, against the month partitions they had.

    .venv/bin/python -m bench.mart_partitions [--days 7300] [--per-day 200] [--repeat 15]

Why the marts have day partitions: a rebuilt day replaces its partition in one step
(dbt_project/macros/replace_window.sql). The price is one partition (at least one part) per day of
history, which ClickHouse reads part by part. This builds the same hashtag-per-day table twice on
the configured ClickHouse, in a scratch database that is dropped afterwards: partitioned by month
and by day, 20 years by default, and times a full build and three questions (a week, a year, all).
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench import harness
from tweetflow.clients import clickhouse_client
from tweetflow.settings import get_settings

KEYS = {"month": "toYYYYMM(day)", "week": "toMonday(day)", "day": "toYYYYMMDD(day)"}
QUESTIONS = {
    "a week (total)": "SELECT sum(count_tweets) FROM {t} WHERE day >= '2024-03-01' "
                      "AND day < '2024-03-08'",
    "a year (top 10 hashtags)": "SELECT hashtag, sum(count_tweets) AS s FROM {t} "
                                "WHERE day >= '2024-01-01' AND day < '2025-01-01' "
                                "GROUP BY hashtag ORDER BY s DESC LIMIT 10",
    "all days (total)": "SELECT sum(count_tweets) FROM {t}",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7300, help="days of history (default: %(default)s)")
    parser.add_argument("--per-day", type=int, default=200, help="rows a day (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=15, help="runs per question (default: %(default)s)")
    args = parser.parse_args(argv)
    with harness.namespace(get_settings(), "mart_partitions") as ns:
        client = clickhouse_client(ns.settings, send_receive_timeout=1800)
        try:
            print(f"{args.days:,} days x {args.per_day} rows; median of {args.repeat} runs")
            print(f"{'':28}" + "".join(f"{name:>12}" for name in KEYS))
            builds = {name: _build(client, name, key, args) for name, key in KEYS.items()}
            print(f"{'full build (s)':28}" + "".join(f"{builds[n]:>12.2f}" for n in KEYS))
            for question, sql in QUESTIONS.items():
                times = {n: _median(client, sql.format(t=f"mart_{n}"), args.repeat) for n in KEYS}
                print(f"{question + ' (ms)':28}" + "".join(f"{times[n]:>12.1f}" for n in KEYS))
        finally:
            client.close()


def _build(client, name: str, key: str, args: argparse.Namespace) -> float:
    client.command(f"CREATE TABLE mart_{name} (day Date, hashtag String, count_tweets UInt64) "
                   f"ENGINE = MergeTree PARTITION BY {key} ORDER BY (hashtag, day)")
    began = time.perf_counter()
    client.command(f"INSERT INTO mart_{name} SELECT toDate('2006-03-21') + intDiv(number, "
                   f"{args.per_day}), concat('h', toString(number % {args.per_day})), number % 7 "
                   f"FROM numbers({args.days * args.per_day}) "
                   "SETTINGS max_partitions_per_insert_block = 0")
    return time.perf_counter() - began


def _median(client, sql: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        client.query(sql)
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


if __name__ == "__main__":
    main()
