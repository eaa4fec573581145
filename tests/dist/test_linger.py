"""Lingering (``--linger-ms``): after an agent's last turn the worker keeps its lease a moment
and reads the next turn straight from the agent's stream, in the commit's round trip.

A turn that arrives just as the agent lets go must still be served at once (its signal brings
the agent back), a paused agent must not run while it lingers, and the lease must be given up
once the agent has nothing left. The workers get a long lease so that the periodic backlog
scan (once a lease) cannot hide a turn that nobody picked up.
"""

from __future__ import annotations

import asyncio
import random

import pytest
import redis.asyncio as aioredis

from pygents_dist import Client
from tests.dist.conftest import StartWorker
from tests.dist.helpers import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LINGER = ("--linger-ms", "20", "--lease-ms", "30000")


async def test_calls_spaced_around_the_linger_time_are_each_served_at_once(
    start: StartWorker, client: Client
) -> None:
    start(*LINGER)
    rng = random.Random(20)
    for i in range(150):
        # Spacing the calls around the 20 ms linger (the load's shape, not a wait for an
        # event): some arrive while the agent lingers, some as it lets go, some after.
        await asyncio.sleep(rng.uniform(0, 0.04))
        call = client.call("alpha", "add", kwargs={"a": i, "b": 1})
        assert await asyncio.wait_for(call, 5) == i + 1


async def test_a_lingering_agent_gives_its_lease_up_when_idle(
    raw_redis: aioredis.Redis, start: StartWorker, client: Client
) -> None:
    start(*LINGER)
    owner = client.transport.keys.owner("alpha")
    redis = raw_redis
    for i in range(5):
        assert await client.call("alpha", "add", kwargs={"a": i, "b": 0}) == i

    async def released() -> bool:
        return not await redis.exists(owner)

    await eventually(released, "the lingering agent to give its lease up", timeout=5)


async def test_a_paused_agent_runs_nothing_while_it_lingers(
    start: StartWorker, client: Client
) -> None:
    start("--linger-ms", "2000", "--lease-ms", "30000")
    assert await client.call("alpha", "add", kwargs={"a": 1, "b": 1}) == 2
    await client.pause("alpha")  # the agent still lingers (2 s)
    call = asyncio.ensure_future(client.call("alpha", "add", kwargs={"a": 2, "b": 2}))
    done, _ = await asyncio.wait([call], timeout=0.5)  # a turn that ran would answer at once
    assert not done, "a paused agent ran a turn while lingering"
    await client.resume("alpha")
    assert await asyncio.wait_for(call, 5) == 4
