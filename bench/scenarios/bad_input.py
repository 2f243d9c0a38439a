"""Bad input: malformed messages mixed into a stream of good ones. Every bad message must reach the
dead-letter topic with the original bytes and key, its source partition and offset and the expected
reason code; every good one must be counted; no worker may crash.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from bench import harness
from bench.report import ScenarioResult
from bench.scenarios import Context
from tweetflow.settings import PROJECT_ROOT

NAME = "bad_input"
TITLE = "Malformed messages: every one in the DLQ with its reason, good ones counted, no crash"
FIXTURES = PROJECT_ROOT.parent / "shared" / "fixtures" / "payloads" / "broken"


@dataclass(frozen=True)
class Case:
    label: str
    key: bytes | None
    value: bytes | None
    reason_code: str


def _tweet(tweet_id: str = "1790000000000000000", **fields: object) -> dict:
    data = {"id": tweet_id, "text": "hello #world", "created_at": "2024-05-13T10:00:00.000Z",
            "author_id": "12", "lang": "en", "edit_history_tweet_ids": [tweet_id]}
    data.update(fields)
    return {"data": {k: v for k, v in data.items() if v is not None}}


def cases() -> list[Case]:
    """One of each kind of bad input, with the reason code the parser must give it."""
    j = lambda doc: json.dumps(doc).encode()  # noqa: E731
    rng = random.Random(3)
    noise = bytes(rng.getrandbits(8) for _ in range(64))
    big_text = ("lorem ipsum " * 100_000)[:1_100_000]  # compressible: Kafka accepts it
    out = [
        Case("truncated JSON", b"1", b'{"data": {"id": "179000000000000', "invalid_json"),
        Case("not JSON at all", b"2", b"<html>502 Bad Gateway</html>", "invalid_json"),
        Case("empty value", b"3", b"", "invalid_json"),
        Case("tombstone (no value)", b"4", None, "empty"),
        Case("invalid UTF-8 in a string", b"5",
             b'{"data": {"id": "1790000000000000005", "text": "caf\xe9 \xff\xfe"}}', "invalid_utf8"),
        Case("binary noise", b"6", b"\xff" + noise, "invalid_utf8"),
        Case("v2 Tweet without id", b"7", j(_tweet(tweet_id=None)), "missing_field"),  # type: ignore[arg-type]
        Case("v2 delete without id", b"8",
             j({"data": {"delete": {"tweet": {"author_id": "1"}, "event_at": "2024-05-13T10:00:00Z"}}}),
             "missing_field"),
        Case("v1.1 Tweet without user", b"9",
             j({"id": 1790000000000000009, "id_str": "1790000000000000009", "text": "hi",
                "created_at": "Mon May 13 10:00:00 +0000 2024"}), "missing_field"),
        Case("id is a list", b"10", j(_tweet(tweet_id=["1"])), "wrong_type"),  # type: ignore[arg-type]
        Case("text is a number", b"11", j(_tweet("1790000000000000011", text=42)), "wrong_type"),
        Case("public_metrics is a string", b"12",
             j(_tweet("1790000000000000012", public_metrics="lots")), "wrong_type"),
        Case("id is not a number", b"13", j(_tweet("tweet-13")), "invalid_value"),
        Case("negative like_count", b"14",
             j(_tweet("1790000000000000014", public_metrics={"like_count": -5})), "invalid_value"),
        Case("created_at far in the future", b"15",
             j(_tweet("1790000000000000015", created_at="2099-01-01T00:00:00.000Z")),
             "future_timestamp"),
        Case("oversize (1.1 MB)", b"16", j(_tweet("1790000000000000016", text=big_text)), "oversize"),
        Case("JSON array", b"17", b"[1, 2, 3]", "unknown_shape"),
        Case("JSON string", b"18", b'"just a string"', "unknown_shape"),
        Case("JSON null", b"19", b"null", "unknown_shape"),
        Case("object of another shape", b"20", j({"event": "click", "user": 1}), "unknown_shape"),
        Case("v2 errors-only message", b"21",
             j({"errors": [{"title": "operational-disconnect", "type": "about:blank"}]}),
             "unknown_shape"),
        Case("Activity Streams payload", b"22",
             j({"id": "tag:search.twitter.com,2005:1", "verb": "post", "actor": {"id": "x"}}),
             "unknown_shape"),
        Case("deeply nested", b"23", b"[" * 2000 + b"]" * 2000, "invalid_json"),
    ]
    for path in sorted(FIXTURES.glob("*.json")) if FIXTURES.is_dir() else []:
        out.append(Case(f"fixture {path.name}", b"24", path.read_bytes().strip(), "missing_field"))
    return out


def run(ctx: Context) -> ScenarioResult:
    from confluent_kafka import Producer

    from streaming.producer import PRODUCER_CONFIG
    from tweetflow.clients import kafka_config

    good, copies = ((600, 1) if ctx.options.get("tiny") else
                    (3000, 3) if ctx.quick else (20_000, 10))
    result = ScenarioResult(NAME, TITLE)
    with harness.namespace(ctx.base, NAME) as ns:
        s = ns.settings
        ctx.progress(0.05, f"publishing {good:,} good and {len(cases()) * copies} bad messages")
        harness.produce(s, "--rate", "0", "--duration", "0", "--count", str(good),
                        log_path=ctx.path("bad-input-loadgen.log"))
        producer = Producer(kafka_config(s, **{**PRODUCER_CONFIG, "message.max.bytes": 4 << 20}))
        sent: dict[tuple[int, int], Case] = {}
        errors: list[str] = []

        def delivered(case: Case):
            def record(err, msg) -> None:
                if err is None:
                    sent[(msg.partition(), msg.offset())] = case
                else:
                    errors.append(f"{case.label}: {err}")
            return record

        all_cases = cases()
        for _ in range(copies):
            for case in all_cases:
                producer.produce(s.topic_raw, case.value, case.key, on_delivery=delivered(case))
                producer.poll(0)
        producer.flush(60)
        # and good messages after the bad ones, so the workers must keep going past them
        harness.produce(s, "--rate", "0", "--duration", "0", "--count", str(good // 3),
                        log_path=ctx.path("bad-input-loadgen.log"))

        ctx.progress(0.3, "consuming")
        consumers = harness.Consumers(s, ctx.path("bad-input-consumers.log"))
        consumers.start(2)
        done, _ = harness.wait_applied(s, timeout=300, on_poll=lambda _t, n, tot:
                                       ctx.progress(0.3 + 0.5 * n / max(tot, 1), "consuming"))
        alive = len(consumers.worker_pids())
        codes = consumers.stop()
        ctx.progress(0.85, "reading the dead-letter topic")
        letters = {(int(r.headers["source_partition"]), int(r.headers["source_offset"])): r
                   for r in harness.dlq_records(s)}
        records = harness.read_topic(s)
        truth = harness.Truth.of([r for r in records if (r.partition, r.offset) not in sent])
        verdict = harness.verify(s, truth)

    wrong, missing = [], []
    for where, case in sent.items():
        letter = letters.get(where)
        if letter is None:
            missing.append(case.label)
            continue
        code = letter.headers.get("reason_code", b"").decode()
        if (code != case.reason_code or letter.value != case.value or letter.key != case.key
                or not letter.headers.get("reason")
                or letter.headers.get("source_topic", b"").decode() != s.topic_raw):
            wrong.append(f"{case.label}: got {code!r} "
                         f"({letter.headers.get('reason', b'').decode()[:80]}), "
                         f"expected {case.reason_code!r}")
    unexpected = [k for k in letters if k not in sent]
    result.add("bad messages published (kinds x copies)", len(sent), "",
               f"{len(all_cases)} x {copies}", len(sent) == len(all_cases) * copies and not errors)
    result.add("good messages published", truth.messages, "")
    result.check("every bad message in the DLQ", not missing,
                 f"{len(letters):,} dead letters" if not missing else
                 f"missing: {', '.join(sorted(set(missing)))}")
    result.check("each with the expected reason code, original bytes, key and source headers",
                 not wrong, "; ".join(sorted(set(wrong))[:6]) or "all")
    result.check("no good message dead-lettered", not unexpected, f"{len(unexpected)} unexpected")
    result.check("good messages counted exactly (ClickHouse and Redis)", verdict.ok,
                 "; ".join(verdict.problems) or f"{len(truth.tweets):,} Tweets")
    result.check("no worker crashed", done and alive == 2 and consumers.tracebacks() == 0
                 and all(c == 0 for c in codes),
                 f"{alive} workers alive at the end, {consumers.tracebacks()} tracebacks, "
                 f"exit codes {codes}")
    by_code: dict[str, int] = {}
    for c in all_cases:
        by_code[c.reason_code] = by_code.get(c.reason_code, 0) + 1
    result.note("kinds of bad input by expected reason code: " +
                ", ".join(f"{k} {v}" for k, v in sorted(by_code.items())) +
                ("" if FIXTURES.is_dir() else
                 f" (the external fixtures at {FIXTURES} were not found)"))
    if errors:
        result.note("publishing failed for: " + "; ".join(errors[:5]))
    return result

