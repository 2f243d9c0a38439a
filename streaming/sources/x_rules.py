"""The filtered stream's rules: `GET` and `POST /2/tweets/search/stream/rules`.

X applies rule changes to an open stream within about 20 s, without a reconnect. An add or delete
answers `{"data": [...], "meta": {"summary": {...}}, "errors": [...]}`: a rule refused (a
duplicate, a syntax error) is an entry of `errors` in a 200 answer, not an HTTP error, so callers
print `errors` whatever the status. `dry_run=true` validates without changing anything.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from streaming.sources.x_stream import x_client, x_error
from tweetflow.settings import Settings

RULES_PATH = "/2/tweets/search/stream/rules"


class XApiError(RuntimeError):
    """An HTTP error from the X API, in X's words."""


class XRules:
    def __init__(self, settings: Settings, transport: httpx.BaseTransport | None = None) -> None:
        self._client = x_client(settings, transport=transport)

    def close(self) -> None:
        self._client.close()

    def _answer(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 300:
            raise XApiError(x_error(response.status_code, response.content)[1])
        doc = orjson.loads(response.content) if response.content else {}
        if not isinstance(doc, dict):
            raise XApiError(f"HTTP {response.status_code}: the answer is not a JSON object")
        return doc

    def list(self, ids: tuple[str, ...] = ()) -> dict[str, Any]:
        params = {"ids": ",".join(ids)} if ids else None
        return self._answer(self._client.get(RULES_PATH, params=params))

    def _post(self, body: dict[str, Any], dry_run: bool) -> dict[str, Any]:
        params = {"dry_run": "true"} if dry_run else None
        return self._answer(self._client.post(RULES_PATH, params=params, json=body))

    def add(self, value: str, tag: str | None = None, dry_run: bool = False) -> dict[str, Any]:
        return self._post({"add": [{"value": value, **({"tag": tag} if tag else {})}]}, dry_run)

    def delete(self, ids: tuple[str, ...], dry_run: bool = False) -> dict[str, Any]:
        return self._post({"delete": {"ids": list(ids)}}, dry_run)

    def delete_all(self, dry_run: bool = False) -> dict[str, Any]:
        """Delete every rule: their ids from a listing, then one delete (X's `delete_all=true`
        query flag does the same on access levels that have it)."""
        ids = tuple(rule["id"] for rule in self.list().get("data") or ())
        if not ids:
            return {"meta": {"summary": {"deleted": 0, "not_deleted": 0}}}
        return self.delete(ids, dry_run)
