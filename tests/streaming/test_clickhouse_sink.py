"""streaming.sinks.clickhouse against the real endpoint: every column of what it writes reads back
as the Event said (the awkward values included), and the rows equal those clickhouse-connect's
Native insert (the sink's previous way) stores for the same events."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from streaming.normalize import lowered
from streaming.pipeline import Record, parse_records
from streaming.sinks.clickhouse import ClickHouseSink
from streaming.synthetic import generate
from tweetflow.clients import clickhouse_client
from tweetflow.model import Event, Tweet
from tweetflow.schema import RAW_TWEET_COLUMNS, RAW_TWEETS, TWEET_DELETES
from tweetflow.settings import Settings

U64_MAX = 2**64 - 1
U32_MAX = 2**32 - 1
LOWER_CASED = {"hashtags", "mentions", "cashtags", "domains"}  # stored lower-cased
AWKWARD_TEXT = (' \tHe said "hi" \\ she said \'bye\'\nline two\r\n\ttab \x00 nul \u2028 sep 😀🇫🇷 é ñ 中文 '
                '], [ {"a": 1} FORMAT JSON \\n literally \\\n')


def full_tweet() -> Tweet:
    """Every field set, to values at the edges of their column types."""
    return Tweet(
        tweet_id=U64_MAX, author_id=U64_MAX - 1, author_handle="Ünïcode_Hand\"le",
        created_at=datetime(2024, 2, 29, 23, 59, 59, 999000, tzinfo=UTC), lang="ja",
        text=AWKWARD_TEXT, kind="quote", conversation_id=2**63, replied_to_id=2**63 - 1,
        retweeted_id=1, quoted_id=U64_MAX - 2, in_reply_to_user_id=U64_MAX - 3,
        hashtags=("MixedCase", "ÉTÉ", "日本"), mentions=("Some_User", "x"), cashtags=("TSLA",),
        urls=("https://example.com/a?b=1&c=\"2\"", "https://ex.org/ü"),
        domains=("Example.com", "ex.org"), retweet_count=U32_MAX, reply_count=1,
        like_count=U32_MAX - 1, quote_count=7, impression_count=U64_MAX, source="Twitter for iPhone",
        country="FR", possibly_sensitive=True, edit_history_tweet_ids=(U64_MAX, 2**63, 1),
        matching_rules=("rule \"one\"", "règle\n2"),
    )


def minimal_tweet() -> Tweet:
    """Defaults everywhere: empty strings and arrays, zeros, False."""
    return Tweet(tweet_id=5, author_id=0, author_handle="", text="", lang="", kind="original",
                 created_at=datetime(2025, 1, 1, 0, 0, 0, tzinfo=UTC))


def offset_tweet() -> Tweet:
    """created_at with a non-UTC offset and microseconds: the instant is stored, to the ms."""
    cet = timezone(timedelta(hours=2))
    return Tweet(tweet_id=6, author_id=1, author_handle="h", text="t", lang="en", kind="reply",
                 created_at=datetime(2025, 6, 1, 2, 30, 0, 123456, tzinfo=cet))


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ms(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _select(settings: Settings, sql: str) -> list[dict]:
    client = clickhouse_client(settings)
    try:
        result = client.query(sql)
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
    finally:
        client.close()


@pytest.mark.parametrize("compression", [None, "lz4"])
def test_every_field_reads_back_as_the_event_said(test_settings: Settings,
                                                  compression: str | None) -> None:
    tweets = [full_tweet(), minimal_tweet(), offset_tweet()]
    deleted_at = datetime(2024, 3, 1, 12, 0, 0, 456000, tzinfo=UTC)
    located = [(3, 10 + i, Event("tweet", t.tweet_id, tweet=t)) for i, t in enumerate(tweets)]
    located += [(1, 99, Event("delete", U64_MAX, user_id=U64_MAX - 5, event_at=deleted_at)),
                (2, 100, Event("delete", 77))]  # no user, no time: deleted_at = ingested_at
    sink = ClickHouseSink(test_settings, compression=compression)
    # A real server parses DateTime64 text with `date_time_input_format='basic'` unless told
    # otherwise (chDB defaults to best_effort): make that the session default here, so it is the
    # sink's own insert setting that makes the RFC 3339 times readable.
    sink.client.set_client_setting("date_time_input_format", "basic")
    before = datetime.now(UTC)
    try:
        assert sink.write(located) == 5
    finally:
        sink.close()
    after = datetime.now(UTC)

    rows = {r["tweet_id"]: r for r in _select(test_settings, f"SELECT * FROM {RAW_TWEETS} FINAL")}
    assert set(rows) == {t.tweet_id for t in tweets}
    ingested = {_utc(r["ingested_at"]) for r in rows.values()}
    assert len(ingested) == 1 and before <= ingested.pop() <= after
    for partition, offset, event in located[:3]:
        t = event.tweet
        assert t is not None
        row = rows[t.tweet_id]
        for name, _ in RAW_TWEET_COLUMNS[:27]:
            want = getattr(t, name)
            if name == "created_at":
                assert _utc(row[name]) == _ms(want.astimezone(UTC)), t.tweet_id
            elif name in LOWER_CASED:
                assert list(row[name]) == lowered(want), (t.tweet_id, name)
            elif isinstance(want, tuple):
                assert list(row[name]) == list(want), (t.tweet_id, name)
            else:
                assert row[name] == want and type(row[name]) is type(want), (t.tweet_id, name)
        assert (row["kafka_partition"], row["kafka_offset"]) == (partition, offset)
        # derived by the server, as the model derives them
        assert row["chain_root_id"] == t.chain_root_id, t.tweet_id
        assert _utc(row["chain_created_at"]) == _ms(t.chain_created_at.astimezone(UTC)), t.tweet_id

    deletes = {r["tweet_id"]: r for r in _select(test_settings,
                                                    f"SELECT * FROM {TWEET_DELETES} FINAL")}
    assert set(deletes) == {U64_MAX, 77}
    full, bare = deletes[U64_MAX], deletes[77]
    assert (full["user_id"], _utc(full["deleted_at"])) == (U64_MAX - 5, deleted_at)
    assert (full["kafka_partition"], full["kafka_offset"]) == (1, 99)
    assert bare["user_id"] == 0 and (bare["kafka_partition"], bare["kafka_offset"]) == (2, 100)
    assert _utc(bare["deleted_at"]) == _ms(_utc(bare["ingested_at"]))
    assert before <= _utc(bare["ingested_at"]) <= after


def test_rows_equal_those_of_a_native_insert(test_settings: Settings) -> None:
    """The sink's previous path (clickhouse-connect Native insert of the same values) is the
    reference: every column of every row but ingested_at must be identical."""
    msgs = list(generate(11, start_ms=int(time.time() * 1000) - 3_600_000, count=600, rate=5))
    located, _ = parse_records([Record(i % 3, i // 3, k, v) for i, (k, v, _) in enumerate(msgs)])
    assert any(e.kind == "delete" for _, _, e in located)
    located += [(9, i, Event("tweet", t.tweet_id, tweet=t))
                for i, t in enumerate([full_tweet(), minimal_tweet(), offset_tweet()])]
    sink = ClickHouseSink(test_settings)
    try:
        sink.write(located)
    finally:
        sink.close()

    now = datetime.now(UTC)
    reference = [[*_reference_values(e.tweet), p, o, now] for p, o, e in located
                 if e.kind == "tweet" and e.tweet is not None]
    client = clickhouse_client(test_settings)
    try:
        client.command(f"CREATE TABLE native_raw_tweets AS {RAW_TWEETS}")
        client.insert("native_raw_tweets", reference,
                      column_names=[name for name, _ in RAW_TWEET_COLUMNS])
        sql = "SELECT * EXCEPT ingested_at FROM {} ORDER BY kafka_partition, kafka_offset"
        written = client.query(sql.format(RAW_TWEETS)).result_rows
        expected = client.query(sql.format("native_raw_tweets")).result_rows
    finally:
        client.close()
    assert len(written) == len(reference) > 500
    assert written == expected


def _reference_values(t: Tweet | None) -> list:
    """The Tweet's values for the Native insert, entities lower-cased as documented."""
    assert t is not None
    values = []
    for name, _ in RAW_TWEET_COLUMNS[:27]:
        v = getattr(t, name)
        values.append(lowered(v) if name in LOWER_CASED else list(v) if isinstance(v, tuple) else v)
    return values


