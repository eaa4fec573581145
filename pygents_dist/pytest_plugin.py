"""pytest plugin: a real Redis and real worker processes for pygents_dist tests.

Loaded through the ``pytest11`` entry point ``pygents_dist``. Fixtures:

- ``redis_server`` (session): ``REDIS_URL`` if set, else a testcontainers Redis when Docker is
  reachable, else a private ``redis-server`` from ``PATH``; has ``.url``.
- ``key_prefix``: a fresh ``t<8 hex>`` string per test, also set as ``PYGENTS_KEY_PREFIX``.
- ``redis_url``: the session server's URL, with a fresh ``key_prefix`` for the test.
- ``private_redis``: a :class:`~pygents_dist.testing.RedisServer` of the test's own, to kill
  and restart; options by indirect parametrization, e.g.
  ``@pytest.mark.parametrize("private_redis", [{"appendonly": True}], indirect=True)``.
- ``worker_factory``: a :class:`~pygents_dist.testing.WorkerPool` on ``redis_url``; call it to
  start a worker and wait for READY; every worker is stopped at teardown, and its output is
  printed (pytest shows it when the test fails).

Markers: a test using ``redis_server``, ``redis_url``, ``private_redis`` or ``worker_factory``
is marked ``integration``; one using ``private_redis`` or ``worker_factory`` also ``slow``.
Tests marked ``soak`` are deselected (not skipped) unless ``--soak`` is given.

Every pytest run of a project with pygents installed loads this plugin, including a
core-only install (``pip install pygents``, no ``dist`` extra). So this module imports only
the standard library and pytest; ``pygents_dist.testing`` is imported by the fixtures that
need it, and without the extra a Redis fixture fails its test with one line saying to
install ``pygents[dist]``, leaving every other test alone.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pygents_dist.testing import RedisEndpoint, RedisServer, WorkerPool

__all__ = [
    "key_prefix",
    "private_redis",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "redis_server",
    "redis_url",
    "worker_factory",
]

_MARKERS = {
    "integration": "talks to a real Redis",
    "slow": "spawns processes",
    "soak": "long fault/soak variants, opt-in with --soak",
}
_INTEGRATION_FIXTURES = frozenset({"redis_server", "redis_url", "private_redis", "worker_factory"})
_SLOW_FIXTURES = frozenset({"private_redis", "worker_factory"})
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
    """Add ``--soak``: run the tests marked ``soak`` (deselected without it)."""
    parser.addoption(
        "--soak",
        action="store_true",
        default=False,
        help="run tests marked soak (long fault/soak variants); without it they are deselected",
    )


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
    if not config.getoption("soak"):
        kept = [item for item in items if item.get_closest_marker("soak") is None]
        if len(kept) != len(items):
            kept_ids = {id(item) for item in kept}
            config.hook.pytest_deselected(items=[i for i in items if id(i) not in kept_ids])
            items[:] = kept


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisEndpoint]:
    """The session's Redis: ``REDIS_URL``, else a container, else a private redis-server.

    Tests share it, so they must keep to their ``key_prefix`` and never flush it.
    """
    endpoint: RedisEndpoint = _testing("redis_server").resolve_redis()
    try:
        yield endpoint
    finally:
        endpoint.close()


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
