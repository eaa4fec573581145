"""Where a running turn's output goes: streamed values to its reply stream, and the turns it
puts or sends to the running batch's commit (or straight to Redis outside a batch).

``Router`` is the ``pygents._seams.Router`` of a worker process: the core hands it every
``put`` and ``send``. Inside a batch, a turn for the batch's own agent becomes a follow-up and
a turn for any other agent a send through the outbox, both written by the batch's commit.

Agents a running tool makes (``Agent(...)``, ``branch``) are routed too: they join the batch's
commit and are defined in the directory just before it (``define_agents``), so that every
worker can serve them and the sends the commit relays find them.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from pygents.agent import Agent
from pygents.registry import HookRegistry
from pygents.turn import Turn
from pygents_dist import _directory, _replies, _retries, _streams, _timers, _trace, _wire
from pygents_dist._commit import Commit
from pygents_dist._served_agents import ServedAgents, describe
from pygents_dist._settings import WorkerSettings
from pygents_dist._transport import Transport
from pygents_dist.errors import UnknownAgentError

__all__ = ["Publisher", "Router", "before_commit", "define_agents", "running_commit"]

#: Targets found in the directory that are remembered (past this, the memory starts over).
_KNOWN_MAX = 100_000
#: Streamed values a turn may produce ahead of its reply stream writes before it waits.
_PUBLISH_AHEAD = 1000

#: The commit of the batch whose turn runs in this task (None outside a batch).
running_commit: contextvars.ContextVar[Commit | None] = contextvars.ContextVar(
    "pygents_dist_commit", default=None
)


class Publisher:
    """Appends a streaming turn's values to its reply stream in order, without waiting a
    round trip per value: values produced while one write is in flight go in the next one.
    """

    def __init__(self, transport: Transport, key: str, ttl_ms: int) -> None:
        self.transport = transport
        self.key = key
        self.ttl_ms = ttl_ms
        self.waiting: list[tuple[int, bytes]] = []
        self.writer: asyncio.Task[None] | None = None

    async def add(self, seq: int, data: bytes) -> None:
        self.waiting.append((seq, data))
        writer = self.writer
        if writer is None or writer.done():
            if writer is not None:
                writer.result()  # a failed write fails the turn
            self.writer = asyncio.create_task(self._write())
        elif len(self.waiting) >= _PUBLISH_AHEAD:
            await writer

    async def _write(self) -> None:
        while self.waiting:
            values, self.waiting = self.waiting, []
            await _replies.publish_many(self.transport, self.key, values, self.ttl_ms)

    async def finish(self) -> None:
        """Wait until every value is written (raising a failed write)."""
        if self.writer is not None:
            await self.writer

    def abandon(self) -> None:
        if self.writer is not None and not self.writer.done():
            self.writer.cancel()


async def define_agents(
    transport: Transport, agents: list[Agent], settings: WorkerSettings
) -> None:
    """Define agents made at runtime in the directory, with the context each has now as its
    first state."""
    entries = {a.name: describe(a, runtime=True) for a in agents}
    contexts: dict[str, dict[str, bytes]] = {}
    for agent in agents:
        fields = contexts[agent.name] = {}
        for field, items in (
            ("queue", agent.context_queue.items),
            ("pool", agent.context_pool.items),
        ):
            if items:
                fields[field] = _wire.encode_value([i.to_dict() for i in items], settings.limits)
    await _directory.define(transport, entries, contexts)


class Router:
    """``pygents._seams.Router`` for a worker process: puts and sends go to Redis.

    Args:
        served: the worker's agents: a target it can serve needs no directory lookup.
    """

    def __init__(
        self, transport: Transport, settings: WorkerSettings, served: ServedAgents | None = None
    ) -> None:
        self.transport = transport
        self.settings = settings
        self.served = served
        self.known: set[str] = set()
        self._defining: set[asyncio.Task[None]] = set()

    def made(self, agent: Agent) -> None:
        """A running tool made ``agent``: define it with the running batch's commit (or at
        once, outside a batch)."""
        commit = running_commit.get()
        if commit is not None:
            commit.new_agents.append(agent)
            return
        task = asyncio.get_running_loop().create_task(
            define_agents(self.transport, [agent], self.settings)
        )
        self._defining.add(task)
        task.add_done_callback(self._defining.discard)

    async def _check_target(self, agent_name: str) -> None:
        served = self.served
        if agent_name not in self.known and not (served and served.addressable(agent_name)):
            if not await _directory.is_addressable(self.transport, agent_name):
                raise UnknownAgentError(
                    f"no worker has declared an agent named {agent_name!r}; start a worker "
                    "serving it first"
                )
            if len(self.known) >= _KNOWN_MAX:
                self.known.clear()
            self.known.add(agent_name)

    def _seal(
        self, agent_name: str, turn: Turn[Any], turn_id: str | None = None
    ) -> tuple[str, bytes, bytes]:
        secrets = self.settings.secrets
        return _wire.seal_turn(
            agent=agent_name,
            tool=turn.tool.__name__,
            args=turn.args,
            kwargs=turn.kwargs,
            timeout=turn.timeout,
            tags=sorted(turn.tags),
            hooks=HookRegistry.names_by_type(turn.hooks),
            trace=_trace.child(_trace.current.get()),
            limits=self.settings.limits,
            secret=secrets[0] if secrets else None,
            turn_id=turn_id,
        )

    async def put(self, agent_name: str, turn: Turn[Any]) -> None:
        await self._check_target(agent_name)
        turn_id, data, signature = self._seal(agent_name, turn)
        commit = running_commit.get()
        if commit is None:
            await _streams.send_turns(self.transport, [(agent_name, turn_id, data, signature)])
        elif agent_name == commit.agent:
            commit.followups.append([turn_id, data, signature])
        else:
            commit.outbox.append([agent_name, turn_id, data, signature])

    async def put_at(self, agent_name: str, turn: Turn[Any], due_s: float) -> str:
        """A turn put or sent for later (``agent.put(turn, delay_s=...)``): stored with the
        running batch's commit, just before it (``Commit.delayed``), under an id derived
        from the running turn's, so the batch run again stores it again, not twice; outside
        a batch, at once. Returns its id (for ``cancel_delayed``)."""
        await self._check_target(agent_name)
        commit = running_commit.get()
        due_ms = round(due_s * 1000)
        if commit is None or not commit.turn_ids:
            turn_id, data, signature = self._seal(agent_name, turn)
            await _timers.delay_turns(
                self.transport, agent_name, [(turn_id, due_ms, data, signature)]
            )
            return turn_id
        derived = f"{commit.turn_ids[-1]}.later{len(commit.delayed)}"
        turn_id, data, signature = self._seal(agent_name, turn, derived)
        commit.delayed.append((agent_name, turn_id, due_ms, data, signature))
        return turn_id

    async def cancel_delayed(self, agent_name: str, turn_id: str) -> bool:
        """Drop a delayed turn before it is due (``_timers.cancel_delayed``)."""
        return await _timers.cancel_delayed(self.transport, agent_name, turn_id)


async def before_commit(
    transport: Transport, settings: WorkerSettings, owner: str, consumer: str, commit: Commit
) -> None:
    """What a batch's commit needs written just before it: the agents its turns made (the
    sends it relays must find them), the turns they put for later, and the hold of a turn
    whose retry waits for its backoff (``_retries``)."""
    if commit.new_agents:
        await define_agents(transport, commit.new_agents, settings)
    by_agent: dict[str, list[_timers.Delayed]] = {}
    for agent, turn_id, due_ms, data, signature in commit.delayed:
        by_agent.setdefault(agent, []).append((turn_id, due_ms, data, signature))
    for agent, turns in by_agent.items():
        await _timers.delay_turns(transport, agent, turns)
    if commit.hold is not None:
        await _retries.hold(transport, commit.agent, owner, consumer, commit.hold)
