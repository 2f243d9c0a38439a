"""API keys: every AnalyticsService and IngestService call carries `x-api-key` metadata naming
a known key.

Keys come from `Settings.api_keys` (TWEETFLOW_API_KEYS, comma-separated). When it is empty, one
key is generated on first start and kept in `<data dir>/api_key` (mode 0600), so `make demo` can
print it and the CLI can read it. `TWEETFLOW_API_KEYS=off` turns checking off (for a trusted
network only).
Only AnalyticsService methods are guarded: health checking and reflection need no key (load
balancers and tools call them anonymously).
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import grpc

from tweetflow.settings import Settings

METADATA_KEY = "x-api-key"
ENV_KEYS = Settings.env_names()["api_keys"][0]  # TWEETFLOW_API_KEYS, named in log lines
KEY_FILE = "api_key"


def key_file(settings: Settings) -> Path:
    return settings.data_dir / KEY_FILE


def _configured(settings: Settings) -> list[str]:
    """The keys named in the settings ([] when none is)."""
    return [k.strip() for k in settings.api_keys.get_secret_value().split(",") if k.strip()]


def _checking_off(settings: Settings) -> bool:
    return settings.api_keys.get_secret_value().strip().lower() == "off"


def load_api_keys(settings: Settings) -> frozenset[str] | None:
    """The accepted keys; None when checking is off. Generates and stores a key if none is set."""
    if _checking_off(settings):
        return None
    configured = _configured(settings)
    if configured:
        return frozenset(configured)
    return frozenset({stored_or_new_key(key_file(settings))})


def stored_or_new_key(path: Path) -> str:
    """The key kept in `path`, created (random, 0600) if the file does not exist yet."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = "tf_" + secrets.token_urlsafe(24)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race; use its key
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


def client_key(settings: Settings) -> str | None:
    """The key a local client should send: Settings.api_key, the first configured key, or the
    stored one."""
    if settings.api_key.get_secret_value():
        return settings.api_key.get_secret_value()
    configured = _configured(settings)
    if configured and configured[0].lower() != "off":
        return configured[0]
    path = key_file(settings)
    return path.read_text().strip() if path.exists() else None


def describe_keys(settings: Settings) -> str:
    """Where the accepted keys come from, for the startup log (never the keys themselves)."""
    if _checking_off(settings):
        return f"off ({ENV_KEYS}=off)"
    if _configured(settings):
        return f"required, from {ENV_KEYS}"
    return f"required, key in {key_file(settings)}"


class ApiKeys:
    """Rejects calls without a known `x-api-key` with UNAUTHENTICATED.

    Each configured key is compared with `hmac.compare_digest` (constant time: a wrong key reveals
    nothing about how much of it matched). `guard` wraps each handler once, at registration (see
    query_service.interceptors.instrument for why not an aio interceptor).
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = tuple(k.encode() for k in keys)

    def refusal(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
        """Why a call with this metadata is refused, or None when its key is known."""
        return self.refusal_of(next((v for k, v in metadata or () if k == METADATA_KEY), None))

    def refusal_of(self, key: str | bytes | None) -> str | None:
        """Why a call presenting `key` (None: none) is refused, or None when the key is known."""
        if key is None:
            return f"missing {METADATA_KEY} metadata"
        given = key if isinstance(key, bytes) else key.encode()
        if not any(hmac.compare_digest(given, known) for known in self._keys):
            return f"unknown {METADATA_KEY}"
        return None

    def guard(self, behavior: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
              ) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            reason = self.refusal(context.invocation_metadata())
            if reason is not None:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)
            return await behavior(request, context)

        return guarded
