"""pygents_dist: pygents agents across processes and machines, over Redis.

Write tools, hooks and agents exactly as with the core, serve them with
``pygents-worker myapp.agents`` on any number of machines, and talk to them from any service
with ``Client``. See the README for the guarantees (order, at-least-once execution with
exactly-once runtime effects, dead letters) and their limits.

The public names are loaded on first use (PEP 562), not when the package is imported: the
package also holds the pytest plugin, which every pytest run of a project with pygents
installed loads, with or without the ``dist`` extra (redis, msgpack). Importing
``pygents_dist`` alone therefore needs only the standard library; ``from pygents_dist import
Client`` needs the extra, and raises its ``ModuleNotFoundError`` without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pygents_dist import errors as _errors

if TYPE_CHECKING:
    from pygents_dist._client import Client
    from pygents_dist._instances import KindSummary
    from pygents_dist._keys import Keys
    from pygents_dist._transport import Transport
    from pygents_dist._wire import Limits
    from pygents_dist._worker import Worker, WorkerSettings
    from pygents_dist.errors import (
        ConnectionLostError,
        DeadLetteredError,
        DeadLetterReason,
        DistError,
        NotReplicatedError,
        PayloadError,
        RedisCommandError,
        RedisPermissionError,
        RemoteError,
        RemoteTurnTimeoutError,
        TurnCancelledError,
        UnknownAgentError,
    )

__all__ = [
    "Client",
    "ConnectionLostError",
    "DeadLetterReason",
    "DeadLetteredError",
    "DistError",
    "Keys",
    "KindSummary",
    "Limits",
    "NotReplicatedError",
    "PayloadError",
    "RedisCommandError",
    "RedisPermissionError",
    "RemoteError",
    "RemoteTurnTimeoutError",
    "Transport",
    "TurnCancelledError",
    "UnknownAgentError",
    "Worker",
    "WorkerSettings",
]

# Where each public name is defined.
_SOURCES = {
    "Client": "pygents_dist._client",
    "Keys": "pygents_dist._keys",
    "KindSummary": "pygents_dist._instances",
    "Limits": "pygents_dist._wire",
    "Transport": "pygents_dist._transport",
    "Worker": "pygents_dist._worker",
    "WorkerSettings": "pygents_dist._worker",
    # errors.py needs only the standard library and the core: safe to read its names now.
    **dict.fromkeys(_errors.__all__, "pygents_dist.errors"),
}


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use, and keep it."""
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module 'pygents_dist' has no attribute {name!r}")
    obj = getattr(importlib.import_module(source), name)
    if hasattr(obj, "__module__"):
        obj.__module__ = "pygents_dist"  # shown (and documented) as pygents_dist.<name>
    globals()[name] = obj
    return obj


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
