"""`tweetflow` command line: one entry point that only wires subcommands.

Each command is a module exposing `add_arguments(parser)`, which declares its options, and
`run(args) -> int`; the table below says which module each command is.

Why only the named command's module is imported: `tweetflow stack status` should answer in well
under a second, without loading Dagster, dbt or gRPC.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from tweetflow.command_line import ArgumentParser, add_version

# name -> (help, the module with its add_arguments and run)
COMMANDS: dict[str, tuple[str, str]] = {
    "stack": ("start, stop or inspect the local Kafka, Redis and ClickHouse endpoint",
              "tweetflow.app.stack.manager"),
    "produce": ("publish Tweets to Kafka (synthetic, a file, X API v2 streams or Bluesky Jetstream)",
                "streaming.produce_cli"),
    "rules": ("list, add or delete the X filtered stream's rules", "streaming.rules_cli"),
    "consume": ("run the consumer group: Kafka -> ClickHouse + Redis", "streaming.consume_cli"),
    "replay": ("show, or with --execute move, the consumer group's offsets (to earliest, latest "
               "or a time)",
               "streaming.offset_reset"),
    "lag": ("print consumer lag per partition", "streaming.lag_cli"),
    "heal": ("show the hot tier's state, or rebuild what Redis lost (--run)",
             "streaming.heal_cli"),
    "ingest": ("serve the gRPC ingest service (Publish -> Kafka)", "ingest_service.server"),
    "serve": ("serve the gRPC analytics query service", "query_service.server"),
    "query": ("ask the analytics service a question", "query_service.cli"),
    "ui": ("start the Dagster webserver and daemon on 127.0.0.1:3000", "tweetflow.app.ui"),
    "bench": ("run validation scenarios and write a report", "bench.runner"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or, with `only`, of that one command (the others are listed
    without their options, so nothing else is imported)."""
    parser = ArgumentParser(prog="tweetflow", description=__doc__.splitlines()[0])
    add_version(parser)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, module) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if only is None or only == name:
            importlib.import_module(module).add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from tweetflow.clients import KafkaAccessError
    from tweetflow.logs import setup_logging

    argv = list(sys.argv[1:] if argv is None else argv)
    named = next((word for word in argv if not word.startswith("-")), None)
    args = build_parser(only=named if named in COMMANDS else "").parse_args(argv)
    setup_logging(component=args.command)
    try:
        return importlib.import_module(COMMANDS[args.command][1]).run(args)
    except KeyboardInterrupt:
        return 130
    except KafkaAccessError as exc:  # wrong credentials or CA: the cause, without a traceback
        print(f"tweetflow {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
