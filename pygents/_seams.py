"""The points where a runtime other than the in-process one plugs into the core.

The core runs everything in one process. A distributed runtime (``pygents_dist``) needs to
change these things without patching the core: where tool and hook locks live, where queued
turns go (now or later), which agent's context a running tool or hook sees, to learn of
agents made while it runs (so that other processes can reach them), and, for flow control,
where a tool's concurrency slots and rate limit live and how a retry waits for its backoff.
All are set here and read on the hot path, so they are plain module state, not registries.

Flow-control seams (each ``None`` by default: the in-process implementation):

- ``set_slot_provider(p)``: ``p(tool)`` returns the async context manager that holds one of
  the ``tool.concurrency`` slots of a tool declared with ``concurrency=N`` (not ``lock=True``:
  that one keeps going through ``set_lock_provider``). Default: a semaphore per tool.
- ``set_rate_gate(g)``: ``await g(tool)`` returns when a call of a tool with ``tool.rate``
  may start (it waits, never fails). Default: ``limits.RateLimiter`` per tool. It is called
  inside the concurrency slot, once per attempt.
- ``set_retry_wait(w)``: ``await w(tool, attempt, delay_s, error)`` waits out the backoff
  after failed attempt ``attempt``. Default: ``asyncio.sleep(delay_s)``. A worker replaces it
  with one that raises ``RetryDeferred`` to re-deliver the turn later instead of sleeping,
  and sets ``retry_attempt`` when it runs the re-delivered turn.
- ``Router.put_at`` / ``Router.cancel_delayed`` (optional methods of the router): where
  delayed turns go when the queue lives outside the process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pygents.agent import Agent
    from pygents.context import ContextPool, ContextQueue
    from pygents.tool import BaseTool
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
    """Where ``put`` and ``send`` deliver turns when the queue lives outside the process.

    A router that also takes delayed turns has two more methods (see ``DelayedRouter``);
    ``put(turn, delay_s=...)`` under a router without them raises ``NotImplementedError``.
    """

    async def put(self, agent_name: str, turn: Turn[Any]) -> None:
        """Deliver ``turn`` to the agent called ``agent_name`` (durably, before returning)."""


class DelayedRouter(Router, Protocol):
    """A ``Router`` that also holds turns until they are due (looked up with ``getattr``)."""

    async def put_at(self, agent_name: str, turn: Turn[Any], due_s: float) -> str:
        """Deliver ``turn`` to ``agent_name`` at ``due_s`` (seconds since the epoch, UTC; may
        be past: due at once). Returns the delayed turn's id, for ``cancel_delayed``."""

    async def cancel_delayed(self, agent_name: str, turn_id: str) -> bool:
        """Drop the delayed turn ``turn_id`` of ``agent_name`` if not yet due; True if it
        was dropped (False: unknown, already due, or already cancelled)."""


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


# -- flow control ------------------------------------------------------------------------

type SlotProvider = Callable[[BaseTool], AbstractAsyncContextManager[object]]
"""Given a tool declared with ``concurrency=N``, returns the context manager holding one of
its N slots for one attempt (entered before the rate gate, left before any backoff wait)."""

type RateGate = Callable[[BaseTool], Awaitable[None]]
"""Given a tool with a ``rate``, returns (awaited) when one call of it may start."""

type RetryWait = Callable[[BaseTool, int, float, BaseException], Awaitable[None]]
"""``(tool, failed_attempt, delay_s, error)``: waits out one backoff before the next attempt."""

_slot_provider: SlotProvider | None = None
_rate_gate: RateGate | None = None
_retry_wait: RetryWait | None = None

#: The attempt number the next retrying call in this context starts at (1: a fresh call). A
#: worker that re-delivers a deferred retry sets it before running the turn; the retry loop
#: reads it once and puts it back to 1, so nested tool calls start afresh.
retry_attempt: ContextVar[int] = ContextVar("pygents_retry_attempt", default=1)


class RetryDeferred(BaseException):  # a signal, like GeneratorExit: not an Exception
    """Raised by a replaced ``retry_wait`` to end a call whose retry will run elsewhere later.

    A ``BaseException`` so that no ``except Exception`` in tools or hooks catches it: the
    tool fires neither ``ON_ERROR`` nor ``AFTER_INVOKE``, and the turn ends ``CANCELLED``.
    The runtime that raised it catches it around the turn and re-delivers the turn at
    ``due_s`` with ``retry_attempt`` set to ``attempt + 1``.

    Attributes:
        tool_name: the retrying tool.
        attempt: the attempt that failed.
        delay_s: the backoff before the next attempt.
        error: the failed attempt's error.
    """

    def __init__(self, tool_name: str, attempt: int, delay_s: float, error: BaseException):
        super().__init__(
            f"tool {tool_name!r}: attempt {attempt} failed ({type(error).__name__}); "
            f"attempt {attempt + 1} deferred by {delay_s:.3f}s"
        )
        self.tool_name = tool_name
        self.attempt = attempt
        self.delay_s = delay_s
        self.error = error


def set_slot_provider(provider: SlotProvider | None) -> None:
    """Hold ``concurrency=N`` slots through ``provider`` (``None``: in-process semaphores)."""
    global _slot_provider
    _slot_provider = provider


def set_rate_gate(gate: RateGate | None) -> None:
    """Gate rate-limited tools through ``gate`` (``None``: in-process GCRA limiters)."""
    global _rate_gate
    _rate_gate = gate


def set_retry_wait(wait: RetryWait | None) -> None:
    """Wait out retry backoffs through ``wait`` (``None``: ``asyncio.sleep``)."""
    global _retry_wait
    _retry_wait = wait


def slot(tool: BaseTool) -> AbstractAsyncContextManager[object]:
    """The context manager holding one concurrency slot of ``tool`` for one attempt."""
    if _slot_provider is None:
        return tool._local_slots()
    return _slot_provider(tool)


async def rate_gate(tool: BaseTool) -> None:
    """Return when one call of the rate-limited ``tool`` may start."""
    if _rate_gate is None:
        await tool._local_rate_limiter().wait()
    else:
        await _rate_gate(tool)


async def retry_wait(tool: BaseTool, attempt: int, delay_s: float, error: BaseException) -> None:
    """Wait ``delay_s`` before the attempt after ``attempt`` (or hand the wait to a runtime)."""
    if _retry_wait is None:
        await asyncio.sleep(delay_s)
    else:
        await _retry_wait(tool, attempt, delay_s, error)
