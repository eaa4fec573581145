"""Owning agents: taking an agent's lease with its first batch, renewing and giving it up.

An agent is served by one worker at a time: the one holding its lease (``Keys.owner``, a
value ``<worker>:<fence>`` with a TTL). ``lua/take.lua`` takes it together with the agent's
context and first batch; the fence number in the value is the token every later fetch and
commit must show. The ``owned`` sorted set records each lease's expiry so that any worker
can find agents whose owner died (``expired_owners``).

On a Redis Cluster the ``owned`` set and an agent's keys live in different slots, most often
on different primaries: a lease recorded "in the take's round trip" is then recorded at the
same moment as the take, not before it, and ``take_many`` runs one script call per primary
(``_node_groups.py``). A worker that dies in between (after the take, before the record) leaves
an agent ``expired_owners`` does not list: the workers' periodic backlog scan (every served
agent once a lease) finds it instead, a lease or so later.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from typing import Any

from pygents_dist import _instances
from pygents_dist._keys import GROUP
from pygents_dist._node_groups import run_by_node
from pygents_dist._scripts import COMMAND, ScriptCall
from pygents_dist._statuses import NOT_TAKEN, TakeStatus
from pygents_dist._transport import Entry, Transport, entries

__all__ = [
    "Taken",
    "expired_owners",
    "mark_owned",
    "record_calls",
    "release",
    "renew",
    "take",
    "take_many",
    "take_many_call",
]

_EXPIRED_PER_SWEEP = 1000


@dataclasses.dataclass(slots=True)
class Taken:
    """What ``take`` found (see ``lua/take.lua``).

    ``status``: a ``TakeStatus`` (``TAKEN``; ``TAKEN_NO_GROUP``; ``OWNED``, ``PAUSED``,
    ``IDLE``: no lease was taken; from ``take_many`` also ``NEEDS_TAKE``). When taken: the
    owner value (fencing token), the context blobs, how many sends
    wait in the outbox, the claimed pending entries' delivery counts, and the first batch
    with its flags (``pending``: it holds claimed entries, read from this consumer's pending
    list).
    """

    status: TakeStatus
    owner: str = ""
    queue: bytes | None = None
    pool: bytes | None = None
    outbox: int = 0
    counts: dict[bytes, int] = dataclasses.field(default_factory=dict)
    entries: list[Entry] = dataclasses.field(default_factory=list)
    flags: list[bytes] = dataclasses.field(default_factory=list)
    pending: bool = False


async def take(
    transport: Transport,
    agent: str,
    worker_id: str,
    lease_ms: int,
    count: int,
    claimed_count: int = 1,
    claim: int = 1000,
    record: bool = False,
) -> Taken:
    """Own ``agent`` if it has work, with its first batch, in one round trip
    (``lua/take.lua``); see ``Taken``. The caller records the lease in the ``owned`` set
    (``mark_owned``), or with ``record`` the same round trip does, before the take (so no
    moment exists where the lease is held but unrecorded; the caller removes the entry
    when the agent is let go or was not taken)."""
    keys = list(transport.keys.for_agent(agent))
    args = [worker_id, lease_ms, GROUP, count, claim, claimed_count]
    calls: list[ScriptCall] = [("take", keys, args)]
    if record:
        calls[:0] = record_calls(transport, [agent], lease_ms)
    got = (await transport.scripts.coalesced(calls))[-1]
    status = TakeStatus(got[0])
    if status in NOT_TAKEN:
        return Taken(status)
    taken = Taken(status, got[1].decode(), got[2] or None, got[3] or None, int(got[4]))
    if status == TakeStatus.TAKEN:
        taken.counts = {e: int(c) for e, c in zip(got[5], got[6], strict=False)}
        taken.entries = entries(got[7])
        taken.flags = list(got[8])
        taken.pending = bool(got[9])
    return taken


async def take_many(
    transport: Transport,
    agents: Sequence[str],
    worker_id: str,
    lease_ms: int,
    count: int,
    record: Sequence[str] = (),
) -> list[Taken]:
    """``take`` for many agents in one round trip (``lua/take_many.lua``), for the plain
    case only: an agent with pending entries, waiting sends or no group comes back with
    status 4 and no lease, for ``take``. Taken ones (status 0) carry their first batch.
    ``record``: agents whose leases the round trip records first (see ``take``)."""
    if await transport.is_cluster():
        [got] = await run_by_node(
            transport,
            record_calls(transport, record, lease_ms),
            [
                (
                    "take_many",
                    agents,
                    lambda part: take_many_call(transport, part, worker_id, lease_ms, count),
                )
            ],
            "take_many",
        )
        return taken_many(got)
    keys, args = take_many_call(transport, agents, worker_id, lease_ms, count)
    calls = [*record_calls(transport, record, lease_ms), ("take_many", keys, args)]
    return taken_many((await transport.scripts.run(calls, "take_many"))[-1])


def _record_call(transport: Transport, agents: Sequence[str], lease_ms: int) -> ScriptCall:
    """The ``ZADD`` recording ``agents``' leases in the ``owned`` set, as a script call."""
    expiry = time.time() * 1000 + lease_ms
    scored = [part for agent in agents for part in (expiry, agent)]
    return (COMMAND, ["ZADD", transport.keys.owned, *scored], [])


