"""Agents: a named queue of turns over a set of tools, run as a stream of values.

``agent.run()`` takes turns in FIFO order and routes every value a tool produces: a ``Turn``
is queued on this agent, a ``ContextItem`` goes to the context queue (no id) or pool (with an
id), anything else is yielded to the caller as ``(turn, value)``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncGenerator, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from types import EllipsisType, MappingProxyType
from typing import Any, overload

from pygents import _seams
from pygents._timers import Timers, delayed_router, due_s, schedule_entry
from pygents.context import ContextItem, ContextPool, ContextQueue
from pygents.errors import SafeExecutionError, UnregisteredToolError
from pygents.hooks import (
    AgentHook,
    HookFn,
    HookRegistry,
    InstanceHook,
    TurnHook,
    fire,
    global_hooks,
)
from pygents.registry import INSTANCE_SEPARATOR, AgentRegistry, ToolRegistry, split_instance
from pygents.schedule import Schedule, ScheduleEntry
from pygents.tool import BaseTool
from pygents.turn import Turn

__all__ = ["Agent"]

_G_BEFORE_TURN = global_hooks(AgentHook.BEFORE_TURN)
_G_AFTER_TURN = global_hooks(AgentHook.AFTER_TURN)
_G_VALUE = global_hooks(AgentHook.ON_TURN_VALUE)
_G_BEFORE_PUT = global_hooks(AgentHook.BEFORE_PUT)
_G_AFTER_PUT = global_hooks(AgentHook.AFTER_PUT)
_ROUTED = (Turn, ContextItem)
_time = time.time
_NO_SCHEDULES: Mapping[str, ScheduleEntry] = MappingProxyType({})


def _wake_up(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Agent:
    """A named worker over a fixed set of tools, with a queue of turns and its own context.

    Example::

        agent = Agent("fetcher", "Fetches URLs", [fetch])
        await agent.put(Turn("fetch", kwargs={"url": "https://example.com"}))
        async for turn, value in agent.run():
            print(value)

    Args:
        name: unique among registered agents.
        description: what the agent is for.
        tools: the registered tool objects this agent may run.
        context_pool: defaults to an unbounded ``ContextPool()``.
        context_queue: defaults to ``ContextQueue(limit=10)``.
        tags: matched against tagged global hooks.

    Raises:
        UnregisteredToolError: a tool's name is not in ``ToolRegistry``.
        ValueError: the name is taken, or a tool is registered but as another object.
    """

    def __init__(
        self,
        name: str,
        description: str,
        tools: Sequence[BaseTool],
        context_pool: ContextPool[Any] | None = None,
        context_queue: ContextQueue[Any] | None = None,
        tags: Iterable[str] | None = None,
    ) -> None:
        for item in tools:
            _check_tool(name, item)
        init = object.__setattr__
        init(self, "_running", False)
        init(self, "_paused", False)
        init(self, "_resumed", asyncio.Event())
        self._resumed.set()
        init(self, "_queue", deque())
        init(self, "_current_turn", None)
        init(self, "name", name)
        init(self, "description", description)
        init(self, "tools", list(tools))
        init(self, "_tool_set", frozenset(tools))
        init(self, "context_pool", context_pool if context_pool is not None else ContextPool())
        init(
            self, "context_queue", context_queue if context_queue is not None else ContextQueue(10)
        )
        init(self, "tags", frozenset(tags or ()))
        init(self, "hooks", [])
        init(self, "turn_hooks", [])
        init(self, "_timers", None)
        init(self, "_waiter", None)
        init(self, "_active_since_s", 0.0)
        AgentRegistry.register(self)

    name: str
    description: str
    tools: list[BaseTool]
    context_pool: ContextPool[Any]
    context_queue: ContextQueue[Any]
    tags: frozenset[str]
    hooks: list[HookFn]
    turn_hooks: list[HookFn]
    _queue: deque[Turn[Any]]
    _current_turn: Turn[Any] | None
    _running: bool
    _paused: bool
    _resumed: asyncio.Event
    _tool_set: frozenset[BaseTool]
    _timers: Timers | None
    _waiter: asyncio.Future[None] | None  # set while run() sleeps until a timer is due
    _active_since_s: float  # when run() last started or resumed: earlier ticks are missed

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_") and (self._running or self._paused):
            state = "running" if self._running else "paused"  # running is reported first
            raise SafeExecutionError(
                f"Cannot change property {name!r} while the agent is {state} (agent {self.name!r})"
            )
        if name == "tools":
            object.__setattr__(self, "_tool_set", frozenset(value))
        elif name == "tags":
            value = frozenset(value or ())
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"Agent(name={self.name!r}, tools={[t.__name__ for t in self.tools]!r})"

    def __iter__(self) -> Iterator[Turn[Any]]:
        return iter(list(self._queue))

    @property
    def turns(self) -> list[Turn[Any]]:
        """A snapshot of the queued turns, next first (not including the running one)."""
        return list(self._queue)

    @property
    def current_turn(self) -> Turn[Any] | None:
        """The turn being run now, if any."""
        return self._current_turn

    @property
    def is_paused(self) -> bool:
        """Whether the loop is held at its gate."""
        return self._paused

    @property
    def is_running(self) -> bool:
        """Whether a ``run()`` is active."""
        return self._running

    # -- queue ---------------------------------------------------------------------------

    @overload
    async def put(self, turn: Turn[Any]) -> None: ...
    @overload
    async def put(self, turn: Turn[Any], *, delay_s: float, at: None = None) -> str: ...
    @overload
    async def put(self, turn: Turn[Any], *, delay_s: None = None, at: datetime | float) -> str: ...
    @overload
    async def put(
        self, turn: Turn[Any], *, delay_s: float | None = None, at: datetime | float | None = None
    ) -> str | None: ...
    async def put(
        self, turn: Turn[Any], *, delay_s: float | None = None, at: datetime | float | None = None
    ) -> str | None:
        """Queue ``turn`` now, or hold it until due (fires ``BEFORE_PUT`` / ``AFTER_PUT`` here).

        A delayed turn (``delay_s`` seconds from now, or ``at`` an aware datetime or epoch
        seconds; a past time is due at once) enters the queue when due, while ``run()`` is
        active, or at the start of the next ``run()`` if it came due meanwhile; turns due
        together enter in due order (ties: put order). ``run()`` does not end while delayed
        turns are pending. Cancel one before it is due with ``cancel_delayed(id)``.

        Returns:
            None for an immediate turn; the delayed turn's id for a delayed one.

        Raises:
            ValueError: the turn's tool is not one of this agent's tools, ``delay_s`` is
                negative, ``at`` is a naive datetime, or both are given.
            NotImplementedError: delayed, under a runtime whose router cannot hold turns.
        """
        if delay_s is not None or at is not None:
            return await self._put_later(turn, due_s(delay_s, at))
        if turn.tool not in self._tool_set:
            raise self._foreign_tool(turn)
        hooks = self.hooks
        if hooks or _G_BEFORE_PUT:
            await fire(AgentHook.BEFORE_PUT, hooks, self.tags, self, turn)
        router = _seams.router
        if router is None:
            self._queue.append(turn)
            if self._waiter is not None:  # run() sleeps until a timer is due: wake it
                _wake_up(self._waiter)
        else:
            await router.put(self.name, turn)
        if hooks or _G_AFTER_PUT:
            await fire(AgentHook.AFTER_PUT, hooks, self.tags, self, turn)
        return None

    def _foreign_tool(self, turn: Turn[Any]) -> ValueError:
        names = sorted(t.__name__ for t in self.tools)
        return ValueError(
            f"agent {self.name!r} cannot run tool {turn.tool.__name__!r}; its tools: {names}"
        )

    async def _put_later(self, turn: Turn[Any], due_s: float) -> str:
        """``put`` of a delayed turn: put hooks now, the turn held until ``due_s``."""
        if turn.tool not in self._tool_set:
            raise self._foreign_tool(turn)
        hooks = self.hooks
        if hooks or _G_BEFORE_PUT:
            await fire(AgentHook.BEFORE_PUT, hooks, self.tags, self, turn)
        turn_id = await self._hold(turn, due_s)
        if hooks or _G_AFTER_PUT:
            await fire(AgentHook.AFTER_PUT, hooks, self.tags, self, turn)
        return turn_id

    async def _hold(self, turn: Turn[Any], due_s: float) -> str:
        router = _seams.router
        if router is not None:
            return await delayed_router(router).put_at(self.name, turn, due_s)
        timers = self._timers_made()
        turn_id = timers.add_delayed(turn, due_s)
        if self._waiter is not None:
            _wake_up(self._waiter)  # it may be due before what run() sleeps for
        return turn_id

    def _timers_made(self) -> Timers:
        if self._timers is None:
            object.__setattr__(self, "_timers", Timers())
        assert self._timers is not None
        return self._timers

    async def cancel_delayed(self, turn_id: str) -> bool:
        """Drop the delayed turn ``turn_id`` (from ``put`` / ``send``) before it is due.

        Returns:
            True if it was dropped; False if unknown, already due (queued) or cancelled.
        """
        router = _seams.router
        if router is not None:
            return await delayed_router(router).cancel_delayed(self.name, turn_id)
        timers = self._timers
        cancelled = timers is not None and timers.cancel(turn_id)
        if cancelled and self._waiter is not None:
            _wake_up(self._waiter)  # run() may now have nothing left to wait for
        return cancelled

    @property
    def delayed(self) -> dict[str, tuple[datetime, Turn[Any]]]:
        """A snapshot of this process's delayed turns: id -> (due time in UTC, turn), in due
        order (empty under a runtime that holds them elsewhere)."""
        timers = self._timers
        if timers is None:
            return {}
        return {
            turn_id: (datetime.fromtimestamp(due_s, UTC), turn)
            for turn_id, (due_s, turn) in timers.delayed().items()
        }

    @overload
    async def send(self, name: str, turn: Turn[Any]) -> None: ...
    @overload
    async def send(self, name: str, turn: Turn[Any], *, delay_s: float, at: None = None) -> str: ...
    @overload
    async def send(
        self, name: str, turn: Turn[Any], *, delay_s: None = None, at: datetime | float
    ) -> str: ...
    @overload
    async def send(
        self,
        name: str,
        turn: Turn[Any],
        *,
        delay_s: float | None = None,
        at: datetime | float | None = None,
    ) -> str | None: ...
    async def send(
        self,
        name: str,
        turn: Turn[Any],
        *,
        delay_s: float | None = None,
        at: datetime | float | None = None,
    ) -> str | None:
        """Queue ``turn`` on the agent called ``name`` (now, or delayed as in ``put``).

        Returns:
            None, or the delayed turn's id (cancel it on that agent: ``cancel_delayed``).

        Raises:
            UnregisteredAgentError: no agent has that name.
        """
        router = _seams.router
        if router is not None and name not in AgentRegistry._agents:
            if delay_s is None and at is None:
                await router.put(name, turn)
                return None
            return await delayed_router(router).put_at(name, turn, due_s(delay_s, at))
        return await AgentRegistry.get(name).put(turn, delay_s=delay_s, at=at)

    # -- schedules -----------------------------------------------------------------------

    def schedule(self, name: str, turn: Turn[Any], schedule: Schedule) -> ScheduleEntry:
        """Put a copy of ``turn`` on this agent at every tick of ``schedule``.

        In process, ticks fire while ``run()`` is active: each tick that comes due while it
        runs puts one turn (``BEFORE_PUT`` / ``AFTER_PUT`` fire then); ticks that came due
        while it was not running or was paused are missed (``schedule.missed`` says what
        happens). ``run()`` does not end while the agent has schedules: stop it by leaving
        the loop, or ``unschedule`` the last one. The first tick is the first after now.
        Declaring a name again replaces that schedule.

        Returns:
            The entry, also in ``agent.schedules[name]``.

        Raises:
            ValueError: ``name`` is empty, or the turn's tool is not one of this agent's.
            TypeError: ``turn`` is not a ``Turn`` or ``schedule`` not a ``Schedule``.
        """
        entry = schedule_entry(self, name, turn, schedule)
        self._timers_made().add_schedule(entry, _time())
        if self._waiter is not None:
            _wake_up(self._waiter)
        return entry

    def unschedule(self, name: str) -> bool:
        """Stop the schedule ``name``; True if there was one (turns already put stay queued)."""
        timers = self._timers
        removed = timers is not None and timers.remove_schedule(name)
        if removed and self._waiter is not None:
            _wake_up(self._waiter)
        return removed

    @property
    def schedules(self) -> Mapping[str, ScheduleEntry]:
        """The agent's schedules by name (a read-only, live view)."""
        timers = self._timers
        return _NO_SCHEDULES if timers is None else MappingProxyType(timers.entries)

    # -- running -------------------------------------------------------------------------

    async def run(self) -> AsyncGenerator[tuple[Turn[Any], Any], None]:
        """Run queued turns until the queue is empty, yielding ``(turn, value)`` per value.

        While paused, the loop waits at its gate before the next queued turn; it never
        interrupts the running turn, and an empty queue ends ``run()`` even while paused.

        Values that are ``Turn`` or ``ContextItem`` are routed, not yielded. Tool errors and
        ``TurnTimeoutError`` propagate. Leaving early (``break``, ``aclose()``, cancellation)
        ends the running turn as ``CANCELLED``; the agent can run again afterwards.

        Raises:
            SafeExecutionError: another ``run()`` of this agent is active.
        """
        if self._running:
            raise SafeExecutionError(f"agent {self.name!r} is already running")
        object.__setattr__(self, "_running", True)
        object.__setattr__(self, "_active_since_s", _time())
        queue = self._queue
        try:
            # The pause gate holds only a turn that is waiting: with nothing queued, run()
            # ends even while paused (as in 0.7.0), and no ON_PAUSE fires; with delayed
            # turns or schedules pending it sleeps until the next is due.
            while True:
                if self._timers is not None:
                    await self._release_due()
                if not queue:
                    if not self._timers:
                        return
                    await self._sleep_until_due()
                    continue
                if self._paused:
                    await self._wait_at_gate()
                # run_turn() inlined (keep the two in step): iterating it from here cost one
                # async-generator layer per value, about a quarter of a trivial turn.
                hooks = self.hooks
                if hooks or _G_BEFORE_TURN:  # before the turn is taken, as in 0.7.0
                    await fire(AgentHook.BEFORE_TURN, hooks, self.tags, self)
                    if not queue:  # a BEFORE_TURN hook emptied the queue
                        continue
                turn = queue.popleft()
                object.__setattr__(self, "_current_turn", turn)
                context = (self.context_queue, self.context_pool)
                try:
                    if turn.tool.is_generator:
                        values = turn._yielding(self.turn_hooks, context)
                        try:
                            async for value in values:
                                if (isinstance(value, _ROUTED) or hooks or _G_VALUE) and not (
                                    await self._route(turn, value)
                                ):
                                    continue
                                yield turn, value
                        finally:
                            await values.aclose()
                    else:
                        value = await turn._returning(self.turn_hooks, context)
                        if not (
                            isinstance(value, _ROUTED) or hooks or _G_VALUE
                        ) or await self._route(turn, value):
                            yield turn, value
                finally:
                    object.__setattr__(self, "_current_turn", None)
                if hooks or _G_AFTER_TURN:
                    await fire(AgentHook.AFTER_TURN, hooks, self.tags, self, turn)
        finally:
            object.__setattr__(self, "_running", False)
            object.__setattr__(self, "_current_turn", None)

    async def _release_due(self) -> None:
        """Queue the delayed turns and schedule ticks that are due (put hooks for ticks)."""
        timers = self._timers
        assert timers is not None
        now_s = _time()
        if timers.next_due_s() > now_s:
            return
        active_since_s = math.inf if self._paused else self._active_since_s
        due = timers.take_due(now_s, active_since_s)
        hooks = self.hooks
        for turn, ticked in due:
            # A schedule's turn is put at its tick; a delayed turn had its put hooks at put().
            if ticked and (hooks or _G_BEFORE_PUT):
                await fire(AgentHook.BEFORE_PUT, hooks, self.tags, self, turn)
            self._queue.append(turn)
            if ticked and (hooks or _G_AFTER_PUT):
                await fire(AgentHook.AFTER_PUT, hooks, self.tags, self, turn)

    async def _sleep_until_due(self) -> None:
        """Sleep until the next timer is due, or until a put, cancel or schedule change."""
        timers = self._timers
        assert timers is not None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        object.__setattr__(self, "_waiter", waiter)
        next_s = timers.next_due_s()
        handle = None
        if next_s != math.inf:
            handle = loop.call_later(max(next_s - _time(), 0.0), _wake_up, waiter)
        try:
            await waiter
        finally:
            if handle is not None:
                handle.cancel()
            object.__setattr__(self, "_waiter", None)

    async def run_turn(self, turn: Turn[Any]) -> AsyncGenerator[tuple[Turn[Any], Any], None]:
        """Run one turn (not taken from the queue) with this agent's hooks and context.

        Routes its values as ``run()`` does and yields the plain ones. This is the step a
        runtime drives when it owns the queue itself. ``run()`` has this body inlined, for
        speed: change both together.
        """
        hooks = self.hooks
        if hooks or _G_BEFORE_TURN:
            await fire(AgentHook.BEFORE_TURN, hooks, self.tags, self)
        object.__setattr__(self, "_current_turn", turn)
        context = (self.context_queue, self.context_pool)
        turn_hooks = self.turn_hooks
        try:
            if turn.tool.is_generator:
                values = turn._yielding(turn_hooks, context)
                try:
                    async for value in values:
                        if (isinstance(value, _ROUTED) or hooks or _G_VALUE) and not (
                            await self._route(turn, value)
                        ):
                            continue
                        yield turn, value
                finally:
                    await values.aclose()
            else:
                value = await turn._returning(turn_hooks, context)
                if not (isinstance(value, _ROUTED) or hooks or _G_VALUE) or await self._route(
                    turn, value
                ):
                    yield turn, value
        finally:
            object.__setattr__(self, "_current_turn", None)
        if hooks or _G_AFTER_TURN:
            await fire(AgentHook.AFTER_TURN, hooks, self.tags, self, turn)

    async def _route(self, turn: Turn[Any], value: Any) -> bool:
        """Send a produced value where it belongs; True if it is a plain value to yield."""
        plain = False
        if isinstance(value, Turn):
            await self.put(value)
        elif isinstance(value, ContextItem):
            if value.id is None:
                await self.context_queue.append(value)
            else:
                await self.context_pool.add(value)
        else:
            plain = True
        if self.hooks or _G_VALUE:
            await fire(AgentHook.ON_TURN_VALUE, self.hooks, self.tags, self, turn, value)
        return plain

    # -- pause ---------------------------------------------------------------------------

    def pause(self) -> None:
        """Hold the loop before its next queued turn (the current turn completes).

        Idempotent. ``ON_PAUSE`` fires when the loop reaches the gate while paused with a
        turn waiting; with an empty queue ``run()`` ends instead, still paused.
        """
        object.__setattr__(self, "_paused", True)
        self._resumed.clear()

    def resume(self) -> None:
        """Release the gate. Idempotent. ``ON_RESUME`` fires when a held loop moves on.

        Schedule ticks that came due while paused are missed (see ``Missed``).
        """
        if self._paused:
            object.__setattr__(self, "_active_since_s", _time())
        object.__setattr__(self, "_paused", False)
        self._resumed.set()

    async def _wait_at_gate(self) -> None:
        hooks = self.hooks
        await fire(AgentHook.ON_PAUSE, hooks, self.tags, self)
        while self._paused:
            await self._resumed.wait()
        await fire(AgentHook.ON_RESUME, hooks, self.tags, self)

    # -- copies --------------------------------------------------------------------------

    def branch(
        self,
        name: str,
        description: str | None = None,
        tools: Sequence[BaseTool] | None = None,
        hooks: Sequence[HookFn] | EllipsisType | None = ...,
    ) -> Agent:
        """A new registered agent continuing from this one, independent afterwards.

        It inherits the description, tools, turn hooks and tags (unless given), a copy of the
        queue, and branches (snapshots) of the context queue and pool. ``hooks``: left out,
        a copy of this agent's; ``None``, no hooks; a list, a copy of it.
        """
        child = Agent(
            name,
            self.description if description is None else description,
            list(self.tools if tools is None else tools),
            context_pool=self.context_pool.branch(),
            context_queue=self.context_queue.branch(),
            tags=self.tags,
        )
        init = object.__setattr__
        inherited = self.hooks if isinstance(hooks, EllipsisType) else hooks or ()
        init(child, "hooks", list(inherited))
        init(child, "turn_hooks", list(self.turn_hooks))
        child._queue.extend(turn.copy() for turn in self._queue)
        return child

    def instance(self, key: str) -> Agent:
        """This agent's instance for ``key``, with this agent as its kind: the registered agent
        ``"<name>/<key>"``, made on first use and the same object after.

        An instance has the kind's description, tools, hooks, turn hooks and tags, and starts
        from a snapshot (branch) of the kind's context queue and pool, then lives on its
        own: its own turns, in order, and its own context. ``AgentRegistry.get`` and
        ``Agent.send`` make instances by name, so a program addresses ``"assistant/user-42"``
        without making it first. In ``pygents_dist`` workers make instances the same way, on
        the first turn sent to one, from the kind as its module declares it.

        Raises:
            ValueError: ``key`` is empty or not a string, or this agent is an instance itself
                (its name holds ``/``).
        """
        if not isinstance(key, str) or not key:
            raise ValueError(
                f"agent {self.name!r}: an instance key is a non-empty str, got {key!r}"
            )
        if INSTANCE_SEPARATOR in self.name:
            raise ValueError(
                f"agent {self.name!r} cannot be a kind: its name holds {INSTANCE_SEPARATOR!r}"
            )
        name = f"{self.name}{INSTANCE_SEPARATOR}{key}"
        existing = AgentRegistry._agents.get(name)
        if existing is not None:
            return existing
        child = Agent(
            name,
            self.description,
            list(self.tools),
            context_pool=self.context_pool.branch(),
            context_queue=self.context_queue.branch(),
            tags=self.tags,
        )
        init = object.__setattr__
        init(child, "hooks", list(self.hooks))
        init(child, "turn_hooks", list(self.turn_hooks))
        return child

    @property
    def kind(self) -> str | None:
        """The name of the agent this one is an instance of, or None (see ``instance``)."""
        parts = split_instance(self.name)
        return parts[0] if parts is not None else None

    def to_dict(self) -> dict[str, Any]:
        """The agent as plain data (tools and hooks by name, turns and contexts in full).

        Raises:
            UnserializableHookError: a hook is not the one registered under its name.
        """
        current = self._current_turn
        return {
            "name": self.name,
            "description": self.description,
            "tool_names": [t.__name__ for t in self.tools],
            "queue": [turn.to_dict() for turn in self._queue],
            "current_turn": current.to_dict() if current is not None else None,
            "hooks": HookRegistry.names_by_type(self.hooks),
            "turn_hooks": HookRegistry.names_by_type(self.turn_hooks),
            "context_pool": self.context_pool.to_dict(),
            "context_queue": self.context_queue.to_dict(),
            "is_paused": self._paused,
            "tags": sorted(self.tags),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Agent:
        """Rebuild and register an agent saved by ``to_dict``.

        Tools and hooks come from the registries; the in-flight turn goes first in the queue
        (it runs again); the pause state is restored.
        """
        agent = cls(
            data["name"],
            data.get("description", ""),
            [ToolRegistry.get(name) for name in data.get("tool_names", [])],
            context_pool=ContextPool.from_dict(data["context_pool"])
            if data.get("context_pool")
            else None,
            context_queue=ContextQueue.from_dict(data["context_queue"])
            if data.get("context_queue")
            else None,
            tags=data.get("tags"),
        )
        init = object.__setattr__
        init(agent, "hooks", HookRegistry.from_names(data.get("hooks") or {}))
        init(agent, "turn_hooks", HookRegistry.from_names(data.get("turn_hooks") or {}))
        if data.get("current_turn"):
            agent._queue.append(Turn.from_dict(data["current_turn"]))
        agent._queue.extend(Turn.from_dict(d) for d in data.get("queue", []))
        if data.get("is_paused"):
            agent.pause()
        return agent

    # -- hook decorators -----------------------------------------------------------------

    before_turn = InstanceHook(AgentHook.BEFORE_TURN, "(agent) before each turn")
    after_turn = InstanceHook(AgentHook.AFTER_TURN, "(agent, turn) after each turn completes")
    on_turn_value = InstanceHook(AgentHook.ON_TURN_VALUE, "(agent, turn, value), after routing")
    before_put = InstanceHook(AgentHook.BEFORE_PUT, "(agent, turn) before a turn is queued")
    after_put = InstanceHook(AgentHook.AFTER_PUT, "(agent, turn) after a turn is queued")
    on_pause = InstanceHook(AgentHook.ON_PAUSE, "(agent) when the loop stops at its gate")
    on_resume = InstanceHook(AgentHook.ON_RESUME, "(agent) when a held loop moves on")
    on_error = InstanceHook(
        TurnHook.ON_ERROR, "(turn, exception) on every turn this agent runs", "turn_hooks"
    )
    on_timeout = InstanceHook(TurnHook.ON_TIMEOUT, "(turn) on every turn it runs", "turn_hooks")
    on_complete = InstanceHook(
        TurnHook.ON_COMPLETE, "(turn, stop_reason) on every turn it runs", "turn_hooks"
    )


def _check_tool(agent: str, item: object) -> None:
    """Raise unless ``item`` is the very tool registered under its name."""
    name = getattr(item, "__name__", None)
    if not isinstance(name, str):
        raise ValueError(
            f"agent {agent!r}: {item!r} is not a tool; pass the object returned by @tool"
        )
    registered = ToolRegistry._tools.get(name)
    if registered is None:
        raise UnregisteredToolError(
            f"agent {agent!r}: tool {name!r} not found in ToolRegistry; "
            "pass the object returned by @tool"
        )
    if registered is not item:
        raise ValueError(
            f"agent {agent!r}: tool {name!r} is registered but not the instance given to "
            "this agent; pass the object returned by @tool"
        )
