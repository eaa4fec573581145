"""Structured logging for workers: every line carries worker, agent and turn when known.

``configure(level, json=True)`` prints one JSON object a line (for log shippers); the text
format puts the same fields at the end of a readable line. ``ContextFilter`` (installed by
``configure``) adds the worker id and the running turn's W3C trace and span ids to every
record, from context variables the worker sets, so lines logged by user tools carry them too.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

from pygents_dist import _trace

__all__ = ["ContextFilter", "configure", "current_worker"]

_FIELDS = ("worker", "agent", "turn", "tool", "reason", "trace", "span")

#: The id of the worker whose task is logging (set by ``Worker.run``).
current_worker: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "pygents_dist_worker", default=None
)


class ContextFilter(logging.Filter):
    """Adds ``worker``, ``trace`` and ``span`` to records that do not set them already."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "worker", None) is None:
            record.worker = current_worker.get()
        if getattr(record, "trace", None) is None:
            parsed = _trace.ids(_trace.current.get())
            if parsed is not None:
                record.trace, record.span = parsed
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for field in _FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                line[field] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        extra = " ".join(
            f"{f}={getattr(record, f)}" for f in _FIELDS if getattr(record, f, None) is not None
        )
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extra:
            line += f"  [{extra}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(level: str = "INFO", json_lines: bool = False) -> None:
    """Send logs to stderr at ``level``: pygents, pygents_dist and (through the root logger)
    the served application's own loggers, all in one format with the context fields."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if json_lines else _TextFormatter())
    handler.addFilter(ContextFilter())
    for name in ("pygents", "pygents_dist", ""):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        if name:
            logger.propagate = False
