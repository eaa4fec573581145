"""The directory of served agents: which agents exist, and their streams' consumer groups.

Workers record each agent they serve (name -> msgpack description) in one hash
(``Keys.directory``) and make sure its stream has the workers' consumer group; clients check
a target against the directory before they send.
"""

from __future__ import annotations

from pygents_dist._keys import GROUP
from pygents_dist._redis_errors import first_error, reply_code
from pygents_dist._transport import Transport

__all__ = ["declare", "description", "directory", "ensure_group", "is_declared"]

_DECLARED_PER_ROUND_TRIP = 1000


async def declare(transport: Transport, agents: dict[str, bytes]) -> None:
    """Record served agents in the directory and make sure each stream has its group.

    Groups are created at id 0 with MKSTREAM, so turns sent before any worker existed
    are delivered.
    """
    names = list(agents)
    for start in range(0, len(names), _DECLARED_PER_ROUND_TRIP):
        chunk = names[start : start + _DECLARED_PER_ROUND_TRIP]
        record = [part for name in chunk for part in (name, agents[name])]
        commands = [("HSET", transport.keys.directory, *record)]
        commands += [_create_group(transport, name) for name in chunk]
        results = await transport.execute_raw(commands, "declare")
        first_error(_unless_group_exists(results), "declare")


async def ensure_group(transport: Transport, agent: str) -> None:
    """Recreate the agent's stream group (after Redis lost its data)."""
    results = await transport.execute_raw([_create_group(transport, agent)], "group create")
    first_error(_unless_group_exists(results), "group create")


async def directory(transport: Transport) -> dict[str, bytes]:
    """Every declared agent -> its msgpack description."""
    (flat,) = await transport.execute([("HGETALL", transport.keys.directory)], "directory")
    return {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}


async def description(transport: Transport, agent: str) -> bytes | None:
    """The declared agent's msgpack description, or None if no worker declared it."""
    (blob,) = await transport.execute([("HGET", transport.keys.directory, agent)], "lookup")
    return bytes(blob) if blob is not None else None


async def is_declared(transport: Transport, agent: str) -> bool:
    """Whether some worker has declared ``agent``."""
    (found,) = await transport.execute([("HEXISTS", transport.keys.directory, agent)], "lookup")
    return bool(found)


def _create_group(transport: Transport, agent: str) -> tuple[str, ...]:
    return ("XGROUP", "CREATE", transport.keys.turns(agent), GROUP, "0", "MKSTREAM")


def _unless_group_exists(results: list[object]) -> list[object]:
    """``results`` without the ``BUSYGROUP`` refusals (the group is there: as wanted)."""
    return [r for r in results if not (isinstance(r, Exception) and reply_code(r) == "BUSYGROUP")]
