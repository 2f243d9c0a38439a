"""A scenario's verdict: the stores (`stores`) against the truth (`truth.Truth`). ClickHouse and
Redis must both equal the unique input: rows collapsed as readers see them, per-minute counts and
hourly hashtag counts in the hot store, one `seen` entry per id."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench.harness.stores import clickhouse_counts, redis_state
from bench.harness.truth import Truth
from tweetflow.hot_keys import split_platform
from tweetflow.settings import Settings


def hot_minute_counts(state: dict[str, Any]) -> Counter[int]:
    """Tweets per minute, summed over the platforms."""
    out: Counter[int] = Counter()
    for k, v in state.items():
        if split_platform(k)[1].startswith("n:m:") and v:
            out[int(k.rsplit(":", 1)[1])] += v
    return out


def hot_hour_hashtags(state: dict[str, Any]) -> Counter[tuple[int, str]]:
    """Hashtags per hour, summed over the platforms."""
    out: Counter[tuple[int, str]] = Counter()
    for k, items in state.items():
        if split_platform(k)[1].startswith("z:hashtag:h:"):
            hour = int(k.rsplit(":", 1)[1])
            for member, score in items:
                if score:
                    out[(hour, member)] += score
    return out


def seen_ids(state: dict[str, Any]) -> int:
    return sum(v for k, v in state.items() if k.startswith("seen:"))


def diff_counters(expected: Counter, observed: Counter, limit: int = 5) -> list[str]:
    """Keys whose counts differ, first few, for a readable failure message."""
    keys = sorted(set(expected) | set(observed), key=str)
    bad = [f"{k}: expected {expected.get(k, 0)}, got {observed.get(k, 0)}"
           for k in keys if expected.get(k, 0) != observed.get(k, 0)]
    return bad[:limit] + ([f"... {len(bad) - limit} more"] if len(bad) > limit else [])


@dataclass
class Verdict:
    """Final state against the truth: ClickHouse and Redis must both equal the unique input."""

    ok: bool
    problems: list[str]
    clickhouse: dict[str, int]
    redis: dict[str, Any]


def verify(settings: Settings, truth: Truth) -> Verdict:
    ch = clickhouse_counts(settings)
    state = redis_state(settings)
    problems = []
    expected_final = len(truth.tweets)
    if ch["raw_final"] != expected_final:
        problems.append(f"ClickHouse raw_tweets FINAL has {ch['raw_final']:,} rows, the input "
                        f"{expected_final:,} unique Tweets")
    if ch["deleted_ids"] != len(truth.deleted):
        problems.append(f"ClickHouse tweet_deletes has {ch['deleted_ids']:,} ids, the input "
                        f"{len(truth.deleted):,}")
    if ch["live_tweets"] != len(truth.live()):
        problems.append(f"ClickHouse live Tweets {ch['live_tweets']:,} != {len(truth.live()):,}")
    minutes = diff_counters(truth.minute_counts(), hot_minute_counts(state))
    if minutes:
        problems.append("Redis per-minute counts differ: " + "; ".join(minutes))
    tags = diff_counters(truth.hour_hashtags(), hot_hour_hashtags(state))
    if tags:
        problems.append("Redis hourly hashtag counts differ: " + "; ".join(tags))
    if seen_ids(state) != len(truth.tweets | dict.fromkeys(truth.deleted)):
        problems.append(f"Redis `seen` holds {seen_ids(state):,} ids, the input "
                        f"{len(truth.tweets | dict.fromkeys(truth.deleted)):,}")
    return Verdict(not problems, problems, ch, state)
