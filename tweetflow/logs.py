"""How every tweetflow process logs: one setup function (`setup_logging`) called by the CLI, by each
process `tweetflow.supervisor` spawns, by `python -m <service>.server` and by the embedded
ClickHouse endpoint. TWEETFLOW_LOG_LEVEL sets the level; TWEETFLOW_LOG_FORMAT=json writes one
JSON object per line (time, level, logger, process, component, message, exception) for a log
shipper, plus the fields `log_fields` puts in context (a worker's `batch` number and its
`partitions` while it processes a batch) and those given with `extra=`.

Why fields in a context variable rather than `extra=` at each call: a sink's retry warning is
logged deep inside the batch code, which knows nothing of the batch; the worker sets the fields
once around the batch and every line logged meanwhile, in any module, carries them.
Why structlog's ProcessorFormatter (already locked as Dagster's dependency): it renders standard
`logging` records, extras and tracebacks as JSON; the text format stays the plain one.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from tweetflow.settings import Settings, get_settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"

_fields: ContextVar[dict[str, Any]] = ContextVar("tweetflow_log_fields", default={})  # noqa: B039 (never mutated)
_component: str | None = None


class _Fields(logging.Filter):
    """Adds the component and the context's fields to each record (as `extra=` would)."""

    def __init__(self, component: str | None) -> None:
        super().__init__()
        self.component = component

    def filter(self, record: logging.LogRecord) -> bool:
        if self.component:
            record.component = self.component
        for key, value in _fields.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def setup_logging(settings: Settings | None = None, *, component: str | None = None) -> None:
    """Log to stderr at the settings' level and in their format, naming `component` (the command:
    consume, serve, ingest...). Replaces the handler an earlier call installed, never others."""
    global _component
    settings = settings or get_settings()
    _component = component
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_json_formatter() if settings.log_format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(_Fields(component))
    handler.set_name("tweetflow")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "tweetflow"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    # httpx logs every request at INFO: a library's chatter, shown only when debugging.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(
            logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING)


def component() -> str | None:
    """The component the last setup_logging named (the supervisor hands it to its children)."""
    return _component


@contextlib.contextmanager
def log_fields(**fields: Any) -> Iterator[None]:
    """Add `fields` to every line logged in this context (nested contexts add to the outer's)."""
    token = _fields.set({**_fields.get(), **fields})
    try:
        yield
    finally:
        _fields.reset(token)


def _json_formatter() -> logging.Formatter:
    from structlog.processors import EventRenamer, JSONRenderer, TimeStamper, format_exc_info
    from structlog.stdlib import ExtraAdder, ProcessorFormatter, add_log_level, add_logger_name

    def add_process(_logger: object, _name: str, event: dict[str, Any]) -> dict[str, Any]:
        event["process"] = event["_record"].processName
        return event

    return ProcessorFormatter(
        foreign_pre_chain=[TimeStamper(fmt="iso", utc=True, key="time"), add_log_level,
                           add_logger_name, add_process, ExtraAdder()],
        processors=[ProcessorFormatter.remove_processors_meta, format_exc_info,
                    EventRenamer("message"), JSONRenderer()])
