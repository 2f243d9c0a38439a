"""The `tweetflow` command line's conventions: `--version`, and help that gives every option its
meaning and its default (tweetflow.command_line), in every command and sub-command."""

from __future__ import annotations

import argparse
import importlib.metadata
from collections.abc import Iterator

import pytest

from query_service.cli import build_parser as query_parser
from tweetflow.app import cli

SKIPPED = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


def _parsers(parser: argparse.ArgumentParser, name: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def _every_parser() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield from _parsers(cli.build_parser(), "tweetflow")
    yield from _parsers(query_parser(), "tweetflow query")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"tweetflow {importlib.metadata.version('tweetflow')}"


def test_every_option_has_help_with_its_default() -> None:
    missing = []
    checked = 0
    for name, parser in _every_parser():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, SKIPPED):
                continue
            checked += 1
            label = f"{name} {'/'.join(action.option_strings) or action.dest}"
            if not action.help:
                missing.append(f"{label}: no help")
                continue
            optional = ((bool(action.option_strings) and not action.required)
                        or action.nargs in ("?", "*"))
            text = formatter._get_help_string(action) % {**vars(action), "prog": parser.prog}
            if optional and "default" not in text.lower():
                missing.append(f"{label}: {text!r} does not say its default")
            if "default: None" in text:
                missing.append(f"{label}: {text!r} (say what an unset value means)")
    assert checked > 60
    assert not missing, "\n".join(missing)


def test_the_formatter_shows_defaults_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["consume", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 10000)" in out  # --batch-size
