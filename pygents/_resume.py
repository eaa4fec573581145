"""Finishing a coroutine whose first step already ran inline: the core's fast path (turns
run a tool's first step inline) and the distributed worker's (it runs many agents' turns
inline and moves only those that wait into tasks of their own)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

__all__ = ["Resumed"]


class Resumed:
    """Awaitable that finishes a coroutine whose first step already ran and suspended.

    Running the first step inline (``pending = coro.send(None)``) lets work that never
    suspends finish without a task, a timer or any event-loop round trip; only work that
    really waits pays for them, by awaiting ``Resumed(coro, pending)`` (in a task of its own
    if need be). Exceptions thrown into the awaiter (cancellation) go to the coroutine.
    """

    __slots__ = ("coro", "pending")

    def __init__(self, coro: Any, pending: Any) -> None:
        self.coro = coro
        self.pending = pending

    def __await__(self) -> Generator[Any, None, Any]:
        coro, pending = self.coro, self.pending
        while True:
            try:
                yield pending
            except BaseException as exc:  # cancellation and the like go to the coroutine
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                pending = coro.send(None)
            except StopIteration as stop:
                return stop.value
