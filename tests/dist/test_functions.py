"""The Redis Functions library (``_functions.py``): installed by workers, replacing older
revisions and never newer ones, and called as another language would (``FCALL``): send with
the wake-up rule, cancel, pause, resume, and the errors for wrong keys and arguments.

Functions are server-wide, so tests that load other revisions use a private redis-server.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from pygents_dist import Client, RedisPermissionError, TurnCancelledError, _functions
from pygents_dist._keys import Keys
from pygents_dist._transport import Transport
from pygents_dist._wire import encode_turn, new_turn_id, unpack
from pygents_dist.testing import RedisServer, WorkerPool
from tests.dist.conftest import APPS, StartWorker, worker_args
from tests.dist.helpers import eventually, pop

pytestmark = [pytest.mark.integration]

#: The sha256 of the library source of each revision: a change to the source (or to a Lua
#: file it is made of) without a new ``REVISION`` fails here. Add the new revision's hash.
RECORDED = {
    1: "3a2141d38c2605a6fea89c4c3570d8a63b73cc1443acac622c91b26b31a5ae4c",  # unreleased yet
}


def fake_library(revision: int | None) -> str:
    """A library of our name whose ``pyg1_version`` says ``revision`` (None: it has none)."""
    if revision is None:
        body = "redis.register_function('pyg1_old', function() return 1 end)"
    else:
        body = (
            "redis.register_function{function_name='pyg1_version', "
            f"callback=function() return {revision} end, flags={{'no-writes'}}}}"
        )
    return f"#!lua name={_functions.LIBRARY}\n{body}\n"


async def loaded(redis: Any) -> tuple[set[str], int | None]:
    """The functions of our library Redis has, and its revision (None: no library)."""
    listed = await redis.execute_command("FUNCTION", "LIST", "LIBRARYNAME", _functions.LIBRARY)
    if not listed:
        return set(), None
    names = {function[b"name"].decode() for function in listed[0][b"functions"]}
    return names, await redis.execute_command("FCALL_RO", "pyg1_version", 0)


# -- the source ------------------------------------------------------------------------------


def test_the_library_source_is_recorded_with_its_revision() -> None:
    digest = hashlib.sha256(_functions.library_source().encode()).hexdigest()
    revision = _functions.REVISION
    assert revision in RECORDED, f"record revision {revision}: {digest!r} in RECORDED"
    assert RECORDED[revision] == digest, (
        "the Functions library's source changed within one revision: set _functions.REVISION "
        f"to {revision + 1} and record {revision + 1}: {digest!r} (a newer revision only "
        "adds functions or optional arguments, see docs/wire.md)"
    )


def test_the_library_is_made_of_the_scripts_python_runs() -> None:
    source = _functions.library_source()
    scripts = Transport.from_url("redis://localhost:1").scripts  # no connection is made
    for name in ("send", "cancel", "pause", "resume"):
        assert scripts.sources[name] in source
    assert source.startswith(f"#!lua name={_functions.LIBRARY}\n")


# -- install ---------------------------------------------------------------------------------


async def test_install_loads_replaces_older_and_keeps_newer(private_redis: RedisServer) -> None:
    transport = Transport.from_url(private_redis.url)
    admin: Any = aioredis.Redis.from_url(private_redis.url)
    try:
        first = await _functions.install(transport)
        assert (first.found, first.revision, first.changed) == (None, _functions.REVISION, True)
        assert await loaded(admin) == (set(_functions.FUNCTIONS), _functions.REVISION)
        again = await _functions.install(transport)
        assert (again.found, again.changed) == (_functions.REVISION, False)

        for older in (None, 0):  # no version function at all, or an older revision
            await admin.execute_command("FUNCTION", "LOAD", "REPLACE", fake_library(older))
            replaced = await _functions.install(transport)
            assert replaced.found == (0 if older is None else older)
            assert await loaded(admin) == (set(_functions.FUNCTIONS), _functions.REVISION)

        newer = _functions.REVISION + 1
        await admin.execute_command("FUNCTION", "LOAD", "REPLACE", fake_library(newer))
        kept = await _functions.install(transport)
        assert (kept.found, kept.revision, kept.changed) == (newer, newer, False)
        assert await loaded(admin) == ({"pyg1_version"}, newer)  # never downgraded

        # Workers starting together on an empty Redis: every install succeeds.
        await admin.execute_command("FUNCTION", "FLUSH")
        together = await asyncio.gather(*(_functions.install(transport) for _ in range(6)))
        assert {i.revision for i in together} == {_functions.REVISION}
        assert await loaded(admin) == (set(_functions.FUNCTIONS), _functions.REVISION)
    finally:
        await transport.aclose()
        await admin.aclose()


async def test_a_worker_installs_the_library_and_again_after_redis_lost_it(
    private_redis: RedisServer, worker_factory: WorkerPool, key_prefix: str
) -> None:
    worker_factory(
        "cluster_app", redis_url=private_redis.url, args=worker_args(), pythonpath=[APPS]
    )
    admin: Any = aioredis.Redis.from_url(private_redis.url)
    try:
        assert await loaded(admin) == (set(_functions.FUNCTIONS), _functions.REVISION)
        await admin.aclose()
        private_redis.restart(kill=True)  # no persistence: the library is gone with the data
        admin = aioredis.Redis.from_url(private_redis.url)

        async def back() -> bool:
            return (await loaded(admin))[1] == _functions.REVISION

        await eventually(back, "the worker to install the library again")
    finally:
        await admin.aclose()


async def test_a_worker_refused_the_install_by_the_acl_serves_anyway(
    private_redis: RedisServer, worker_factory: WorkerPool, key_prefix: str
) -> None:
    admin: Any = aioredis.Redis.from_url(private_redis.url)
    try:
        rule = f"on >pw resetkeys ~{key_prefix}:* -@all +@all -function"
        await admin.execute_command("ACL", "SETUSER", "agents", *rule.split())
    finally:
        await admin.aclose()
    url = private_redis.url.replace("redis://", "redis://agents:pw@")
    async with Client(url) as client:
        with pytest.raises(RedisPermissionError, match="function"):
            await _functions.install(client.transport)
        worker = worker_factory("cluster_app", redis_url=url, args=worker_args(), pythonpath=[APPS])
        assert await client.call("alpha", "add", kwargs={"a": 1, "b": 2}) == 3
    assert "could not install the Redis Functions library pygents_1" in worker.output_text
    assert "NOPERM" in worker.output_text

    # An administrator installs it; the deployment's user may then call it.
    def ops(url: str, *args: str) -> str:
        command = [sys.executable, "-m", "pygents_dist", "--redis-url", url, *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert json.loads(ops(private_redis.url, "functions", "--json"))["loaded"] is None
    assert ops(private_redis.url, "functions", "--install") == (
        f"pygents_1: revision {_functions.REVISION} loaded "
        f"(this pygents has revision {_functions.REVISION})\n"
    )
    limited: Any = aioredis.Redis.from_url(url)
    try:
        assert await limited.execute_command("FCALL_RO", "pyg1_version", 0) == _functions.REVISION
    finally:
        await limited.aclose()


# -- calling the functions, as another language does -----------------------------------------


async def fcall(redis: Any, name: str, keys: list[str], *args: Any) -> Any:
    return await redis.execute_command("FCALL", name, len(keys), *keys, *args)


def send_keys(keys: Keys, agent: str) -> list[str]:
    """KEYS of ``pyg1_send``."""
    return [keys.turns(agent), keys.owner(agent), keys.ready, keys.directory]


def turn(agent: str, tool: str, kwargs: dict[str, Any], reply: bool = True) -> tuple[str, bytes]:
    turn_id = new_turn_id()
    data = encode_turn(
        turn_id=turn_id, agent=agent, tool=tool, args=[], kwargs=kwargs, timeout=10, reply=reply
    )
    return turn_id, data


async def reply_entries(redis: Any, keys: Keys, agent: str, turn_id: str) -> list[tuple[str, Any]]:
    """The turn's reply entries ``(kind, decoded data)`` up to its end or error."""
    key, last, out = keys.reply(agent, turn_id), "0-0", []
    while True:
        got = await redis.xread({key: last}, block=10_000)
        assert got, f"no reply on {key}"
        for entry_id, fields in got[0][1]:
            last = entry_id
            out.append((fields[b"k"].decode(), unpack(fields[b"d"])))
            if fields[b"k"] in (b"e", b"x"):
                return out


