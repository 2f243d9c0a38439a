"""`tweetflow lag`: the consumer group's lag per partition and in total (streaming.offsets), as a
table or, with `--json`, as one JSON object for scripts and monitoring checks. The table ends with
the hot tier's state: complete, or how far its rebuild got (streaming.heal_cli)."""

from __future__ import annotations

import argparse
import json

from streaming.offsets import PartitionLag, group_lag
from tweetflow.settings import get_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group", default=None,
                        help="consumer group (default: the settings' group, tweetflow-consumers)")
    parser.add_argument("--topic", default=None,
                        help="topic (default: the settings' raw topic, tweets.raw)")
    parser.add_argument("--json", action="store_true",
                        help="print {group, topic, total, partitions: [{partition, committed, "
                             "low, high, lag}]}; committed -1 = nothing committed")


def as_json(group: str, topic: str, rows: list[PartitionLag]) -> str:
    return json.dumps({
        "group": group, "topic": topic, "total": sum(r.lag for r in rows),
        "partitions": [{"partition": r.partition, "committed": r.committed, "low": r.low,
                        "high": r.high, "lag": r.lag} for r in rows]})


def run(args: argparse.Namespace) -> int:
    """Entry point of `tweetflow lag`."""
    settings = get_settings()
    group, topic = args.group or settings.consumer_group, args.topic or settings.topic_raw
    rows = group_lag(settings, group, topic)
    if args.json:
        print(as_json(group, topic, rows))
        return 0
    print(f"{'partition':>9} {'committed':>12} {'high':>12} {'lag':>10}")
    for r in rows:
        print(f"{r.partition:>9} {r.committed:>12} {r.high:>12} {r.lag:>10}")
    print(f"{'total':>9} {'':>12} {'':>12} {sum(r.lag for r in rows):>10}")
    if topic == settings.topic_raw:  # the hot tier's history (`tweetflow heal` for more)
        from streaming.heal_cli import describe

        print("\n".join(describe(settings)))
    return 0
