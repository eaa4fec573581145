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

from pygents import Agent, tool


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
