"""Agents of the flow-control tests (delayed turns, schedules, retries, limits).

Tools log what they do to lists under the test's key prefix (``app_key``): the tests read
the order, the pids and the times (Unix seconds) from there.
"""

from __future__ import annotations

import asyncio
import os
import time

import redis.exceptions
from app_store import app_key, store

from pygents import Agent, AgentRegistry, Backoff, Rate, Retry, Turn, tool


@tool
async def record(tag: str) -> str:
    """Log ``tag`` with this worker's pid and the time to the list ``app_key("log")`` (the
    time it ran, though the write may wait out a Redis restart)."""
    line = f"{tag} {os.getpid()} {time.time():.6f}"
    for _ in range(100):
        try:
            await store().rpush(app_key("log"), line)
            return tag
        except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
            await asyncio.sleep(0.05)
    raise ConnectionError("Redis stayed unreachable")


Agent("clock", "delayed turns and schedules", [record])
for i in range(4):
    Agent(f"clock{i}", "delayed turns of many agents", [record])


# -- retries -----------------------------------------------------------------------------------


async def _attempt(key: str) -> int:
    """Count an attempt of ``key`` and log it: ``attempt <key>:<n> <pid> <time>``."""
    n = int(await store().incr(app_key(f"attempts:{key}")))
    await store().rpush(app_key("log"), f"attempt:{key}:{n} {os.getpid()} {time.time():.6f}")
    return n


@tool(retry=Retry(attempts=4, on=(ValueError,), backoff=Backoff.fixed(0.3)))
async def flaky(key: str, fails: int) -> int:
    """Fail the first ``fails`` attempts of ``key`` with ValueError; the attempt that passed."""
    n = await _attempt(key)
    if n <= fails:
        raise ValueError(f"{key}: attempt {n} fails")
    return n


@tool(retry=Retry(attempts=3, on=(ValueError,), backoff=Backoff.fixed(2.0)))
async def slow_flaky(key: str, fails: int) -> int:
    """``flaky`` with a two-second backoff (long enough to kill a worker during it)."""
    n = await _attempt(key)
    if n <= fails:
        raise ValueError(f"{key}: attempt {n} fails")
    return n


@tool(retry=Retry(attempts=3, on=(ValueError,), backoff=Backoff.fixed(0.1)))
async def doomed(key: str) -> None:
    """Fail every attempt."""
    n = await _attempt(key)
    raise ValueError(f"{key}: attempt {n} fails")


@tool(retry=Retry(attempts=3, on=(ValueError,), backoff=Backoff.fixed(0.1)))
async def wrong_type(key: str) -> None:
    """Fail with an error the retry does not cover: no retry."""
    await _attempt(key)
    raise KeyError(key)


@tool(retry=Retry(attempts=3, on=(ValueError,), backoff=Backoff.fixed(0.1)))
async def sends_then_fails(key: str) -> int:
    """Put a follow-up ``record`` (tag ``fu:<key>:<attempt>``), then fail the first attempt:
    the failed attempt's follow-up must never run."""
    n = await _attempt(key)
    await AgentRegistry.get("retrier").put(Turn(record, kwargs={"tag": f"fu:{key}:{n}"}))
    if n == 1:
        raise ValueError(f"{key}: attempt {n} fails")
    return n


@tool
async def remind_later(tag: str, delay_s: float) -> str:
    """Put ``record(tag)`` on this agent for ``delay_s`` seconds from now; its turn id."""
    turn_id = await AgentRegistry.get("retrier").put(
        Turn(record, kwargs={"tag": tag}), delay_s=delay_s
    )
    return str(turn_id)


Agent(
    "retrier",
    "retries",
    [flaky, slow_flaky, doomed, wrong_type, sends_then_fails, remind_later, record],
)


# -- limits ------------------------------------------------------------------------------------


@tool(rate=Rate(calls=10, per_s=1.0, burst=2))
async def limited(tag: str) -> None:
    """At most 10 calls a second, 2 at once, across workers: log when it started."""
    await store().rpush(app_key("rate"), f"{tag} {os.getpid()} {time.time():.6f}")


@tool(concurrency=2)
async def pooled(tag: str, hold_s: float) -> None:
    """At most 2 runs at once across workers: log entering and leaving."""
    await store().rpush(app_key("pool"), f"in {tag} {os.getpid()} {time.time():.6f}")
    await asyncio.sleep(hold_s)
    await store().rpush(app_key("pool"), f"out {tag} {os.getpid()} {time.time():.6f}")


for i in range(6):
    Agent(f"lim{i}", "rate and concurrency limits", [limited, pooled])