async def test_send_through_the_function_runs_the_turn_and_wakes_only_unowned_agents(
    start: StartWorker, raw_redis: aioredis.Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    r: Any = raw_redis
    start()
    turn_id, data = turn("alpha", "add", {"a": 2, "b": 3})
    assert await fcall(r, "pyg1_send", send_keys(keys, "alpha"), "alpha", turn_id, data, "") == 1
    assert await reply_entries(r, keys, "alpha", turn_id) == [("e", 5)]
    [(_id, signal)] = await r.xrevrange(keys.ready, count=1)
    assert signal == {b"as": b"alpha"}

    # An agent with an owner is not signalled: its owner reads the turn before letting go.
    await r.set(keys.owner("beta"), "someone:1", px=60_000)
    first, data1 = turn("beta", "add", {"a": 1, "b": 1})
    second, data2 = turn("beta", "add", {"a": 2, "b": 2})
    args = ("beta", first, data1, "", second, data2, "")
    assert await fcall(r, "pyg1_send", send_keys(keys, "beta"), *args) == 0
    assert await r.xlen(keys.ready) == 1
    assert [f[b"id"].decode() for _i, f in await r.xrange(keys.turns("beta"))] == [first, second]
    await r.delete(keys.owner("beta"))
    assert await fcall(r, "pyg1_resume", [keys.state("beta"), keys.ready, keys.directory], "beta")
    assert await reply_entries(r, keys, "beta", second) == [("e", 4)]


async def test_pause_resume_and_cancel_through_the_functions(
    start: StartWorker,
    raw_redis: aioredis.Redis,
    store: aioredis.Redis,
    namespace: str,
    app_key: Callable[[str], str],
) -> None:
    keys = Keys(namespace)
    r: Any = raw_redis
    start()
    paused = [keys.state("alpha"), keys.directory]
    assert await fcall(r, "pyg1_pause", paused, "alpha") == 1
    turn_id, data = turn("alpha", "add", {"a": 4, "b": 4})
    await fcall(r, "pyg1_send", send_keys(keys, "alpha"), "alpha", turn_id, data, "")
    await asyncio.sleep(0.3)
    assert not await r.exists(keys.reply("alpha", turn_id))  # held while paused
    resumed = [keys.state("alpha"), keys.ready, keys.directory]
    assert await fcall(r, "pyg1_resume", resumed, "alpha") == 1
    assert await reply_entries(r, keys, "alpha", turn_id) == [("e", 8)]

    held, data = turn("alpha", "hold", {"tag": "f"})
    await fcall(r, "pyg1_send", send_keys(keys, "alpha"), "alpha", held, data, "")
    await pop(store, app_key("entered:f"))
    cancel = [keys.cancel("alpha"), keys.done("alpha")]
    assert await fcall(r, "pyg1_cancel", cancel, "alpha", held) == 1
    [(kind, error)] = await reply_entries(r, keys, "alpha", held)
    assert kind == "x" and error["type"] == TurnCancelledError.__name__
    assert await fcall(r, "pyg1_cancel", cancel, "alpha", held) == 0  # it finished


@pytest.mark.parametrize(
    ("name", "make_keys", "args", "error"),
    [
        (
            "pyg1_send",
            lambda k: send_keys(k, "alpha")[:3],
            ("alpha", "id", b"m", ""),
            "BADKEYS pyg1_send takes 4 keys: turns, owner, ready, agents, of agent alpha "
            "under one namespace (got 3)",
        ),
        (
            "pyg1_send",
            lambda k: [k.turns("alpha"), k.owner("beta"), k.ready, k.directory],
            ("alpha", "id", b"m", ""),
            "BADKEYS pyg1_send takes 4 keys: turns, owner, ready, agents, of agent alpha under one "
            "namespace; KEYS[2] is {ns}:pyg1:{{beta}}:owner, expected {ns}:pyg1:{{alpha}}:owner",
        ),
        (
            "pyg1_send",
            lambda k: [*send_keys(Keys(), "alpha")[:3], k.directory],
            ("alpha", "id", b"m", ""),
            "KEYS[4] is {ns}:pyg1:agents, expected pyg1:agents",
        ),
        (
            "pyg1_send",
            lambda k: ["staging:pyg2:{alpha}:turns", *send_keys(k, "alpha")[1:]],
            ("alpha", "id", b"m", ""),
            "KEYS[1] is staging:pyg2:{{alpha}}:turns, expected [<namespace>:]pyg1:{{alpha}}:turns",
        ),
        (
            "pyg1_send",
            lambda k: send_keys(k, "alpha"),
            ("alpha", "id", b"m"),
            "BADARGS pyg1_send: ARGV is the agent, then per turn: id, envelope, signature "
            "(empty for none); got 3 arguments",
        ),
        (
            "pyg1_send",
            lambda k: send_keys(k, "alpha"),
            ("alpha", "", b"m", ""),
            "BADARGS pyg1_send: turn 1 has an empty id or envelope",
        ),
        (
            "pyg1_send",
            lambda k: send_keys(k, "nobody"),
            ("nobody", "id", b"m", ""),
            "UNKNOWNAGENT pyg1_send: no worker has declared an agent named nobody",
        ),
        (
            "pyg1_send",
            lambda k: send_keys(k, "a b"),
            ("a b", "id", b"m", ""),
            "BADARGS pyg1_send: ARGV[1] must be the agent name",
        ),
        (
            "pyg1_pause",
            lambda k: [k.state("nobody"), k.directory],
            ("nobody",),
            "UNKNOWNAGENT pyg1_pause",
        ),
        (
            "pyg1_cancel",
            lambda k: [k.cancel("alpha"), k.done("alpha")],
            ("alpha",),
            "BADARGS pyg1_cancel: ARGV is the agent and the turn id",
        ),
    ],
)
async def test_the_functions_refuse_wrong_keys_and_arguments_saying_why(
    redis_url: str,
    raw_redis: aioredis.Redis,
    namespace: str,
    name: str,
    make_keys: Callable[[Keys], list[str]],
    args: tuple[Any, ...],
    error: str,
) -> None:
    keys = Keys(namespace)
    transport = Transport.from_url(redis_url, namespace=namespace)
    try:
        await _functions.install(transport)
    finally:
        await transport.aclose()
    await raw_redis.hset(keys.directory, "alpha", b"")  # declared, as a worker does
    with pytest.raises(ResponseError) as info:
        await fcall(raw_redis, name, make_keys(keys), *args)
    assert error.format(ns=namespace) in str(info.value)
    assert not await raw_redis.exists(keys.turns("alpha"), keys.ready, keys.state("nobody"))
    assert not await raw_redis.exists(keys.cancel("alpha"))
