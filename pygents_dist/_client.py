"""The client: send turns to agents served anywhere, and get their results back.

A client needs no tool code: it addresses agents and tools by name. It can wait for a
result (``call``), stream a generator tool's values (``stream``), resume reading a turn's
values from where it stopped (``results``), cancel a turn, and pause or resume an agent for
every worker at once.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from pygents.registry import HookRegistry, split_instance
from pygents.schedule import Missed, Schedule
from pygents.turn import Turn
from pygents_dist import (
    _control,
    _directory,
    _instances,
    _replies,
    _schedules,
    _streams,
    _timers,
    _trace,
    _wire,
)
from pygents_dist._instances import KindSummary
from pygents_dist._replies import ReplyKind
from pygents_dist._schedules import ScheduleInfo
from pygents_dist._transport import Entry, Transport
from pygents_dist.errors import (
    UnknownAgentError,
)

__all__ = ["Client", "default_namespace", "default_redis_url"]


def default_redis_url() -> str:
    """``PYGENTS_REDIS_URL``, else ``redis://localhost:6379/0``."""
    return os.environ.get("PYGENTS_REDIS_URL") or "redis://localhost:6379/0"


def default_namespace() -> str:
    """``PYGENTS_NAMESPACE`` (or ``PYGENTS_KEY_PREFIX``), else no namespace."""
    return os.environ.get("PYGENTS_NAMESPACE") or os.environ.get("PYGENTS_KEY_PREFIX") or ""


#: Agents a client remembers it checked (past this, it starts over).
_KNOWN_MAX = 100_000


