"""`tweetflow rules` against the local X API server's rules endpoint (X's request and answer
shapes: tests/streaming/x_api_server.py)."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout

from pydantic import SecretStr
from streaming_support import cli_env
from x_api_server import XApiServer, running

from tweetflow.app.cli import main as cli_main
from tweetflow.settings import Settings

RULES = "/2/tweets/search/stream/rules"


def rules(server: XApiServer, *argv: str, token: str = "test-token") -> tuple[int, str]:
    settings = Settings().model_copy(update={"x_bearer_token": SecretStr(token),
                                             "x_api_base_url": server.url})
    out = io.StringIO()
    with cli_env(settings), redirect_stdout(out), redirect_stderr(out):
        code = cli_main(["rules", *argv])
    return code, out.getvalue()


def test_add_list_and_delete_rules() -> None:
    with running() as server:
        assert rules(server, "list") == (0, "no rules\n")
        code, out = rules(server, "add", "#python lang:en", "--tag", "python")
        assert code == 0 and out.startswith("created 1, not created 0, valid 1, invalid 0\n")
        (rule_id, rule), = server.rules.items()
        assert rule == {"id": rule_id, "value": "#python lang:en", "tag": "python"}
        assert server.requests[-1].body == {"add": [{"value": "#python lang:en",
                                                     "tag": "python"}]}
        assert rules(server, "add", "from:xdevelopers")[0] == 0
        code, out = rules(server, "list")
        assert code == 0 and f"{rule_id}  #python lang:en  [tag: python]" in out
        assert "from:xdevelopers" in out
        code, out = rules(server, "delete", rule_id)
        assert (code, out.splitlines()[0]) == (0, "deleted 1, not deleted 0")
        assert server.requests[-1].body == {"delete": {"ids": [rule_id]}}
        assert [r["value"] for r in server.rules.values()] == ["from:xdevelopers"]
        code, out = rules(server, "delete", "--all")
        assert (code, out.splitlines()[0], server.rules) == (0, "deleted 1, not deleted 0", {})


def test_dry_run_validates_without_changing_anything() -> None:
    with running() as server:
        code, out = rules(server, "add", "cats has:images", "--dry-run")
        assert code == 0 and out.startswith("dry run: created 1")
        assert server.requests[-1].query == {"dry_run": "true"} and server.rules == {}
        rules(server, "add", "cats has:images")
        code, out = rules(server, "delete", "--all", "--dry-run")
        assert code == 0 and out.startswith("dry run: deleted 1") and len(server.rules) == 1


def test_refused_rules_and_errors_are_printed_plainly() -> None:
    with running() as server:
        rules(server, "add", "dogs")
        code, out = rules(server, "add", "dogs")
        assert code == 1
        assert "created 0, not created 1" in out and "error: DuplicateRule: dogs (rule " in out
        code, out = rules(server, "add", "(dogs OR cats")
        assert code == 1 and "error: UnprocessableEntity: (dogs OR cats Unmatched parenthesis." in out
        code, out = rules(server, "delete", "123")
        assert code == 1 and "Could not find rule with id '123'" in out
        code, out = rules(server, "list", token="wrong")
        assert (code, out) == (1, "tweetflow rules: HTTP 401: Unauthorized: Unauthorized\n")
        code, out = rules(server, "delete")
        assert code == 2 and "give rule ids or --all" in out


def test_rules_without_a_token_say_how_to_get_one() -> None:
    with running() as server:
        code, out = rules(server, "list", token="")
    assert code == 2 and "X_BEARER_TOKEN is not set" in out
    assert server.requests == []
