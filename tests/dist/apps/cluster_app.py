"""Agents served by real worker processes in the multi-process tests.

Tools record what they do in Redis, under the test's key prefix (``app_key``), so a test can
see which worker (by pid) ran what, how often and when, and can release a tool that waits.
The worker finds Redis through ``PYGENTS_REDIS_URL`` and the prefix through
``PYGENTS_KEY_PREFIX`` (both set by the tests' ``start`` fixture).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

from app_store import app_key, store

from pygents import (
    Agent,
    AgentRegistry,
    ContextItem,
    ContextPool,
    ContextQueue,
    Turn,
    TurnHook,
    hook,
    tool,
)


async def wait_for_key(name: str) -> None:
    """Block until the test has pushed to the list ``app_key(name)``; the item stays, so a
    second run of the same tool passes at once (BLMOVE onto the same list)."""
    key = app_key(name)
    if await store().blmove(key, key, 30) is None:
        raise TimeoutError(f"{key} was never released")


# -- plain tools -----------------------------------------------------------------------------


@tool
async def add(a: int, b: int) -> int:
    """Sum of two numbers."""
    return a + b


@tool
async def count(n: int, delay: float = 0.0) -> AsyncIterator[int]:
    """Yield 0..n-1, waiting ``delay`` seconds before each."""
    for i in range(n):
        if delay:
            await asyncio.sleep(delay)
        yield i


@tool
async def mirror(value: Any) -> Any:
    """Return ``value`` as it arrived (a round trip of every wire type)."""
    return value


@tool
async def boom(message: str) -> None:
    """Fail with ``ValueError(message)``."""
    raise ValueError(message)


@tool
async def slow(seconds: float) -> str:
    """Sleep, then say so."""
    await asyncio.sleep(seconds)
    return "slept"


@tool
async def die() -> None:
    """Crash the worker running this turn (a poison turn)."""
    await store().rpush(app_key("died"), os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)


@tool
async def outsider() -> str:
    """A registered tool that no agent has."""
    return "should never run"


# -- tools that record where and when they ran -------------------------------------------------


@tool
async def work(i: int, delay: float = 0.005) -> dict[str, int]:
    """Pretend to work; report which worker process did it."""
    await asyncio.sleep(delay)
    return {"i": i, "pid": os.getpid()}


@tool
async def seq(i: int, key: str = "seq") -> None:
    """Append ``i`` to the list ``key`` (the execution order) and the pid to ``<key>-pids``."""
    await store().rpush(app_key(key), i)
    await store().rpush(app_key(f"{key}-pids"), os.getpid())


@tool(lock=True)
async def guarded(i: int) -> int:
    """One holder at a time across all workers: count overlaps and log each hold's span."""
    r = store()
    start = time.time()
    if await r.incr(app_key("holders")) > 1:
        await r.incr(app_key("overlaps"))
    await asyncio.sleep(0.015)
    await r.decr(app_key("holders"))
    await r.rpush(app_key("spans"), f"{start!r} {time.time()!r} {os.getpid()} {i}")
    return os.getpid()


@tool
async def record(x: int) -> None:
    """Push ``"<x> <pid>"`` to the ``records`` list."""
    await store().rpush(app_key("records"), f"{x} {os.getpid()}")


@tool
async def forward(x: int) -> str:
    """Send ``record(x)`` to agent ``back`` (served by another worker)."""
    await AgentRegistry.get("front").send("back", Turn("record", kwargs={"x": x}))
    return "forwarded"


@tool
async def hold(tag: str) -> AsyncIterator[Any]:
    """Count the run, wait for ``release:<tag>``, then write context, a follow-up and a value."""
    r = store()
    await r.incr(app_key(f"runs:{tag}"))
    await r.rpush(app_key(f"entered:{tag}"), os.getpid())
    await wait_for_key(f"release:{tag}")
    yield ContextItem(f"held {tag}")
    yield Turn("mark", kwargs={"tag": tag})
    yield f"released {tag}"


@tool
async def mark(tag: str) -> None:
    """The follow-up of ``hold``: push ``tag`` to the ``marks`` list."""
    await store().rpush(app_key("marks"), tag)


@tool
async def long(seconds: float) -> int:
    """Count the run, sleep ``seconds``, return the pid."""
    await store().incr(app_key("runs:long"))
    await asyncio.sleep(seconds)
    return os.getpid()


# -- context ---------------------------------------------------------------------------------


@tool
async def note(text: str) -> ContextItem[str]:
    """Append ``text`` to the agent's context queue."""
    return ContextItem(text)


@tool
async def remember(key: str, text: str) -> ContextItem[str]:
    """Put ``text`` in the agent's context pool under ``key``."""
    return ContextItem(text, description=f"about {key}", id=key)


@tool
async def chain(n: int) -> AsyncIterator[Any]:
    """Note ``step n`` and queue ``chain(n - 1)`` down to 0, which pushes ``chain-done``."""
    yield ContextItem(f"step {n}")
    if n > 0:
        yield Turn("chain", kwargs={"n": n - 1})
    else:
        await store().rpush(app_key("chain-done"), os.getpid())


@tool
async def history(queue: ContextQueue[str], pool: ContextPool[str]) -> dict[str, Any]:
    """The agent's context as seen by the worker running this turn."""
    return {
        "queue": [item.content for item in queue.items],
        "pool": pool.catalogue(),
        "pid": os.getpid(),
    }


@hook(TurnHook.ON_TIMEOUT)
async def note_timeout(turn: Turn[Any]) -> None:
    """Global hook: record, in the worker, every turn that timed out."""
    await store().rpush(app_key("timeouts"), f"{turn.tool.__name__} {os.getpid()}")


TOOLS = [add, count, mirror, boom, slow, die, work, seq, guarded, hold, mark, long, note]
TOOLS += [remember, chain]

alpha = Agent("alpha", "general purpose", [*TOOLS, history], context_queue=ContextQueue(50))
beta = Agent("beta", "general purpose", [*TOOLS, history], context_queue=ContextQueue(50))
front = Agent("front", "forwards to back", [forward])
back = Agent("back", "records", [record])
