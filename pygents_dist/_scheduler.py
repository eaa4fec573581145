"""Scheduling the agents that have work onto the worker's slots: one at a time, or in groups
and chains of groups.

Agents are wanted (a signal, a scan, a sweep) and taken as slots free up. Several wanted at
once are taken together in one round trip (``lua/take_many.lua``); their first batches run
inline, one agent after another, and one more round trip commits them all and takes the next
group: a chain. Two groups are in flight at once, so the worker runs one group's turns while
Redis serves the other. An agent that needs more care (claims, relays, a turn that really
waits, more to do after its group's commit) goes on in a task of its own
(``AgentServer``).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Coroutine
from typing import Any

from pygents._resume import Resumed
from pygents.agent import Agent
from pygents_dist import _batches, _leases
from pygents_dist._agent_server import AgentServer
from pygents_dist._batch_runner import BatchRunner, NextTurns, TurnBatch
from pygents_dist._context_store import ContextStore
from pygents_dist._held_leases import HeldLeases, warn_lapsed
from pygents_dist._leases import Taken
from pygents_dist._routing import before_commit, define_agents
from pygents_dist._served_agents import ServedAgents
from pygents_dist._settings import WorkerSettings, turns_per_fetch
from pygents_dist._statuses import FetchStatus, Outcome, TakeStatus
from pygents_dist._transport import Transport
from pygents_dist.errors import ConnectionLostError

__all__ = ["Scheduler"]

_log = logging.getLogger("pygents_dist.worker")
#: Most agents taken (and committed) together in one round trip, and chains of such groups
#: at once. Each agent of a group holds one of the ``concurrency`` slots, and a chain holds
#: two groups while it commits one and takes the next: a group is at most a quarter of them.
_GROUP_MAX = 128
_GROUP_FLIGHTS = 2


class Scheduler:
    """Takes wanted agents onto slots and serves them, alone or in groups.

    Args:
        slots: one per agent served at once (``concurrency``).
        again: agents to look at again once their current serve ends.
    """

    def __init__(
        self,
        transport: Transport,
        settings: WorkerSettings,
        worker_id: str,
        stats: dict[str, int],
        stopping: asyncio.Event,
        slots: asyncio.Semaphore,
        again: set[str],
        leases: HeldLeases,
        contexts: ContextStore,
        runner: BatchRunner,
        server: AgentServer,
        served: ServedAgents,
    ) -> None:
        self._transport = transport
        self._settings = settings
        self._worker_id = worker_id
        self._stats = stats
        self._stopping = stopping
        self._slots = slots
        self._again = again
        self._leases = leases
        self._contexts = contexts
        self._runner = runner
        self._server = server
        self._agents = served
        #: agent: the task serving it (its own, or its group's).
        self.active: dict[str, asyncio.Task[None]] = {}
        # Agents to take, in order (see _take_loop). An OrderedDict, as taking from the
        # front of a plain dict rescans the deleted slots: quadratic for a burst of 10,000.
        self.wanted: OrderedDict[str, None] = OrderedDict()
        self._taker: asyncio.Task[None] | None = None
        self._flights = asyncio.Semaphore(_GROUP_FLIGHTS)

    def schedule(self, agent: str) -> None:
        """Queue ``agent`` to be taken (by ``_take_loop``), or to be looked at again once its
        current serve ends."""
        if self._stopping.is_set():
            return
        if agent in self.active:
            self._again.add(agent)
            return
        self.wanted[agent] = None
        if self._taker is None:
            self._taker = asyncio.create_task(self._take_loop(), name="taker")

    def stop(self) -> None:
        """Stop taking agents."""
        if self._taker is not None:
            self._taker.cancel()

    def _served(self, agent: str, _task: asyncio.Task[None] | None = None) -> None:
        self.active.pop(agent, None)
        if agent in self._again:
            self._again.discard(agent)
            self.schedule(agent)

    async def _take_loop(self) -> None:
        """Take the wanted agents, a group at a time, as slots free up. A group of several
        is taken in one round trip and its plain batches run inline (``_serve_group``); a
        lone agent, or one that needs more care, gets a task of its own (``own``)."""
        try:
            while self.wanted and not self._stopping.is_set():
                # Two groups at once: one runs its turns while Redis serves the other.
                await self._flights.acquire()
                await self._slots.acquire()
                if self._stopping.is_set():
                    self._slots.release()
                    self._flights.release()
                    break
                names = await self._next_group()
                if len(names) > 1:
                    group = asyncio.create_task(self._serve_group(names), name="group")
                    group.add_done_callback(lambda _task: self._flights.release())
                    for agent in names:
                        self.active[agent] = group
                    continue
                self._flights.release()
                if names:
                    self._spawn(names[0], self._server.own(names[0]))
                else:
                    self._slots.release()
        finally:
            self._taker = None

    async def _next_group(self, slot: bool = True) -> list[str]:
        """Up to ``_GROUP_MAX`` wanted agents, one per slot held. ``slot``: the caller holds
        the first slot already (the take loop; if nothing is found it keeps it); otherwise
        only free slots are taken (a chain). Parallel agents are spawned on their own."""
        held = slot
        names: list[str] = []
        most = max(2, min(_GROUP_MAX, self._settings.concurrency // (2 * _GROUP_FLIGHTS)))
        while self.wanted and len(names) < most:
            if not slot:
                if self._slots.locked():
                    break
                await self._slots.acquire()  # free: does not wait
                slot = True
            agent = self.wanted.popitem(last=False)[0]
            # Instances are built as they are taken, not when scheduled: a burst of turns to
            # a million instances queues a million names here, not a million agents.
            if not self._agents.activate_now(agent):
                _log.debug("agent %s: no longer servable here; skipped", agent)
            elif agent in self.active:
                self._again.add(agent)
            elif self._settings.parallel.get(agent, 1) > 1:
                self._spawn(agent, self._server.own(agent))
                slot = False
            else:
                names.append(agent)
                slot = False
        if slot and (names or not held):
            self._slots.release()
        return names

    async def _next_in_chain(self) -> list[str]:
        """The group a chain takes next (see ``_serve_group``): wanted agents while slots
        are free; a lone one is served on its own instead, as the take loop does."""
        if self._stopping.is_set():
            return []
        names = await self._next_group(slot=False)
        if len(names) == 1:
            self._spawn(names[0], self._server.own(names[0]))
            return []
        task = asyncio.current_task()
        if task is not None:
            for agent in names:
                self.active[agent] = task
        self._stats["chained"] += len(names)
        return names

    def _spawn(
        self,
        agent: str,
        work: Coroutine[Any, Any, None],
        context: contextvars.Context | None = None,
    ) -> None:
        """Serve ``agent`` in a task of its own (in ``context``, for work begun inline);
        ``work`` owns one slot and frees it."""
        task = asyncio.create_task(self._serve(agent, work), name=f"agent {agent}", context=context)
        self.active[agent] = task
        task.add_done_callback(functools.partial(self._served, agent))

    async def _serve(self, agent: str, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except ConnectionLostError as exc:
            _log.warning("agent %s: %s", agent, exc, extra={"agent": agent})
            await asyncio.sleep(0.2)
            self._again.add(agent)
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("agent %s: unexpected error while serving", agent)
            await asyncio.sleep(0.5)
            self._again.add(agent)
        finally:
            self._slots.release()

    # -- serving many agents at once -----------------------------------------------------

    async def _serve_group(self, names: list[str]) -> None:
        """Serve ``names`` and the groups after them, a chain of round trips.

        The group is taken in one round trip and each agent's first batch runs inline; then
        one more round trip commits them all and takes the next group of wanted agents, whose
        turns are thus in by the time this worker is free to run them (it runs the other
        chain's group meanwhile). A batch whose turns wait on something (I/O, a slow tool)
        moves to a task of its own at that point and is committed there; so does an agent
        with more to do after its commit. Each name holds a slot.
        """
        sent = time.monotonic()
        record = self._leases.to_record(names)
        taken: list[Taken] = []
        try:
            taken = await _leases.take_many(
                self._transport,
                names,
                self._worker_id,
                self._settings.lease_ms,
                turns_per_fetch(self._settings),
                record,
            )
        except Exception as exc:
            await self._group_failed("taking", exc)
            self._give_back(names)
            return
        finally:
            self._leases.recorded_at_take(record, _owned_elsewhere(names, taken))
        while True:
            done = self._run_group(names, taken, sent)
            names = await self._next_in_chain()
            if not done and not names:
                return
            sent = time.monotonic()
            got = await self._commit_group(done, names)
            if got is None or not names:
                return
            taken = got

    def _run_group(
        self, names: list[str], taken: list[Taken], sent: float
    ) -> list[tuple[str, str, TurnBatch]]:
        """Run the first batch of each taken agent of a group, inline; the batches that ran
        to the end, to commit (the others went on in tasks of their own)."""
        done: list[tuple[str, str, TurnBatch]] = []
        for agent, one in zip(names, taken, strict=True):
            if one.status == TakeStatus.NEEDS_TAKE:  # claims, sends to relay or a lost group
                self._spawn(agent, self._server.own(agent))
            elif one.status != TakeStatus.TAKEN:
                self._group_done(agent)
            else:
                self._stats["grouped"] += 1
                batch = self._run_inline(agent, one, sent)
                if batch is not None:
                    done.append((agent, one.owner, batch))
        return done

    def _give_back(self, names: list[str]) -> None:
        """A group that was not taken: its agents are looked at again, their slots freed."""
        for agent in names:
            self._again.add(agent)
            self._group_done(agent)

    def _run_inline(self, agent: str, taken: Taken, sent: float) -> TurnBatch | None:
        """Run the first batch of an agent taken by a round trip sent at ``sent``; the
        batch if it ran without waiting, else None (it goes on in a task of its own, which
        commits it, or it was not run: see ``HeldLeases.holds``)."""
        server = self._server
        self._leases.hold(agent, taken.owner, sent)
        if not self._leases.holds(agent):
            warn_lapsed(agent, len(taken.entries))
            self._spawn(agent, server.let_go(agent, taken.owner, Outcome.DRAINED, False))
            return None
        context = contextvars.copy_context()
        try:
            self._contexts.restore(agent, taken.queue, taken.pool)
            self._runner.taken(agent, taken.owner)
            work = self._runner.run_turns(agent, taken.entries, taken.flags, {})
            waiting = context.run(work.send, None)
        except StopIteration as stop:
            batch: TurnBatch = stop.value
            return batch
        except Exception:
            _log.exception("agent %s: unexpected error while serving", agent)
            self._again.add(agent)
            self._spawn(agent, server.let_go(agent, taken.owner, Outcome.LOST, False))
            return None
        self._spawn(agent, server.go_on(agent, taken.owner, Resumed(work, waiting), False), context)
        return None

    async def _commit_group(
        self, done: list[tuple[str, str, TurnBatch]], following: list[str]
    ) -> list[Taken] | None:
        """Commit a group's batches and take the ``following`` group, in one round trip;
        what the take found, or None if the round trip failed (then every agent of both
        groups is looked at again)."""
        commits = []
        made: list[Agent] = []
        for _agent, owner, batch in done:
            commit = batch.commit
            release = not commit.outbox and not batch.held and batch.rest is None
            commits.append((owner, commit, release))
            made += commit.new_agents
        transport = self._transport
        taken: list[Taken] = []
        try:
            if made:  # before the commit: the sends it relays must find them
                await define_agents(transport, made, self._settings)
            for _agent, owner, batch in done:  # turns put for later, a retry's hold
                if batch.commit.delayed or batch.commit.hold:
                    batch.commit.new_agents = []  # defined above
                    await before_commit(
                        transport, self._settings, owner, self._worker_id, batch.commit
                    )
            if following:
                lease_ms = self._settings.lease_ms
                record = self._leases.to_record(following)
                taken = []
                try:
                    results, taken = await _batches.commit_take_many(
                        transport,
                        commits,
                        following,
                        self._worker_id,
                        lease_ms,
                        turns_per_fetch(self._settings),
                        record,
                    )
                finally:
                    self._leases.recorded_at_take(record, _owned_elsewhere(following, taken))
            else:
                results = await _batches.commit_many(transport, commits)
        except Exception as exc:
            # Nothing was committed (or, if only the take failed, the commit was and these
            # turns are gone from their streams): the agents are looked at again either way.
            await self._group_failed("committing", exc)
            for agent, owner, _batch in done:
                self._again.add(agent)
                self._spawn(agent, self._server.let_go(agent, owner, Outcome.LOST, False))
            self._give_back(following)
            return None
        server = self._server
        for (agent, owner, batch), (committed, _left, released) in zip(done, results, strict=True):
            if not committed:
                _log.warning("agent %s: lease lost before commit; batch discarded", agent)
                server.unhold(agent)
                self._group_done(agent)
                continue
            self._stats["batches"] += 1
            if released:
                server.unhold(agent)
                self._group_done(agent)
            else:  # more turns came, it has sends to relay, or it is paused: go on
                nxt = (
                    NextTurns(status=FetchStatus.PAUSED)
                    if batch.held
                    else batch.rest or NextTurns(read=False)
                )
                relay = bool(batch.commit.outbox)
                self._spawn(agent, server.go_on(agent, owner, nxt, relay))
        return taken

    @staticmethod
    async def _group_failed(doing: str, exc: Exception) -> None:
        """Log why a group's round trip failed and back off (as ``_serve`` does) before its
        agents are tried again."""
        if isinstance(exc, ConnectionLostError):
            _log.warning("%s a group of agents: %s", doing, exc)
            await asyncio.sleep(0.2)
        else:
            _log.error("%s a group of agents failed", doing, exc_info=exc)
            await asyncio.sleep(0.5)

    def _group_done(self, agent: str) -> None:
        """An agent of a group needs nothing more: free its slot and let it be scheduled."""
        self._slots.release()
        self._served(agent)


def _owned_elsewhere(names: list[str], taken: list[Taken]) -> list[str]:
    """Of ``names``, those a take (``taken``: empty if it failed) found owned by another
    worker."""
    return [name for name, one in zip(names, taken, strict=False) if one.status == TakeStatus.OWNED]
