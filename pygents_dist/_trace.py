"""W3C trace context (``traceparent``) carried by turns, so one request's turns share a trace.

A turn's envelope has an optional ``trace`` field holding a ``traceparent`` header value::

    00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>

A client may pass one (from the request it is serving); otherwise a new trace starts. While
a worker runs a turn, ``current`` holds that turn's traceparent; a turn sent from inside it
(``agent.send``, a returned ``Turn``) carries the same trace id with a new span id, and the
worker's log lines carry the trace and span ids. Standard library only: exporting spans to a
tracing backend is left to the application (the ids are the W3C ones, so they join up).
"""

from __future__ import annotations

import contextvars
import random
import re

__all__ = ["child", "current", "ids", "new_traceparent"]

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
# Seeded from the OS; trace ids need to be unique, not secret (no system call per turn).
_random = random.Random()

#: The traceparent of the turn running in this task (None outside a turn).
current: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "pygents_dist_trace", default=None
)


def ids(traceparent: str | None) -> tuple[str, str] | None:
    """``(trace id, span id)`` of a valid traceparent, else None.

    Per the W3C spec, version ``ff`` and all-zero ids are invalid.
    """
    if not traceparent or len(traceparent) != 55:
        return None
    match = _TRACEPARENT.match(traceparent)
    if match is None:
        return None
    version, trace_id, span_id, _flags = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id


def _span_id() -> str:
    return f"{_random.getrandbits(64) or 1:016x}"


def new_traceparent() -> str:
    """A traceparent starting a new trace (sampled flag set)."""
    return f"00-{_random.getrandbits(128) or 1:032x}-{_span_id()}-01"


def child(traceparent: str | None) -> str:
    """A traceparent in the same trace as ``traceparent`` with a new span id.

    An invalid or missing parent starts a new trace, as the W3C spec says a receiver should.
    """
    parsed = ids(traceparent)
    if parsed is None:
        return new_traceparent()
    flags = traceparent[-2:] if traceparent else "01"
    return f"00-{parsed[0]}-{_span_id()}-{flags}"
