"""The truth a scenario compares the stores with: what a correct pipeline must end with, computed
from the messages in the topic.

It parses with the pipeline's own `streaming.pipeline.parse_records` (the bench measures the
pipeline; the parser has tests of its own). The streaming tests keep a separate expectation
(`expect` in tests/streaming/streaming_support.py) on purpose: built from `parse_payload` and the
documented semantics only (hot horizon, first copy counts, deletes subtract), so it stays
independent of the sinks and the batch code it checks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from streaming.offsets import KafkaRecord


@dataclass
class Truth:
    """What a correct pipeline must end with, computed from the messages in the topic."""

    messages: int = 0
    value_bytes: int = 0
    tweets: dict[int, Any] = field(default_factory=dict)  # tweet id -> canonical Tweet (first copy)
    deleted: set[int] = field(default_factory=set)
    dead_letters: dict[tuple[int, int], str] = field(default_factory=dict)  # (p, o) -> reason_code
    tweet_events: int = 0  # Tweet events including repeated copies
    delete_events: int = 0

    @classmethod
    def of(cls, records: list[KafkaRecord]) -> Truth:
        from streaming.pipeline import Record, parse_records

        located, letters = parse_records(
            [Record(r.partition, r.offset, r.key, r.value) for r in records])
        return cls.parsed(records, located, letters)

    @classmethod
    def parsed(cls, records: list[KafkaRecord], located, letters) -> Truth:
        """From records already parsed by streaming.pipeline.parse_records."""
        truth = cls(messages=len(records), value_bytes=sum(len(r.value or b"") for r in records))
        for _, _, event in located:
            if event.kind == "tweet":
                truth.tweet_events += 1
                truth.tweets.setdefault(event.tweet_id, event.tweet)
            else:
                truth.delete_events += 1
                truth.deleted.add(event.tweet_id)
        truth.dead_letters = {(d.partition, d.offset): d.reason_code for d in letters}
        return truth

    def live(self) -> dict[int, Any]:
        return {i: t for i, t in self.tweets.items() if i not in self.deleted}

    def minute_counts(self) -> Counter[int]:
        from tweetflow.hot_keys import bucket_start

        return Counter(bucket_start(t.created_at.timestamp(), "m") for t in self.live().values())

    def hour_hashtags(self) -> Counter[tuple[int, str]]:
        from tweetflow.hot_keys import bucket_start

        out: Counter[tuple[int, str]] = Counter()
        for t in self.live().values():
            hour = bucket_start(t.created_at.timestamp(), "h")
            for tag in {h.lower() for h in t.hashtags}:
                out[(hour, tag)] += 1
        return out
