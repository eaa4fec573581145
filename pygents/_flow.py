"""The flow-controlled call of a tool: its lock or concurrency slot, rate gate, per-attempt
timeout and retries, around one run of its function.

Only tools that declare any of ``lock``, ``concurrency``, ``rate`` or ``retry`` come here;
a plain tool calls its function directly (``Tool.__call__``), so it pays nothing for this.
Hooks of the whole invocation (``BEFORE_INVOKE``, ``AFTER_INVOKE``, ``ON_ERROR``) stay in
``pygents.tool``; this module fires only ``ON_RETRY``.

Per attempt, in this order: take a slot (``lock=True``: the tool's lock; ``concurrency=N``:
one of N slots), pass the rate gate, run the function (bounded by ``attempt_timeout_s``),
give the slot back. Between attempts the backoff wait holds neither slot nor rate token.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncGenerator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from pygents import _seams
from pygents.hooks import ToolHook, fire_tool, global_hooks

if TYPE_CHECKING:
    from pygents.retry import Retry
    from pygents.tool import BaseTool

__all__ = ["call", "iterate"]

_G_RETRY = global_hooks(ToolHook.ON_RETRY)
_NO_SLOT: AbstractAsyncContextManager[object] = contextlib.nullcontext()

#: The jitter source of every retry in the process (tests may replace it with a seeded one).
rng = random.Random()


def _slot(tool: BaseTool) -> AbstractAsyncContextManager[object]:
    lock = tool.lock
    if lock is not None:
        return _seams.guard(tool._lock_name, lock)
    if tool.concurrency is not None:
        return _seams.slot(tool)
    return _NO_SLOT


def _first_attempt() -> int:
    first = _seams.retry_attempt.get()
    if first != 1:
        _seams.retry_attempt.set(1)  # consumed: nested calls start from 1
    return first


def _timed_out(tool: BaseTool, attempt: int, timeout_s: float) -> TimeoutError:
    return TimeoutError(f"tool {tool.__name__!r}: attempt {attempt} timed out after {timeout_s}s")


async def _backoff(tool: BaseTool, retry: Retry, attempt: int, error: Exception) -> None:
    """Fire ``ON_RETRY`` and wait before the attempt after ``attempt``."""
    delay_s = retry.backoff.delay_s(attempt, rng)
    if tool.hooks or _G_RETRY:
        await fire_tool(
            ToolHook.ON_RETRY,
            tool.hooks,
            tool.tags,
            attempt=attempt,
            exc=error,
            delay_s=delay_s,
            tool=tool,
        )
    await _seams.retry_wait(tool, attempt, delay_s, error)


async def _attempt(tool: BaseTool, args: tuple[Any, ...], kwargs: dict[str, Any], n: int) -> Any:
    async with _slot(tool):
        if tool.rate is not None:
            await _seams.rate_gate(tool)
        retry = tool.retry
        timeout_s = retry.attempt_timeout_s if retry is not None else None
        if timeout_s is None:
            return await tool.fn(*args, **kwargs)
        scope = asyncio.timeout(timeout_s)
        try:
            async with scope:
                return await tool.fn(*args, **kwargs)
        except TimeoutError:
            if scope.expired():
                raise _timed_out(tool, n, timeout_s) from None
            raise


async def call(tool: BaseTool, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run a coroutine tool's function under its slot, rate and retry policy.

    Returns the first successful attempt's result; raises the last attempt's error when
    attempts are exhausted or the error is not retried.
    """
    retry = tool.retry
    if retry is None:
        return await _attempt(tool, args, kwargs, 1)
    attempt = _first_attempt()
    while True:
        try:
            return await _attempt(tool, args, kwargs, attempt)
        except Exception as exc:
            if attempt >= retry.attempts or not retry.retries(exc):
                raise
            await _backoff(tool, retry, attempt, exc)
            attempt += 1


async def iterate(
    tool: BaseTool, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> AsyncGenerator[Any, None]:
    """Iterate a generator tool's function under its slot, rate and retry policy.

    The slot is held for the whole iteration of the attempt that succeeds (the consumer's
    handling of each value included). An attempt is retried only if it fails before its
    first value; ``attempt_timeout_s`` bounds the wait for that first value.
    """
    retry = tool.retry
    attempt = _first_attempt() if retry is not None else 1
    while True:
        async with _slot(tool):
            if tool.rate is not None:
                await _seams.rate_gate(tool)
            gen = tool.fn(*args, **kwargs)
            try:
                try:
                    first = await _first_value(tool, gen, retry, attempt)
                except StopAsyncIteration:
                    return
                except Exception as exc:
                    if retry is None or attempt >= retry.attempts or not retry.retries(exc):
                        raise
                    error: Exception | None = exc
                else:
                    error = None
                    yield first
                    async for value in gen:
                        yield value
                    return
            finally:
                await gen.aclose()
        # Out of the slot: the backoff wait holds nothing.
        assert retry is not None and error is not None
        await _backoff(tool, retry, attempt, error)
        attempt += 1


async def _first_value(
    tool: BaseTool, gen: AsyncGenerator[Any, None], retry: Retry | None, attempt: int
) -> Any:
    timeout_s = retry.attempt_timeout_s if retry is not None else None
    if timeout_s is None:
        return await anext(gen)
    scope = asyncio.timeout(timeout_s)
    try:
        async with scope:
            return await anext(gen)
    except TimeoutError:
        if scope.expired():
            raise _timed_out(tool, attempt, timeout_s) from None
        raise
