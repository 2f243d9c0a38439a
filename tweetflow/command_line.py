"""What every tweetflow command line shares: an argument parser whose help gives each option's
default, and `--version`.

Why a parser class rather than a formatter passed around: argparse gives a sub-command's parser
the class of its parent (`add_subparsers` uses `type(self)`) but not the parent's formatter, so
the class is what reaches `tweetflow rules add` and `tweetflow query trending` alike.
"""

from __future__ import annotations

import argparse
import importlib.metadata
from typing import Any


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's "(default: X)" after an option's help, unless the help already says its default
    (one taken from a setting, say) or there is none to show (None: the help must say what an
    unset option means; tests/tweetflow/test_cli.py checks every option does)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or action.required or "default" in text.lower():
            return text
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse.ArgumentParser with HelpFormatter, passed on to its sub-commands' parsers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def version() -> str:
    """The installed tweetflow's version (pyproject.toml)."""
    try:
        return importlib.metadata.version("tweetflow")
    except importlib.metadata.PackageNotFoundError:  # run from a tree that was never installed
        return "unknown"


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}",
                        help="print the version and exit")
