"""Control and inspection: pause and resume, cancellation requests, worker heartbeats, and
the per-agent status the CLI shows.

Pause is a flag in the agent's state hash that fetches and takes check (so it holds for every
worker); a cancel request is a field per turn id in the agent's cancel hash, read when a
batch is fetched and while a turn runs; each live worker keeps a heartbeat key with a TTL.
Pause, resume and cancel are scripts (``lua/pause.lua``, ``resume.lua``, ``cancel.lua``), the
same ones the Redis Functions library offers other languages (``_functions.py``).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

from pygents_dist._keys import GROUP
from pygents_dist._redis_errors import first_error, reply_code
from pygents_dist._streams import SIGNALS_CAP, signal
from pygents_dist._transport import Transport

__all__ = [
    "ForgetOutcome",
    "agent_status",
    "cancelled",
    "forget",
    "forget_many",
    "forget_worker",
    "heartbeat",
    "is_paused",
    "request_cancel",
    "set_paused",
    "workers",
]

_SCAN_COUNT = 500


class ForgetOutcome(enum.IntEnum):
    """What ``forget`` did (``lua/forget.lua``)."""

    FORGOTTEN = 1
    #: A worker holds the agent now: nothing deleted.
    BUSY = 0
    #: Turns or sends wait (and ``force`` was not given): nothing deleted.
    HAS_WORK = -1


async def forget(transport: Transport, agent: str, force: bool = False) -> ForgetOutcome:
    """Delete an agent's keys (its stream, context, outbox, dedup set, cancel flags) and,
    for an agent made at runtime, its directory entry, for an instance its place in its
    kind's index; reply streams expire on their own."""
    (got,) = await forget_many(transport, [agent], force)
    return got


async def forget_many(
    transport: Transport, agents: Sequence[str], force: bool = False
) -> list[ForgetOutcome]:
    """``forget`` each of ``agents``, in two round trips for all."""
    if not agents:
        return []
    for_agent, flag = transport.keys.for_agent, ["1" if force else "0"]
    calls = [("forget", list(for_agent(agent)), flag) for agent in agents]
    got = [ForgetOutcome(r) for r in await transport.scripts.run(calls, "forget")]
    gone = [agent for agent, outcome in zip(agents, got, strict=True) if outcome == 1]
    if gone:
        index = transport.keys.instances
        commands: list[tuple[Any, ...]] = [("HDEL", transport.keys.directory, *gone)]
        commands += [
            ("ZREM", index(agent.partition("/")[0]), agent) for agent in gone if "/" in agent
        ]
        await transport.execute(commands, "forget")
    return got


async def set_paused(transport: Transport, agent: str, paused: bool) -> None:
    """Pause or resume an agent for every worker (``lua/pause.lua``, ``lua/resume.lua``:
    resuming also wakes the workers for it)."""
    keys = transport.keys
    if paused:
        await transport.scripts.run_one("pause", [keys.state(agent)], [])
    elif await transport.is_cluster():  # the ready shard lives in another slot
        await transport.execute([("HDEL", keys.state(agent), "paused")], "resume")
        await signal(transport, [agent])
    else:
        await transport.scripts.run_one(
            "resume", [keys.state(agent), keys.ready], [SIGNALS_CAP, agent]
        )


async def is_paused(transport: Transport, agent: str) -> bool:
    """Whether ``agent`` is paused."""
    (found,) = await transport.execute(
        [("HEXISTS", transport.keys.state(agent), "paused")], "pause"
    )
    return bool(found)


async def request_cancel(transport: Transport, agent: str, turn_id: str) -> bool:
    """Ask workers to cancel one turn (before it starts, or while it runs); False when it
    already finished (``lua/cancel.lua``)."""
    keys = transport.keys
    done = await transport.scripts.run_one(
        "cancel", [keys.cancel(agent), keys.done(agent)], [turn_id]
    )
    return bool(done)


async def cancelled(transport: Transport, agent: str, turn_ids: Sequence[str]) -> list[bool]:
    """Which of ``turn_ids`` have a cancellation request."""
    if not turn_ids:
        return []
    (raw,) = await transport.execute([("HMGET", transport.keys.cancel(agent), *turn_ids)], "cancel")
    return [v is not None for v in raw]


async def heartbeat(
    transport: Transport, worker_id: str, info: bytes, ttl_ms: int, create: bool
) -> bool:
    """Refresh a worker's liveness key; False if it vanished (Redis lost its data)."""
    key = transport.keys.worker(worker_id)
    command: tuple[Any, ...] = ("SET", key, info, "PX", ttl_ms)
    (got,) = await transport.execute([command if create else (*command, "XX")], "heartbeat")
    return got is not None


async def forget_worker(transport: Transport, worker_id: str) -> None:
    """Remove a stopping worker's liveness key."""
    await transport.execute([("DEL", transport.keys.worker(worker_id))], "heartbeat")


async def workers(transport: Transport) -> dict[str, bytes]:
    """Live workers -> their msgpack info."""
    keys = await transport.scan(transport.keys.worker_pattern, _SCAN_COUNT)
    if not keys:
        return {}
    # GETs, not one MGET: on a cluster the heartbeats live in many slots.
    values = await transport.execute([("GET", key) for key in keys], "workers")
    return {k.decode().rsplit(":", 1)[1]: v for k, v in zip(keys, values, strict=False) if v}


async def agent_status(transport: Transport, agents: Sequence[str]) -> list[dict[str, Any]]:
    """Per agent: queue depth, pending count, oldest pending entry, owner, paused, and on a
    Redis Cluster the ``host:port`` of the primary holding its keys (``node``)."""
    k = transport.keys
    commands: list[tuple[Any, ...]] = []
    for agent in agents:
        commands += [
            ("XLEN", k.turns(agent)),
            ("XPENDING", k.turns(agent), GROUP),
            ("GET", k.owner(agent)),
            ("HGET", k.state(agent), "paused"),
        ]
    # A stream without its group (Redis lost its data) answers XPENDING with an error: it
    # then has nothing in flight, which is what the status shows.
    raw = await transport.execute_raw(commands, "status") if commands else []
    first_error([r for r in raw if not _is_no_group(r)], "status")
    cluster = transport.cluster
    out = []
    for i, agent in enumerate(agents):
        length, pending, owner, paused = raw[4 * i : 4 * i + 4]
        node = None
        if cluster is not None:
            node = "{}:{}".format(*cluster.address_of(k.turns(agent)))
        in_flight, oldest = (pending[0], pending[1]) if isinstance(pending, list) else (0, None)
        out.append(
            {
                "agent": agent,
                "depth": length if isinstance(length, int) else 0,
                "in_flight": in_flight,
                "oldest_pending": _text(oldest),
                "owner": _text(owner),
                "paused": bool(paused),
                **({"node": node} if node else {}),
            }
        )
    return out


def _is_no_group(reply: Any) -> bool:
    return isinstance(reply, Exception) and reply_code(reply) == "NOGROUP"


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value
