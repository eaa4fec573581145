"""arq app for ``benchmarks/dist.py`` (peers venv only).

``arq peer_arq.WorkerSettings`` serves ``noop`` without keeping results (throughput);
``peer_arq.WorkerSettingsResults`` keeps them (arq's default, round trip). Everything else is
arq's default (``max_jobs`` 10, ``poll_delay`` 0.5 s). ``BENCH_REDIS_URL`` names the Redis.
"""

import os
from typing import Any

from arq.connections import RedisSettings

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


async def noop(ctx: dict[str, Any], i: int = 0) -> int:
    return i


class WorkerSettings:
    functions = [noop]
    redis_settings = RedisSettings.from_dsn(URL)
    keep_result = 0


class WorkerSettingsResults:
    functions = [noop]
    redis_settings = RedisSettings.from_dsn(URL)
