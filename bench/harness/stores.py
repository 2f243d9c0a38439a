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
    """Every hot aggregate of the namespace, keyed without the prefix and summed over the shards
    (tweetflow/hot_keys.py): counters, sorted sets (as sorted item lists), HLL cardinalities (of
    the shards' union), dedup sizes (ids in the `seen` hashes), watermarks. A platform other
    than X keeps its segment (`bluesky:n:m:60`)."""
    from tweetflow.clients import redis_client

    r = redis_client(settings, decode_responses=True)
    prefix = settings.redis_prefix + ":"
    names: dict[str, list[str]] = {}
    for key in r.scan_iter(match=prefix + "*", count=2000):
        name = _unsharded(key[len(prefix):])
        if not name.startswith(("q:", "sync")) and not _bookkeeping(name):
            names.setdefault(name, []).append(key)  # not the query service's cache; a WAIT counter
    pipe = r.pipeline(transaction=False)
    for name, keys in sorted(names.items()):
        kind = _kind(name)
        for key in keys:
            if kind == "n":
                pipe.get(key)
            elif kind == "z":
                pipe.zrange(key, 0, -1, withscores=True)
            elif kind == "seen":
                pipe.hlen(key)
            elif kind != "u":
                pipe.hgetall(key)
    replies = iter(pipe.execute())
    state: dict[str, Any] = {}
    for name, keys in sorted(names.items()):
        kind = _kind(name)
        if kind == "u":
            state[name] = hll_union_count(settings, keys)
            continue
        values = [next(replies) for _ in keys]
        if kind == "z":
            totals: dict[str, int] = {}
            for value in values:
                for member, score in value:
                    totals[member] = totals.get(member, 0) + int(score)
            state[name] = sorted(totals.items())
        elif kind in ("n", "seen"):
            state[name] = sum(int(v or 0) for v in values)
        else:
            state[name] = {f: v for value in values for f, v in value.items()}
    return state


def _kind(name: str) -> str:
    """What a key holds, from its name after the prefix and shard tag: `n`, `z`, `u`, `seen`..."""
    from tweetflow.hot_keys import split_platform

    return split_platform(name)[1].split(":", 1)[0]


def _bookkeeping(name: str) -> bool:
    """The hot tier's history and rebuilds (tweetflow/hot_history.py): when and how it was made
    complete, which differs between two namespaces holding the same counts."""
    from tweetflow.hot_history import HEAL_TOPIC_SUFFIX

    return name.startswith(("history:", "heal:", "heal-lease:")) or name.endswith(
        HEAL_TOPIC_SUFFIX)


def _unsharded(name: str) -> str:
    """A key's name after the prefix without its shard's hash tag: `{s3.47}:n:m:60` -> `n:m:60`."""
    return name.split(":", 1)[1] if name.startswith("{") else name


def hll_union_count(settings: Settings, keys: list[str]) -> int:
    """PFCOUNT of the union of HyperLogLogs that may sit in different cluster slots: copied under
    one hash tag first (PFCOUNT of several keys needs them in one slot)."""
    from tweetflow.clients import redis_client

    r = redis_client(settings)
    if len(keys) == 1:
        return int(r.pfcount(keys[0]))
    scratch = [f"{settings.redis_prefix}:{{hll}}:q:{i}" for i in range(len(keys))]
    try:
        for key, copy in zip(keys, scratch, strict=True):
            r.set(copy, r.get(key) or b"", ex=60)
        return int(r.pfcount(*scratch))
    finally:
        r.delete(*scratch)


def redis_watermarks(settings: Settings, r=None) -> dict[int, int]:
    """The last offset the hot sink applied, per partition of the raw topic (its watermarks, in
    each partition's shard)."""
    from tweetflow.clients import redis_client
    from tweetflow.hot_keys import watermark_key

    r = r or redis_client(settings)
    out: dict[int, int] = {}
    for shard in range(settings.hot_shard_count):
        raw = r.hgetall(watermark_key(settings.redis_prefix, settings.topic_raw, shard))
        out.update({int(p): int(o) for p, o in raw.items() if p.isdigit()})  # skip topic_id
    return out


def dlq_records(settings: Settings) -> list[KafkaRecord]:
    return read_topic(settings, settings.topic_dlq)
