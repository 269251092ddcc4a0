"""obsbench's own logs: one JSON object per line, each carrying the run's correlation id.

``configure()`` installs the handler on the ``obsbench`` logger (idempotent) at
``OBSBENCH_LOG_LEVEL``; ``correlation(...)`` scopes a correlation id to a run, a request or a
tick. Extra structured fields go in ``logger.info("msg", extra={"fields": {...}})``.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TextIO

_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "obsbench_correlation_id", default=None
)
_HANDLER_NAME = "obsbench-json"


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line: ts, level, logger, message, correlation_id, fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": _correlation_id.get(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure(level: str | None = None, stream: TextIO | None = None) -> logging.Logger:
    """Install the JSON handler on the ``obsbench`` logger and return it."""
    if level is None:
        from obsbench.config import get_settings

        level = get_settings().log_level
    logger = logging.getLogger("obsbench")
    logger.setLevel(level)
    logger.propagate = False
    for handler in logger.handlers:
        if handler.get_name() == _HANDLER_NAME:
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    return logger


def get_logger(name: str) -> logging.Logger:
    """A child of the ``obsbench`` logger (``name`` is usually ``__name__``)."""
    return logging.getLogger(name if name.startswith("obsbench") else f"obsbench.{name}")


def new_correlation_id() -> str:
    """A fresh random correlation id."""
    return uuid.uuid4().hex


def current_correlation_id() -> str | None:
    """The correlation id in scope, if any."""
    return _correlation_id.get()


@contextlib.contextmanager
def correlation(correlation_id: str | None = None) -> Iterator[str]:
    """Scope ``correlation_id`` (a new one by default) to the logs emitted inside."""
    cid = correlation_id or new_correlation_id()
    token = _correlation_id.set(cid)
    try:
        yield cid
    finally:
        _correlation_id.reset(token)
