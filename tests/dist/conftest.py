"""Fixtures of the dist integration tests: workers serving ``tests/dist/apps``, a client, and
a plain Redis client for looking at (and poking) what the tools and the runtime wrote."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Protocol

import pytest
import redis.asyncio as aioredis

from pygents_dist import Client
from pygents_dist.testing import WorkerPool, WorkerProcess

APPS = Path(__file__).parent / "apps"
#: Short leases keep crash recovery quick; renewal runs every third of it.
LEASE_MS = "1500"


class StartWorker(Protocol):
    def __call__(
        self, *args: str, target: str = "cluster_app", env: Mapping[str, str] | None = None
    ) -> WorkerProcess: ...


@pytest.fixture
def start(worker_factory: WorkerPool, redis_url: str) -> StartWorker:
    """Start a ready worker process serving ``target`` from ``tests/dist/apps``.

    Extra ``args`` go to ``pygents-worker`` after ``--lease-ms 1500`` (later ones win).
    """

    def start_worker(
        *args: str, target: str = "cluster_app", env: Mapping[str, str] | None = None
    ) -> WorkerProcess:
        return worker_factory(
            target,
            args=("--lease-ms", LEASE_MS, "--log-level", "WARNING", *args),
            pythonpath=[APPS],
            env={"PYGENTS_REDIS_URL": redis_url, **(env or {})},
        )

    return start_worker


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Client]:
    """A client in the test's namespace (``PYGENTS_KEY_PREFIX``)."""
    async with Client(redis_url) as c:
        yield c


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain Redis client (str responses) on the test's Redis."""
    r = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield r
    finally:
        await r.aclose()


@pytest.fixture
def app_key(key_prefix: str) -> Callable[[str], str]:
    """The name of a key the app's tools write (``cluster_app.app_key``)."""
    return lambda name: f"{key_prefix}:app:{name}"
