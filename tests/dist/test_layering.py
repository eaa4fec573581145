"""Layering: only the Redis plumbing imports redis or holds a redis-py object; the core
imports only the standard library and never pygents_dist."""

from __future__ import annotations

import ast
import asyncio
import collections
import logging
import sys
import types
from pathlib import Path

import pytest
import redis.asyncio as aioredis

import pygents
import pygents_dist
from pygents import Agent, tool
from pygents_dist import Client, Worker, WorkerSettings
from pygents_dist._cluster import ClusterConnections
from pygents_dist._connections import Connections
from pygents_dist._scripts import Scripts
from pygents_dist._transport import Transport

CORE = Path(pygents.__file__).parent
DIST = Path(pygents_dist.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports kept with dots)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def top(name: str) -> str:
    return name.split(".", 1)[0]


def sources(package: Path) -> list[Path]:
    files = sorted(package.rglob("*.py"))
    assert files, package
    return files


def test_only_the_redis_plumbing_imports_redis() -> None:
    importers = {
        path.relative_to(DIST).as_posix()
        for path in sources(DIST)
        if any(top(name) == "redis" for name in imported_modules(path))
    }
    assert importers == {"_transport.py", "_connections.py", "_cluster.py", "_redis_errors.py"}


def test_core_imports_only_the_standard_library_and_itself() -> None:
    allowed = set(sys.stdlib_module_names) | {"pygents", "__future__"}
    offenders = {
        f"{path.relative_to(CORE).as_posix()}: {name}"
        for path in sources(CORE)
        for name in imported_modules(path)
        if not name.startswith(".") and top(name) not in allowed
    }
    assert offenders == set()


def test_core_never_imports_dist() -> None:
    offenders = {
        f"{path.name}: {name}"
        for path in sources(CORE)
        for name in imported_modules(path)
        if top(name) == "pygents_dist"
    }
    assert offenders == set()


# -- behaviour: who holds a redis-py object --------------------------------------------------

#: Objects whose insides are the Redis plumbing, and objects that are not ours to walk (the
#: event loop reaches every socket of the process, whoever opened it).
PLUMBING = (Transport, Connections, ClusterConnections, Scripts)
NOT_OURS = (
    asyncio.AbstractEventLoop,
    asyncio.Future,
    types.ModuleType,
    types.FrameType,
    types.CoroutineType,
    types.FunctionType,
    types.BuiltinFunctionType,
    type,
    logging.Logger,
)


def redis_objects_outside_plumbing(root: object, name: str) -> list[str]:
    """Paths from ``root`` to every redis-py object reachable without passing through the
    Redis plumbing: through attributes, slots, bound methods and containers."""
    found: list[str] = []
    seen: set[int] = set()
    queue: collections.deque[tuple[object, str]] = collections.deque([(root, name)])
    while queue:
        obj, path = queue.popleft()
        if id(obj) in seen or isinstance(obj, PLUMBING + NOT_OURS):
            continue
        seen.add(id(obj))
        if type(obj).__module__.split(".")[0] == "redis":
            found.append(f"{path}: {type(obj).__qualname__}")
            continue
        children: list[tuple[object, str]] = []
        if isinstance(obj, dict):
            children += [(v, f"{path}[{k!r}]") for k, v in obj.items()]
            children += [(k, f"{path}.<key>") for k in obj]
        elif isinstance(obj, list | tuple | set | frozenset | collections.deque):
            children += [(v, f"{path}[{i}]") for i, v in enumerate(obj)]
        elif isinstance(obj, types.MethodType):
            children.append((obj.__self__, f"{path}.__self__"))
        else:
            children += [(v, f"{path}.{k}") for k, v in getattr(obj, "__dict__", {}).items()]
            for cls in type(obj).__mro__:
                for slot in getattr(cls, "__slots__", ()):
                    if hasattr(obj, slot):
                        children.append((getattr(obj, slot), f"{path}.{slot}"))
        queue.extend(children)
    return found


def test_the_walk_finds_a_redis_client_held_outside_the_plumbing() -> None:
    holder = types.SimpleNamespace(inner={"x": [aioredis.Redis()]})
    assert redis_objects_outside_plumbing(holder, "holder") == ["holder.inner['x'][0]: Redis"]


@pytest.mark.integration
async def test_a_running_worker_and_a_client_hold_redis_only_through_the_transport(
    redis_url: str, key_prefix: str
) -> None:
    @tool
    async def layered_echo(value: int) -> int:
        return value

    agent = Agent("layered", "echoes", [layered_echo])
    # One transport, made here and given to both (so neither closes it).
    transport = Transport.from_url(redis_url, namespace=key_prefix)
    worker = Worker(WorkerSettings(redis_url="redis://unused:1/0"), [agent], transport=transport)
    ready = asyncio.Event()
    running = asyncio.create_task(worker.run(on_ready=lambda _id: ready.set()))
    try:
        await asyncio.wait_for(ready.wait(), 15)
        async with Client(transport=transport) as client:
            assert await client.call("layered", "layered_echo", kwargs={"value": 7}) == 7
            assert redis_objects_outside_plumbing(worker, "worker") == []
            assert redis_objects_outside_plumbing(client, "client") == []
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
    await transport.ping()  # the client and the worker left the transport they were given open
    await transport.aclose()


def test_a_client_refuses_a_transport_and_connection_settings_together() -> None:
    transport = Transport.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(ValueError, match="either transport= or url"):
        Client("redis://127.0.0.1:1/0", transport=transport)
