"""A batch ClickHouse refuses for good never stalls its partitions (issue 15, item 3).

What ClickHouse refuses because of the data (a row breaking a constraint, a block spanning more
partitions than the server takes) is split until the refused messages are alone; those go to the
dead-letter topic with the server's error, everything else is stored and counted exactly once, and
the offsets are committed. Failures of the server itself (down, overloaded, a row it acknowledged
but does not hold) are retried with back-off, never dead-lettered.

Each test runs the real worker against the real stack. A worker that keeps retrying a batch is
stopped at its third back-off (`drain(..., stall_after=3)`) (the code before the fix retried such a batch
forever), so a regression fails the test instead of hanging it.
"""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from streaming_support import (
    assert_clickhouse_matches,
    assert_committed_everything,
    assert_dead_letters,
    assert_hot_matches,
    drain,
    expect,
    interleave,
    malformed,
    produce,
    synthetic,
    with_duplicates,
)

from streaming.offsets import read_topic
from streaming.sinks.rejections import REJECTED_BY_STORE, rejection
from tweetflow.clients import clickhouse_client
from tweetflow.schema import RAW_TWEETS
from tweetflow.settings import Settings


def _rejections() -> float:
    return REGISTRY.get_sample_value("tweetflow_sink_rejections_total",
                                     {"sink": "clickhouse"}) or 0.0


def _dead_lettered(code: str) -> float:
    return REGISTRY.get_sample_value("tweetflow_dead_lettered_messages_total",
                                     {"reason_code": code}) or 0.0


def test_a_row_clickhouse_refuses_is_dead_lettered_and_the_rest_counted_once(
        test_settings: Settings) -> None:
    s = test_settings
    pairs = interleave(with_duplicates(synthetic(1501, 1500), 0.05, seed=1), malformed(), seed=2)
    produce(s, pairs)
    records = read_topic(s)
    full = expect(records)
    once = [r for r in records if r.key is not None and r.key.isdigit()
            and sum(o.key == r.key for o in records) == 1 and int(r.key) in full.tweets
            and int(r.key) not in full.deleted]
    poison = once[len(once) // 2]
    _refuse_tweet(s, int(poison.key))  # type: ignore[arg-type]
    exp = expect([r for r in records if r is not poison])
    exp.letters[(poison.partition, poison.offset)] = (poison, REJECTED_BY_STORE)
    before = _dead_lettered(REJECTED_BY_STORE)

    totals = drain(s, stall_after=3)

    assert_dead_letters(s, exp)  # the malformed ones and the refused one, each exactly once
    (letter,) = [r for r in read_topic(s, s.topic_dlq)
                 if r.headers["reason_code"] == REJECTED_BY_STORE.encode()]
    reason = letter.headers["reason"].decode()
    assert "VIOLATED_CONSTRAINT" in reason and "refused_for_the_test" in reason, reason
    assert_clickhouse_matches(s, exp)
    assert_hot_matches(s, exp)
    assert_committed_everything(s)
    assert totals.dead_letters == len(exp.letters)
    assert totals.events == exp.events
    assert (totals.counted, totals.duplicates, totals.deletes) == (
        exp.counted, exp.duplicates, exp.deletes)
    assert _dead_lettered(REJECTED_BY_STORE) - before == 1


def test_an_archive_the_server_takes_only_in_parts_goes_through_in_one_run(
        test_settings: Settings) -> None:
    """The sink may send more partitions per INSERT than a server takes (its
    max_partitions_per_insert_block is lower than CLICKHOUSE_MAX_PARTITIONS_PER_INSERT): the
    refused INSERTs are split until they fit, and nothing is dead-lettered."""
    s = test_settings.model_copy(update={"clickhouse_max_partitions_per_insert": 5_000})
    years = 12
    pairs = synthetic(1502, 3_000, hours_ago=(years * 365.25 + 30) * 24,
                      span_hours=years * 365.25 * 24)
    produce(s, pairs)
    records = read_topic(s)
    exp = expect(records)
    assert not exp.hot_n, "the archive must lie beyond the hot horizon"
    before = _rejections()

    totals = drain(s, stall_after=3, batch_size=10_000, batch_ms=3_000)

    assert _rejections() > before, "the server took every INSERT whole: nothing was tested"
    assert_clickhouse_matches(s, exp)
    assert_dead_letters(s, exp)
    assert not read_topic(s, s.topic_dlq)
    assert_committed_everything(s)
    assert totals.events == exp.events and totals.dead_letters == 0


def test_what_is_about_the_data_is_told_from_what_is_not(test_settings: Settings) -> None:
    """Errors from the real server: a refused row is a rejection carrying the server's words; a
    server that is down, a table that is missing (configuration, not data) are not."""
    client = clickhouse_client(test_settings)
    try:
        _refuse_tweet(test_settings, 7)
        refused = _error(lambda: client.raw_insert(
            RAW_TWEETS, ["tweet_id"], b"[6]\n[7]\n", fmt="JSONCompactEachRow"))
        garbled = _error(lambda: client.raw_insert(
            RAW_TWEETS, ["tweet_id"], b'["not a number"]\n', fmt="JSONCompactEachRow"))
        missing = _error(lambda: client.raw_insert(
            "no_such_table", ["tweet_id"], b"[1]\n", fmt="JSONCompactEachRow"))
    finally:
        client.close()
    down_settings = test_settings.model_copy(update={"clickhouse_url": "http://127.0.0.1:9"})
    down = _error(lambda: clickhouse_client(down_settings, connect_timeout=2))

    found = rejection(refused)
    assert found is not None and "Code: 469" in found.reason and "refused_for_the_test" in found.reason
    assert "for url" not in found.reason  # the server's words, not the client's wrapping
    assert rejection(garbled) is not None
    assert rejection(missing) is None
    assert rejection(down) is None


def _error(action) -> Exception:
    with pytest.raises(Exception) as caught:
        action()
    return caught.value


def _refuse_tweet(settings: Settings, tweet_id: int) -> None:
    """A constraint on the test's raw_tweets that one Tweet breaks, as an operator might add."""
    client = clickhouse_client(settings)
    try:
        client.command(f"ALTER TABLE `{RAW_TWEETS}` ADD CONSTRAINT refused_for_the_test "
                       f"CHECK tweet_id != {int(tweet_id)}")
    finally:
        client.close()
