"""Agents taken, run and committed in groups: a worker that finds many agents with work at
once (here: turns queued while no worker ran) takes them in one round trip, runs their
batches inline and commits them together.

The group path must keep every promise of the one-agent path: each agent's turns run once and
in order, context and follow-ups are kept, sends are relayed, leases are given up, and a
turn that waits does not hold up the rest of its group. The heartbeat's ``grouped`` count
shows the turns really went that way; ``chained`` that groups after the first were taken in
the round trip that committed the one before (16 slots: groups of 4, so 40 agents make
chains).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pygents_dist import Client, PayloadError, UnknownAgentError
from pygents_dist._wire import unpack
from pygents_dist.testing import WorkerProcess
from tests.dist.conftest import StartWorker
from tests.dist.helpers import eventually, stream_length

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CROWD = 40
NAMES = [f"c{i}" for i in range(CROWD)]
ENV = {"CROWD": str(CROWD)}


def start_crowd(start: StartWorker) -> WorkerProcess:
    return start("--lease-ms", "3000", "--concurrency", "16", target="crowd_app", env=ENV)


async def queue_while_stopped(
    start: StartWorker, client: Client, sends: list[tuple[str, str, dict[str, Any]]]
) -> None:
    """Declare the agents with a worker, stop it, then queue ``(agent, tool, kwargs)``."""
    start_crowd(start).stop()
    for agent, tool, kwargs in sends:
        await client.send(agent, tool, kwargs=kwargs)


async def grouped(client: Client, at_least: int, stat: str = "grouped") -> int:
    async def count() -> int:
        infos = [unpack(info) for info in (await client.transport.workers()).values()]
        total = sum(int(info.get(stat, 0)) for info in infos)
        return total if total >= at_least else 0

    return await eventually(count, f"{at_least} agents taken in groups ({stat})")


async def served_in_groups(
    start: StartWorker, client: Client, sends: list[tuple[str, str, dict[str, Any]]]
) -> dict[str, dict[str, list[int]]]:
    """Queue ``sends`` while no worker runs, start one, wait until most agents went through
    groups and every agent is drained and let go; then each agent's ``report``."""
    await queue_while_stopped(start, client, sends)
    start_crowd(start)
    await grouped(client, CROWD // 2)
    await eventually(lambda: drained(client, NAMES), "every agent drained and let go")
    return {a: await client.call(a, "report", kwargs={"agent": a}) for a in NAMES}


async def drained(client: Client, names: list[str]) -> bool:
    owners = [client.transport.keys.owner(n) for n in names]
    if await client.transport.redis.exists(*owners):
        return False
    return all([await stream_length(client, n) == 0 for n in names])


async def test_agents_taken_together_run_their_turns_in_order_and_keep_their_context(
    start: StartWorker, client: Client
) -> None:
    sends = [(a, "tally", {"agent": a, "i": i}) for i in range(4) for a in NAMES]
    reports = await served_in_groups(start, client, sends)
    # Plain batches free their slots at commit: the groups after the first two were chained.
    assert await grouped(client, CROWD // 2, "chained")
    for agent in NAMES:
        assert reports[agent] == {"seen": [0, 1, 2, 3], "queue": [0, 1, 2, 3]}, agent


async def test_follow_ups_and_sends_from_a_group_are_delivered(
    start: StartWorker, client: Client
) -> None:
    ring = {a: NAMES[(i + 1) % CROWD] for i, a in enumerate(NAMES)}
    sends = [(a, "hop", {"agent": a, "target": ring[a], "i": 7}) for a in NAMES]
    reports = await served_in_groups(start, client, sends)
    for agent in NAMES:
        # its own follow-up, and the send of the agent before it in the ring
        assert reports[agent]["seen"] == [7, 7], agent
    assert await client.transport.redis.xlen(client.transport.keys.outbox(NAMES[0])) == 0


async def test_a_turn_that_waits_does_not_hold_up_its_group(
    start: StartWorker, client: Client, app_key: Callable[[str], str]
) -> None:
    sends = [(a, "tally", {"agent": a, "i": 1}) for a in NAMES[1:]]
    await queue_while_stopped(start, client, sends)
    waiting = await client.send(NAMES[0], "gate", kwargs={"name": "g"}, reply=True)
    start_crowd(start)
    await eventually(lambda: drained(client, NAMES[1:]), "the rest of the group committed")
    assert await client.transport.redis.exists(client.transport.keys.owner(NAMES[0]))
    await client.transport.redis.rpush(app_key("gate:g"), 1)
    assert await _ended(client, NAMES[0], waiting)
    await eventually(lambda: drained(client, NAMES), "the waiting agent let go too")


async def test_a_send_to_an_owned_agent_writes_no_signal(
    start: StartWorker, client: Client, app_key: Callable[[str], str]
) -> None:
    start_crowd(start)
    agent = NAMES[0]
    first = await client.send(agent, "gate", kwargs={"name": "s"}, reply=True)
    owner = client.transport.keys.owner(agent)
    await eventually(lambda: client.transport.redis.exists(owner), "the agent owned")
    ready = client.transport.keys.ready
    signals = await client.transport.redis.xlen(ready)
    later = [
        await client.send(agent, "tally", kwargs={"agent": agent, "i": i}, reply=True)
        for i in range(3)
    ]
    assert await client.transport.redis.xlen(ready) == signals  # the owner reads them itself
    await client.transport.redis.rpush(app_key("gate:s"), 1)
    for turn_id in (first, *later):
        assert await _ended(client, agent, turn_id)
    assert (await client.call(agent, "report", kwargs={"agent": agent}))["seen"] == [0, 1, 2]


async def _ended(client: Client, agent: str, turn_id: str) -> bool:
    key = client.transport.keys.reply(agent, turn_id)

    async def end() -> bool:
        entries = await client.transport.redis.xrange(key)
        return any(fields.get(b"k") == b"e" for _id, fields in entries)

    return await eventually(end, f"turn {turn_id} to end")


async def test_send_batch_reaches_every_agent_and_refuses_bad_input_first(
    start: StartWorker, client: Client
) -> None:
    start_crowd(start)
    with pytest.raises(UnknownAgentError):
        await client.send_batch([(NAMES[0], "tally", {"agent": NAMES[0], "i": 0}), ("x", "t", {})])
    with pytest.raises(PayloadError, match="kwargs"):
        await client.send_batch([(NAMES[1], "tally", {"agent": NAMES[1], "i": object()})])
    # nothing of either batch was sent
    assert [await stream_length(client, a) for a in NAMES[:2]] == [0, 0]
    ids = await client.send_batch(
        [(a, "tally", {"agent": a, "i": i}) for a in NAMES for i in (1, 2)]
    )
    assert len(set(ids)) == 2 * CROWD
    await eventually(lambda: drained(client, NAMES), "every agent drained and let go")
    for agent in NAMES:
        got = await client.call(agent, "report", kwargs={"agent": agent})
        assert got["seen"] == [1, 2], agent


async def test_a_fan_out_writes_one_signal_naming_every_agent_it_wakes(
    start: StartWorker, client: Client
) -> None:
    queued = NAMES[:5]
    start_crowd(start).stop()  # declared, and nobody owns them
    ready = client.transport.keys.ready
    before = await client.transport.redis.xlen(ready)
    await client.send_batch([(a, "tally", {"agent": a, "i": 7}) for a in queued])
    newest = await client.transport.redis.xrevrange(ready, count=1)
    assert await client.transport.redis.xlen(ready) == before + 1
    assert newest[0][1][b"as"].decode().split() == queued


async def test_a_plain_signal_naming_several_agents_wakes_each_of_them(
    start: StartWorker, client: Client
) -> None:
    # A long lease makes the paced backlog scan look again only after a minute: what is
    # served sooner was woken by the signal.
    start("--lease-ms", "60000", target="crowd_app", env=ENV)
    woken = NAMES[10:13]
    redis, keys = client.transport.redis, client.transport.keys
    for agent in woken:
        turn_id, data, _sig = client._envelope(
            agent, "tally", (), {"agent": agent, "i": 5}, 30.0, False, None
        )
        await redis.xadd(keys.turns(agent), {b"id": turn_id, b"m": data})
    await redis.xadd(keys.ready, {b"as": " ".join(woken)})
    await eventually(lambda: drained(client, woken), "the signalled agents served", 10.0)
    for agent in woken:
        assert (await client.call(agent, "report", kwargs={"agent": agent}))["seen"] == [5]
