"""Several real worker processes on one Redis: sharing, routing, locks, order, crashes, state."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from pygents_dist import Client, TurnCancelledError
from pygents_dist._keys import GROUP
from pygents_dist._wire import encode_turn, new_turn_id
from tests.dist.conftest import StartWorker
from tests.dist.helpers import pids, pop, start_together

type Key = Callable[[str], str]


async def stream_length(client: Client, agent: str) -> int:
    return int(await client.transport.redis.xlen(client.transport.keys.turns(agent)))


async def test_two_workers_share_the_agents(start: StartWorker, client: Client) -> None:
    # One agent at a time per worker, so the second agent goes to the other worker.
    workers = await start_together(start, ["--concurrency", "1"], ["--concurrency", "1"])
    calls = [
        client.call(agent, "work", kwargs={"i": i, "delay": 0.01})
        for agent in ("alpha", "beta")
        for i in range(30)
    ]
    results = await asyncio.gather(*calls)
    assert sorted(r["i"] for r in results) == sorted(list(range(30)) * 2)
    assert {r["pid"] for r in results} == pids(workers)


async def test_a_send_from_a_tool_reaches_an_agent_served_by_another_process(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key: Key
) -> None:
    back = start("--agents", "back")
    front = start("--agents", "front")
    assert await client.call("front", "forward", kwargs={"x": 7}) == "forwarded"
    assert await pop(store, app_key("records")) == f"7 {back.pid}"
    assert front.pid != back.pid
    assert await client.call("back", "record", kwargs={"x": 8}) is None  # after the relayed one
    assert await stream_length(client, "back") == 0
    assert await stream_length(client, "front") == 0
    assert await client.transport.redis.xlen(client.transport.keys.outbox("front")) == 0


async def test_a_stream_is_read_from_a_third_process(
    start: StartWorker, client: Client, redis_url: str, key_prefix: str
) -> None:
    start()
    turn_id = await client.send("alpha", "count", kwargs={"n": 6, "delay": 0.15}, reply=True)
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
        key_prefix,
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


async def test_a_locked_tool_runs_in_one_worker_at_a_time(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key: Key
) -> None:
    workers = await start_together(start, ["--concurrency", "1"], ["--concurrency", "1"])
    for agent in ("alpha", "beta"):
        await client.send_many(agent, "guarded", [{"i": i} for i in range(15)])
    for agent in ("alpha", "beta"):  # after every guarded turn of the agent
        assert await client.call(agent, "add", kwargs={"a": 0, "b": 0}) == 0

    spans = sorted(
        (float(start), float(end), int(pid))
        for start, end, pid, _i in (s.split() for s in await store.lrange(app_key("spans"), 0, -1))
    )
    assert len(spans) == 30
    assert {pid for _start, _end, pid in spans} == pids(workers)  # both contended for it
    for (_s1, end, _p1), (start_next, _e2, _p2) in itertools.pairwise(spans):
        assert start_next >= end
    assert await store.get(app_key("overlaps")) is None


async def test_order_is_kept_with_two_workers_on_one_agent(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key: Key
) -> None:
    await start_together(start, ["--batch", "4"], ["--batch", "4"])
    for i in range(100):  # one by one, so ownership of the agent can change hands
        await client.send("alpha", "seq", kwargs={"i": i})
    assert await client.call("alpha", "add", kwargs={"a": 1, "b": 1}) == 2
    order = [int(i) for i in await store.lrange(app_key("seq"), 0, -1)]
    assert order == list(range(100))
    assert await stream_length(client, "alpha") == 0


async def test_a_killed_workers_turn_is_finished_once_by_the_survivor(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key: Key
) -> None:
    first, second = await start_together(start, ["--lease-ms", "1000"], ["--lease-ms", "1000"])
    turn_id = await client.send("alpha", "hold", kwargs={"tag": "k"}, reply=True)
    victim_pid = int(await pop(store, app_key("entered:k")))  # the tool waits inside
    victim, survivor = (first, second) if victim_pid == first.pid else (second, first)
    victim.kill()
    await store.rpush(app_key("release:k"), 1)

    values = [v async for v in client.results("alpha", turn_id)]
    assert values == ["released k"]
    assert int(await pop(store, app_key("entered:k"))) == survivor.pid
    assert await store.get(app_key("runs:k")) == "2"  # at-least-once execution...
    context = await client.call("alpha", "history")  # queued after the follow-up
    assert context["queue"].count("held k") == 1  # ...exactly-once effects
    assert await store.lrange(app_key("marks"), 0, -1) == ["k"]
    assert await stream_length(client, "alpha") == 0
    assert survivor.is_running()


async def test_turns_sent_before_any_worker_are_delivered_when_one_starts(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key: Key
) -> None:
    # Before any worker ever existed: a plain XADD, as any publisher can do.
    early = [
        (
            "alpha",
            turn_id,
            encode_turn(turn_id=turn_id, agent="alpha", tool="seq", args=[i], kwargs={}, timeout=5),
            b"",
        )
        for i, turn_id in enumerate(new_turn_id() for _ in range(3))
    ]
    await client.transport.send_turns(early)
    first = start()
    assert await client.call("alpha", "add", kwargs={"a": 1, "b": 2}) == 3
    assert await store.lrange(app_key("seq"), 0, -1) == ["0", "1", "2"]

    # Between workers: the agent is declared, nobody serves it.
    first.terminate()
    assert await asyncio.to_thread(first.wait, 10) == 0
    for i in range(3, 6):
        await client.send("alpha", "seq", kwargs={"i": i})
    assert await stream_length(client, "alpha") == 3
    second = start()
    assert await client.call("alpha", "add", kwargs={"a": 1, "b": 2}) == 3
    assert await store.lrange(app_key("seq"), 0, -1) == [str(i) for i in range(6)]
    assert set(await store.lrange(app_key("seq-pids"), 0, -1)) == {
        str(first.pid),
        str(second.pid),
    }


async def test_a_long_turn_on_a_live_worker_runs_once(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key: Key
) -> None:
    workers = await start_together(start, ["--lease-ms", "700"], ["--lease-ms", "700"])
    pid = await client.call("alpha", "long", kwargs={"seconds": 2.5})  # over three leases
    assert pid in pids(workers)
    assert await store.get(app_key("runs:long")) == "1"
    assert all(w.is_running() for w in workers)
    assert await stream_length(client, "alpha") == 0


async def test_follow_ups_and_context_survive_a_worker_restart(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key: Key
) -> None:
    first = start("--lease-ms", "1000")
    await client.call("alpha", "note", kwargs={"text": "first"})
    await client.call("alpha", "remember", kwargs={"key": "k1", "text": "one"})
    assert await client.call("alpha", "chain", kwargs={"n": 3}) is None  # routed, not returned
    assert await pop(store, app_key("chain-done")) == str(first.pid)  # follow-ups ran
    first.kill()

    second = start()
    context = await client.call("alpha", "history")
    assert context["pid"] == second.pid
    assert context["queue"] == ["first", "step 3", "step 2", "step 1", "step 0"]
    assert context["pool"] == "- [k1] about k1"
    await client.call("alpha", "note", kwargs={"text": "second"})
    assert (await client.call("alpha", "history"))["queue"][-2:] == ["step 0", "second"]
    assert (await client.call("beta", "history"))["queue"] == []  # per agent


async def test_pause_holds_every_worker_and_a_cancelled_queued_turn_never_runs(
    start: StartWorker, client: Client
) -> None:
    await start_together(start, [], [])
    await client.pause("alpha")
    kept = asyncio.create_task(client.call("alpha", "add", kwargs={"a": 1, "b": 2}))
    dropped = await client.send("alpha", "add", kwargs={"a": 5, "b": 5}, reply=True)
    await client.cancel("alpha", dropped)
    done, _ = await asyncio.wait({kept}, timeout=0.5)  # nothing may run while paused
    assert not done
    redis, keys = client.transport.redis, client.transport.keys
    assert await stream_length(client, "alpha") == 2
    assert (await redis.xpending(keys.turns("alpha"), GROUP))["pending"] == 0

    await client.resume("alpha")
    assert await asyncio.wait_for(kept, 10) == 3
    with pytest.raises(TurnCancelledError):
        async for _ in client.results("alpha", dropped):
            pass
    assert await stream_length(client, "alpha") == 0
