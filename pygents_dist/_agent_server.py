"""Serving one owned agent: take it, run and commit its batches until none is left (lingering
a while for a next turn), and let it go.

The one-agent way (``lua/take.lua``) is for an agent that needs claims or relays, or comes
alone; agents of a group (see ``_scheduler.py``) go on here after their group's commit when
they have more to do. Each commit reads the next batch in the same round trip
(``lua/commit.lua`` then ``lua/fetch.lua``), and gives the lease up when nothing is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from pygents._resume import Resumed
from pygents_dist import _batches, _directory, _leases, _streams
from pygents_dist._batch_runner import BatchRunner, NextTurns, TurnBatch
from pygents_dist._context_store import ContextStore
from pygents_dist._held_leases import HeldLeases, warn_lapsed
from pygents_dist._routing import before_commit
from pygents_dist._settings import WorkerSettings, turns_per_fetch
from pygents_dist._statuses import NOT_TAKEN, FetchStatus, Outcome, TakeStatus
from pygents_dist._transport import Entry, Transport
from pygents_dist.errors import ConnectionLostError

__all__ = ["AgentServer"]

_log = logging.getLogger("pygents_dist.worker")
#: Longest single wait of a lingering agent (it checks for shutdown in between).
_LINGER_SLICE_MS = 25
#: Most agents lingering at once.
_LINGER_MAX = 64


class AgentServer:
    """Serves owned agents one by one (each in a task of its own, given by the scheduler).

    Args:
        slots: the worker's slots (an agent lingers only while one is free).
        again: agents to look at again once their serve ends (the scheduler's).
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
        #: Agents whose serve waits, lease held, for a next turn.
        self.lingering: set[str] = set()

    async def own(self, agent: str) -> None:
        """Take ``agent`` (the one-agent way), serve it until no turn is left, let it go."""
        # Entries taken over from a dead owner run one per commit: the delivery count
        # (lua/take.lua) then blames only the turn that was running when a worker died.
        transport = self._transport
        sent = time.monotonic()
        record = self._leases.to_record([agent])
        taken = await _leases.take(
            transport,
            agent,
            self._worker_id,
            self._settings.lease_ms,
            turns_per_fetch(self._settings),
            1,
            record=bool(record),
        )
        owned_elsewhere = [agent] if taken.status == TakeStatus.OWNED else []
        self._leases.recorded_at_take(record, owned_elsewhere)
        if taken.status in NOT_TAKEN:
            return  # owned by another worker, paused, or nothing to do: no lease was taken
        owner = taken.owner
        self._leases.hold(agent, owner, sent)
        outcome: int = Outcome.DRAINED
        released = False
        try:
            self._contexts.restore(agent, taken.queue, taken.pool)
            self._runner.taken(agent, owner)
            if taken.outbox:
                await _streams.relay(transport, agent)
            # status TAKEN or TAKEN_NO_GROUP: as a fetch's, OK or NO_GROUP
            first = NextTurns(taken.status, taken.entries, taken.flags)
            outcome, released = await self._drain(agent, owner, first, taken.counts, taken.pending)
        finally:
            await self.let_go(agent, owner, outcome, released)

    async def go_on(self, agent: str, owner: str, first: NextTurns | Resumed, relay: bool) -> None:
        """Serve an agent a group took on from where the group left it: finish the batch
        that waited, or relay its sends, then drain it as ``own`` does."""
        outcome: int = Outcome.DRAINED
        released, last_id = False, b""
        try:
            if isinstance(first, Resumed):
                batch: TurnBatch = await first
                nxt = await self._commit_batch(agent, owner, batch)
                if nxt is None:
                    outcome, first = Outcome.LOST, NextTurns(status=FetchStatus.LEASE_LOST)
                else:
                    first, last_id = nxt, batch.last_id
            if relay:
                await _streams.relay(self._transport, agent)
            if outcome == Outcome.DRAINED:
                outcome, released = await self._drain(agent, owner, first, {}, False, last_id)
        finally:
            await self.let_go(agent, owner, outcome, released)

    def unhold(self, agent: str) -> None:
        """Forget the agent's lease: given up, or lost."""
        self.lingering.discard(agent)
        self._leases.drop(agent)

    async def let_go(self, agent: str, owner: str, outcome: int, released: bool) -> None:
        """Give the lease up (unless the last commit did) and, as that is not atomic with
        the last read, look at the stream once more (``outcome``: see ``Outcome``)."""
        self.unhold(agent)
        if not released:
            with contextlib.suppress(ConnectionLostError):
                await _leases.release(self._transport, agent, owner)
        if outcome == Outcome.DRAINED and not released and not self._stopping.is_set():
            depth = (await _streams.backlog(self._transport, [agent]))[0]
            if depth:
                self._again.add(agent)

    async def _drain(
        self,
        agent: str,
        owner: str,
        first: NextTurns,
        counts: dict[bytes, int],
        pending: bool,
        last_id: bytes = b"",
    ) -> tuple[int, bool]:
        """Run batches until none is left: ``(outcome, released)``, outcome as the fetch
        status (see ``Outcome``); released: the last commit gave the lease up."""
        size = turns_per_fetch(self._settings)
        nxt = first
        while True:
            if not nxt.read:
                if self._stopping.is_set():
                    return Outcome.DRAINED, False
                got = await _batches.fetch(
                    self._transport, agent, owner, self._worker_id, 1 if pending else size, pending
                )
                nxt = NextTurns(got.status, got.entries, got.flags)
            if nxt.released:
                return Outcome.DRAINED, True
            if nxt.status == FetchStatus.NO_GROUP:
                await _directory.ensure_group(self._transport, agent)
                nxt = NextTurns(read=False)
                continue
            if nxt.status != FetchStatus.OK:
                return nxt.status, False
            if not nxt.entries:
                if pending:
                    pending = False
                    nxt = NextTurns(read=False)
                    continue
                if last_id and self.lingers():
                    waited = await self._linger(agent, owner, last_id, nxt.lingered_ms)
                    if waited is not None:
                        nxt = waited
                        continue
                return Outcome.DRAINED, False
            if not self._leases.holds(agent):
                warn_lapsed(agent, len(nxt.entries))
                return Outcome.DRAINED, False  # let go, and look at the stream again
            last_id = nxt.entries[-1][0]
            after = await self._run_batch(agent, owner, nxt.entries, nxt.flags, counts, pending)
            if after is None:
                return Outcome.LOST, False
            nxt = after
            last_id = nxt.newest or last_id

    def lingers(self) -> bool:
        """Whether an agent out of turns keeps its lease a while (``linger_ms``): not while
        stopping, nor while every slot is taken (other agents may be waiting)."""
        return (
            self._settings.linger_ms > 0
            and not self._stopping.is_set()
            and not self._slots.locked()
            and len(self.lingering) < _LINGER_MAX  # each wait holds a connection
        )

    async def _linger(
        self, agent: str, owner: str, after: bytes, lingered_ms: int = 0
    ) -> NextTurns | None:
        """Wait up to ``linger_ms`` (less ``lingered_ms`` already waited) for a turn newer
        than entry ``after``, fetched in the round trip that sees it. The last wait gives
        the lease up if nothing came; None: lingering stopped early (the lease is held)."""
        deadline = time.monotonic() + (self._settings.linger_ms - lingered_ms) / 1000
        while self.lingers():
            left_ms = int((deadline - time.monotonic()) * 1000)
            block_ms = max(1, min(_LINGER_SLICE_MS, left_ms))
            got = await _batches.wait_fetch(
                self._transport,
                agent,
                owner,
                self._worker_id,
                after,
                block_ms,
                turns_per_fetch(self._settings),
                block_ms >= left_ms,
            )
            after = got.newest
            if got.released or got.status != FetchStatus.OK or got.entries:
                return NextTurns(got.status, got.entries, got.flags, got.released)
            if block_ms >= left_ms:
                return None
        return None

    async def _run_batch(
        self,
        agent: str,
        owner: str,
        entries: list[Entry],
        flags: list[bytes],
        counts: dict[bytes, int],
        pending: bool = False,
    ) -> NextTurns | None:
        """Run one batch and commit it; the next batch (read in the same round trip), or
        None when the lease was lost and nothing was committed."""
        batch = await self._runner.run_turns(agent, entries, flags, counts, pending)
        return await self._commit_batch(agent, owner, batch)

    async def _commit_batch(self, agent: str, owner: str, batch: TurnBatch) -> NextTurns | None:
        """Commit a batch; the next batch (read in the same round trip), or None when the
        lease was lost and nothing was committed."""
        commit, held, pending = batch.commit, batch.held, batch.pending
        settings = self._settings
        if commit.new_agents or commit.delayed or commit.hold:
            await before_commit(self._transport, settings, owner, self._worker_id, commit)
        if self._stopping.is_set() or held or batch.rest:  # commit only
            committed = await _batches.commit(self._transport, owner, commit)
            after = (
                NextTurns(status=FetchStatus.PAUSED)
                if held
                else batch.rest or NextTurns(read=False)
            )
        elif not commit.outbox and not pending and self.lingers():
            # keep the lease and wait for the next turn in the commit's round trip
            self.lingering.add(agent)
            block_ms = min(_LINGER_SLICE_MS, settings.linger_ms)
            got = await _batches.commit_wait_fetch(
                self._transport,
                owner,
                commit,
                self._worker_id,
                batch.last_id,
                block_ms,
                turns_per_fetch(settings),
                block_ms >= settings.linger_ms,
            )
            committed = got.committed
            after = NextTurns(
                got.status, got.entries, got.flags, got.released, True, got.newest, block_ms
            )
        else:  # sends wait in the outbox: relay them before the lease may go
            size = 1 if pending else turns_per_fetch(settings)
            release = not commit.outbox and not self.lingers()
            got = await _batches.commit_fetch(
                self._transport, owner, commit, self._worker_id, size, pending, release
            )
            committed = got.committed
            after = NextTurns(got.status, got.entries, got.flags, got.released)
        if not committed:
            _log.warning("agent %s: lease lost before commit; batch discarded", agent)
            return None
        self._stats["batches"] += 1
        if commit.outbox:
            await _streams.relay(self._transport, agent)
        return after
