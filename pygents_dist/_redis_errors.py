"""What Redis and redis-py raise, translated into pygents_dist's errors: the one place.

Every error reply and every lost connection reaches callers through this module, so the rest
of the package (and its users) catch ``pygents_dist.errors`` types only:

- a connection that stays lost through the retries becomes ``ConnectionLostError``;
- an error reply becomes ``RedisCommandError`` (``RedisPermissionError`` for an ACL refusal),
  carrying the reply's code (``NOPERM``, ``WRONGTYPE``, ``READONLY``...) and the operation
  that met it.

The plumbing modules (``_connections.py``, ``_scripts.py``, ``_transport.py``) look at raw
replies first where an error is part of a protocol (``NOSCRIPT``: load the script and go
again; ``BUSYGROUP``: the group exists; on a cluster ``MOVED``, ``ASK`` and the replies of a
failover, told apart by ``cluster_redirect`` for ``_cluster.py`` to follow); everything else
comes through here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis._parsers.base import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pygents_dist.errors import (
    ConnectionLostError,
    DistError,
    RedisCommandError,
    RedisPermissionError,
)

__all__ = [
    "CONNECTION_ERRORS",
    "cluster_redirect",
    "first_error",
    "is_missing_script",
    "lost",
    "reply_code",
    "translate",
]

#: What a lost, refused or timed-out connection raises (redis-py's and the OS's).
CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)
_PERMISSION_CODES = frozenset({"NOPERM", "NOAUTH", "WRONGPASS"})
#: redis-py turns known codes into exception classes and cuts the code off the message.
_CODE_OF_CLASS: dict[type[Exception], str] = {
    kind: code
    for code, kind in BaseParser.EXCEPTION_CLASSES.items()
    if isinstance(kind, type) and code != "ERR"
}


def lost(exc: BaseException, what: str) -> ConnectionLostError:
    """``ConnectionLostError`` for a connection that failed during ``what`` (chain it)."""
    return ConnectionLostError(f"Redis unreachable during {what}: {exc}")


def is_missing_script(reply: Any) -> bool:
    """Whether ``reply`` is ``NOSCRIPT``: Redis does not know the script (it restarted)."""
    return isinstance(reply, NoScriptError)


#: Cluster replies meaning "not now, not here": retried after a backoff with a fresh slot map.
_TRANSIENT_CLUSTER = frozenset({"TRYAGAIN", "CLUSTERDOWN", "LOADING", "MASTERDOWN", "READONLY"})


def cluster_redirect(reply: Any) -> tuple[str, tuple[str, int] | None] | None:
    """For a Redis Cluster reply that asks to try elsewhere or later: ``(code, address)``
    (``MOVED``/``ASK`` with the node named, or ``TRYAGAIN``, ``CLUSTERDOWN``, ``LOADING``,
    ``MASTERDOWN``, ``READONLY`` with None); None for any other reply."""
    if not isinstance(reply, Exception):
        return None
    code = reply_code(reply)
    if code in ("MOVED", "ASK"):
        host, _, port = str(reply).split()[-1].rpartition(":")
        return (code, (host, int(port)) if port.isdigit() else None)
    if code in _TRANSIENT_CLUSTER:
        return (code, None)
    return None


def reply_code(exc: Exception) -> str:
    """The code of an error reply (``NOPERM``, ``BUSYGROUP``, ``WRONGTYPE``...; ``ERR`` when
    Redis gave none)."""
    code = _CODE_OF_CLASS.get(type(exc))
    if code is not None:
        return code
    first = str(exc).split(" ", 1)[0]
    return first if first.isupper() and first.isalpha() else "ERR"


def translate(exc: Exception, what: str) -> DistError:
    """Our error for ``exc`` (an error reply or a connection failure) met during ``what``.

    A ``DistError`` passes through unchanged.
    """
    if isinstance(exc, DistError):
        return exc
    if isinstance(exc, CONNECTION_ERRORS):
        error: DistError = lost(exc, what)
    else:
        message, code = str(exc), reply_code(exc)
        if not message.startswith(code):
            message = f"{code} {message}"
        kind = RedisPermissionError if code in _PERMISSION_CODES else RedisCommandError
        error = kind(f"Redis refused {what}: {message}", code=code, operation=what)
    error.__cause__ = exc
    return error


def first_error(results: Sequence[Any], what: str) -> None:
    """Raise the first error reply among ``results``, translated."""
    for got in results:
        if isinstance(got, Exception):
            raise translate(got, what) from got
