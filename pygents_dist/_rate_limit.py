"""Rate limits shared by every worker: one GCRA limiter per tool in Redis (``lua/rate.lua``).

``@tool(rate=Rate(calls, per_s, burst))`` means at most ``burst`` calls at once and
``calls`` per ``per_s`` seconds after that, counted across all workers on all hosts. Each
call costs one script call: the script gives it the earliest moment the limit allows and
reserves it (the theoretical arrival time moves one interval on), so a call over the limit
sleeps once and never asks again, and callers are served in the order they asked. The
state is one string per tool under the hash tag ``{tool:<name>}``, expiring once the limit
has nothing left to remember.

Limits: the times are Redis's clock (one clock, whatever the workers' clocks say); a call
cancelled while it waits still used its slot (the limit errs on the safe side); over any
window of ``w`` seconds at most ``burst + calls * w / per_s`` calls start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pygents_dist._transport import Transport

__all__ = ["RedisRateGate", "take_slot"]


async def take_slot(transport: Transport, tool: str, interval_ms: float, burst: int) -> int:
    """Reserve the next call of ``tool`` allowed by a limit of one call per ``interval_ms``
    with ``burst`` at once; the ms to wait before making it (0: at once)."""
    key = transport.keys.rate(tool)
    # Coalesced: the calls of many agents' turns at the same moment share one pipeline.
    (got,) = await transport.scripts.coalesced([("rate", [key], [repr(float(interval_ms)), burst])])
    return int(got)


class RedisRateGate:
    """The rate gate of ``pygents._seams.set_rate_gate``: ``await gate(tool)`` returns once a
    call of ``tool`` (declared with ``rate=Rate(...)``) may start, by the limit shared in
    Redis."""

    def __init__(
        self, transport: Transport, on_wait: Callable[[str, float], None] | None = None
    ) -> None:
        self.transport = transport
        #: Called with the tool's name and the seconds its call waits, when it waits.
        self.on_wait = on_wait

    async def __call__(self, tool: Any) -> None:
        rate = tool.rate
        name = tool.__name__
        wait_ms = await take_slot(self.transport, name, rate.interval_s * 1000, rate.burst_size)
        if wait_ms:
            if self.on_wait is not None:
                self.on_wait(name, wait_ms / 1000)
            await asyncio.sleep(wait_ms / 1000)
