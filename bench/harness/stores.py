"""What the stores hold, read back for comparison: ClickHouse rows and counts, every hot key of a
namespace, the offsets the hot sink has applied, the dead letters.

Readers only; what the content should be is `truth.Truth` (the bench) or the tests' own
`expect` (tests/streaming/streaming_support.py), and the comparisons are in `verification`.
"""

from __future__ import annotations

from typing import Any

from streaming.offsets import KafkaRecord, read_topic
from tweetflow.settings import Settings


def clickhouse_rows(settings: Settings, sql: str) -> list[tuple]:
    """The rows of one query against the namespace's database."""
    from tweetflow.clients import clickhouse_client

    client = clickhouse_client(settings)
    try:
        return [tuple(row) for row in client.query(sql).result_rows]
    finally:
        client.close()


def clickhouse_counts(settings: Settings) -> dict[str, int | str]:
    """Counts of the raw tables' content (FINAL: collapsed as every reader sees it), and
    `newest_insert`, the newest `ingested_at`, which moves exactly when rows are inserted (merges
    keep the newest version), so a replay that rewrote nothing leaves it unchanged. Row counts
    without FINAL are not reported: background merges change them at any moment."""
    (raw,) = clickhouse_rows(
        settings, "SELECT uniqExact(tweet_id), toString(max(ingested_at)) FROM raw_tweets")
    (final,) = clickhouse_rows(
        settings, "SELECT count(), sum(cityHash64(tweet_id, author_id, created_at, kind, lang, "
                  "text, hashtags, mentions, cashtags, domains)) FROM raw_tweets FINAL")
    (deletes,) = clickhouse_rows(
        settings, "SELECT uniqExact(tweet_id), toString(max(ingested_at)) FROM tweet_deletes")
    ((live,),) = clickhouse_rows(
        settings, "SELECT count() FROM raw_tweets FINAL WHERE tweet_id NOT IN "
                  "(SELECT tweet_id FROM tweet_deletes)")
    return {"raw_ids": int(raw[0]), "raw_final": int(final[0]), "final_checksum": int(final[1]),
            "deleted_ids": int(deletes[0]), "live_tweets": int(live),
            "newest_insert": f"{raw[1]} / {deletes[1]}"}


STORED_ROW_COUNTS = ("newest_insert",)


def redis_state(settings: Settings) -> dict[str, Any]:
    """Every hot aggregate of the namespace, keyed without the prefix: counters, sorted sets (as
    sorted item lists), HLL cardinalities, `seen` sizes, watermarks."""
    from tweetflow.clients import redis_client

    r = redis_client(settings, decode_responses=True)
    prefix = settings.redis_prefix + ":"
    state: dict[str, Any] = {}
    keys = sorted(k for k in r.scan_iter(match=prefix + "*", count=2000)
                  if not k.startswith(prefix + "q:"))  # the query service's result cache
    pipe = r.pipeline(transaction=False)
    kinds = []
    for key in keys:
        kind = key[len(prefix):].split(":", 1)[0]
        kinds.append(kind)
        if kind == "n":
            pipe.get(key)
        elif kind == "z":
            pipe.zrange(key, 0, -1, withscores=True)
        elif kind == "u":
            pipe.pfcount(key)
        elif kind == "seen":
            pipe.hlen(key)
        else:
            pipe.hgetall(key)
    for key, kind, value in zip(keys, kinds, pipe.execute(), strict=True):
        name = key[len(prefix):]
        if kind == "n":
            state[name] = int(value)
        elif kind == "z":
            state[name] = sorted((m, int(s)) for m, s in value)
        else:
            state[name] = value
    return state


def redis_watermarks(settings: Settings, r=None) -> dict[int, int]:
    """The last offset the hot sink applied, per partition of the raw topic (its watermarks)."""
    from tweetflow.clients import redis_client
    from tweetflow.hot_keys import watermark_key

    r = r or redis_client(settings)
    raw = r.hgetall(watermark_key(settings.redis_prefix, settings.topic_raw))
    return {int(p): int(o) for p, o in raw.items() if p.isdigit()}  # skip the topic_id field


def dlq_records(settings: Settings) -> list[KafkaRecord]:
    return read_topic(settings, settings.topic_dlq)