def test_a_count_beyond_uint32_is_refused_not_wrapped() -> None:
    """The server would store 2**32 as 0; the sink raises before sending (the batch is retried,
    as it was with the Native insert)."""
    from streaming.sinks.clickhouse import _tweet_row

    tweet = Tweet(tweet_id=1, author_id=1, author_handle="a", text="t", lang="en", kind="original",
                  created_at=datetime(2025, 1, 1, tzinfo=UTC), like_count=2**32)
    with pytest.raises(ValueError, match="UInt32"):
        _tweet_row(tweet, 0, 0, datetime.now(UTC))


def test_a_raw_table_from_before_edit_chains_gains_the_chain_root_column(
        test_settings: Settings) -> None:
    """A stack upgraded in place keeps its raw_tweets: ensure_schema adds `chain_root_id`, whose
    default gives the rows already there their chain's root from their edit history, and copies
    the edits already there to raw_tweet_edits (staging's index of edit chains)."""
    from tweetflow.schema import ensure_schema
    from tweetflow.snowflake import snowflake_time

    root, edit, later = 1765286190904246340, 1765286997657649237, 1765287997657649237
    client = clickhouse_client(test_settings)
    try:
        client.command("DROP TABLE raw_tweet_edits_mv")  # as before edit chains
        client.command("DROP TABLE raw_tweet_edits")
        client.command(f"ALTER TABLE {RAW_TWEETS} DROP INDEX chain_created_at_minmax")
        client.command(f"ALTER TABLE {RAW_TWEETS} DROP COLUMN chain_created_at")
        client.command(f"ALTER TABLE {RAW_TWEETS} DROP COLUMN chain_root_id")
        client.command(f"INSERT INTO {RAW_TWEETS} (tweet_id, created_at, edit_history_tweet_ids) "
                       f"VALUES ({edit}, now64(3), [{root}, {edit}]), (7, now64(3), [])")
        ensure_schema(test_settings)
        ensure_schema(test_settings)  # idempotent
        t = Tweet(tweet_id=later, author_id=1, author_handle="a", text="t", lang="en",
                  kind="original", created_at=datetime.now(UTC),
                  edit_history_tweet_ids=(root, edit, later))
        sink = ClickHouseSink(test_settings)
        try:
            sink.write([(0, 0, Event("tweet", later, tweet=t))])
        finally:
            sink.close()
        got = client.query(f"SELECT tweet_id, chain_root_id FROM {RAW_TWEETS} ORDER BY tweet_id")
        times = client.query(f"SELECT chain_created_at FROM {RAW_TWEETS} WHERE tweet_id != 7")
        edits = client.query("SELECT DISTINCT chain_root_id, tweet_id, edit_history_tweet_ids "
                             "FROM raw_tweet_edits ORDER BY tweet_id")
    finally:
        client.close()
    assert [tuple(r) for r in got.result_rows] == [(7, 7), (edit, root), (later, root)]
    # the time the default computes for the old row is the one the sink wrote for the new one
    assert [_utc(t) for (t,) in times.result_rows] == [snowflake_time(root)] * 2
    assert [tuple(r) for r in edits.result_rows] == [(root, edit, [root, edit]),
                                                     (root, later, [root, edit, later])]


