"""Many small agents, for the tests of agents taken and committed in groups.

``CROWD`` (environment, default 60) agents ``c0 .. c<CROWD-1>`` share the same tools, which
record what they did in Redis under the test's key prefix (``PYGENTS_KEY_PREFIX``).
"""

from __future__ import annotations

import os

from app_store import app_key, store

from pygents import Agent, AgentRegistry, ContextItem, Turn, tool


@tool
async def tally(agent: str, i: int) -> ContextItem[str]:
    """Note ``i`` in the agent's context; remembered in a plain dict (no I/O: runs inline)."""
    SEEN.setdefault(agent, []).append(i)
    return ContextItem(f"{agent}:{i}")


@tool
async def report(agent: str) -> dict[str, list[int]]:
    """What ``tally`` saw for ``agent`` in this process, and the agent's context queue."""
    queue = AgentRegistry.get(agent).context_queue.items
    return {"seen": SEEN.get(agent, []), "queue": [int(x.content.split(":")[1]) for x in queue]}


@tool
async def gate(name: str) -> str:
    """Wait until the test pushes to ``gate:<name>`` (a turn that really waits)."""
    key = app_key(f"gate:{name}")
    if await store().blmove(key, key, 30) is None:
        raise TimeoutError(f"{key} was never opened")
    return f"through {name}"


@tool
async def hop(agent: str, target: str, i: int) -> Turn[ContextItem[str]]:
    """Send ``tally`` to ``target`` and queue a ``tally`` follow-up on this agent."""
    await AgentRegistry.get(agent).send(target, Turn("tally", kwargs={"agent": target, "i": i}))
    return Turn("tally", kwargs={"agent": agent, "i": i})


SEEN: dict[str, list[int]] = {}

agents = [
    Agent(f"c{i}", "one of a crowd", [tally, report, gate, hop])
    for i in range(int(os.environ.get("CROWD", "60")))
]
