"""pytest plugin: a real Redis and real worker processes for pygents_dist tests.

Loaded through the ``pytest11`` entry point ``pygents_dist``. Fixtures:

- ``redis_server`` (session): ``REDIS_URL`` if set, else a private ``redis-server`` from
  ``PATH``, else a testcontainers Redis when Docker answers (:func:`resolve_redis`); has
  ``.url``. With none of them its tests fail with one line saying what to install.
- ``container_redis`` (session): a Redis in a container, always through testcontainers (the
  container tier: override ``redis_server`` with it in a conftest). Without Docker its tests
  are skipped with the reason, or fail when the ``CI`` environment variable is true.
- ``redis_cluster`` (session): a :class:`~pygents_dist.testing.RedisCluster` of 3 primaries
  and 3 replicas on loopback ports (``redis-server`` from ``PATH``, no Docker), its state
  ok; ``.url`` reaches any node. Tests share it (keep to ``key_prefix``); a test that kills a
  primary waits for the failover (``wait_failover``) and restarts the node before it ends.
- ``key_prefix``: a fresh ``t<8 hex>`` string per test, also set as ``PYGENTS_KEY_PREFIX``.
- ``redis_url``: the session server's URL, with a fresh ``key_prefix`` for the test.
- ``private_redis``: a :class:`~pygents_dist.testing.RedisServer` of the test's own, to kill
  and restart; options by indirect parametrization, e.g.
  ``@pytest.mark.parametrize("private_redis", [{"appendonly": True}], indirect=True)``.
- ``worker_factory``: a :class:`~pygents_dist.testing.WorkerPool` on ``redis_url``; call it to
  start a worker and wait for READY; every worker is stopped at teardown, and its output is
  printed (pytest shows it when the test fails).

Markers: a test using ``redis_server``, ``redis_url``, ``private_redis`` or ``worker_factory``
is marked ``integration``; one using ``private_redis`` or ``worker_factory`` also ``slow``; one
using ``container_redis`` ``containers`` (``pytest -m "not containers"`` leaves them out).
Tests marked ``soak`` are deselected (not skipped) unless ``--soak`` is given.

The Redis image of a container is ``--redis-image``, else ``$PYGENTS_REDIS_IMAGE``, else
``redis:7-alpine``. Where the session's Redis came from (and why the container tier did not
run, if it did not) is said once, at the end of the run.

Every pytest run of a project with pygents installed loads this plugin, including a
core-only install (``pip install pygents``, no ``dist`` extra). So this module imports only
the standard library and pytest; ``pygents_dist.testing`` is imported by the fixtures that
need it, and without the extra a Redis fixture fails its test with one line saying to
install ``pygents[dist]``, leaving every other test alone.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pygents_dist.testing import (
        ContainerRedis,
        RedisCluster,
        RedisEndpoint,
        RedisServer,
        WorkerPool,
    )

__all__ = [
    "container_redis",
    "key_prefix",
    "private_redis",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_terminal_summary",
    "redis_cluster",
    "redis_server",
    "redis_url",
    "worker_factory",
]

_MARKERS = {
    "integration": "talks to a real Redis",
    "slow": "spawns processes",
    "soak": "long fault/soak variants, opt-in with --soak",
    "containers": "runs in Docker containers (Redis through testcontainers, compose.yaml)",
}
_INTEGRATION_FIXTURES = frozenset(
    {
        "redis_server",
        "redis_url",
        "private_redis",
        "worker_factory",
        "container_redis",
        "redis_cluster",
    }
)
_SLOW_FIXTURES = frozenset({"private_redis", "worker_factory", "redis_cluster"})
_CONTAINER_FIXTURES = frozenset({"container_redis"})
#: What the session said about its Redis, printed once at the end.
_NOTES = pytest.StashKey[dict[str, str]]()
#: What the ``dist`` extra brings that the fixtures' servers and workers need.
_DIST_MODULES = ("redis", "msgpack")
_INSTALL_HINT = "install pygents[dist]: pip install 'pygents[dist]'"


def _testing(fixture: str) -> ModuleType:
    """``pygents_dist.testing``, or the test fails with one line if the extra is missing."""
    missing = [name for name in _DIST_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        pytest.fail(
            f"fixture {fixture!r} needs the dist extra ({', '.join(missing)} not installed); "
            f"{_INSTALL_HINT}",
            pytrace=False,
        )
    import pygents_dist.testing

    return pygents_dist.testing


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--soak`` (run the tests marked ``soak``, deselected without it) and
    ``--redis-image`` (the image of Redis containers)."""
    parser.addoption(
        "--soak",
        action="store_true",
        default=False,
        help="run tests marked soak (long fault/soak variants); without it they are deselected",
    )
    parser.addoption(
        "--redis-image",
        default=None,
        metavar="IMAGE",
        help="Redis image of the containers the fixtures start (default: $PYGENTS_REDIS_IMAGE "
        "or redis:7-alpine)",
    )


