"""The dead-letter stream: turns set aside with the reason they could not run.

Workers append a letter (the turn's envelope and signature, its agent and id, the reason and
detail) when a turn cannot run or keeps failing delivery; operators list, replay and delete
letters (``pygents dlq``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pygents_dist._streams import send_command, send_turns
from pygents_dist._transport import Entry, Transport, entries

__all__ = [
    "dead_count",
    "dead_letter",
    "dead_letters",
    "delete_dead",
    "newest_dead_letter",
    "requeue_dead",
]

#: Letters kept (approximately): the oldest are trimmed past this.
_DEAD_CAP = 100_000

#: A letter to replay: (entry id, agent, turn id, envelope, signature).
type Letter = tuple[bytes, str, str, bytes, bytes]


async def dead_letter(transport: Transport, fields: dict[bytes, bytes | str | int | float]) -> None:
    """Append one entry to the dead-letter stream."""
    flat = [part for item in fields.items() for part in item]
    command = ("XADD", transport.keys.dead, "MAXLEN", "~", _DEAD_CAP, "*", *flat)
    await transport.execute([command], "dlq")


async def dead_letters(transport: Transport, count: int, after: str = "-") -> list[Entry]:
    """Dead-lettered entries from ``after`` (an entry id, inclusive), oldest first."""
    command = ("XRANGE", transport.keys.dead, after, "+", "COUNT", count)
    (raw,) = await transport.execute([command], "dlq")
    return entries(raw)


async def newest_dead_letter(transport: Transport) -> bytes | None:
    """The newest letter's entry id, or None when there is none."""
    command = ("XREVRANGE", transport.keys.dead, "+", "-", "COUNT", 1)
    (raw,) = await transport.execute([command], "dlq")
    return bytes(raw[0][0]) if raw else None


async def dead_count(transport: Transport) -> int:
    """How many dead letters are kept."""
    (length,) = await transport.execute([("XLEN", transport.keys.dead)], "dlq")
    return int(length)


async def delete_dead(transport: Transport, entry_ids: Sequence[bytes | str]) -> int:
    """Remove dead letters by entry id."""
    if not entry_ids:
        return 0
    (deleted,) = await transport.execute([("XDEL", transport.keys.dead, *entry_ids)], "dlq")
    return int(deleted)


async def requeue_dead(transport: Transport, letters: Sequence[Letter]) -> None:
    """Send dead letters ``(entry id, agent, turn id, envelope, signature)`` to their
    agents again, then delete them.

    The turn ids leave the agents' dedup sets first (a dead-lettered turn is recorded as
    done), so the replayed turns run. Not atomic across agents: a crash in between leaves
    a letter that was already requeued, and replaying it again runs it again.
    """
    commands: list[tuple[Any, ...]] = [
        ("ZREM", transport.keys.done(agent), turn_id)
        for _entry_id, agent, turn_id, _data, _signature in letters
        if turn_id
    ]
    sends = [(agent, turn_id, data, sig) for _id, agent, turn_id, data, sig in letters]
    if await transport.is_cluster():  # the agents live in other slots: ids out, then sends
        if commands:
            await transport.execute(commands, "replay")
        await send_turns(transport, sends)
    else:
        commands.append(send_command(transport, sends))
        await transport.execute(commands, "replay")
    await delete_dead(transport, [letter[0] for letter in letters])