def record_calls(transport: Transport, agents: Sequence[str], lease_ms: int) -> list[ScriptCall]:
    """The calls recording ``agents``' leases before a take in the same round trip, and the
    instances among them in their kinds' indexes (none for none)."""
    if not agents:
        return []
    return [_record_call(transport, agents, lease_ms), *_instances.touch_calls(transport, agents)]


def take_many_call(
    transport: Transport, agents: Sequence[str], worker_id: str, lease_ms: int, count: int
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of ``lua/take_many.lua`` (to pipeline it behind a commit)."""
    for_agent = transport.keys.for_agent
    keys = [key for a in agents for key in for_agent(a)]
    return keys, [worker_id, lease_ms, GROUP, count]


def taken_many(got: Any) -> list[Taken]:
    """``lua/take_many.lua``'s reply: a ``Taken`` per agent (status 0 with its first batch)."""
    out = []
    for one in got:
        status = TakeStatus(one[0])
        if status != TakeStatus.TAKEN:
            out.append(Taken(status))
            continue
        taken = Taken(status, one[1].decode(), one[2] or None, one[3] or None)
        taken.entries = entries(one[4])
        taken.flags = list(one[5])
        out.append(taken)
    return out


async def renew(transport: Transport, leases: dict[str, str], lease_ms: int) -> dict[str, bool]:
    """Extend owned agents' leases; ``{agent: still ours}``."""
    if not leases:
        return {}
    owner = transport.keys.owner
    calls = [("renew", [owner(a)], [value, lease_ms]) for a, value in leases.items()]
    results = await transport.scripts.run(calls, "renew")
    expiry = time.time() * 1000 + lease_ms
    await mark_owned(transport, dict.fromkeys(leases, expiry), ())
    return {agent: bool(r) for agent, r in zip(leases, results, strict=True)}


async def release(transport: Transport, agent: str, value: str) -> None:
    """Give up ``agent`` if still ours."""
    await transport.scripts.run_one("release", [transport.keys.owner(agent)], [value])
    await mark_owned(transport, {}, [agent])


async def expired_owners(transport: Transport) -> list[str]:
    """Agents whose owner stopped renewing (dead or stalled).

    They stay in the set until a worker serving them takes them over (which rewrites the
    expiry) or releases them, so a worker that does not serve an agent cannot hide it
    from the ones that do.
    """
    now = time.time() * 1000
    command = ("ZRANGEBYSCORE", transport.keys.owned, "-inf", now, "LIMIT", 0, _EXPIRED_PER_SWEEP)
    (raw,) = await transport.execute([command], "owned")
    return [a.decode() for a in raw]


async def mark_owned(transport: Transport, add: dict[str, float], remove: Iterable[str]) -> None:
    """Record lease expiries (ms) of agents taken, and forget agents given up, in the
    ``owned`` set that ``expired_owners`` sweeps."""
    commands: list[tuple[Any, ...]] = []
    if add:
        scored = [part for agent, expiry in add.items() for part in (expiry, agent)]
        commands.append(("ZADD", transport.keys.owned, *scored))
    gone = list(remove)
    if gone:
        commands.append(("ZREM", transport.keys.owned, *gone))
    if commands:
        await transport.execute(commands, "owned")
