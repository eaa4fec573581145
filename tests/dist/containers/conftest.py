"""The container tier (``pytest -m containers``): Redis in a Docker container through
testcontainers, and compose.yaml brought up for real.

Here ``redis_server`` (and so ``redis_url``, ``client``, ``worker_factory``...) is the
plugin's ``container_redis``: a testcontainers Redis of ``--redis-image`` /
``$PYGENTS_REDIS_IMAGE`` / ``redis:7-alpine``, published on 127.0.0.1 only. Without Docker
these tests are skipped with the reason, or fail when ``CI`` is true (``.ci/run`` runs
``scripts/containers-up`` first). Every container, volume, network and image a test creates
is removed by id or label at teardown, also after a failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pygents_dist.pytest_plugin import in_ci
from pygents_dist.testing import ContainerRedis, docker_available


@pytest.fixture(scope="session")
def redis_server(container_redis: ContainerRedis) -> ContainerRedis:
    """The session's Redis in this tier: the container."""
    return container_redis


@pytest.fixture(scope="session")
def tier_image(container_redis: ContainerRedis) -> str:
    """The Redis image of the tier (``--redis-image``, ``$PYGENTS_REDIS_IMAGE`` or the
    default), once a container of it has started (its tests are skipped, or fail in CI, like
    those of ``container_redis`` when none can)."""
    return container_redis.image


def need_docker(what: str) -> None:
    """Skip (fail in CI) the calling test unless a Docker daemon answers."""
    if not docker_available():
        reason = f"container tier: {what} needs Docker; no daemon answers"
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_api() -> Iterator[Any]:
    """A docker-py client of the local daemon, to look at containers from outside."""
    need_docker("looking at containers")
    import docker

    client = docker.from_env(timeout=60)
    try:
        yield client
    finally:
        client.close()
