"""Agents of the flow-control tests (delayed turns, schedules, retries, limits).

Tools log what they do to lists under the test's key prefix (``app_key``): the tests read
the order, the pids and the times (Unix seconds) from there.
"""

from __future__ import annotations

import os
import time

from app_store import app_key, store

from pygents import Agent, tool


@tool
async def record(tag: str) -> str:
    """Log ``tag`` with this worker's pid and the time to the list ``app_key("log")``."""
    await store().rpush(app_key("log"), f"{tag} {os.getpid()} {time.time():.6f}")
    return tag


Agent("clock", "delayed turns and schedules", [record])
for i in range(4):
    Agent(f"clock{i}", "delayed turns of many agents", [record])
