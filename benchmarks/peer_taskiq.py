"""taskiq + taskiq-redis (stream broker) app for ``benchmarks/dist.py`` (peers venv only).

``taskiq worker peer_taskiq:broker --workers 1`` serves ``noop`` without a result backend
(throughput); ``peer_taskiq:broker_results`` stores results in Redis (round trip).
``BENCH_REDIS_URL`` names the Redis.
"""

import os

from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

broker = RedisStreamBroker(URL)
broker_results = RedisStreamBroker(URL).with_result_backend(RedisAsyncResultBackend(URL))


async def _noop(i: int = 0) -> int:
    return i


noop = broker.task(task_name="noop")(_noop)
noop_results = broker_results.task(task_name="noop")(_noop)
