"""Work moving between worker processes started by each test: a send crossing to another
process, a SIGKILLed worker's turn finished by the survivor, turns queued while no worker
runs, and an agent's context continued by a new worker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import redis.asyncio as aioredis

from pygents_dist import Client, _streams
from pygents_dist._wire import encode_turn, new_turn_id
from tests.dist.conftest import StartWorker
from tests.dist.helpers import pop, start_together, stream_length

type Key = Callable[[str], str]


async def test_a_send_from_a_tool_reaches_an_agent_served_by_another_process(
    raw_redis: aioredis.Redis,
    start: StartWorker,
    client: Client,
    store: aioredis.Redis,
    app_key: Key,
) -> None:
    back = start("--agents", "back")
    front = start("--agents", "front")
    assert await client.call("front", "forward", kwargs={"x": 7}) == "forwarded"
    assert await pop(store, app_key("records")) == f"7 {back.pid}"
    assert front.pid != back.pid
    assert await client.call("back", "record", kwargs={"x": 8}) is None  # after the relayed one
    assert await stream_length(client, "back") == 0
    assert await stream_length(client, "front") == 0
    assert await raw_redis.xlen(client.transport.keys.outbox("front")) == 0


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
    await _streams.send_turns(client.transport, early)
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
