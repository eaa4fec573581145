"""An agent with a schedule declared in the module: ``beat`` every second on ``ticker``.

``beat`` logs ``<pid> <time>`` to the list ``app_key("beats")``; the tests read the ticks
fired from the agent's committed turn ids (``sched.beat.<tick ms>``).
"""

from __future__ import annotations

import os
import time

from app_store import app_key, store

from pygents import Agent, Schedule, Turn, tool


@tool
async def beat() -> None:
    """Log this worker's pid and the time."""
    await store().rpush(app_key("beats"), f"{os.getpid()} {time.time():.6f}")


ticker = Agent("ticker", "a schedule declared in the module", [beat])
ticker.schedule("beat", Turn(beat), Schedule.every(1))
