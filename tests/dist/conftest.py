"""Fixtures of the dist integration tests: workers serving ``tests/dist/apps``, a client, and
a plain Redis client for looking at (and poking) what the tools and the runtime wrote.

With ``PYGENTS_TEST_CLUSTER=1`` the tests that use the session's Redis (``redis_server``,
``redis_url``) run against the session's local Redis Cluster instead, with cluster clients
for ``store`` and ``raw_redis`` (a manual run, reported in the README; tests of one node's
own behaviour, such as restarts of a private server, are not about the cluster)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import gc
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import pytest
import redis.asyncio as aioredis

from pygents_dist import Client
from pygents_dist.testing import RedisCluster, RedisEndpoint, WorkerPool, WorkerProcess

APPS = Path(__file__).parent / "apps"
#: Short leases keep crash recovery quick; renewal runs every third of it.
LEASE_MS = "1500"


def worker_args(*args: str) -> tuple[str, ...]:
    """``pygents-worker`` options of the tests' workers; later ``args`` win."""
    return ("--lease-ms", LEASE_MS, "--log-level", "WARNING", *args)


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
            args=worker_args(*args),
            pythonpath=[APPS],
            env={"PYGENTS_REDIS_URL": redis_url, **(env or {})},
        )

    return start_worker


@dataclasses.dataclass(frozen=True)
class Shared:
    """Workers shared by the tests of a module, and their namespace."""

    namespace: str
    workers: list[WorkerProcess]


@contextlib.contextmanager
def module_workers(
    redis_server: RedisEndpoint,
    *args: str,
    target: str = "cluster_app",
    count: int = 1,
    env: Mapping[str, str] | None = None,
) -> Iterator[Shared]:
    """``count`` workers serving ``target`` under a fresh namespace of their own, for a whole
    module whose tests leave the agents idle and unpaused and use keys of their own. ``env``
    is added to the workers' environment."""
    namespace = f"m{uuid.uuid4().hex[:8]}"
    env = {"PYGENTS_KEY_PREFIX": namespace, "PYGENTS_REDIS_URL": redis_server.url, **(env or {})}
    options = worker_args("--namespace", namespace, *args)
    with WorkerPool(redis_server.url, pythonpath=[APPS], env=env) as pool:
        try:
            with concurrent.futures.ThreadPoolExecutor(count) as starter:
                workers = list(starter.map(lambda _: pool(target, args=options), range(count)))
            yield Shared(namespace, workers)
        finally:
            pool.close()
            for worker in pool.workers:
                print(f"----- {worker!r} output -----\n{worker.output_text}")


ON_CLUSTER = os.environ.get("PYGENTS_TEST_CLUSTER") == "1"

if ON_CLUSTER:

    @pytest.fixture(scope="session")
    def redis_server(redis_cluster: RedisCluster) -> RedisCluster:
        """The session's local Redis Cluster, in place of a single Redis."""
        return redis_cluster


def _plain_client(url: str, **options: Any) -> aioredis.Redis:
    """A redis-py client of the test's Redis (a cluster client on a cluster)."""
    if ON_CLUSTER:
        return aioredis.RedisCluster.from_url(url, **options)  # type: ignore[return-value]
    return aioredis.Redis.from_url(url, **options)


@pytest.fixture
def namespace(key_prefix: str) -> str:
    """The test's key namespace: its own ``key_prefix`` (a module may share one)."""
    return key_prefix


@pytest.fixture
async def client(redis_url: str, namespace: str) -> AsyncIterator[Client]:
    """A client in the test's namespace."""
    async with Client(redis_url, namespace=namespace) as c:
        yield c


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain Redis client (str responses) on the test's Redis."""
    r = _plain_client(redis_url, decode_responses=True)
    try:
        yield r
    finally:
        await r.aclose()


@pytest.fixture
async def raw_redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain Redis client (bytes responses) on the test's Redis, for looking at keys the
    runtime wrote (the runtime's own transport hands out no client)."""
    r = _plain_client(redis_url)
    try:
        yield r
    finally:
        await r.aclose()


@pytest.fixture
def app_key(namespace: str) -> Callable[[str], str]:
    """The name of a key the app's tools write (``cluster_app.app_key``)."""
    return lambda name: f"{namespace}:app:{name}"


@pytest.fixture(autouse=True)
def _collect_after() -> Iterator[None]:
    """Collect garbage after each test: a socket or transport a test left open then warns
    (an error here) in that test's teardown, not in whichever test the collector ran."""
    yield
    gc.collect()
