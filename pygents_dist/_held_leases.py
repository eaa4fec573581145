"""The agent leases a worker holds: until when each surely holds, their renewal, and the
``owned`` set in Redis that lets other workers find the agents of a worker that died.

A lease is taken by a take round trip (``lua/take.lua``, ``lua/take_many.lua``) and given up
by a commit, a fetch or a release; this module only keeps the books: the owner value
(fencing token) of each lease held, the monotonic time until which it surely holds, and
which leases are written to the ``owned`` set that ``expired_owners`` sweeps.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Container, Iterable

from pygents_dist import _leases
from pygents_dist._settings import WorkerSettings
from pygents_dist._transport import Transport
from pygents_dist.errors import ConnectionLostError

__all__ = ["HeldLeases", "warn_lapsed"]

_log = logging.getLogger("pygents_dist.worker")
#: Seconds an agent is held before its lease is written to the ``owned`` set.
_OWNED_DELAY_S = 0.05


def warn_lapsed(agent: str, turns: int) -> None:
    """Log that ``turns`` read for ``agent`` are not run: its lease may have lapsed."""
    _log.warning(
        "agent %s: %d turn(s) arrived after its lease may have lapsed (a stall longer "
        "than the lease?); not run here, the agent is let go",
        agent,
        turns,
        extra={"agent": agent},
    )


class HeldLeases:
    """The leases this worker holds, and its part of the ``owned`` set."""

    def __init__(
        self, transport: Transport, settings: WorkerSettings, declared: Container[str] = ()
    ) -> None:
        self._transport = transport
        self._settings = settings
        self._declared = declared
        self._held: dict[str, str] = {}  # agent: owner value
        # agent: monotonic time until which its lease surely holds (the send time of the
        # round trip that took or last renewed it, plus the lease: Redis set it later).
        self._until: dict[str, float] = {}
        self._taken_at: dict[str, float] = {}
        self._recorded: set[str] = set()  # agents this worker wrote to the owned set
        self._loop: asyncio.Task[None] | None = None

    def hold(self, agent: str, owner: str, sent: float) -> None:
        """Record a lease taken by a round trip sent at ``sent`` (monotonic)."""
        self._held[agent] = owner
        self._until[agent] = sent + self._settings.lease_ms / 1000
        self._note_owned(agent, True)

    def drop(self, agent: str) -> None:
        """Forget the agent's lease (given up, or lost)."""
        self._held.pop(agent, None)
        self._until.pop(agent, None)
        self._note_owned(agent, False)

    def holds(self, agent: str) -> bool:
        """Whether the agent's lease surely still holds, so a batch just read may start.

        A round trip held up longer than the lease (a stalled network, a paused process)
        may bring turns read while the lease held, after it expired and another worker took
        the agent and its pending turns over: such a batch is not run (the commit would be
        fenced out anyway); the agent is let go and its turns run where it is taken next.
        """
        return time.monotonic() < self._until.get(agent, 0.0)

    async def renew(self) -> None:
        """Extend every lease held, in one round trip."""
        leases = dict(self._held)
        sent = time.monotonic()
        renewed = await _leases.renew(self._transport, leases, self._settings.lease_ms)
        for agent, ok in renewed.items():
            if self._held.get(agent) != leases[agent]:
                continue  # given up (or taken again) meanwhile
            if ok:
                self._until[agent] = sent + self._settings.lease_ms / 1000
            else:
                _log.error("lost the lease of agent %s", agent, extra={"agent": agent})
        # Renew wrote every one of them, also those given up during its round trip: the
        # owned loop removes whatever is no longer held.
        self._recorded.update(leases)

    def to_record(self, agents: Iterable[str]) -> list[str]:
        """Of ``agents``, those whose leases a take records in the ``owned`` set in its own
        round trip: instances and agents made at runtime. No backlog scan covers them (there
        may be millions), so a worker killed just after taking one must have left it there
        for ``expired_owners`` to find."""
        declared = self._declared
        return [agent for agent in agents if agent not in declared]

    def recorded_at_take(self, agents: Iterable[str], owned_elsewhere: Iterable[str] = ()) -> None:
        """A take recorded ``agents`` in the ``owned`` set: their entries are removed once
        they are not held (at once for those the take did not get), except those the take
        found ``owned_elsewhere``: removing theirs would hide that owner's lease from
        ``expired_owners`` were it dead. Such an entry stays, expiring one lease from the
        take, unless its owner renews it or lets the agent go."""
        others = set(owned_elsewhere)
        self._recorded.update(agent for agent in agents if agent not in others)
        self.sync_soon()

    def stale(self, agent: str) -> None:
        """An expired owner left ``agent`` in the ``owned`` set: this worker removes it once
        it has served the agent."""
        self._recorded.add(agent)

    def sync_soon(self) -> None:
        """Bring the ``owned`` set up to date soon, if this worker wrote anything to it."""
        if self._recorded:
            self._watch_owned()

    def stop(self) -> None:
        """Stop the loop that keeps the ``owned`` set up to date (see ``sync``)."""
        if self._loop is not None:
            self._loop.cancel()

    def _note_owned(self, agent: str, owned: bool) -> None:
        """Track leases for the ``owned`` set that ``expired_owners`` sweeps.

        A lease is written there only once held for ``_OWNED_DELAY_S`` (most serves end
        sooner and cost no write) and removed when given up. A worker that dies before its
        lease was written leaves the agent to the periodic backlog scan, one lease period
        later.
        """
        if owned:
            self._taken_at[agent] = time.monotonic()
        else:
            self._taken_at.pop(agent, None)
        self._watch_owned()

    def _watch_owned(self) -> None:
        """Run the loop that writes held leases to the ``owned`` set and removes the rest."""
        if self._loop is None:
            self._loop = asyncio.create_task(self._record_owned(), name="owned")

    async def _record_owned(self) -> None:
        period_s = min(_OWNED_DELAY_S, self._settings.lease_ms / 10_000)
        try:
            while self._taken_at or self._recorded:
                await asyncio.sleep(period_s)
                await self.sync(time.monotonic() - period_s)
        finally:
            self._loop = None

    async def sync(self, taken_before: float) -> None:
        """Write the leases taken before ``taken_before`` (monotonic) to the ``owned`` set,
        and remove those given up."""
        expiry = time.time() * 1000 + self._settings.lease_ms
        recorded = self._recorded
        add = {
            agent: expiry
            for agent, at in self._taken_at.items()
            if at <= taken_before and agent not in recorded
        }
        gone = recorded - self._taken_at.keys()
        if not add and not gone:
            return
        try:
            await _leases.mark_owned(self._transport, add, gone)
        except ConnectionLostError as exc:
            _log.warning("owned set not updated: %s", exc)
            return
        recorded.difference_update(gone)
        recorded.update(add)