def test_an_edit_moves_its_chains_day_and_a_delete_the_days_its_chain_may_be_on(
        test_settings: Settings) -> None:
    """The marts count an edited Tweet on its root's day (docs/marts-coverage.md): an edit just
    after midnight changes the day before, and so may a delete of an edit made within an edit
    window of midnight (which version it names is not known at delete time)."""
    from tweetflow.schema import RAW_DAY_VERSIONS
    from tweetflow.snowflake import snowflake_id

    def ms(text: str) -> int:
        return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)

    root, edit = snowflake_id(ms("2024-03-05 23:50:00")), snowflake_id(ms("2024-03-06 00:10:00"))
    t = Tweet(tweet_id=edit, author_id=1, author_handle="a", text="t", lang="en", kind="original",
              created_at=datetime(2024, 3, 6, 0, 10, tzinfo=UTC), edit_history_tweet_ids=(root, edit))
    late = snowflake_id(ms("2024-03-08 00:20:00"))
    sink = ClickHouseSink(test_settings)
    try:
        sink.write([(0, 0, Event("tweet", edit, tweet=t)), (0, 1, Event("delete", late))])
    finally:
        sink.close()
    got = _select(test_settings, f"SELECT DISTINCT toString(day) AS d FROM {RAW_DAY_VERSIONS}")
    assert sorted(r["d"] for r in got) == ["2024-03-05", "2024-03-06", "2024-03-07", "2024-03-08"]
