"""`tweetflow lag`: the consumer group's lag per partition and in total (streaming.offsets)."""

from __future__ import annotations

import argparse

from streaming.offsets import group_lag
from tweetflow.settings import get_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group", default=None)
    parser.add_argument("--topic", default=None)


def run(args: argparse.Namespace) -> int:
    """Entry point of `tweetflow lag`."""
    settings = get_settings()
    rows = group_lag(settings, args.group, args.topic)
    print(f"{'partition':>9} {'committed':>12} {'high':>12} {'lag':>10}")
    for r in rows:
        print(f"{r.partition:>9} {r.committed:>12} {r.high:>12} {r.lag:>10}")
    print(f"{'total':>9} {'':>12} {'':>12} {sum(r.lag for r in rows):>10}")
    return 0
