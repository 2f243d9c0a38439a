"""`tweetflow rules`: list, add and delete the X filtered stream's rules (streaming/sources/x_rules).

    tweetflow rules list
    tweetflow rules add 'VALUE' [--tag TAG] [--dry-run]
    tweetflow rules delete ID [ID ...] [--dry-run]
    tweetflow rules delete --all [--dry-run]

Prints X's summary and every error X gave, as X words them. Exit status: 0 when X accepted
everything, 1 when it refused a rule or answered with an error, 2 for bad arguments or no token.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tweetflow.settings import get_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="the active rules")
    add = actions.add_parser("add", help="add a rule")
    add.add_argument("value", help="the rule, in X's rule syntax")
    add.add_argument("--tag", default=None, help="a label sent with each matching Tweet "
                     "(default: none)")
    add.add_argument("--dry-run", action="store_true", help="validate only (dry_run=true)")
    delete = actions.add_parser("delete", help="delete rules by id, or --all")
    delete.add_argument("ids", nargs="*", help="rule ids (from `tweetflow rules list`; "
                        "default: none, give ids or --all)")
    delete.add_argument("--all", action="store_true", help="delete every rule")
    delete.add_argument("--dry-run", action="store_true", help="validate only (dry_run=true)")


def _rule(rule: dict[str, Any]) -> str:
    tag = f"  [tag: {rule['tag']}]" if rule.get("tag") else ""
    return f"{rule.get('id', '-'):>20}  {rule.get('value', '')}{tag}"


def _error(error: dict[str, Any]) -> str:
    what = error.get("title") or "error"
    words = [str(error[k]) for k in ("value", "detail", "message") if error.get(k)]
    words += [str(d) for d in error.get("details") or ()]
    if error.get("id"):
        words.append(f"(rule {error['id']})")
    return f"  error: {what}: " + " ".join(words)


def report(doc: dict[str, Any], dry_run: bool = False) -> tuple[str, bool]:
    """X's answer to a change as text, and whether it was accepted without errors."""
    summary = (doc.get("meta") or {}).get("summary") or {}
    head = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary.items())
    lines = [("dry run: " if dry_run else "") + (head or "no summary")]
    lines += [_rule(rule) for rule in doc.get("data") or ()]
    errors = doc.get("errors") or ()
    lines += [_error(e) for e in errors]
    return "\n".join(lines), not errors


def run(args: argparse.Namespace) -> int:
    """Entry point of `tweetflow rules`."""
    import httpx

    from streaming.sources.x_rules import XApiError, XRules

    if args.action == "delete" and bool(args.ids) == bool(args.all):
        print("tweetflow rules delete: give rule ids or --all", file=sys.stderr)
        return 2
    try:
        rules = XRules(get_settings())
    except ValueError as exc:
        print(f"tweetflow rules: {exc}", file=sys.stderr)
        return 2
    try:
        if args.action == "list":
            data = rules.list().get("data") or ()
            print("\n".join(_rule(rule) for rule in data) if data else "no rules")
            return 0
        if args.action == "add":
            doc = rules.add(args.value, args.tag, args.dry_run)
        elif args.all:
            doc = rules.delete_all(args.dry_run)
        else:
            doc = rules.delete(tuple(args.ids), args.dry_run)
    except (XApiError, httpx.HTTPError) as exc:
        print(f"tweetflow rules: {exc}", file=sys.stderr)
        return 1
    finally:
        rules.close()
    text, ok = report(doc, args.dry_run)
    print(text)
    return 0 if ok else 1
