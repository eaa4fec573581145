"""Rate limits of tools: the ``Rate`` spec and the in-process limiter that enforces it.

A tool declares ``@tool(rate=Rate(calls=10, per_s=1))``; every attempt to run it first waits
for its turn at the tool's limiter. In one process the limiter is ``RateLimiter`` (GCRA,
below); ``pygents_dist`` installs a Redis-backed gate through ``pygents._seams.set_rate_gate``
so that the same limit holds across every worker. Concurrency limits (``concurrency=N``) are
plain semaphores and live with the tool.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Rate", "RateLimiter"]


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``calls`` calls per ``per_s`` seconds on average, in bursts of up to ``burst``.

    Enforced as GCRA (the generic cell rate algorithm, a token bucket kept as one
    timestamp): calls are spaced ``per_s / calls`` seconds apart on average, and up to
    ``burst`` calls may start together after a quiet spell. Over any window of ``w``
    seconds at most ``burst + w * calls / per_s`` calls start. A call over the limit waits
    its turn (first come, first served); it never fails.

    Attributes:
        calls: calls allowed per period (int >= 1).
        per_s: the period, in seconds (> 0).
        burst: calls that may start back to back (int >= 1); default ``calls``.
    """

    calls: int
    per_s: float
    burst: int | None = None

    @property
    def interval_s(self) -> float:
        """Seconds between calls at the sustained rate (``per_s / calls``)."""
        return self.per_s / self.calls

    @property
    def burst_size(self) -> int:
        """``burst``, or ``calls`` when not given."""
        return self.calls if self.burst is None else self.burst

    def check(self, where: str) -> None:
        """Raise naming ``where`` (``"tool 'fetch': rate"``) and the field if one is invalid.

        Raises:
            ValueError: a value is out of range.
        """
        calls = self.calls
        if not isinstance(calls, int) or isinstance(calls, bool) or calls < 1:
            raise ValueError(f"{where}.calls must be an int >= 1, got {calls!r}")
        per_s = self.per_s
        if (
            not isinstance(per_s, int | float)
            or isinstance(per_s, bool)
            or not math.isfinite(per_s)
            or per_s <= 0
        ):
            raise ValueError(f"{where}.per_s must be a number of seconds > 0, got {per_s!r}")
        burst = self.burst
        if burst is not None and (
            not isinstance(burst, int) or isinstance(burst, bool) or burst < 1
        ):
            raise ValueError(f"{where}.burst must be an int >= 1 or None, got {burst!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data: ``calls, per_s, burst`` (``burst`` resolved)."""
        return {"calls": self.calls, "per_s": self.per_s, "burst": self.burst_size}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rate:
        """The rate saved by ``to_dict``."""
        made = cls(data["calls"], data["per_s"], data.get("burst"))
        made.check("rate")
        return made


class RateLimiter:
    """GCRA over one process: ``await limiter.wait()`` returns when a call may start.

    The state is the theoretical arrival time ``tat`` of the next call at the sustained
    rate. A call arriving at ``now`` may start at ``max(tat, now) - (burst - 1) * interval``
    (at once if that is past); it then moves ``tat`` one interval on. The reservation is
    made before waiting, with no await in between, so waiters start in arrival order. A
    waiter cancelled while waiting gives its slot back only if no later call reserved
    after it (otherwise the slot is left unused: the limit holds, a little capacity is lost).

    Args:
        rate: the limit.
        clock: seconds, monotonic (default ``time.monotonic``); tests pass their own.
    """

    __slots__ = ("_clock", "_interval_s", "_tat", "_tolerance_s")

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._interval_s = rate.interval_s
        self._tolerance_s = (rate.burst_size - 1) * rate.interval_s
        self._tat = -math.inf

    def reserve(self) -> float:
        """Take the next slot; returns the seconds to wait before using it (0: at once)."""
        now = self._clock()
        tat = max(self._tat, now)
        self._tat = tat + self._interval_s
        return max(tat - self._tolerance_s - now, 0.0)

    async def wait(self) -> None:
        """Wait for the next slot (first come, first served).

        Cancellation while waiting propagates; the slot is given back when possible.
        """
        delay_s = self.reserve()
        if delay_s <= 0:
            return
        reserved_tat = self._tat
        try:
            await asyncio.sleep(delay_s)
        except BaseException:
            if self._tat == reserved_tat:  # nobody reserved after us: hand the slot back
                self._tat -= self._interval_s
            raise