class Client:
    """Talks to the agents of one deployment (one Redis and namespace).

    Example::

        async with Client("redis://localhost:6379/0") as client:
            text = await client.call("fetcher", "fetch", kwargs={"url": "https://example.com"})
            async for n in client.stream("counter", "count", kwargs={"n": 3}):
                print(n)

    Args:
        url: Redis URL (``rediss://`` for TLS; user and password in the URL).
        namespace: key namespace shared with the workers.
        secret: HMAC key to sign turns with, if workers require signatures.
        limits: size and nesting limits checked before sending.
        redis_options: passed to redis-py (``ssl_ca_certs`` ...).
        transport: a ``Transport`` to use instead of making one from ``url`` (shared with
            other clients or a worker of the same event loop; its namespace is used, and it
            stays open when this client closes: whoever made it closes it). Give either
            ``transport`` or ``url``/``namespace``/``redis_options``, not both.

    Raises:
        ValueError: both a transport and connection settings were given, or redis-py cannot
            use the URL.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str | None = None,
        secret: bytes | str | None = None,
        limits: _wire.Limits | None = None,
        transport: Transport | None = None,
        **redis_options: Any,
    ) -> None:
        self._owns_transport = transport is None
        if transport is None:
            transport = Transport.from_url(
                url or default_redis_url(),
                namespace=default_namespace() if namespace is None else namespace,
                **redis_options,
            )
        elif url is not None or namespace is not None or redis_options:
            raise ValueError(
                "Client: give either transport= or url/namespace/redis options, not both "
                "(the transport already holds its connection settings and namespace)"
            )
        self.transport = transport
        self.secret = secret.encode() if isinstance(secret, str) else secret
        self.limits = limits or _wire.Limits()
        self._known: set[str] = set()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections (not those of a transport given to the constructor)."""
        if self._owns_transport:
            await self.transport.aclose()

    async def _check_agent(self, agent: str) -> None:
        if agent in self._known:
            return
        # An instance of a kind already seen declared needs no round trip: a client
        # addressing a million instances looks their kind up once.
        parts = split_instance(agent)
        kind = parts[0] if parts is not None else ""
        if kind and kind in self._known:
            return
        names = [agent, kind] if kind else [agent]
        found = await _directory.descriptions(self.transport, names)
        if all(entry is None for entry in found):
            raise UnknownAgentError(
                f"no worker has declared an agent named {agent!r} (is a worker serving it, "
                "with the same namespace?)"
            )
        if len(self._known) >= _KNOWN_MAX:  # a client may address millions of runtime agents
            self._known.clear()
        self._known.add(kind if kind and found[-1] is not None else agent)

    def _envelope(
        self,
        agent: str,
        tool: str | Turn[Any],
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        timeout: float,
        reply: bool,
        turn_id: str | None,
        trace: str | None = None,
    ) -> tuple[str, bytes, bytes]:
        hooks: dict[str, list[str]] = {}
        tags: list[str] = []
        if isinstance(tool, Turn):
            args, kwargs, timeout = tool.args, tool.kwargs, tool.timeout
            hooks = HookRegistry.names_by_type(tool.hooks)
            tags = sorted(tool.tags)
            name = tool.tool.__name__
        else:
            name = tool
        return _wire.seal_turn(
            agent=agent,
            tool=name,
            args=args,
            kwargs=kwargs or {},
            timeout=timeout,
            tags=tags,
            hooks=hooks,
            reply=reply,
            # Inside a running turn a send continues its trace; elsewhere a new trace starts.
            trace=trace if _trace.ids(trace) else _trace.child(_trace.current.get()),
            limits=self.limits,
            secret=self.secret or None,
            turn_id=turn_id,
        )

    async def send(
        self,
        agent: str,
        tool: str | Turn[Any],
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        timeout: float = 60.0,
        reply: bool = False,
        turn_id: str | None = None,
        trace: str | None = None,
        delay_s: float | None = None,
        at: datetime.datetime | float | None = None,
    ) -> str:
        """Queue a turn on ``agent`` and return its id, without waiting for it to run.

        ``tool`` is a tool name, or a core ``Turn`` (its arguments, timeout, tags and hooks
        are sent). ``trace`` is a W3C ``traceparent`` to continue (default: the running
        turn's trace inside a worker, else a new trace). When this returns, the turn is
        stored in Redis.

        ``delay_s`` (seconds from now, Redis's clock) or ``at`` (an aware datetime, or Unix
        seconds) makes it a delayed turn: it waits in Redis and reaches the agent's stream
        when due, in due order with the agent's other delayed turns, exactly once, through
        worker and (with AOF) Redis restarts; ``cancel_delayed`` drops it before then. A
        time in the past is due at once.

        Raises:
            UnknownAgentError: no worker has declared ``agent``.
            PayloadError: an argument cannot be sent (names the argument).
            ValueError: a bad ``delay_s`` or ``at`` (both, negative, a naive datetime).
            ConnectionLostError: Redis is unreachable (nothing was sent).
        """
        due = _timers.due_of(delay_s, at)
        await self._check_agent(agent)
        turn_id, data, signature = self._envelope(
            agent, tool, args, kwargs, timeout, reply, turn_id, trace
        )
        if due is not None:
            await _timers.delay_turns(self.transport, agent, [(turn_id, due, data, signature)])
        else:
            await _streams.send_turns(self.transport, [(agent, turn_id, data, signature)])
        return turn_id

    async def cancel_delayed(self, agent: str, turn_id: str) -> bool:
        """Drop a delayed turn before it is due: it never runs (a caller waiting on it with
        ``call`` keeps waiting: cancel the call's task). Returns False when it was not
        waiting: already moved to the agent's stream (then ``cancel`` it as any turn),
        cancelled before, or never delayed."""
        return await _timers.cancel_delayed(self.transport, agent, turn_id)

    async def send_many(
        self, agent: str, tool: str, calls: Sequence[Mapping[str, Any]], *, timeout: float = 60.0
    ) -> list[str]:
        """Queue one turn per kwargs mapping in ``calls``, in one round trip; their ids."""
        return await self.send_batch([(agent, tool, kwargs) for kwargs in calls], timeout=timeout)

    async def send_batch(
        self, turns: Sequence[tuple[str, str, Mapping[str, Any]]], *, timeout: float = 60.0
    ) -> list[str]:
        """Queue turns ``(agent, tool, kwargs)`` for any number of agents, 1,000 per round
        trip (one script call each); their ids, in order. For a service that fans work out
        to many agents: per turn it costs what ``send_many`` does for one agent.

        Example::

            ids = await client.send_batch([("a1", "fetch", {"url": u1}), ("a2", "fetch", {})])

        Raises the errors of ``send``. An unknown agent or an argument that cannot be sent
        raises before anything is sent; a connection lost midway leaves the round trips
        before it sent.
        """
        for agent in dict.fromkeys(agent for agent, _tool, _kwargs in turns):
            await self._check_agent(agent)
        batch = []
        for agent, tool, kwargs in turns:
            turn_id, data, signature = self._envelope(agent, tool, (), kwargs, timeout, False, None)
            batch.append((agent, turn_id, data, signature))
        for start in range(0, len(batch), 1000):
            await _streams.send_turns(self.transport, batch[start : start + 1000])
        return [b[1] for b in batch]

    async def call(
        self,
        agent: str,
        tool: str | Turn[Any],
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        timeout: float = 60.0,
        trace: str | None = None,
        delay_s: float | None = None,
        at: datetime.datetime | float | None = None,
    ) -> Any:
        """Run a coroutine tool on ``agent`` and return its result.

        A tool that returns a ``Turn`` or ``ContextItem`` has it routed in the worker, and
        ``call`` returns None. Waits as long as the turn is queued plus its ``timeout``
        (plus its delay, with ``delay_s`` or ``at``: see ``send``). A tool declared with
        ``retry=`` is retried in the workers: ``call`` sees the final outcome only.

        Raises:
            RemoteError: the tool raised (type name, message and remote traceback attached).
            RemoteTurnTimeoutError: the turn timed out (a ``TurnTimeoutError``).
            DeadLetteredError: the turn was refused (bad arguments, unknown tool...).
            TurnCancelledError: the turn was cancelled.
        """
        first: list[Entry] | None = None
        if delay_s is not None or at is not None:
            turn_id = await self.send(
                agent,
                tool,
                args=args,
                kwargs=kwargs,
                timeout=timeout,
                reply=True,
                trace=trace,
                delay_s=delay_s,
                at=at,
            )
        else:
            turn_id, first = await self._send_waiting(agent, tool, args, kwargs, timeout, trace)
        result: Any = None
        async for kind, _seq, value in _replies.replies(self.transport, agent, turn_id, -1, first):
            if kind == b"e":
                result = value
        return result

    async def stream(
        self,
        agent: str,
        tool: str | Turn[Any],
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        timeout: float = 60.0,
        trace: str | None = None,
    ) -> AsyncIterator[Any]:
        """Run an async-generator tool on ``agent``, yielding its values as produced.

        Raises the same errors as ``call``, at the point of failure.
        """
        turn_id, first = await self._send_waiting(agent, tool, args, kwargs, timeout, trace)
        async for kind, _seq, value in _replies.replies(self.transport, agent, turn_id, -1, first):
            if kind == ReplyKind.VALUE:
                yield value

    async def _send_waiting(
        self,
        agent: str,
        tool: str | Turn[Any],
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        timeout: float,
        trace: str | None,
    ) -> tuple[str, list[Entry]]:
        """``send`` a turn with ``reply=True`` and, in the same round trip, wait for its
        first reply entries: ``(turn id, entries)``. A retried round trip may store the turn
        twice; workers drop the second copy by its id."""
        await self._check_agent(agent)
        turn_id, data, signature = self._envelope(
            agent, tool, args, kwargs, timeout, True, None, trace
        )
        key = self.transport.keys.reply(agent, turn_id)
        first = await _streams.send_turns(
            self.transport, [(agent, turn_id, data, signature)], wait=key
        )
        return turn_id, first

    async def results(self, agent: str, turn_id: str, after: int = -1) -> AsyncIterator[Any]:
        """The values of a turn sent with ``reply=True``, from value number ``after + 1``.

        Another process, or a caller that lost its connection, can resume here: values are
        kept for the reply TTL (an hour by default).
        """
        async for kind, _seq, value in _replies.replies(self.transport, agent, turn_id, after):
            if kind == ReplyKind.VALUE:
                yield value

    async def cancel(self, agent: str, turn_id: str) -> bool:
        """Cancel a turn: it will not start, or is cancelled where it runs (best effort: the
        worker looks four times a second, and a turn may finish first).

        A caller waiting on the turn gets ``TurnCancelledError``. Returns False when the turn
        had already finished (within the dedup window, 10 minutes by default), else True.
        """
        return await _control.request_cancel(self.transport, agent, turn_id)

    async def pause(self, agent: str) -> None:
        """Hold ``agent`` for every worker: no new turn of it starts until ``resume``."""
        await self._check_agent(agent)
        await _control.set_paused(self.transport, agent, True)

    async def resume(self, agent: str) -> None:
        """Let a paused agent run again."""
        await self._check_agent(agent)
        await _control.set_paused(self.transport, agent, False)

    async def forget(self, agent: str, *, force: bool = False) -> bool:
        """Forget an instance (``"<kind>/<key>"``) or an agent made at runtime: its context,
        its dedup memory and (for a runtime agent) its definition are deleted from Redis; a
        later turn to an instance starts it afresh from its kind.

        Returns False, deleting nothing, while a worker holds the agent or, without
        ``force``, while turns or sends wait for it (``force`` drops them).

        Raises:
            ValueError: ``agent`` is declared by workers' modules (forget only what
                addressing or running made).
        """
        entry = await _directory.description(self.transport, agent)
        if entry is not None and not _wire.unpack(entry).get("runtime"):
            raise ValueError(
                f"agent {agent!r} is declared by the workers' module; only instances and "
                "agents made at runtime can be forgotten"
            )
        outcome = await _control.forget(self.transport, agent, force)
        self._known.discard(agent)
        return outcome == _control.ForgetOutcome.FORGOTTEN

    # -- schedules ---------------------------------------------------------------------

    async def add_schedule(
        self,
        agent: str,
        name: str,
        tool: str,
        schedule: Schedule | str,
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        timeout: float = 60.0,
        missed: Missed | str | None = None,
        paused: bool = False,
    ) -> ScheduleInfo:
        """Send ``tool`` to ``agent`` at every tick of ``schedule`` (a ``Schedule``, or its
        text: ``"every 30s"``, ``"*/5 * * * *"``; UTC), stored in Redis: every worker fires
        it, each tick exactly once. ``missed`` overrides the schedule's policy for ticks
        missed while no worker ran. Adding a name again replaces that schedule (its next
        tick is the first after now).

        Raises:
            UnknownAgentError: no worker has declared ``agent``.
            ValueError: a malformed schedule or name, or ``tool`` is not one of the agent's
                tools (the message names the field).
            PayloadError: an argument cannot be sent.
        """
        _schedules.check_schedule_name(name)
        if isinstance(schedule, str):
            schedule = Schedule.parse(schedule)
        if not isinstance(schedule, Schedule):
            raise ValueError(f"schedule {name!r}: schedule must be a Schedule or its text")
        if missed is not None:
            schedule = Schedule.parse(str(schedule), missed=Missed(missed))
        await self._check_agent(agent)
        tools = await _schedules.tools_of(self.transport, agent)
        if tools is not None and tool not in tools:
            raise ValueError(
                f"schedule {name!r}: agent {agent!r} has no tool {tool!r}; its tools: "
                f"{', '.join(tools)}"
            )
        # Checked as a turn now, so a tick never meets arguments it cannot send.
        self._envelope(agent, tool, args, kwargs, timeout, False, None)
        stored = _schedules.spec(schedule, tool, args=args, kwargs=kwargs, timeout=timeout)
        await _schedules.put(self.transport, agent, name, stored, paused=paused)
        for info in await _schedules.listing(self.transport, agent):
            if info.name == name:
                return info
        raise UnknownAgentError(f"schedule {name!r} of {agent!r} vanished as it was added")

    async def schedules(self, agent: str | None = None) -> list[ScheduleInfo]:
        """The stored schedules (of ``agent``), by next tick; paused ones last."""
        return await _schedules.listing(self.transport, agent)

    async def pause_schedule(self, agent: str, name: str) -> bool:
        """Pause a schedule on every worker; False if there is none."""
        return await _schedules.pause(self.transport, agent, name)

    async def resume_schedule(self, agent: str, name: str) -> bool:
        """Resume a paused schedule from its first tick after now; False if there is none."""
        return await _schedules.resume(self.transport, agent, name)

    async def remove_schedule(self, agent: str, name: str) -> bool:
        """Remove a schedule; False if there was none. A schedule declared in the agents'
        module comes back when a worker starts, unless removed from the module too."""
        return await _schedules.remove(self.transport, agent, name)

    async def kinds(self) -> list[KindSummary]:
        """Every kind that has instances in Redis, each summarised (instances, held by a
        worker now, with turns waiting, least recently taken). Counting the waiting ones
        scans the keyspace: about a second per million keys."""
        transport = self.transport
        return await _instances.summaries(transport, await _instances.kinds(transport))

    async def instances(
        self, kind: str, *, offset: int = 0, count: int = 100
    ) -> list[tuple[str, float]]:
        """A page of ``kind``'s instances, least recently taken first: ``(name, when a
        worker last took it, as a Unix time in seconds)``. Page on with ``offset``."""
        if offset < 0 or count < 1:
            raise ValueError(f"offset must be >= 0 and count >= 1, got {offset} and {count}")
        rows = await _instances.page(self.transport, kind, offset, count)
        return [(name, taken_ms / 1000) for name, taken_ms in rows]

    async def agents(self) -> list[str]:
        """Names of every declared agent."""
        return sorted(await _directory.directory(self.transport))
