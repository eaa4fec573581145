"""Turns into agents' streams, and the "has work" signals workers wait on.

A turn is appended to its agent's stream (``Keys.turns``) by ``lua/send.lua``, which also
signals the agent on the shared ``ready`` stream unless it has an owner (an owner reads new
turns before it lets the agent go, so a signal would only wake workers for nothing). Workers
block on ``ready``; ``backlog`` tells how much each agent has left; ``relay`` delivers the
sends an agent's committed turns made to other agents (its outbox).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pygents_dist._keys import GROUP, glob_escape
from pygents_dist._redis_errors import first_error, is_missing_script
from pygents_dist._transport import Entry, Transport, entries

__all__ = [
    "SIGNALS_CAP",
    "backlog",
    "drop",
    "last_signal_id",
    "queued_agents",
    "read_signals",
    "relay",
    "send_command",
    "send_turns",
    "signal",
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
    ready = transport.keys.ready
    names = list(agents)
    commands = [
        ("XADD", ready, "MAXLEN", "~", SIGNALS_CAP, "*", "as", " ".join(names[i : i + 1000]))
        for i in range(0, len(names), 1000)
    ]
    if commands:
        await transport.execute(commands, "signal")


async def last_signal_id(transport: Transport) -> bytes:
    """The id of the newest signal (read from there to see only new ones)."""
    (newest,) = await transport.execute(
        [("XREVRANGE", transport.keys.ready, "+", "-", "COUNT", 1)], "signals"
    )
    return bytes(newest[0][0]) if newest else b"0-0"


async def queued_agents(
    transport: Transport, cursor: int, count: int = 1000
) -> tuple[int, list[str]]:
    """One step of a keyspace scan for agents whose stream exists: ``(next cursor, names)``.

    A stream exists while an agent has turns queued or in flight (the commit that empties it
    deletes it), so this finds work whatever became of its signals. Cursor 0 starts a pass
    and is returned when the pass is complete; a name may come twice within a pass.
    """
    base = transport.keys.base
    pattern = glob_escape(base) + ":{*}:turns"
    command = ("SCAN", cursor, "MATCH", pattern, "COUNT", count, "TYPE", "stream")
    ((next_cursor, raw),) = await transport.execute([command], "scan")
    start, end = len(base) + 2, -len("}:turns")
    return int(next_cursor), [bytes(key)[start:end].decode(errors="replace") for key in raw]


async def read_signals(transport: Transport, after: bytes, block_ms: int) -> list[Entry]:
    """Signals newer than ``after``, waiting up to ``block_ms`` for the first."""
    ready = transport.keys.ready
    command = ("XREAD", "COUNT", 1000, "BLOCK", block_ms, "STREAMS", ready, after)
    (raw,) = await transport.execute([command], "signals", block_ms)
    return entries(raw[0][1]) if raw else []


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
    await transport.execute([send_command(transport, sends)], "relay")
    await transport.execute([("XDEL", outbox, *[e[0] for e in raw])], "relay")
    return [target for target, *_rest in sends]


async def drop(transport: Transport, agent: str, entry_ids: Sequence[bytes]) -> None:
    """Acknowledge and delete entries that will not run (dead-lettered, foreign)."""
    if entry_ids:
        turns = transport.keys.turns(agent)
        await transport.execute(
            [("XACK", turns, GROUP, *entry_ids), ("XDEL", turns, *entry_ids)], "drop"
        )
