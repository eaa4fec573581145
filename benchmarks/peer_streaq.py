"""streaq app for ``benchmarks/dist.py`` (peers venv only).

``streaq run peer_streaq:worker`` serves ``noop`` without keeping results (``ttl=0``,
throughput); ``peer_streaq:worker_results`` keeps them (streaq's default, round trip).
``BENCH_REDIS_URL`` names the Redis.
"""

import os

from streaq import Worker

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

worker: Worker = Worker(redis_url=URL)
worker_results: Worker = Worker(redis_url=URL)


@worker.task(ttl=0)
async def noop(i: int = 0) -> int:
    return i


@worker_results.task(name="noop")
async def noop_results(i: int = 0) -> int:
    return i
