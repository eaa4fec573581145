"""Agents for the ops CLI, observability and security tests, served by real workers.

``front`` answers, streams, fails, holds a ``lock=True`` tool and forwards to ``sink`` (a turn
sent from inside a turn); both log through an application logger, so a test can see which
fields (worker, trace, span) the worker's log lines carry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from pygents import Agent, AgentRegistry, Turn, tool

log = logging.getLogger("ops_app")


@tool
async def echo(value: Any = None) -> Any:
    """Return ``value``."""
    return value


@tool
async def count(n: int) -> AsyncIterator[int]:
    """Yield 0 .. n-1."""
    for i in range(n):
        yield i


@tool
async def fail(message: str) -> None:
    """Raise ``ValueError(message)``."""
    raise ValueError(message)


@tool
async def forward(value: str) -> str:
    """Send ``note(value)`` to ``sink`` (relayed when this turn commits)."""
    log.info("forwarding %s", value)
    await AgentRegistry.get("front").send("sink", Turn("note", kwargs={"value": value}))
    return "sent"


@tool
async def note(value: str) -> str:
    """Log and return ``value``."""
    log.info("noted %s", value)
    return value


@tool(lock=True)
async def locked(seconds: float) -> float:
    """Hold the cross-worker lock ``tool:locked`` for ``seconds``."""
    await asyncio.sleep(seconds)
    return seconds


front = Agent("front", "answers, streams, fails, forwards", [echo, count, fail, forward, locked])
sink = Agent("sink", "receives forwarded notes", [note, locked])
