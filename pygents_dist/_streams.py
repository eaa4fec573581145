"""Turns into agents' streams, and the "has work" signals workers wait on.

A turn is appended to its agent's stream (``Keys.turns``) by ``lua/send.lua``, which also
signals the agent on the shared ``ready`` stream unless it has an owner (an owner reads new
turns before it lets the agent go, so a signal would only wake workers for nothing). Workers
block on ``ready``; ``backlog`` tells how much each agent has left; ``relay`` delivers the
sends an agent's committed turns made to other agents (its outbox).

On a Redis Cluster a script's KEYS share one slot, and the ready stream is sharded
(``Keys.ready_shard``): a send appends each slot's turns with ``lua/append.lua`` (one call
per slot, pipelined per primary), which also signals the agents nobody owns on a ready shard
of the same primary (an undeclared key, allowed by the script's flag); where that primary
holds no shard, or the shard moved since the slot map was read, the signals go in a second
round trip. A sender that dies between the two leaves turns without a signal (as a failover
of a shard's primary may lose signals); workers' periodic scan of their agents' backlogs
(``Worker._scan_slice``, every agent once a lease) finds them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pygents_dist._cluster import key_slot
from pygents_dist._keys import GROUP, READY_SHARDS, Keys, glob_escape
from pygents_dist._node_groups import node_groups, slot_groups
from pygents_dist._redis_errors import first_error, is_missing_script
from pygents_dist._scripts import ScriptCall
from pygents_dist._transport import Entry, Transport, entries

__all__ = [
    "SIGNALS_CAP",
    "backlog",
    "drop",
    "queued_agents",
    "relay",
    "send_command",
    "send_turns",
    "signal",
    "signal_commands",
]

#: A turn to send: (agent, turn id, msgpack envelope, signature or b"").
type Outgoing = tuple[str, str | bytes, bytes, bytes]
#: Signals kept in the ``ready`` stream (approximately): enough for every worker's wait.
SIGNALS_CAP = 100_000
#: A waiting send's read of its reply stream: the longest it blocks, and entries per read.
_SEND_WAIT_MS = 2_000
_SEND_WAIT_COUNT = 500


async def send_turns(
    transport: Transport, turns: Sequence[Outgoing], wait: str | None = None
) -> list[Entry]:
    """Append turns ``(agent, turn_id, envelope, signature)`` and signal their agents.

    One round trip for the whole batch. When this returns the turns are in Redis. With
    ``wait`` (a reply stream), the same round trip then waits up to 2 s for its first
    entries and returns them. Agents that have an owner are not signalled: their owner
    reads new turns before it gives the agent up (``lua/send.lua``).
    """
    if await transport.is_cluster():
        return await _send_sliced(transport, turns, wait)
    scripts = transport.scripts
    keys, args = _send_call(transport, turns)
    if wait is None:
        await scripts.run([("send", keys, args)], "send")
        return []
    commands = [
        scripts.evalsha("send", keys, args),
        ("XREAD", "COUNT", _SEND_WAIT_COUNT, "BLOCK", _SEND_WAIT_MS, "STREAMS", wait, "0-0"),
    ]
    # A send that finds its script missing (Redis restarted) must not leave the wait
    # behind it blocking: the round trip ends at the error, and goes again once loaded.
    results = await transport.execute_raw(commands, "send", _SEND_WAIT_MS, until_error=True)
    if is_missing_script(results[0]):
        await scripts.load(["send"])
        results = await transport.execute_raw(commands, "send", _SEND_WAIT_MS, until_error=True)
    first_error(results, "send")
    return entries(results[1][0][1]) if results[1] else []


async def _send_sliced(
    transport: Transport, turns: Sequence[Outgoing], wait: str | None
) -> list[Entry]:
    """``send_turns`` on a Redis Cluster: a ``lua/append.lua`` call per primary (its
    ``_node`` variant for agents of several slots, ``_node_groups.py``), each signalling on
    a ready shard of that primary; with ``wait``, the read of the reply behind it on the
    agent's primary. One round trip, unless a primary has no shard (or a slot moved since
    the slot map was read): then those agents go one slot per call, signalled in a second
    round trip."""
    agents = list(dict.fromkeys(turn[0] for turn in turns))
    where = {a: i for i, part in enumerate(node_groups(transport, agents)) for a in part}
    parts: list[list[Outgoing]] = [[] for _ in range(max(where.values(), default=-1) + 1)]
    for turn in turns:
        parts[where[turn[0]]].append(turn)
    scripts = transport.scripts
    calls = [_append_call(transport, part, local=True) for part in parts]
    commands: list[tuple[Any, ...]] = []
    for part, (keys, args) in zip(parts, calls, strict=True):
        if len({key_slot(turn[0]) for turn in part}) == 1:
            commands.append(scripts.evalsha("append", keys, args))
        else:
            commands.append(scripts.evalsha("append_node", keys[:1], [len(keys), *keys, *args]))
    wait_command = None
    if wait is not None:
        wait_command = (
            "XREAD",
            "COUNT",
            _SEND_WAIT_COUNT,
            "BLOCK",
            _SEND_WAIT_MS,
            "STREAMS",
            wait,
            "0-0",
        )
    # The wait goes behind the appends only when they signal by themselves (else it would
    # block before the second round trip's signals).
    early = wait_command is not None and all(args[0] for _keys, args in calls)
    if wait_command is not None and early:
        commands.append(wait_command)
    # An append that fails (no script yet, a shard gone elsewhere) must not leave the wait
    # behind it blocking: the round trip ends at the error (nothing of it was written).
    results = await transport.execute_raw(
        commands, "send", _SEND_WAIT_MS if early else 0, until_error=early
    )
    wake: list[str] = []
    failed: list[int] = []
    for i in range(len(calls)):
        got = results[i] if i < len(results) else None
        if got is None or isinstance(got, Exception):
            failed.append(i)
        elif not got[0]:
            wake += [name.decode() for name in got[1]]
    if failed:
        if any(is_missing_script(results[i]) for i in failed if i < len(results)):
            await scripts.load(["append", "append_node"])
        again: list[ScriptCall] = []
        for i in failed:
            for slot_agents in slot_groups([turn[0] for turn in parts[i]]):
                mine = set(slot_agents)
                part = [turn for turn in parts[i] if turn[0] in mine]
                again.append(("append", *_append_call(transport, part, local=False)))
        for got in await scripts.run(again, "send"):
            wake += [name.decode() for name in got[1]]
    followers = signal_commands(transport, wake)
    waited = early and not failed and len(results) == len(commands)
    if wait_command is not None and not waited:
        followers.append(wait_command)
    done = await transport.execute(followers, "send", _SEND_WAIT_MS) if followers else []
    if wait_command is None:
        return []
    reply = results[-1] if waited else done[-1]
    return entries(reply[0][1]) if reply else []


def _append_call(
    transport: Transport, turns: Sequence[Outgoing], *, local: bool
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of ``lua/append.lua`` appending ``turns`` (of agents of one slot); with
    ``local``, signalling on a ready shard of the same primary (if it has one)."""
    keys, args = _send_call(transport, turns)
    shard = _local_shard(transport, keys[1], turns[0][0]) if local else ""
    return keys[1:], [shard, *args]


