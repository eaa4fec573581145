"""The statuses the runtime's scripts answer with, and how serving one agent ended.

The values are those of the scripts' replies (``lua/take.lua``, ``lua/take_many.lua``,
``lua/fetch.lua``). They are ``IntEnum`` members, so a status the transport returns as a bare
int compares equal to its name.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["NOT_TAKEN", "FetchStatus", "Outcome", "TakeStatus"]


class TakeStatus(IntEnum):
    """What taking an agent found (``Taken.status``: ``lua/take.lua``, ``lua/take_many.lua``)."""

    #: The lease is ours (a new fencing token), with the agent's first batch.
    TAKEN = 0
    #: ``take.lua`` only: the lease is ours, but the stream has no group (Redis lost its
    #: data); no batch was read.
    TAKEN_NO_GROUP = -3
    #: Owned by another worker: no lease taken.
    OWNED = 1
    #: Paused: no lease taken.
    PAUSED = 2
    #: Nothing to run or relay: no lease taken.
    IDLE = 3
    #: ``take_many.lua`` only: the agent needs ``take.lua`` (entries a previous owner left
    #: pending, sends waiting in its outbox, or no group): no lease taken.
    NEEDS_TAKE = 4


#: The statuses of ``take.lua`` that took no lease.
NOT_TAKEN = frozenset({TakeStatus.OWNED, TakeStatus.PAUSED, TakeStatus.IDLE})


class FetchStatus(IntEnum):
    """What reading an owned agent's next batch found (``lua/fetch.lua``; also the status of
    a batch read in a commit's round trip)."""

    #: Read (the batch may be empty).
    OK = 0
    #: The lease is no longer ours: nothing read.
    LEASE_LOST = -1
    #: The agent is paused: nothing read.
    PAUSED = -2
    #: The stream has no group (Redis lost its data): nothing read.
    NO_GROUP = -3


class Outcome(IntEnum):
    """How serving an owned agent ended, which says what letting it go does after. Equal to
    the ``FetchStatus`` that ended it."""

    #: Its turns ran out (or the worker stops): after the lease goes, the stream is looked at
    #: once more, as giving the lease up is not atomic with the last read.
    DRAINED = 0
    #: The lease was lost (a commit was fenced out) or a round trip failed: only let go.
    LOST = -1
    #: The agent is paused: only let go.
    PAUSED = -2
