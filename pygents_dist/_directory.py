"""The directory of served agents: which agents exist, and their streams' consumer groups.

Workers record each agent they serve (name -> msgpack description) in one hash
(``Keys.directory``) and make sure its stream has the workers' consumer group; clients check
a target against the directory before they send.
"""

from __future__ import annotations

from pygents.registry import split_instance
from pygents_dist._keys import GROUP
from pygents_dist._redis_errors import first_error, reply_code
from pygents_dist._transport import Transport

__all__ = [
    "declare",
    "define",
    "description",
    "descriptions",
    "directory",
    "ensure_group",
    "is_addressable",
    "is_declared",
]

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


async def descriptions(transport: Transport, agents: list[str]) -> list[bytes | None]:
    """The directory entries of ``agents`` (None where there is none), in one round trip."""
    (blobs,) = await transport.execute([("HMGET", transport.keys.directory, *agents)], "lookup")
    return [bytes(b) if b is not None else None for b in blobs]


async def is_addressable(transport: Transport, agent: str) -> bool:
    """Whether turns can be sent to ``agent``: it is in the directory (declared by a worker,
    or made at runtime), or it is an instance (``"<kind>/<key>"``) of a declared kind."""
    parts = split_instance(agent)
    names = [agent] if parts is None else [agent, parts[0]]
    return any(b is not None for b in await descriptions(transport, names))


async def define(
    transport: Transport, entries: dict[str, bytes], contexts: dict[str, dict[str, bytes]]
) -> None:
    """Record agents made at runtime: their directory entries, and the context each was
    made with as its first state (kept if the agent already has one)."""
    commands: list[tuple[str | bytes, ...]] = []
    if entries:
        flat = [part for name, entry in entries.items() for part in (name, entry)]
        commands.append(("HSET", transport.keys.directory, *flat))
    for name, fields in contexts.items():
        state = transport.keys.state(name)
        commands += [("HSETNX", state, field, blob) for field, blob in fields.items()]
    if commands:
        await transport.execute(commands, "define")


async def is_declared(transport: Transport, agent: str) -> bool:
    """Whether some worker has declared ``agent``."""
    (found,) = await transport.execute([("HEXISTS", transport.keys.directory, agent)], "lookup")
    return bool(found)


def _create_group(transport: Transport, agent: str) -> tuple[str, ...]:
    return ("XGROUP", "CREATE", transport.keys.turns(agent), GROUP, "0", "MKSTREAM")


def _unless_group_exists(results: list[object]) -> list[object]:
    """``results`` without the ``BUSYGROUP`` refusals (the group is there: as wanted)."""
    return [r for r in results if not (isinstance(r, Exception) and reply_code(r) == "BUSYGROUP")]
