"""Agents spread over the three primaries of the tests' local Redis Cluster (their names'
slots: ``north`` 1043, ``south`` 9379, ``east`` 10965), served by real worker processes.

Tools record what they do under the test's key prefix (``app_store``), through a Redis
Cluster client when ``PYGENTS_TEST_CLUSTER=1``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from app_store import app_key, store

from pygents import Agent, AgentRegistry, ContextItem, ContextQueue, Turn, tool


@tool
async def add(a: int, b: int) -> int:
    """Sum of two numbers."""
    return a + b


@tool
async def count(n: int) -> AsyncIterator[int]:
    """Yield 0..n-1."""
    for i in range(n):
        yield i


@tool
async def boom(message: str) -> None:
    """Fail with ``ValueError(message)``."""
    raise ValueError(message)


@tool
async def relay(x: int, frm: str, to: str) -> str:
    """From agent ``frm`` (the one running this), send ``record(x)`` to agent ``to`` (on
    another primary: through ``frm``'s outbox)."""
    await AgentRegistry.get(frm).send(to, Turn("record", kwargs={"x": x}))
    return "relayed"


@tool
async def record(x: int) -> None:
    """Push ``x`` to the ``records`` list."""
    await store().rpush(app_key("records"), x)


@tool
async def chain(n: int, tag: str) -> AsyncIterator[Any]:
    """Note ``<tag> <n>`` in the context and queue ``chain(n - 1)`` down to 0. Every step is
    a turn of its own (a follow-up); only runtime effects, so that the notes tell exactly
    which steps committed, and how often."""
    yield ContextItem(f"{tag} {n}")
    if n > 0:
        yield Turn("chain", kwargs={"n": n - 1, "tag": tag})


@tool
async def history(queue: ContextQueue[str]) -> list[str]:
    """The agent's context queue as the worker running this turn sees it."""
    return [item.content for item in queue.items]


@tool(lock=True)
async def guarded(i: int) -> int:
    """One holder at a time across all workers: count overlaps."""
    r = store()
    if await r.incr(app_key("holders")) > 1:
        await r.incr(app_key("overlaps"))
    await asyncio.sleep(0.01)
    await r.decr(app_key("holders"))
    await r.rpush(app_key("guarded"), f"{i} {os.getpid()} {time.time()!r}")
    return i


@tool
async def slow(seconds: float) -> str:
    """Sleep, then say so."""
    await asyncio.sleep(seconds)
    return "slept"


TOOLS = [add, count, boom, relay, record, chain, history, guarded, slow]
north = Agent("north", "on the first primary", TOOLS, context_queue=ContextQueue(1000))
south = Agent("south", "on the second primary", TOOLS, context_queue=ContextQueue(1000))
east = Agent("east", "on the third primary", TOOLS, context_queue=ContextQueue(1000))
AGENTS = [north, south, east]
