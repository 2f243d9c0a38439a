"""`tweetflow` command line: one entry point, each subcommand delegating to the module that owns it.

Why lazy imports in the handlers: `tweetflow stack status` should answer in well under a second,
without loading Dagster, dbt or gRPC.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Handler = Callable[[argparse.Namespace], int]
_COMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], str]] = []


def command(name: str, help_text: str, target: str):
    """Register a subcommand: `configure` adds its arguments; `target` is "module:function"."""

    def register(configure: Callable[[argparse.ArgumentParser], None]):
        _COMMANDS.append((name, help_text, configure, target))
        return configure

    return register


@command("stack", "start, stop or inspect the local Kafka, Redis and ClickHouse endpoint",
         "tweetflow.cli:run_stack")
def _stack(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["up", "down", "status"])


@command("produce", "publish Tweets to Kafka (synthetic or from a file)", "streaming.produce_cli:run")
def _produce(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", default="synthetic", help="synthetic | file:PATH[.gz]")
    p.add_argument("--rate", type=float, default=1000.0, help="Tweets per second (0 = unthrottled)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds to run")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--duplicates", type=float, default=0.0, help="fraction published twice")
    p.add_argument("--burst", default=None, help="RATE:SECONDS burst in the middle of the run")
    p.add_argument("--topic", default=None, help="default: settings.topic_raw")
    p.add_argument("--count", type=int, default=None, help="stop after this many messages")


@command("consume", "run the consumer group: Kafka -> ClickHouse + Redis", "streaming.consume_cli:run")
def _consume(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: cores + 1)")
    p.add_argument("--metrics-port", type=int, default=9400, help="first worker's port; +1 each")
    p.add_argument("--batch-size", type=int, default=10000)
    p.add_argument("--batch-ms", type=int, default=500)
    p.add_argument("--until-idle", type=float, default=None,
                   help="exit after this many seconds without new messages (for scripts)")


@command("replay", "reset the consumer group's offsets (to earliest or a timestamp)",
         "streaming.offsets:run_replay")
def _replay(p: argparse.ArgumentParser) -> None:
    p.add_argument("--to", required=True, help="earliest | latest | ISO-8601 timestamp")
    p.add_argument("--group", default=None)
    p.add_argument("--topic", default=None)


@command("lag", "print consumer lag per partition", "streaming.offsets:run_lag")
def _lag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--group", default=None)
    p.add_argument("--topic", default=None)


@command("ingest", "serve the gRPC ingest service (Publish -> Kafka)", "streaming.ingest_service:run")
def _ingest(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=50052)
    p.add_argument("--host", default=None, help="default TWEETFLOW_INGEST_HOST or 127.0.0.1")


@command("serve", "serve the gRPC analytics query service", "query_service.server:run")
def _serve(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=50051)
    p.add_argument("--metrics-port", type=int, default=9500)
    p.add_argument("--processes", type=int, default=None,
                   help="server processes sharing the port (default TWEETFLOW_QUERY_PROCESSES or 1)")
    p.add_argument("--host", default=None, help="default TWEETFLOW_QUERY_HOST or 127.0.0.1")


@command("query", "ask the analytics service a question", "query_service.cli:run")
def _query(p: argparse.ArgumentParser) -> None:
    p.add_argument("question", nargs=argparse.REMAINDER)


@command("ui", "start the Dagster webserver and daemon on 127.0.0.1:3000",
         "tweetflow.ui:run")
def _ui(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", default="up", choices=["up", "down", "status"])
    p.add_argument("--port", type=int, default=3000)


@command("bench", "run validation scenarios and write a report", "bench.runner:run")
def _bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenarios", nargs="*")
    p.add_argument("--quick", action="store_true")


def run_stack(args: argparse.Namespace) -> int:
    from tweetflow.settings import get_settings
    from tweetflow.stack.manager import Stack, format_status

    stack = Stack(get_settings())
    if args.action == "up":
        print(format_status(stack.up()))
        return 0
    if args.action == "down":
        stopped = stack.down()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    rows = stack.status()
    print(format_status(rows))
    return 0 if all(r.ok for r in rows) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tweetflow", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, help_text, configure, target in _COMMANDS:
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        configure(sub)
        sub.set_defaults(target=target)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import importlib
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    module_name, func_name = args.target.split(":")
    handler: Handler = getattr(importlib.import_module(module_name), func_name)
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
