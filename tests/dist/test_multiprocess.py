"""Two real worker processes serving the whole module: they share the agents, keep one
agent's order, serialise a locked tool, hold a paused agent, never run a long turn twice; a
third process reads a stream.

The tests share the workers (``--concurrency 1``: one agent at a time each, so two agents
go to two workers; ``--batch 4``) under a namespace of their own, leave the agents idle and
unpaused, and use keys of their own.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator

import pytest
import redis.asyncio as aioredis

from pygents_dist import Client, TurnCancelledError
from pygents_dist._keys import GROUP
from pygents_dist.testing import RedisEndpoint
from tests.dist.conftest import Shared, module_workers
from tests.dist.helpers import pids, stream_length

pytestmark = [pytest.mark.integration, pytest.mark.slow]

type Key = Callable[[str], str]
#: Leases renewed every third of this; the long turn outlasts three of them.
LEASE_MS = "1000"


@pytest.fixture(scope="module")
def shared(redis_server: RedisEndpoint) -> Iterator[Shared]:
    """The module's two workers."""
    options = ("--concurrency", "1", "--batch", "4", "--lease-ms", LEASE_MS)
    with module_workers(redis_server, *options, count=2) as workers:
        yield workers


@pytest.fixture
def namespace(shared: Shared) -> str:
    """The namespace of the module's workers."""
    return shared.namespace


async def test_two_workers_share_the_agents(client: Client, shared: Shared) -> None:
    calls = [
        client.call(agent, "work", kwargs={"i": i, "delay": 0.01})
        for agent in ("alpha", "beta")
        for i in range(30)
    ]
    results = await asyncio.gather(*calls)
    assert sorted(r["i"] for r in results) == sorted(list(range(30)) * 2)
    assert {r["pid"] for r in results} == pids(shared.workers)


async def test_order_is_kept_with_two_workers_on_one_agent(
    client: Client, store: aioredis.Redis, app_key: Key
) -> None:
    for i in range(100):  # one by one, so ownership of the agent can change hands
        await client.send("alpha", "seq", kwargs={"i": i})
    assert await client.call("alpha", "add", kwargs={"a": 1, "b": 1}) == 2
    order = [int(i) for i in await store.lrange(app_key("seq"), 0, -1)]
    assert order == list(range(100))
    assert await stream_length(client, "alpha") == 0


async def test_a_locked_tool_runs_in_one_worker_at_a_time(
    client: Client, store: aioredis.Redis, app_key: Key, shared: Shared
) -> None:
    for agent in ("alpha", "beta"):
        await client.send_many(agent, "guarded", [{"i": i} for i in range(15)])
    for agent in ("alpha", "beta"):  # after every guarded turn of the agent
        assert await client.call(agent, "add", kwargs={"a": 0, "b": 0}) == 0

    spans = sorted(
        (float(start), float(end), int(pid))
        for start, end, pid, _i in (s.split() for s in await store.lrange(app_key("spans"), 0, -1))
    )
    assert len(spans) == 30
    assert {pid for _start, _end, pid in spans} == pids(shared.workers)  # both contended for it
    for (_s1, end, _p1), (start_next, _e2, _p2) in itertools.pairwise(spans):
        assert start_next >= end
    assert await store.get(app_key("overlaps")) is None


async def test_a_stream_is_read_from_a_third_process(
    client: Client, redis_url: str, namespace: str
) -> None:
    turn_id = await client.send("alpha", "count", kwargs={"n": 6, "delay": 0.1}, reply=True)
    reader = textwrap.dedent(
        """
        import asyncio, sys
        from pygents_dist import Client

        async def main() -> None:
            async with Client(sys.argv[1], namespace=sys.argv[2]) as client:
                async for value in client.results("alpha", sys.argv[3]):
                    print(value, flush=True)

        asyncio.run(main())
        """
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        reader,
        redis_url,
        namespace,
        turn_id,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert out.decode().split() == ["0", "1", "2", "3", "4", "5"]
    assert [v async for v in client.results("alpha", turn_id)] == [0, 1, 2, 3, 4, 5]


async def test_a_long_turn_on_a_live_worker_runs_once(
    client: Client, store: aioredis.Redis, app_key: Key, shared: Shared
) -> None:
    pid = await client.call("alpha", "long", kwargs={"seconds": 3.2})  # over three leases
    assert pid in pids(shared.workers)
    assert await store.get(app_key("runs:long")) == "1"
    assert all(w.is_running() for w in shared.workers)
    assert await stream_length(client, "alpha") == 0


async def test_pause_holds_every_worker_and_a_cancelled_queued_turn_never_runs(
    raw_redis: aioredis.Redis,
    client: Client,
) -> None:
    await client.pause("alpha")
    kept = asyncio.create_task(client.call("alpha", "add", kwargs={"a": 1, "b": 2}))
    dropped = await client.send("alpha", "add", kwargs={"a": 5, "b": 5}, reply=True)
    await client.cancel("alpha", dropped)
    done, _ = await asyncio.wait({kept}, timeout=0.5)  # nothing may run while paused
    assert not done
    redis, keys = raw_redis, client.transport.keys
    assert await stream_length(client, "alpha") == 2
    assert (await redis.xpending(keys.turns("alpha"), GROUP))["pending"] == 0

    await client.resume("alpha")
    assert await asyncio.wait_for(kept, 10) == 3
    with pytest.raises(TurnCancelledError):
        async for _ in client.results("alpha", dropped):
            pass
    assert await stream_length(client, "alpha") == 0
