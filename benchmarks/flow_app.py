"""The agents module the ``benchmarks/flow.py`` workers serve (``pygents-worker flow_app``).

``f0`` .. ``f7``: the same three tools on each: ``plain`` (the trivial turn), ``limited``
(a rate limit too high to ever wait: the cost of the limiter itself) and ``pooled`` (a
concurrency limit too high to ever wait). ``idle``: an agent no benchmark sends to.
"""

from pygents import Agent, Rate, tool


@tool
async def plain(i: int = 0) -> int:
    """The trivial turn."""
    return i


@tool(rate=Rate(calls=10_000_000, per_s=1.0))
async def limited(i: int = 0) -> int:
    """The trivial turn behind a (never reached) rate limit shared in Redis."""
    return i


@tool(concurrency=100_000)
async def pooled(i: int = 0) -> int:
    """The trivial turn holding one of many concurrency slots shared in Redis."""
    return i


agents = [Agent(f"f{i}", "flow benchmark agent", [plain, limited, pooled]) for i in range(8)]
Agent("idle", "served, never sent to", [plain])