def in_ci() -> bool:
    """Whether the ``CI`` environment variable is set to a true value (``true``, ``1``...)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


def _redis_image(config: pytest.Config) -> str | None:
    """``--redis-image`` if given (else ``None``: the environment or the default decide)."""
    image: str | None = config.getoption("redis_image")
    return image or None


def _note(config: pytest.Config, topic: str, text: str) -> None:
    """Remember one line about ``topic`` for the end of the run (the first one wins)."""
    config.stash.setdefault(_NOTES, {}).setdefault(topic, text)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Say once where the session's Redis came from, and why the container tier did not run."""
    for text in config.stash.get(_NOTES, {}).values():
        terminalreporter.write_line(f"pygents_dist: {text}")


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``integration``, ``slow`` and ``soak`` markers unless already declared."""
    declared = {line.split(":", 1)[0].split("(", 1)[0].strip() for line in config.getini("markers")}
    for name, text in _MARKERS.items():
        if name not in declared:
            config.addinivalue_line("markers", f"{name}: {text}")


@pytest.hookimpl(tryfirst=True)  # before ``-m`` filters on the markers added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by the fixtures they use, and deselect ``soak`` tests without ``--soak``."""
    for item in items:
        names = set(item.fixturenames) if isinstance(item, pytest.Function) else set()
        if names & _INTEGRATION_FIXTURES and item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.integration)
        if names & _SLOW_FIXTURES and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)
        if names & _CONTAINER_FIXTURES and item.get_closest_marker("containers") is None:
            item.add_marker(pytest.mark.containers)
    if not config.getoption("soak"):
        kept = [item for item in items if item.get_closest_marker("soak") is None]
        if len(kept) != len(items):
            kept_ids = {id(item) for item in kept}
            config.hook.pytest_deselected(items=[i for i in items if id(i) not in kept_ids])
            items[:] = kept


@pytest.fixture(scope="session")
def redis_server(request: pytest.FixtureRequest) -> Iterator[RedisEndpoint]:
    """The session's Redis: ``REDIS_URL``, else a private redis-server from ``PATH``, else a
    container when Docker answers; with none, its tests fail with one line.

    Tests share it, so they must keep to their ``key_prefix`` and never flush it.
    """
    testing = _testing("redis_server")
    try:
        endpoint: RedisEndpoint = testing.resolve_redis(image=_redis_image(request.config))
    except testing.NoRedisError as exc:
        _note(request.config, "redis_server", str(exc))
        pytest.fail(str(exc), pytrace=False)
    _note(request.config, "redis_server", f"Redis for the tests: {_describe(endpoint)}")
    try:
        yield endpoint
    finally:
        endpoint.close()


def _describe(endpoint: RedisEndpoint) -> str:
    kind = getattr(endpoint, "kind", None)
    if kind == "env":
        return "REDIS_URL"
    if kind == "container":
        return f"a container of {getattr(endpoint, 'image', '?')} (no redis-server on PATH)"
    return "a private redis-server from PATH"


@pytest.fixture(scope="session")
def container_redis(request: pytest.FixtureRequest) -> Iterator[ContainerRedis]:
    """A Redis container started through testcontainers for the session, removed at its end
    (also after failed tests). Image: ``--redis-image``, ``$PYGENTS_REDIS_IMAGE`` or
    ``redis:7-alpine``.

    When Docker does not answer or the container does not start, its tests are skipped with
    the reason (said once at the end of the run), or fail when ``CI`` is true: in CI the
    container tier must run.
    """
    testing = _testing("container_redis")
    image = _redis_image(request.config) or testing.redis_image()
    try:
        if not testing.docker_available():
            raise RuntimeError("no Docker daemon answers")
        endpoint: ContainerRedis = testing.ContainerRedis(image)
    except Exception as exc:
        reason = f"container tier: no Redis container of {image}: {exc}"
        if in_ci():
            _note(request.config, "containers", f"{reason} (CI: failed, not skipped)")
            pytest.fail(reason, pytrace=False)
        _note(request.config, "containers", f"{reason} (skipped)")
        pytest.skip(reason)
    reaper = "reaper on" if endpoint.reaper else "reaper off: removed by id at teardown"
    _note(request.config, "containers", f"container tier: {endpoint!r}, {reaper}")
    try:
        yield endpoint
    finally:
        endpoint.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A local Redis Cluster for the session (3 primaries, 3 replicas, node timeout 1 s),
    killed and its directory removed at the end. Needs ``redis-server`` and ``redis-cli`` on
    ``PATH``; without them its tests fail with one line saying so."""
    testing = _testing("redis_cluster")
    try:
        cluster: RedisCluster = testing.RedisCluster().start()
    except (OSError, RuntimeError, TimeoutError) as exc:
        pytest.fail(f"no local Redis Cluster (redis-server and redis-cli on PATH?): {exc}")
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def key_prefix(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh key prefix (``t`` and 8 hex digits), also set as ``PYGENTS_KEY_PREFIX``."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PYGENTS_KEY_PREFIX", prefix)
    return prefix


@pytest.fixture
def redis_url(redis_server: RedisEndpoint, key_prefix: str) -> str:
    """The session Redis's URL; the test's keys live under its own ``key_prefix``."""
    return redis_server.url


@pytest.fixture
def private_redis(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A running redis-server of this test's own, killed and deleted at teardown.

    Options (``appendonly``, ``password``, ``acl_user``, ``tls``) come from indirect
    parametrization with a dict.
    """
    server_class: type[RedisServer] = _testing("private_redis").RedisServer
    options: object = getattr(request, "param", {})
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise TypeError(f"private_redis takes a dict of RedisServer options, got {options!r}")
    with server_class.from_options({str(k): v for k, v in options.items()}) as server:
        yield server


@pytest.fixture
def worker_factory(redis_url: str) -> Iterator[WorkerPool]:
    """Start real workers: ``worker_factory(target, *, redis_url=..., args=(), pythonpath=(),
    env=None) -> WorkerProcess`` returns once the worker printed READY.

    Workers use the session Redis unless given ``redis_url``, and inherit
    ``PYGENTS_KEY_PREFIX``. At teardown, even after a failure, every worker gets SIGTERM, then
    SIGKILL after a grace period, and its output is printed.
    """
    pool: WorkerPool = _testing("worker_factory").WorkerPool(redis_url)
    try:
        yield pool
    finally:
        pool.close()
        for worker in pool.workers:
            print(f"----- {worker!r} output -----")
            print(worker.output_text)
