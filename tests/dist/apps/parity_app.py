"""The small program the parity tests run both in process and on a Redis-served agent.

``build()`` defines the tools and the agent; nothing happens at import, so a test can build
them after its registries were reset, and ``parity_served`` builds them in a worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from pygents import (
    Agent,
    AgentHook,
    ContextItem,
    ContextPool,
    ContextQueue,
    HookRegistry,
    ToolRegistry,
    Turn,
    TurnHook,
    tool,
)

AGENT = "calc"


def build() -> Agent:
    """Register the parity tools and return the agent ``calc`` that has them."""

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
    async def slow(seconds: float) -> str:
        """Sleep, then say so."""
        await asyncio.sleep(seconds)
        return "slept"

    @tool
    async def chain(n: int) -> AsyncIterator[Any]:
        """Note ``step n`` and queue ``chain(n - 1)`` down to 0; remember the last step."""
        yield ContextItem(f"step {n}")
        if n > 0:
            yield Turn("chain", kwargs={"n": n - 1})
        else:
            yield ContextItem("chain finished", description="the chain", id="chain")

    @tool
    async def context(queue: ContextQueue[str], pool: ContextPool[str]) -> dict[str, Any]:
        """The agent's context queue contents and pool catalogue."""
        return {"queue": [item.content for item in queue.items], "pool": pool.catalogue()}

    @tool
    async def ticks(n: int, seconds: float) -> AsyncIterator[int]:
        """Yield 0..n-1, sleeping ``seconds`` after each value (a turn that takes a while)."""
        for i in range(n):
            yield i
            await asyncio.sleep(seconds)

    @tool
    async def misuse(what: str) -> Any:
        """Misuse the core so that it raises its own error (``limit``, ``lookup``, ``item``)."""
        if what == "limit":
            return ContextQueue(0)
        if what == "lookup":
            return ToolRegistry.get("nonexistent")
        return ContextItem("no description", id="half")  # routed: the pool refuses it

    marked: list[str] = []

    async def note_mark(agent: Agent, turn: Turn[Any], value: Any) -> None:
        """A plain async function with ``.type``: a duck-typed agent hook, as in 0.7.0."""
        if turn.tool.__name__ == "mark":
            marked.append(value)

    note_mark.type = AgentHook.ON_TURN_VALUE  # type: ignore[attr-defined]

    async def note_output(turn: Turn[Any], output: Any) -> None:
        """A duck-typed turn hook, registered by name so that a turn can carry it."""
        marked.append(f"output {output}")

    note_output.type = (TurnHook.AFTER_RUN,)  # type: ignore[attr-defined]
    HookRegistry.register(note_output)

    @tool
    async def mark(label: str) -> str:
        """Return ``label`` (the ``note_mark`` hook records it)."""
        return label

    @tool
    async def marks() -> list[str]:
        """What ``note_mark`` recorded in this process, oldest first."""
        return list(marked)

    tools = [add, count, boom, slow, chain, context, ticks, misuse, mark, marks]
    agent = Agent(AGENT, "parity", tools, context_queue=ContextQueue(20))
    agent.hooks.append(note_mark)
    return agent
