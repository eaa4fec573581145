"""pygents_dist: pygents agents across processes and machines, over Redis.

Write tools, hooks and agents exactly as with the core, serve them with
``pygents-worker myapp.agents`` on any number of machines, and talk to them from any service
with ``Client``. See the README for the guarantees (order, at-least-once execution with
exactly-once runtime effects, dead letters) and their limits.
"""

from pygents_dist._client import Client
from pygents_dist._keys import Keys
from pygents_dist._wire import Limits
from pygents_dist._worker import Worker, WorkerSettings
from pygents_dist.errors import (
    ConnectionLostError,
    DeadLetteredError,
    DeadLetterReason,
    DistError,
    PayloadError,
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
    "Limits",
    "PayloadError",
    "RemoteError",
    "RemoteTurnTimeoutError",
    "TurnCancelledError",
    "UnknownAgentError",
    "Worker",
    "WorkerSettings",
]

for _name in __all__:
    _obj = globals()[_name]
    if hasattr(_obj, "__module__"):
        _obj.__module__ = "pygents_dist"
del _name, _obj