def _local_shard(transport: Transport, key: str, agent: str) -> str:
    """A ready shard on the primary of ``key`` as last read: the agent's own if it is there,
    else the first one there; '' when that primary has none."""
    cluster = transport.cluster
    if cluster is None:
        return ""
    keys = transport.keys
    here = cluster.address_of(key)
    own = keys.ready_shard(Keys.shard_of(agent))
    if cluster.address_of(own) == here:
        return own
    for index in range(READY_SHARDS):
        shard = keys.ready_shard(index)
        if cluster.address_of(shard) == here:
            return shard
    return ""


def send_command(transport: Transport, turns: Sequence[Outgoing]) -> tuple[Any, ...]:
    """The ``lua/send.lua`` call appending ``turns``, as an EVAL: for rare paths that
    pipeline it behind other commands, where a missing script must not cost a retry."""
    return transport.scripts.eval("send", *_send_call(transport, turns))


def _send_call(transport: Transport, turns: Sequence[Outgoing]) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of ``lua/send.lua`` appending ``turns`` and signalling their
    unowned agents."""
    by_agent: dict[str, list[Any]] = {}
    for agent, turn_id, data, signature in turns:
        by_agent.setdefault(agent, []).extend((turn_id, data, signature))
    for_agent = transport.keys.for_agent
    keys: list[str] = [transport.keys.ready]
    args: list[Any] = [SIGNALS_CAP]
    for agent, parts in by_agent.items():
        record = for_agent(agent)
        keys += (record.turns, record.owner)
        args += (agent, len(parts) // 3, *parts)
    return keys, args


async def signal(transport: Transport, agents: Iterable[str]) -> None:
    """Announce that ``agents`` have work, owned or not (resume and shutdown: an owner
    may be about to let go without looking at the stream again)."""
    await transport.is_cluster()  # the commands depend on it
    commands = signal_commands(transport, list(agents))
    if commands:
        await transport.execute(commands, "signal")


def signal_commands(transport: Transport, names: Sequence[str]) -> list[tuple[Any, ...]]:
    """The ``XADD``s signalling ``names``: on the ready stream, or on a cluster on each
    agent's ready shard (known once the transport has made a round trip)."""
    keys = transport.keys
    streams: dict[str, list[str]] = {}
    if transport.cluster is None:
        streams[keys.ready] = list(names)
    else:
        for name in names:
            streams.setdefault(keys.ready_shard(Keys.shard_of(name)), []).append(name)
    return [
        ("XADD", ready, "MAXLEN", "~", SIGNALS_CAP, "*", "as", " ".join(part[i : i + 1000]))
        for ready, part in streams.items()
        for i in range(0, len(part), 1000)
    ]


