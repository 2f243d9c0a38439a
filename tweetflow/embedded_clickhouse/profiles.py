"""The analyst's settings profile: limits every query starts with, and the constraint that the
client may lower them but never lift them.

Why the endpoint enforces it rather than the engine: chDB runs every connection as its `default`
user (its connection API takes no user), and applies neither a users.xml profile's constraints
nor `SET profile` to a connection (checked on chDB 26.9: `SET profile = 'x'` is accepted and
changes nothing). And why the engine stays at `readonly = 1` for the analyst's statements instead
of the `readonly = 2` BI users get on a server: chDB's `default` holds the FILE, URL and REMOTE
grants, so at `readonly = 2` the analyst could read the server's files (`file('/etc/…')`) and make
outgoing requests (`url()`); `readonly = 1` refuses those table functions. So the settings a
client sends over HTTP (URL parameters: what the JDBC driver's setMaxRows, clickhouse-go and
clickhouse-connect send) are applied before the connection turns read-only, as `readonly = 2`
would apply them, within these limits; a `SETTINGS` clause or `SET` inside SQL is refused (Code 164).
"""

from __future__ import annotations

from collections.abc import Mapping

from tweetflow.embedded_clickhouse.errors import SETTING_CONSTRAINT_VIOLATION, ClickHouseError

GIB = 1 << 30
# Upper bounds of the analyst's limits; every query starts at these values.
ANALYST_LIMITS: Mapping[str, int] = {
    "max_execution_time": 300,  # seconds: a dashboard query running longer is stopped
    "max_result_rows": 5_000_000,
    "max_result_bytes": GIB,  # results are built in memory before they are sent
    "max_memory_usage": 4 * GIB,  # per query, on a 23.5 GiB machine shared with the pipeline
}
ANALYST_SETTINGS: Mapping[str, int | str] = {**ANALYST_LIMITS, "result_overflow_mode": "throw"}


def check_limits(settings: Mapping[str, str]) -> None:
    """Refuse a setting that lifts one of the analyst's limits (0 means unlimited)."""
    for name, limit in ANALYST_LIMITS.items():
        if name not in settings:
            continue
        try:
            value = float(settings[name])
        except ValueError:
            value = -1.0
        if not 0 < value <= limit:
            raise ClickHouseError(SETTING_CONSTRAINT_VIOLATION,
                                  f"Setting {name} shouldn't be greater than {limit} nor 0 "
                                  f"(the analyst profile's limit); got {settings[name]}")


def settings_sql() -> str:
    """The SET statement that starts an analyst's connection at the profile's limits."""
    values = (f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}"
              for k, v in ANALYST_SETTINGS.items())
    return "SET " + ", ".join(values)
