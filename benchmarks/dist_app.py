"""The agents module the ``benchmarks/dist.py`` workers serve (``pygents-worker dist_app``).

``BENCH_AGENTS`` (environment, default 1) is how many agents it defines: ``a0``, ``a1`` ...
Every agent has the same two tools: ``noop`` (the trivial turn) and ``count`` (an
async generator yielding ``0 .. n-1``, for the streaming case).
"""

import os
from collections.abc import AsyncIterator

from pygents import Agent, tool


@tool
async def noop(i: int = 0) -> int:
    """The trivial turn: returns its argument."""
    return i


@tool
async def count(n: int) -> AsyncIterator[int]:
    """Yield ``0 .. n-1``."""
    for i in range(n):
        yield i


agents = [
    Agent(f"a{i}", "benchmark agent", [noop, count])
    for i in range(int(os.environ.get("BENCH_AGENTS", "1")))
]