async def queued_agents(
    transport: Transport, cursor: int, count: int = 1000
) -> tuple[int, list[str]]:
    """One step of a keyspace scan for agents whose stream exists: ``(next cursor, names)``.

    A stream exists while an agent has turns queued or in flight (the commit that empties it
    deletes it), so this finds work whatever became of its signals. Cursor 0 starts a pass
    and is returned when the pass is complete; a name may come twice within a pass. On a
    Redis Cluster a pass scans every primary in turn (the cursor carries which).
    """
    base = transport.keys.base
    pattern = glob_escape(base) + ":{*}:turns"
    command = ("SCAN", cursor, "MATCH", pattern, "COUNT", count, "TYPE", "stream")
    start, end = len(base) + 2, -len("}:turns")
    cluster = transport.cluster if await transport.is_cluster() else None
    if cluster is not None:  # every primary in turn: the cursor says which, and where
        primaries = cluster.primaries()
        node, at = (0, 0) if cursor == 0 else ((cursor - 1) % 64, (cursor - 1) // 64)
        if node >= len(primaries):  # fewer primaries than when the pass began
            return 0, []
        ((got, raw),) = await cluster.execute_on(
            primaries[node], [(*command[:1], at, *command[2:])], "scan"
        )
        if int(got):
            next_cursor = int(got) * 64 + node + 1
        else:
            next_cursor = node + 2 if node + 1 < len(primaries) else 0
        return next_cursor, [bytes(key)[start:end].decode(errors="replace") for key in raw]
    ((next_cursor, raw),) = await transport.execute([command], "scan")
    return int(next_cursor), [bytes(key)[start:end].decode(errors="replace") for key in raw]


async def backlog(transport: Transport, agents: Sequence[str]) -> list[int]:
    """Entries (unprocessed or in flight) in each agent's stream."""
    turns = transport.keys.turns
    out: list[int] = []
    for start in range(0, len(agents), 2000):
        chunk = agents[start : start + 2000]
        lengths = await transport.execute([("XLEN", turns(a)) for a in chunk], "backlog")
        out.extend(int(length) for length in lengths)
    return out


async def relay(transport: Transport, agent: str) -> list[str]:
    """Deliver the agent's committed sends to their targets; returns the targets.

    At-least-once: a crash between delivery and deletion delivers again, and the
    receiving worker drops the duplicate by turn id.
    """
    outbox = transport.keys.outbox(agent)
    (raw,) = await transport.execute([("XRANGE", outbox, "-", "+", "COUNT", 500)], "relay")
    if not raw:
        return []
    sends = [(f[b"a"].decode(), f[b"id"], f[b"m"], f.get(b"s", b"")) for _id, f in entries(raw)]
    if transport.cluster is None:
        await transport.execute([send_command(transport, sends)], "relay")
    else:  # the targets live in other slots
        await send_turns(transport, sends)
    await transport.execute([("XDEL", outbox, *[e[0] for e in raw])], "relay")
    return [target for target, *_rest in sends]


async def drop(transport: Transport, agent: str, entry_ids: Sequence[bytes]) -> None:
    """Acknowledge and delete entries that will not run (dead-lettered, foreign)."""
    if entry_ids:
        turns = transport.keys.turns(agent)
        await transport.execute(
            [("XACK", turns, GROUP, *entry_ids), ("XDEL", turns, *entry_ids)], "drop"
        )
