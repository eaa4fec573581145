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
from pygents_dist import _directory, _replies, _streams, _trace, _wire
from pygents_dist._commit import Commit
from pygents_dist._served_agents import ServedAgents, describe
from pygents_dist._settings import WorkerSettings
from pygents_dist._transport import Transport
from pygents_dist.errors import UnknownAgentError

__all__ = ["Publisher", "Router", "define_agents", "running_commit"]

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

    async def put(self, agent_name: str, turn: Turn[Any]) -> None:
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
        secrets = self.settings.secrets
        turn_id, data, signature = _wire.seal_turn(
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
        )
        commit = running_commit.get()
        if commit is None:
            await _streams.send_turns(self.transport, [(agent_name, turn_id, data, signature)])
        elif agent_name == commit.agent:
            commit.followups.append([turn_id, data, signature])
        else:
            commit.outbox.append([agent_name, turn_id, data, signature])
