"""Helpers of the dist integration tests: waiting on Redis state with a deadline, running
the CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

import pytest
import redis.asyncio as aioredis

from pygents_dist import Client, DeadLetteredError, _dead_letters, _streams
from pygents_dist.testing import WorkerProcess


async def eventually[T](
    check: Callable[[], Awaitable[T | None]], what: str, timeout: float = 15.0
) -> T:
    """Poll ``check`` until it returns something true (not None, 0, False...), or fail after
    ``timeout`` seconds. Only for Redis state that nothing else signals."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def pop(store: aioredis.Redis, key: str, timeout: float = 15.0) -> str:
    """Block until ``key`` (a list) has an item and pop it; fail after ``timeout`` seconds."""
    got = await store.blpop([key], timeout=timeout)
    if got is None:
        raise AssertionError(f"nothing arrived on {key} within {timeout}s")
    return str(got[1])


async def start_together(
    start: Callable[..., WorkerProcess], *arg_lists: Sequence[str]
) -> list[WorkerProcess]:
    """Start one worker per ``arg_lists`` item at the same time (each waits for its READY
    line in a thread of its own); the workers in that order."""
    return list(await asyncio.gather(*(asyncio.to_thread(start, *args) for args in arg_lists)))


def pids(workers: Sequence[WorkerProcess]) -> set[int]:
    """The process ids of ``workers``."""
    return {w.pid for w in workers}


async def dead_letters(client: Client) -> dict[str, dict[str, str]]:
    """Dead letters by turn id: their fields (``m`` left out) as text."""
    out: dict[str, dict[str, str]] = {}
    for _entry_id, fields in await _dead_letters.dead_letters(client.transport, 100):
        text = {k.decode(): v.decode(errors="replace") for k, v in fields.items() if k != b"m"}
        out[text["id"]] = text
    return out


async def refused(client: Client, agent: str, turn_id: str) -> DeadLetteredError:
    """The DeadLetteredError a caller waiting on ``turn_id`` gets."""
    with pytest.raises(DeadLetteredError) as info:
        await asyncio.wait_for(anext(aiter(client.results(agent, turn_id)), None), 15)
    return info.value


async def stream_length(client: Client, agent: str) -> int:
    """Entries left in ``agent``'s turn stream (processed ones are deleted)."""
    [length] = await _streams.backlog(client.transport, [agent])
    return length


def _cli(
    args: tuple[str, ...], env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pygents_dist", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
        check=False,
    )


async def cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the ``pygents`` CLI to completion (Redis and namespace from the test's
    environment: ``PYGENTS_REDIS_URL``, ``PYGENTS_KEY_PREFIX``)."""
    return await asyncio.to_thread(_cli, args, env or {}, timeout)
