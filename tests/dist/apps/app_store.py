"""What the test apps share: the worker process's Redis client and the test's own keys.

The worker finds Redis through ``PYGENTS_REDIS_URL`` and the test's key prefix through
``PYGENTS_KEY_PREFIX`` (both set by the tests' ``start`` fixture); with
``PYGENTS_TEST_CLUSTER=1`` that Redis is a Redis Cluster, and the client is a cluster client.
"""

from __future__ import annotations

import os

import redis.asyncio as aioredis

_store: aioredis.Redis | None = None


def store() -> aioredis.Redis:
    """This process's Redis client (made on first use, in the worker's event loop)."""
    global _store
    if _store is None:
        url = os.environ["PYGENTS_REDIS_URL"]
        if os.environ.get("PYGENTS_TEST_CLUSTER") == "1":
            _store = aioredis.RedisCluster.from_url(url)  # type: ignore[assignment]
        else:
            _store = aioredis.Redis.from_url(url)
    return _store


def app_key(name: str) -> str:
    """A key of the test's own, beside the runtime's keys."""
    return f"{os.environ['PYGENTS_KEY_PREFIX']}:app:{name}"
