"""Group scripts on a Redis Cluster: one call per primary, not one per slot.

A worker takes and commits groups of agents (``lua/take_many.lua``, the commit-many
composition) in one script call on one node. On a cluster a script's declared KEYS must share
a slot, and 32 agents are 32 slots: one call each would cost Redis and the worker a script
call per agent. Instead each primary gets one call of the ``<script>_node`` variant
(``_scripts.py``), which declares one key (the first agent's, to route it) and takes the
others as arguments, allowed by the ``allow-cross-slot-keys`` flag as long as they live on
that primary. Its first step touches every key with one read, so a key that is not there
(its slot moved since the slot map was read) fails the call before it writes anything; the
agents of a failed call then go again one slot per call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pygents_dist._cluster import key_slot
from pygents_dist._redis_errors import first_error
from pygents_dist._scripts import ScriptCall
from pygents_dist._transport import Transport

__all__ = ["Job", "node_groups", "run_by_node", "slot_groups"]

#: One group script over agents: (script name, agents, KEYS and ARGV for some of them).
type Job = tuple[str, Sequence[str], Callable[[list[str]], tuple[list[str], list[Any]]]]


def slot_groups(agents: Sequence[str]) -> list[list[str]]:
    """``agents`` grouped by cluster slot (a plain script call touches one slot), in order."""
    groups: dict[int, list[str]] = {}
    for agent in agents:
        groups.setdefault(key_slot(agent), []).append(agent)
    return list(groups.values())


def node_groups(transport: Transport, agents: Sequence[str]) -> list[list[str]]:
    """``agents`` grouped by the primary holding their keys (as last read), in order."""
    cluster = transport.cluster
    if cluster is None:
        return [list(agents)] if agents else []
    turns = transport.keys.turns
    groups: dict[tuple[str, int], list[str]] = {}
    for agent in agents:
        groups.setdefault(cluster.address_of(turns(agent)), []).append(agent)
    return list(groups.values())


async def run_by_node(
    transport: Transport, before: list[ScriptCall], jobs: Sequence[Job], what: str
) -> list[list[Any]]:
    """Run ``before`` (plain calls) and every job's script, one call per primary, in one
    round trip; per job, the script's per-agent replies in the order of its agents.

    Raises:
        RedisCommandError: a call of ``before`` failed, or a job's script failed in a way
            that running it one slot at a time did not cure.
    """
    calls = list(before)
    spans: list[list[list[str]]] = []
    for name, agents, build in jobs:
        groups = node_groups(transport, agents)
        spans.append(groups)
        for part in groups:
            keys, args = build(part)
            calls.append((f"{name}_node", keys[:1], [len(keys), *keys, *args]))
    got = await transport.scripts.run(calls, what, raise_errors=False)
    first_error(got[: len(before)], what)
    at = len(before)
    found: list[dict[str, Any]] = []
    retry: list[tuple[int, list[str], ScriptCall]] = []
    for j, ((name, _agents, build), groups) in enumerate(zip(jobs, spans, strict=True)):
        replies: dict[str, Any] = {}
        for part in groups:
            reply = got[at]
            at += 1
            if isinstance(reply, Exception):  # a slot moved: one slot per call
                for sub in slot_groups(part):
                    retry.append((j, sub, (name, *build(sub))))
            else:
                replies.update(zip(part, reply, strict=True))
        found.append(replies)
    if retry:
        again = await transport.scripts.run([call for _j, _sub, call in retry], what)
        for (j, sub, _call), reply in zip(retry, again, strict=True):
            found[j].update(zip(sub, reply, strict=True))
    return [
        [replies[a] for a in agents] for (_n, agents, _b), replies in zip(jobs, found, strict=True)
    ]
