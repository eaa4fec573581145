"""Every exception the core raises.

The tree, with the built-in bases programs catch by::

    Exception
    ├── SafeExecutionError          a running turn or agent was changed, or re-entered
    ├── WrongRunMethodError         returning() on a generator tool, or yielding() on a coroutine
    ├── TimeoutError
    │   └── TurnTimeoutError        a turn ran past its timeout
    ├── KeyError
    │   ├── UnregisteredToolError
    │   ├── UnregisteredAgentError
    │   └── UnregisteredHookError
    └── ValueError
        └── UnserializableHookError a hook cannot be saved by name
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "SafeExecutionError",
    "TurnTimeoutError",
    "UnregisteredAgentError",
    "UnregisteredHookError",
    "UnregisteredToolError",
    "UnserializableHookError",
    "WrongRunMethodError",
]


class _Message(Exception):
    """Mixin: show the message itself, not KeyError's quoted repr of it."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class SafeExecutionError(Exception):
    """A turn or agent was modified or re-entered while it was running (or paused)."""


class WrongRunMethodError(Exception):
    """``returning()`` was used on a generator tool, or ``yielding()`` on a coroutine tool."""


class TurnTimeoutError(TimeoutError):
    """A turn did not finish within its ``timeout`` (seconds)."""


class UnregisteredToolError(_Message, KeyError):
    """No tool is registered under the requested name."""


class UnregisteredAgentError(_Message, KeyError):
    """No agent is registered under the requested name."""


class UnregisteredHookError(_Message, KeyError):
    """No hook is registered under the requested name."""


class UnserializableHookError(ValueError):
    """A hook held by an object is not the one registered under its name, so it cannot be saved."""


def registered_names(names: Iterable[str], shown: int = 20) -> str:
    """`` (registered: 'a', 'b', ...)`` for a not-found message, at most ``shown`` names.

    A process may hold hundreds of tools; the first names in order are enough to spot a typo.
    """
    ordered = sorted(names)
    if not ordered:
        return " (none registered)"
    more = f", ... {len(ordered) - shown} more" if len(ordered) > shown else ""
    return f" (registered: {', '.join(map(repr, ordered[:shown]))}{more})"
