"""`tweetflow query ...`: ask the running AnalyticsService a question and print the answer, with
the path that answered it.

    tweetflow query trending --window 1h
    tweetflow query series hashtag python --start -2d --granularity hour
    tweetflow query mentions --start 2025-06-01 --end 2025-06-02 --limit 5
    tweetflow query volume --start -6h --granularity hour
    tweetflow query user @jack --start -7d
    tweetflow query engagement --start -1d
    tweetflow query trending --platform bluesky

Times are ISO-8601 (UTC unless an offset is given), `now`, or relative to now (-15m, -6h, -7d;
floored to the minute). Options go after the question (`tweetflow query trending --addr ...`);
`--platform x` or `--platform bluesky` counts one platform's posts (default: every platform's).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.json_format import MessageToJson
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from tweetflow.command_line import ArgumentParser
from tweetflow.platforms import PLATFORMS
from tweetflow.v1 import analytics_pb2 as pb
from tweetflow.v1 import analytics_pb2_grpc as pb_grpc

DEFAULT_ADDR = "127.0.0.1:50051"
_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
GRANULARITIES = {"minute": pb.GRANULARITY_MINUTE, "hour": pb.GRANULARITY_HOUR,
                 "day": pb.GRANULARITY_DAY}
ENTITY_TYPES = {"hashtag": pb.ENTITY_TYPE_HASHTAG, "mention": pb.ENTITY_TYPE_MENTION,
                "cashtag": pb.ENTITY_TYPE_CASHTAG, "domain": pb.ENTITY_TYPE_DOMAIN}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """ISO-8601, `now`, or `-<n><s|m|h|d>` relative to now; naive times are UTC."""
    now = now or datetime.now(UTC)
    if text == "now":
        return now
    if m := _RELATIVE.match(text):
        # Floored to the minute: whole-minute ranges are answered from Redis or the marts, while
        # second-precise edges would need raw Tweets.
        back = now - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
        return back.replace(second=0, microsecond=0)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (ISO-8601, now, or -6h)") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_duration(text: str) -> int:
    """`90m`, `1h`, `1d` or plain seconds."""
    if m := re.fullmatch(r"(\d+)([smhd]?)", text):
        return int(m.group(1)) * _UNITS.get(m.group(2) or "s", 1)
    raise argparse.ArgumentTypeError(f"not a duration: {text!r} (like 15m, 1h, 1d)")


def _ts(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--addr", default=None,
                        help="host:port of the service (default TWEETFLOW_QUERY_ADDR or "
                             f"{DEFAULT_ADDR})")
    common.add_argument("--key", default=None, help="API key (default: TWEETFLOW_API_KEY, "
                        "the first of TWEETFLOW_API_KEYS, or the key file in the data dir)")
    common.add_argument("--timeout", type=float, default=30.0, help="deadline in seconds")
    common.add_argument("--json", action="store_true", help="print the response as JSON")
    common.add_argument("--platform", choices=PLATFORMS, default=None,
                        help="count only this platform's posts (default: every platform)")
    ranged = argparse.ArgumentParser(add_help=False, parents=[common])
    ranged.add_argument("--start", type=parse_time, default="-24h",
                        help="start of the range: ISO-8601 time, or relative like -6h, -2d")
    ranged.add_argument("--end", type=parse_time, default=None, help="default: now")

    parser = ArgumentParser(prog="tweetflow query", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    p = sub.add_parser("trending", parents=[common], help="hashtags trending now")
    p.add_argument("--window", type=parse_duration, default=3600,
                   help="how far back to look, like 15m, 1h, 1d (seconds when bare)")
    p.add_argument("--limit", type=int, default=10, help="how many hashtags")
    p = sub.add_parser("series", parents=[ranged], help="Tweets per bucket for one entity")
    p.add_argument("entity_type", choices=sorted(ENTITY_TYPES), help="what kind of entity")
    p.add_argument("entity", help="the entity, e.g. a hashtag without # or a handle")
    p.add_argument("--granularity", choices=list(GRANULARITIES), default="hour",
                   help="bucket size")
    for name in ("mentions", "domains", "authors"):
        p = sub.add_parser(name, parents=[ranged], help=f"top {name} in a range")
        p.add_argument("--limit", type=int, default=10, help=f"how many {name}")
    p = sub.add_parser("volume", parents=[ranged], help="Tweets per bucket by language and kind")
    p.add_argument("--granularity", choices=list(GRANULARITIES), default="hour",
                   help="bucket size")
    p = sub.add_parser("user", parents=[ranged], help="one author's activity")
    p.add_argument("handle", nargs="?", default=None,
                   help="the author's handle (default: none, give it or --id)")
    p.add_argument("--id", type=int, default=None,
                   help="author id instead of a handle (default: none)")
    p.add_argument("--granularity", choices=["hour", "day"], default="day", help="bucket size")
    sub.add_parser("engagement", parents=[ranged], help="engagement totals in a range")
    return parser


def _range(args: argparse.Namespace) -> dict[str, Timestamp]:
    fields = {"start": _ts(args.start)}
    if args.end is not None:
        fields["end"] = _ts(args.end)
    return fields


def request_for(args: argparse.Namespace) -> tuple[str, Message]:
    """The RPC name and request message for the parsed question."""
    method, request = _question(args)
    if args.platform:
        request.platform = args.platform  # type: ignore[attr-defined]  # every request has it
    return method, request


def _question(args: argparse.Namespace) -> tuple[str, Message]:
    if args.kind == "trending":
        return "TrendingHashtags", pb.TrendingHashtagsRequest(
            window=Duration(seconds=args.window), limit=args.limit)
    if args.kind == "series":
        return "TimeSeries", pb.TimeSeriesRequest(
            entity_type=ENTITY_TYPES[args.entity_type], entity=args.entity,
            granularity=GRANULARITIES[args.granularity], **_range(args))
    if args.kind in ("mentions", "domains", "authors"):
        name = "Top" + args.kind.capitalize()
        return name, getattr(pb, f"{name}Request")(limit=args.limit, **_range(args))
    if args.kind == "volume":
        return "TweetVolume", pb.TweetVolumeRequest(
            granularity=GRANULARITIES[args.granularity], **_range(args))
    if args.kind == "user":
        who = {"author_id": args.id} if args.id is not None else {"handle": args.handle or ""}
        return "UserActivity", pb.UserActivityRequest(
            granularity=GRANULARITIES[args.granularity], **who, **_range(args))
    return "EngagementSummary", pb.EngagementSummaryRequest(**_range(args))


def _when(ts: Timestamp) -> str:
    return ts.ToDatetime(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _source(value: int) -> str:
    return pb.AnswerSource.Name(value).removeprefix("ANSWER_SOURCE_").lower()


def render(response: Message) -> str:
    """A plain-text rendering of any response, ending with the path that answered."""
    lines: list[str] = []
    if isinstance(response, pb.TrendingHashtagsResponse):
        lines.append(f"window {_when(response.start)} .. {_when(response.end)} UTC")
        lines += [f"{h.count:>10}  x{h.velocity:<7.2f} #{h.hashtag}" for h in response.hashtags]
    elif hasattr(response, "entities"):
        lines += [f"{e.count:>10}  {e.entity}" for e in response.entities]
    elif isinstance(response, pb.TimeSeriesResponse):
        lines += [f"{_when(p.bucket)}  {p.count:>10}" for p in response.points]
        lines.append(f"{'total':<19}  {response.total:>10}")
    elif isinstance(response, pb.TweetVolumeResponse):
        for b in response.buckets:
            kinds = " ".join(f"{k}={v}" for k, v in sorted(b.by_kind.items()))
            lines.append(f"{_when(b.bucket)}  {b.count:>10}  {kinds}")
        langs = ", ".join(f"{k or '?'}={v}" for k, v in
                          sorted(response.by_lang.items(), key=lambda kv: -kv[1])[:10])
        lines.append(f"{'total':<19}  {response.total:>10}  top languages: {langs}")
    elif isinstance(response, pb.UserActivityResponse):
        for b in response.buckets:
            c = b.counts
            lines.append(f"{_when(b.bucket)}  {c.count_tweets:>6} tweets  {c.count_originals} "
                         f"original, {c.count_replies} replies, {c.count_retweets} retweets, "
                         f"{c.count_quotes} quotes")
        lines.append(f"total {response.totals.count_tweets} Tweets")
    else:
        lines += [f"{f.name:<18} {v}" for f, v in response.ListFields()
                  if f.name.startswith(("count_", "sum_"))]
    if not lines:
        lines.append("(nothing in this range)")
    how = _source(response.source)
    if response.source == pb.ANSWER_SOURCE_CACHE:
        how += f" (computed by {_source(response.origin)})"
    lines.append(f"-- answered by: {how}, as of {_when(response.as_of)} UTC")
    return "\n".join(lines)


def ask(addr: str, method: str, request: Message, key: str | None,
        timeout: float) -> Message:
    from tweetflow.clients import grpc_channel

    with grpc_channel(None, addr) as channel:  # TLS per the settings (tweetflow.tls)
        stub = pb_grpc.AnalyticsServiceStub(channel)
        metadata = (("x-api-key", key),) if key else None
        return getattr(stub, method)(request, metadata=metadata, timeout=timeout)


def _glue_relative_times(argv: Sequence[str]) -> list[str]:
    """`--start -2d` -> `--start=-2d`: argparse would take `-2d` for an option."""
    out: list[str] = []
    for word in argv:
        if out and out[-1] in ("--start", "--end") and _RELATIVE.match(word):
            out[-1] = f"{out[-1]}={word}"
        else:
            out.append(word)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The words after `tweetflow query` are parsed by `build_parser` (see main)."""
    parser.add_argument("question", nargs=argparse.REMAINDER,
                        help="what to ask: trending, series, mentions, domains, authors, volume, "
                             "user or engagement, with its options (`tweetflow query trending "
                             "--help`)")


def run(args: argparse.Namespace) -> int:
    """Entry point of `tweetflow query` (args.question: the words after `query`)."""
    return main(args.question)


def main(argv: Sequence[str]) -> int:
    from tweetflow.auth import client_key
    from tweetflow.settings import get_settings

    args = build_parser().parse_args(_glue_relative_times(argv))
    if args.kind == "user" and args.handle is None and args.id is None:
        print("error: give a handle or --id", file=sys.stderr)
        return 2
    method, request = request_for(args)
    settings = get_settings()
    key = args.key or client_key(settings)
    try:
        response = ask(args.addr or settings.query_addr, method, request, key, args.timeout)
    except grpc.RpcError as exc:
        print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    print(MessageToJson(response) if args.json else render(response))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
