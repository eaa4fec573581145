"""Real Redis servers, network faults and worker processes for tests and benchmarks.

Nothing here is a fake: :class:`RedisServer` runs ``redis-server`` from ``PATH``,
:class:`RedisCluster` runs six of them as a Redis Cluster, :class:`TcpProxy` sits on a real
socket between a client and Redis, and :class:`WorkerProcess` runs ``python -m pygents_dist
worker`` as a child process. Every object that starts a process kills it when closed, when
garbage collected, and at interpreter exit, so a failing test never leaks one. This package
imports only the standard library (``testcontainers`` and ``docker`` are imported only when a
container is to be started: :class:`ContainerRedis`).

Everything is imported from here; the private modules behind it are ``_ports`` and
``_processes`` (shared helpers), ``_tls`` and ``_redis_server`` (a private ``redis-server``),
``_redis_cluster`` (:class:`RedisCluster`: a private Redis Cluster of such servers),
``_endpoints`` (where a test's Redis comes from), ``_fault_proxy`` (:class:`TcpProxy`) and
``_worker_processes`` (:class:`WorkerProcess`, :class:`WorkerPool`).

The pytest fixtures built on these live in :mod:`pygents_dist.pytest_plugin`.
"""

from pygents_dist.testing._endpoints import (
    CONTAINER_LABEL,
    DEFAULT_REDIS_IMAGE,
    LOCAL_REDIS_IMAGE,
    OWNER_LABEL,
    REDIS_IMAGE_VARIABLE,
    ContainerRedis,
    ExternalRedis,
    NoRedisError,
    RedisEndpoint,
    docker_available,
    redis_image,
    resolve_redis,
    sweep_stale_containers,
)
from pygents_dist.testing._fault_proxy import TcpProxy
from pygents_dist.testing._ports import free_port
from pygents_dist.testing._redis_cluster import RedisCluster
from pygents_dist.testing._redis_server import RedisServer
from pygents_dist.testing._worker_processes import WorkerPool, WorkerProcess

__all__ = [
    "CONTAINER_LABEL",
    "DEFAULT_REDIS_IMAGE",
    "LOCAL_REDIS_IMAGE",
    "OWNER_LABEL",
    "REDIS_IMAGE_VARIABLE",
    "ContainerRedis",
    "ExternalRedis",
    "NoRedisError",
    "RedisCluster",
    "RedisEndpoint",
    "RedisServer",
    "TcpProxy",
    "WorkerPool",
    "WorkerProcess",
    "docker_available",
    "free_port",
    "redis_image",
    "resolve_redis",
    "sweep_stale_containers",
]
