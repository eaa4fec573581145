"""Where a test's Redis comes from: the :class:`RedisEndpoint` protocol, a Redis given by URL
(:class:`ExternalRedis`), a testcontainers one (:class:`ContainerRedis`, :func:`docker_available`),
and :func:`resolve_redis`, which picks one of those or a private :class:`RedisServer`."""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import warnings
from collections.abc import Mapping
from typing import Literal, Protocol

from pygents_dist.testing._redis_server import RedisServer


class RedisEndpoint(Protocol):
    """A Redis to test against, whatever started it: has a URL and is closed after use."""

    @property
    def url(self) -> str:
        """The ``redis://`` or ``rediss://`` URL of the server."""
        ...

    def close(self) -> None:
        """Release the server (stop what was started; leave alone what was not)."""
        ...


class ExternalRedis:
    """A Redis given by URL (``REDIS_URL``) that this process did not start and never stops."""

    kind: Literal["env"] = "env"

    def __init__(self, url: str) -> None:
        """Wrap ``url``; nothing is contacted."""
        self._url = url

    @property
    def url(self) -> str:
        """The URL as given."""
        return self._url

    def close(self) -> None:
        """Do nothing: the server belongs to someone else."""

    def __repr__(self) -> str:
        return f"ExternalRedis({self._url!r})"


class ContainerRedis:
    """A throwaway Redis container started through testcontainers; closing removes it."""

    kind: Literal["container"] = "container"

    def __init__(self, image: str = "redis:7-alpine") -> None:
        """Start the container and wait until Redis answers PING.

        Raises:
            Exception: whatever testcontainers/docker raise when the container cannot start.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from testcontainers.community.redis import RedisContainer

            self._container = RedisContainer(image)
            self._container.start()
        host = self._container.get_container_host_ip()
        port = self._container.get_exposed_port(6379)
        self._url = f"redis://{host}:{port}"

    @property
    def url(self) -> str:
        """The URL of the container's mapped port."""
        return self._url

    def close(self) -> None:
        """Stop and remove the container."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self._container.stop()

    def __repr__(self) -> str:
        return f"ContainerRedis({self._url!r})"


def docker_available(timeout: float = 3.0) -> bool:
    """Whether a Docker daemon answers, asked through testcontainers' own client.

    Returns ``False`` without error when testcontainers is not installed or no daemon is
    reachable; each request is bounded by ``timeout`` seconds.
    """
    with contextlib.suppress(Exception), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from testcontainers.core.docker_client import DockerClient

        client = DockerClient(timeout=timeout)
        try:
            return bool(client.client.ping())
        finally:
            client.client.close()
    # docker-py leaves the socket of a failed connect open (referenced from the exception's
    # traceback); reap it quietly now rather than let its ResourceWarning surface in
    # whichever test collects garbage next.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    return False


def resolve_redis(
    *,
    environ: Mapping[str, str] | None = None,
    use_docker: bool | None = None,
) -> ExternalRedis | ContainerRedis | RedisServer:
    """Find or start a Redis to test against; the caller must ``close()`` it.

    In order: ``REDIS_URL`` from ``environ`` (default ``os.environ``) if set and not empty;
    else a testcontainers Redis when Docker is reachable (``use_docker=None`` asks
    :func:`docker_available`); else (or if the container fails to start) a private
    :class:`RedisServer` from ``PATH``.

    Raises:
        RuntimeError: no URL, no usable Docker, and no ``redis-server`` on ``PATH``.
    """
    # The names are looked up on the package at call time, as when it was one module, so a
    # test that patches pygents_dist.testing.docker_available (say) still reaches this call.
    from pygents_dist import testing

    env = os.environ if environ is None else environ
    url = env.get("REDIS_URL", "")
    if url:
        return testing.ExternalRedis(url)
    container_error: Exception | None = None
    if use_docker if use_docker is not None else testing.docker_available():
        try:
            return testing.ContainerRedis()
        except Exception as exc:
            container_error = exc
    if shutil.which("redis-server") is None:
        raise RuntimeError(
            "no Redis for tests: REDIS_URL is not set, Docker is "
            + (f"unusable ({container_error!r})" if container_error else "not reachable")
            + ", and redis-server is not on PATH"
        )
    return testing.RedisServer().start()
