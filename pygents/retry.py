"""Retry policies of tools: ``Retry`` (how many attempts, on which errors, per-attempt timeout)
and ``Backoff`` (how long to wait between attempts).

Both are frozen data: a tool declares one with ``@tool(retry=Retry(...))``, and a runtime
reads it from ``tool.retry`` (``pygents_dist`` stores it with the tool's description). The
retry loop itself runs in ``pygents._flow``; the wait between attempts goes through the
``pygents._seams.retry_wait`` seam, so that a worker can make it durable.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Backoff", "Retry"]

# One module-level generator, so that jitter does not reseed per call; tests pass their own.
_RNG = random.Random()


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long a retry waits before its next attempt.

    Make one with ``Backoff.exponential(...)`` or ``Backoff.fixed(delay_s)``. The nominal
    delay before attempt ``n + 1`` (after ``n`` failed attempts) is
    ``min(cap_s, initial_s * multiplier ** (n - 1))``.

    Jitter is **equal jitter**: the delay drawn is uniform in ``[nominal / 2, nominal]``.
    Half of the nominal wait is always kept, so a service that asked callers to back off
    gets at least that, while the other half spreads callers that failed together (full
    jitter, uniform in ``[0, nominal]``, spreads more but may retry almost at once).

    Attributes:
        initial_s: nominal delay before the second attempt, in seconds (>= 0).
        multiplier: growth factor per further attempt (>= 1; 1 gives a fixed delay).
        cap_s: upper bound of the nominal delay, in seconds (>= initial_s).
        jitter: draw equal jitter (True) or wait exactly the nominal delay (False).
    """

    initial_s: float = 0.5
    multiplier: float = 2.0
    cap_s: float = 30.0
    jitter: bool = True

    @classmethod
    def exponential(
        cls,
        initial_s: float = 0.5,
        multiplier: float = 2.0,
        cap_s: float = 30.0,
        jitter: bool = True,
    ) -> Backoff:
        """Delays growing by ``multiplier`` from ``initial_s`` up to ``cap_s``, with jitter.

        Raises:
            ValueError: a value is out of range (negative, ``multiplier < 1``,
                ``cap_s < initial_s``, not finite).
            TypeError: a value is not a number (``jitter``: not a bool).
        """
        made = cls(initial_s, multiplier, cap_s, jitter)
        made.check("backoff")
        return made

    @classmethod
    def fixed(cls, delay_s: float) -> Backoff:
        """The same delay (seconds, >= 0) before every retry, no jitter.

        Raises:
            ValueError: ``delay_s`` is negative or not finite.
            TypeError: ``delay_s`` is not a number.
        """
        made = cls(delay_s, 1.0, delay_s, False)
        made.check("backoff")
        return made

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1: before the 2nd attempt).

        Args:
            attempt: the attempt that failed, from 1.
            rng: the random source of the jitter (a seeded one makes delays reproducible);
                default: a module-level ``random.Random``.
        """
        exponent = max(attempt - 1, 0)
        try:
            nominal = self.initial_s * self.multiplier**exponent
        except OverflowError:
            nominal = self.cap_s
        nominal = min(nominal, self.cap_s)
        if not self.jitter or nominal <= 0:
            return float(nominal)
        half = nominal / 2
        return half + (rng or _RNG).random() * half

    def check(self, where: str) -> None:
        """Raise naming ``where`` (``"tool 'fetch': retry.backoff"``) if a field is invalid."""
        for name in ("initial_s", "multiplier", "cap_s"):
            value = getattr(self, name)
            if not _is_number(value):
                raise TypeError(f"{where}.{name} must be a finite number, got {value!r}")
        if self.initial_s < 0:
            raise ValueError(f"{where}.initial_s must be >= 0, got {self.initial_s!r}")
        if self.multiplier < 1:
            raise ValueError(f"{where}.multiplier must be >= 1, got {self.multiplier!r}")
        if self.cap_s < self.initial_s:
            raise ValueError(
                f"{where}.cap_s must be >= initial_s ({self.initial_s!r}), got {self.cap_s!r}"
            )
        if not isinstance(self.jitter, bool):
            raise TypeError(f"{where}.jitter must be a bool, got {self.jitter!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``from_dict`` reads it back)."""
        return {
            "initial_s": self.initial_s,
            "multiplier": self.multiplier,
            "cap_s": self.cap_s,
            "jitter": self.jitter,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Backoff:
        """The backoff saved by ``to_dict``.

        Raises:
            ValueError, TypeError: a field is invalid (as ``exponential``).
        """
        made = cls(data["initial_s"], data["multiplier"], data["cap_s"], data["jitter"])
        made.check("backoff")
        return made


@dataclass(frozen=True, slots=True)
class Retry:
    """How a tool is retried when a call fails.

    Example::

        @tool(retry=Retry(attempts=5, on=(ConnectionError, TimeoutError),
                          backoff=Backoff.exponential(initial_s=1, cap_s=20),
                          attempt_timeout_s=10))
        async def fetch(url: str) -> str: ...

    Guarantees and limits:

    - ``attempts`` counts every attempt, the first included: ``attempts=1`` never retries.
    - Only errors that are instances of a type in ``on`` are retried; any other error fails
      the call at once. ``asyncio.CancelledError`` (and any ``BaseException`` that is not an
      ``Exception``) is never retried, so the turn's own timeout and cancellation end the
      call, backoff wait included: the turn's timeout bounds all attempts together.
    - ``attempt_timeout_s`` bounds each attempt; an attempt past it fails with
      ``TimeoutError``, retried if ``TimeoutError`` (or a base of it) is in ``on``.
    - The caller sees the final outcome only: ``AFTER_INVOKE`` on success, or ``ON_ERROR``
      and the last error once attempts are exhausted. ``ToolHook.ON_RETRY`` fires before
      each wait, with the attempt that failed, its error and the delay.
    - A generator tool is retried only while it has yielded nothing: a failure before its
      first value is retried, one after it is final (values already given to the caller
      cannot be taken back). ``attempt_timeout_s`` bounds the wait for its first value.
    - Each attempt takes the tool's concurrency slot and rate token anew; neither is held
      during the backoff wait.

    Attributes:
        attempts: total attempts, the first included (int >= 1).
        on: exception types retried (a tuple of ``Exception`` subclasses, or one type).
        backoff: the wait between attempts.
        attempt_timeout_s: seconds one attempt may take, or None (only the turn's timeout).
    """

    attempts: int = 3
    on: tuple[type[BaseException], ...] | type[BaseException] = (Exception,)
    backoff: Backoff = field(default_factory=Backoff.exponential)
    attempt_timeout_s: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.on, type):  # on=ValueError is on=(ValueError,)
            object.__setattr__(self, "on", (self.on,))

    @property
    def on_types(self) -> tuple[type[BaseException], ...]:
        """``on`` as a tuple (a single type given as ``on=ValueError`` included)."""
        on = self.on
        return on if isinstance(on, tuple) else (on,)

    def retries(self, error: BaseException) -> bool:
        """Whether ``error`` is of a retried type (``CancelledError`` never is)."""
        return isinstance(error, Exception) and isinstance(error, self.on_types)

    def check(self, where: str) -> None:
        """Raise naming ``where`` (``"tool 'fetch': retry"``) and the field if one is invalid.

        Raises:
            ValueError: a value is out of range.
            TypeError: a value has the wrong type.
        """
        attempts = self.attempts
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
            raise ValueError(f"{where}.attempts must be an int >= 1, got {attempts!r}")
        on = self.on_types
        if not on:
            raise ValueError(f"{where}.on must name at least one exception type, got ()")
        for kind in on:
            if not (isinstance(kind, type) and issubclass(kind, Exception)):
                raise TypeError(
                    f"{where}.on must hold Exception subclasses (CancelledError and other "
                    f"BaseExceptions are never retried), got {kind!r}"
                )
        if not isinstance(self.backoff, Backoff):
            raise TypeError(
                f"{where}.backoff must be a Backoff (Backoff.exponential() or "
                f"Backoff.fixed(...)), got {self.backoff!r}"
            )
        self.backoff.check(f"{where}.backoff")
        timeout = self.attempt_timeout_s
        if timeout is not None and (not _is_number(timeout) or timeout <= 0):
            raise ValueError(
                f"{where}.attempt_timeout_s must be a number of seconds > 0 or None, "
                f"got {timeout!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain data; exception types by qualified name (``"builtins.TimeoutError"``)."""
        return {
            "attempts": self.attempts,
            "on": [f"{t.__module__}.{t.__qualname__}" for t in self.on_types],
            "backoff": self.backoff.to_dict(),
            "attempt_timeout_s": self.attempt_timeout_s,
        }
