"""The points where a runtime other than the in-process one plugs into the core.

The core runs everything in one process. A distributed runtime (``pygents_dist``) needs to
change four things without patching the core: where tool and hook locks live, where queued
turns go, which agent's context a running tool or hook sees, and to learn of agents made
while it runs (so that other processes can reach them). All are set here and read
on the hot path, so they are plain module state, not registries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pygents.agent import Agent
    from pygents.context import ContextPool, ContextQueue
    from pygents.turn import Turn

type LockProvider = Callable[[str, asyncio.Lock], AbstractAsyncContextManager[object]]
"""Given a lock's name (``"tool:<name>"`` or ``"hook:<name>"``) and its local lock, returns
the context manager that actually serialises the call."""

type ActiveContext = tuple[ContextQueue[object], ContextPool[object]]

#: The context queue and pool of the agent whose turn is running in this task, if any.
active_context: ContextVar[ActiveContext | None] = ContextVar(
    "pygents_active_context", default=None
)

_lock_provider: LockProvider | None = None


def set_lock_provider(provider: LockProvider | None) -> None:
    """Route every ``lock=True`` tool and hook through ``provider`` (``None``: local locks)."""
    global _lock_provider
    _lock_provider = provider


def guard(name: str, lock: asyncio.Lock) -> AbstractAsyncContextManager[object]:
    """The context manager serialising a locked tool or hook called ``name``."""
    if _lock_provider is None:
        return lock
    return _lock_provider(name, lock)


class Router(Protocol):
    """Where ``put`` and ``send`` deliver turns when the queue lives outside the process."""

    async def put(self, agent_name: str, turn: Turn[Any]) -> None:
        """Deliver ``turn`` to the agent called ``agent_name`` (durably, before returning)."""


#: The active router; None keeps turns in each agent's in-process queue.
router: Router | None = None


def set_router(new: Router | None) -> None:
    """Deliver every ``put`` / ``send`` of this process through ``new`` (None: in process)."""
    global router
    router = new


#: Called with every agent registered (made) while set; None: nobody is told.
agent_observer: Callable[[Agent], None] | None = None


def set_agent_observer(observer: Callable[[Agent], None] | None) -> None:
    """Tell ``observer`` of every agent registered from now on (None: stop telling)."""
    global agent_observer
    agent_observer = observer
