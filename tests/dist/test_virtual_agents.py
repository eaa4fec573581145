"""Agents made at runtime and keyed instances of a kind, served by real workers.

The program of ``apps/virtual_app`` runs in this process (the core) and in workers with the
same results; instances are addressed by name from a client without being declared; workers
keep only a bounded set of them in memory, take them over after a SIGKILL, and forget them
on request.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest
import redis.asyncio as aioredis

from pygents import Agent, AgentRegistry, Turn
from pygents_dist import Client, UnknownAgentError, _control
from pygents_dist._wire import encode_turn, new_turn_id
from tests.dist.apps.virtual_app import COORDINATOR, KIND, build
from tests.dist.conftest import StartWorker
from tests.dist.helpers import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def served(start: StartWorker, *args: str) -> Any:
    return start(*args, target="virtual_served")


# -- the same program in process and in workers ----------------------------------------------


async def run_local(agent: Agent, tool: str, **kwargs: Any) -> list[Any]:
    await agent.put(Turn(tool, kwargs=kwargs))
    return [value async for _turn, value in agent.run()]


async def program_in_process() -> dict[str, list[str]]:
    coordinator = build()
    await run_local(coordinator, "note", text="root")
    for key, text in (("u1", "a"), ("u2", "c"), ("u1", "b")):
        assert await run_local(coordinator, "spawn", key=key, text=text) == [f"helper-{key}"]
    assert await run_local(coordinator, "fork", name="copy", text="x") == ["copy"]
    results: dict[str, list[str]] = {}
    for name in ("helper-u1", "helper-u2", "copy"):
        agent = AgentRegistry.get(name)
        await run_local(agent, "note", text="last")  # runs the turns sent to it, then this
        (results[name],) = await run_local(agent, "notes")
    return results


async def test_agents_made_by_a_tool_behave_the_same_in_process_and_in_workers(
    start: StartWorker, client: Client
) -> None:
    expected = await program_in_process()
    assert expected == {
        "helper-u1": ["a", "b", "last"],
        "helper-u2": ["c", "last"],
        "copy": ["root", "x", "last"],
    }
    AgentRegistry.clear()
    served(start)
    served(start)
    await client.call(COORDINATOR, "note", kwargs={"text": "root"})
    for key, text in (("u1", "a"), ("u2", "c"), ("u1", "b")):
        assert await client.call(COORDINATOR, "spawn", kwargs={"key": key, "text": text}) == (
            f"helper-{key}"
        )
    assert await client.call(COORDINATOR, "fork", kwargs={"name": "copy", "text": "x"}) == "copy"
    got: dict[str, list[str]] = {}
    for name, sent in (("helper-u1", 2), ("helper-u2", 1), ("copy", 2)):
        # The notes the coordinator sent are relayed after its commits: wait for them.
        await eventually(
            lambda n=name, s=sent: _has(client, n, s), f"{name} to get its {sent} note(s)"
        )
        await client.call(name, "note", kwargs={"text": "last"})
        got[name] = await client.call(name, "notes")
    assert got == expected
    # The agents made at runtime are in the directory: any worker or client reaches them.
    assert {"helper-u1", "helper-u2", "copy"} <= set(await client.agents())


async def _has(client: Client, agent: str, count: int) -> bool:
    try:
        return len(await client.call(agent, "notes")) >= count
    except UnknownAgentError:
        return False  # not defined yet (its creator's commit is on its way)


# -- instances of a kind ---------------------------------------------------------------------


async def test_a_thousand_instances_each_keep_their_own_context(
    start: StartWorker, client: Client
) -> None:
    served(start)
    names = [f"{KIND}/user-{i}" for i in range(1000)]
    await client.send_batch([(n, "note", {"text": f"fact {i}"}) for i, n in enumerate(names)])
    results = await asyncio.gather(*(client.call(n, "notes") for n in names))
    assert results == [["hello", f"fact {i}"] for i in range(len(names))]


async def test_a_kind_nobody_declared_is_refused(start: StartWorker, client: Client) -> None:
    served(start)
    with pytest.raises(UnknownAgentError, match="nobody/u1"):
        await client.call("nobody/u1", "notes")


async def test_workers_keep_a_bounded_active_set_and_instances_come_back_with_their_context(
    start: StartWorker, client: Client
) -> None:
    worker = served(start, "--max-active-agents", "20")
    names = [f"{KIND}/k{i}" for i in range(200)]
    await client.send_batch([(n, "note", {"text": n}) for n in names])
    first = await asyncio.gather(*(client.call(n, "notes") for n in names))
    assert first == [["hello", n] for n in names]

    async def active() -> int | None:
        info = await _control.workers(client.transport)
        count = int(_wire_unpack(info[worker.worker_id])["active_agents"])
        return count if count <= 20 else None

    await client.call(COORDINATOR, "notes")  # a signal: the worker trims its active set
    assert await eventually(active, "the active set to shrink to 20") <= 20
    # Let go of, then built again: their context comes back from Redis.
    await client.send_batch([(n, "note", {"text": "again"}) for n in names])
    again = await asyncio.gather(*(client.call(n, "notes") for n in names))
    assert again == [["hello", n, "again"] for n in names]


def _wire_unpack(blob: bytes) -> dict[str, Any]:
    from pygents_dist import _wire

    got: dict[str, Any] = _wire.unpack(blob)
    return got


async def test_two_workers_racing_for_instances_run_each_turn_once_in_order(
    start: StartWorker, client: Client
) -> None:
    served(start)
    served(start)
    names = [f"{KIND}/race-{i}" for i in range(50)]
    sends = [(n, "note", {"text": f"n{j}"}) for j in range(5) for n in names]
    await client.send_batch(sends)
    results = await asyncio.gather(*(client.call(n, "notes") for n in names))
    assert results == [["hello", "n0", "n1", "n2", "n3", "n4"]] * len(names)


async def test_an_instance_whose_worker_is_killed_after_activating_it_goes_on_elsewhere(
    start: StartWorker, client: Client, raw_redis: aioredis.Redis
) -> None:
    first = served(start)
    name = f"{KIND}/kill-1"
    await client.call(name, "note", kwargs={"text": "before"})
    turn_id = await client.send(name, "gate", kwargs={"seconds": 30.0}, reply=True)
    owner = client.transport.keys.owner(name)
    await eventually(lambda: raw_redis.exists(owner), "the first worker to own the instance")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    second = served(start)
    # The gate's turn is delivered again to the second worker (after the lease): cancel it
    # there rather than wait 30 s, and check the instance goes on with its context.
    await client.cancel(name, turn_id)
    got = await asyncio.wait_for(client.call(name, "where"), 30)
    assert got == {"notes": ["hello", "before"], "pid": second.pid}


async def test_forget_deletes_an_instance_and_it_starts_afresh(
    start: StartWorker, client: Client, raw_redis: aioredis.Redis
) -> None:
    served(start)
    name = f"{KIND}/gone"
    await client.call(name, "note", kwargs={"text": "secret"})
    keys = client.transport.keys.for_agent(name)
    assert await raw_redis.exists(keys.state)

    async def forgotten() -> bool:
        return await client.forget(name)  # False while the worker still lingers on it

    await eventually(forgotten, "the instance to be forgotten")
    assert await raw_redis.exists(keys.turns, keys.state, keys.done, keys.outbox) == 0
    assert await client.call(name, "notes") == ["hello"]
    with pytest.raises(ValueError, match="declared by the workers' module"):
        await client.forget(KIND)


async def test_a_non_python_sender_reaches_an_instance_through_the_send_function(
    start: StartWorker, client: Client, raw_redis: aioredis.Redis
) -> None:
    served(start)
    name = f"{KIND}/from-fcall"
    keys = client.transport.keys
    turn_id = new_turn_id()
    envelope = encode_turn(
        turn_id=turn_id, agent=name, tool="note", args=[], kwargs={"text": "hi"}, timeout=30
    )
    layout = [keys.turns(name), keys.owner(name), keys.ready, keys.directory]
    redis: Any = raw_redis  # execute_command is untyped
    await redis.execute_command("FCALL", "pyg1_send", 4, *layout, name, turn_id, envelope, "")
    await eventually(lambda: _has(client, name, 2), "the note sent by FCALL to run")
    assert await client.call(name, "notes") == ["hello", "hi"]
    nobody = "nobody/x"
    with pytest.raises(Exception, match="UNKNOWNAGENT"):
        await redis.execute_command(
            "FCALL", "pyg1_send", 4, keys.turns(nobody), keys.owner(nobody), keys.ready,
            keys.directory, nobody, turn_id, envelope, "",
        )  # fmt: skip


async def test_an_idle_instance_keeps_its_context_but_not_its_empty_stream(
    start: StartWorker, client: Client, raw_redis: aioredis.Redis
) -> None:
    served(start)
    name = f"{KIND}/idle"
    await client.call(name, "note", kwargs={"text": "kept"})
    keys = client.transport.keys.for_agent(name)

    async def stream_gone() -> bool:
        return await raw_redis.exists(keys.turns, keys.owner) == 0

    await eventually(stream_gone, "the let-go instance's empty stream to be deleted")
    assert await raw_redis.exists(keys.state) == 1
    assert await client.call(name, "notes") == ["hello", "kept"]  # a new stream, and group
