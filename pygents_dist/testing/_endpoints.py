"""Where a test's (or the demo's) Redis comes from: the :class:`RedisEndpoint` protocol, a Redis
given by URL (:class:`ExternalRedis`), a testcontainers one (:class:`ContainerRedis`,
:func:`docker_available`), and :func:`resolve_redis`, which picks one of those or a private
:class:`RedisServer` in one documented order.

Containers are reached through a port mapping on 127.0.0.1 only (when the Docker daemon is
local). testcontainers' reaper (Ryuk) removes them if this process dies, where its image is
here or can be pulled; where it cannot (a machine that reaches no image registry), the reaper
is turned off and the containers are removed by id when closed, at garbage collection or exit,
and, if the process was killed, by label the next time a container is started here.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import socket
import warnings
import weakref
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal, Protocol

from pygents_dist.testing._redis_server import RedisServer

#: The Redis image a container is started from unless ``PYGENTS_REDIS_IMAGE`` names another.
DEFAULT_REDIS_IMAGE = "redis:7-alpine"
#: The environment variable naming the Redis image (a local tag, or one Docker can pull).
REDIS_IMAGE_VARIABLE = "PYGENTS_REDIS_IMAGE"
#: The local image ``scripts/containers-up`` builds, for machines whose Docker cannot pull.
LOCAL_REDIS_IMAGE = "pygents-local/redis:7"
#: Labels on every container started here: what it is, and which process owns it.
CONTAINER_LABEL = "org.pygents.testing"
OWNER_LABEL = "org.pygents.owner"
_INSTALL = "install redis-server (apt-get install redis-server, brew install redis) or Docker"


class NoRedisError(RuntimeError):
    """No Redis to be had: no URL, no ``redis-server`` binary, no usable Docker."""


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


def redis_image(environ: Mapping[str, str] | None = None) -> str:
    """The Redis image to start: ``PYGENTS_REDIS_IMAGE`` if set and not empty, else
    :data:`DEFAULT_REDIS_IMAGE` (``redis:7-alpine``)."""
    env = os.environ if environ is None else environ
    return env.get(REDIS_IMAGE_VARIABLE, "").strip() or DEFAULT_REDIS_IMAGE


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _local_daemon() -> bool:
    """Whether the Docker daemon is on this machine (a unix socket, not a remote host)."""
    host = os.environ.get("DOCKER_HOST", "")
    return not host or host.startswith("unix://")


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Setup:
    """How testcontainers is set up for this process (decided once, at the first container)."""

    reaper: bool | None = None


def _set_up_testcontainers(client: Any) -> bool:
    """Pin testcontainers to loopback and decide on its reaper; return whether it is used.

    With a local daemon, containers are reached at 127.0.0.1 (``TESTCONTAINERS_HOST_OVERRIDE``
    and ``TESTCONTAINERS_CONNECTION_MODE`` still win when set). The reaper is used when its
    image is here or can be pulled, unless ``TESTCONTAINERS_RYUK_DISABLED`` says otherwise;
    if it cannot be had it is disabled, and our own cleanup (by id, and by label for the
    containers of dead processes) is all there is.
    """
    from testcontainers.core.config import ConnectionMode
    from testcontainers.core.config import testcontainers_config as config

    if _local_daemon():
        if not (os.environ.get("TESTCONTAINERS_HOST_OVERRIDE") or os.environ.get("TC_HOST")):
            config.tc_host_override = "127.0.0.1"
        if config.connection_mode_override is None:
            config.connection_mode_override = ConnectionMode.docker_host
    if _Setup.reaper is None:
        if "TESTCONTAINERS_RYUK_DISABLED" in os.environ or "ryuk.disabled" in config.tc_properties:
            _Setup.reaper = not config.ryuk_disabled
        else:
            try:
                _ensure_image(client, config.ryuk_image)
                _Setup.reaper = True
            except Exception:
                config.ryuk_disabled = True
                _Setup.reaper = False
    return _Setup.reaper


def _ensure_image(client: Any, image: str) -> None:
    """Make sure Docker has ``image``: here already, or pulled now.

    Raises:
        docker.errors.DockerException: it is not here and the pull failed.
    """
    import docker.errors

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        client.images.pull(image)


def sweep_stale_containers(client: Any) -> list[str]:
    """Remove the containers that processes of this host started here and left behind when
    they died (killed before they could remove them); return their ids.

    Only containers labelled :data:`CONTAINER_LABEL` whose :data:`OWNER_LABEL` names this host and a
    process that no longer exists are touched.
    """
    removed = []
    host = socket.gethostname()
    for container in client.containers.list(all=True, filters={"label": CONTAINER_LABEL}):
        owner_host, _, pid = container.labels.get(OWNER_LABEL, "").rpartition(":")
        if owner_host == host and pid.isdigit() and not _pid_alive(int(pid)):
            with contextlib.suppress(Exception):
                container.remove(force=True, v=True)
                removed.append(container.id)
    return removed


def _remove_container(container: Any) -> None:
    """Remove a testcontainers container (and its anonymous volumes) by id; quiet."""
    with contextlib.suppress(Exception), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        container.stop()  # testcontainers' stop removes it (force, volumes)


class ContainerRedis:
    """A throwaway Redis container started through testcontainers; closing removes it.

    The container is labelled :data:`CONTAINER_LABEL` (``redis``) and :data:`OWNER_LABEL` (this host
    and process) and, with a local daemon, published on 127.0.0.1 only. It is removed by
    :meth:`close`, on garbage collection and at interpreter exit; a container left by a killed
    process is removed by the reaper, or (without one) by the next :class:`ContainerRedis`
    started on this host.

    Args:
        image: the Redis image (default :func:`redis_image`: ``PYGENTS_REDIS_IMAGE`` or
            ``redis:7-alpine``); pulled if Docker does not have it.
        startup_timeout: seconds to wait for PING to answer.
    """

    kind: Literal["container"] = "container"

    def __init__(self, image: str | None = None, *, startup_timeout: float = 60.0) -> None:
        """Start the container and wait until Redis answers PING.

        Raises:
            RuntimeError: the image is not here and cannot be pulled (the message says what
                to do), or the container did not start or answer.
            Exception: whatever testcontainers/docker raise when no daemon is reachable.
        """
        self.image = image or redis_image()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from testcontainers.community.redis import RedisContainer
            from testcontainers.core.docker_client import DockerClient

            docker = DockerClient()
            try:
                self.reaper = _set_up_testcontainers(docker.client)
                if not self.reaper:
                    sweep_stale_containers(docker.client)
                try:
                    _ensure_image(docker.client, self.image)
                except Exception as exc:
                    why = getattr(exc, "explanation", None) or _first_line(exc)
                    raise RuntimeError(
                        f"Redis image {self.image!r} is not here and could not be pulled; set "
                        f"{REDIS_IMAGE_VARIABLE} to a local image (scripts/containers-up builds "
                        f"{LOCAL_REDIS_IMAGE}) [{_first_line(Exception(why), 120)}]"
                    ) from exc
            finally:
                docker.client.close()
            container = RedisContainer(self.image).with_kwargs(
                labels={CONTAINER_LABEL: "redis", OWNER_LABEL: _owner()}
            )
            if _local_daemon():  # published on loopback only: -p 127.0.0.1::6379
                container.ports[str(container.port)] = ("127.0.0.1",)  # type: ignore[assignment]
            strategy = container._wait_strategy  # PING, every 0.1 s rather than every 1 s
            if strategy is not None:
                strategy.with_poll_interval(0.1).with_startup_timeout(
                    timedelta(seconds=startup_timeout)
                )
            self._container = container
            self._finalizer = weakref.finalize(self, _remove_container, container)
            try:
                container.start()
                host = container.get_container_host_ip()
                port = container.get_exposed_port(container.port)
            except BaseException:
                self._finalizer()
                raise
        self._url = f"redis://{host}:{port}"

    @property
    def url(self) -> str:
        """The URL of the container's mapped port."""
        return self._url

    @property
    def container_id(self) -> str:
        """The Docker id of the container."""
        return self._container.get_container_id()

    def close(self) -> None:
        """Stop and remove the container; idempotent."""
        self._finalizer()

    def __repr__(self) -> str:
        return f"ContainerRedis({self._url!r}, image={self.image!r})"


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
    image: str | None = None,
    url_variable: str = "REDIS_URL",
) -> ExternalRedis | RedisServer | ContainerRedis:
    """Find or start a Redis; the caller must ``close()`` it. In this order:

    1. the URL in ``url_variable`` (``REDIS_URL``) of ``environ`` (default ``os.environ``),
       if set and not empty;
    2. a private :class:`RedisServer` from a ``redis-server`` binary on ``PATH`` (the
       ``PATH`` of ``environ`` when it has one);
    3. a :class:`ContainerRedis` of ``image`` (default :func:`redis_image`) when Docker is
       reachable (``use_docker=None`` asks :func:`docker_available`).

    Raises:
        NoRedisError: none of the three; the message is one line saying what to install.
    """
    # The names are looked up on the package at call time, as when it was one module, so a
    # test that patches pygents_dist.testing.docker_available (say) still reaches this call.
    from pygents_dist import testing

    env = os.environ if environ is None else environ
    url = env.get(url_variable, "")
    if url:
        return testing.ExternalRedis(url)
    binary = shutil.which("redis-server", path=env.get("PATH"))
    if binary is not None:
        return testing.RedisServer(executable=binary).start()
    image = image or redis_image(env)
    if not (use_docker if use_docker is not None else testing.docker_available()):
        raise NoRedisError(
            f"no Redis: {url_variable} is not set, redis-server is not on PATH and no Docker "
            f"daemon answers; {_INSTALL}, or set {url_variable}"
        )
    try:
        return testing.ContainerRedis(image)
    except Exception as exc:
        raise NoRedisError(
            f"no Redis: {url_variable} is not set, redis-server is not on PATH and a Redis "
            f"container did not start: {_first_line(exc, 400)}"
        ) from exc
