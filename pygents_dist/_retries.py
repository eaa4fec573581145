"""Retries in workers: a failed attempt's backoff is held in Redis, not slept in the worker.

The core runs a tool's attempts (``pygents._flow``) and waits out each backoff through the
``pygents._seams.retry_wait`` seam. A worker replaces that wait (``retry_wait`` below): for a
turn of an ordinary agent it raises ``RetryDeferred``, which ends the turn; the batch runner
then commits nothing of that attempt (no reply, no follow-up, no send), leaves the turn's
entry pending in the agent's stream and holds the agent in Redis (``lua/hold.lua``) until the
backoff is over. The hold is the agent's ``paused`` flag set to ``retry`` plus a ``!hold``
timer in its ``timers`` set: when it is due, ``lua/move_due.lua`` (any worker's timer loop)
lifts it and signals the agent, and whichever worker takes it next claims the pending entries
first, in stream order: the retry keeps its place and later turns of the agent wait, as they
do while a turn runs. The attempt number travels in the agent's state (``retry`` field:
``{id, attempt}``) and is handed to the core through ``pygents._seams.retry_attempt``.

So a worker killed during a backoff loses nothing, the backoff holds no worker slot, and
the retry runs on any worker at the due time. Limits: the agent's other turns wait for the
backoff (that is the order guarantee); context changes a failed attempt made in memory are
kept, as in one process; a turn of an agent served with ``--parallel`` sleeps its backoff in
the worker (its turns have no order to keep); a user's ``pause`` during a hold is kept, and
``resume`` lifts the hold early.
"""

from __future__ import annotations

import asyncio
import dataclasses
from contextvars import ContextVar
from typing import Any

from pygents import _seams
from pygents_dist import _wire
from pygents_dist._keys import GROUP
from pygents_dist._streams import SIGNALS_CAP
from pygents_dist._transport import Transport

__all__ = ["RetryHold", "attempts", "deferring", "hold", "retry_wait"]

#: Whether a retry's backoff in this context may be deferred to Redis (a turn of an agent
#: whose turns run one at a time); elsewhere the backoff is slept.
deferring: ContextVar[bool] = ContextVar("pygents_dist_deferring", default=False)


@dataclasses.dataclass(frozen=True, slots=True)
class RetryHold:
    """A turn whose next attempt waits for its backoff.

    Attributes:
        turn_id: the turn.
        entry_id: its entry in the agent's stream (left pending).
        attempt: the attempt to run next (2 after the first failure).
        delay_ms: the backoff.
    """

    turn_id: str
    entry_id: bytes
    attempt: int
    delay_ms: int


async def retry_wait(tool: Any, attempt: int, delay_s: float, error: BaseException) -> None:
    """The worker's ``pygents._seams.retry_wait``: defer the retry (``RetryDeferred``) in a
    turn that may be deferred, else sleep the backoff."""
    if not deferring.get():
        await asyncio.sleep(delay_s)
        return
    raise _seams.RetryDeferred(tool.__name__, attempt, delay_s, error)


async def hold(
    transport: Transport, agent: str, owner: str, consumer: str, held: RetryHold
) -> bool:
    """Hold ``agent`` until ``held``'s backoff is over (``lua/hold.lua``), fenced by its lease
    ``owner``; False (nothing written) when the lease is no longer ours."""
    keys = transport.keys
    record = keys.for_agent(agent)
    script_keys = [
        record.owner,
        record.state,
        keys.timers(agent),
        keys.due,
        record.turns,
        keys.ready,
    ]
    args = [
        owner,
        held.delay_ms,
        agent,
        _wire.pack({"id": held.turn_id, "attempt": held.attempt}),
        held.entry_id,
        GROUP,
        consumer,
        SIGNALS_CAP,
    ]
    return bool(await transport.scripts.run_one("hold", script_keys, args))


async def attempts(transport: Transport, agent: str) -> tuple[str, int] | None:
    """The turn of ``agent`` whose retry is due and its attempt number, if any."""
    (raw,) = await transport.execute([("HGET", transport.keys.state(agent), "retry")], "retry")
    if raw is None:
        return None
    try:
        record = _wire.unpack(raw)
        return str(record["id"]), int(record["attempt"])
    except Exception:  # a record of a future version: start the attempts afresh
        return None
