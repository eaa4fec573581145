"""Schedules across real workers: each tick fires exactly once while workers are killed and
restarted, missed-tick policies, and adding, listing, pausing, resuming and removing from the
client."""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import signal
import time

import pytest
import redis.asyncio as aioredis

from pygents import Missed, Schedule
from pygents_dist import Client, UnknownAgentError
from tests.dist.conftest import StartWorker
from tests.dist.helpers import eventually, start_together


async def fired_ticks(client: Client, store: aioredis.Redis, agent: str, name: str) -> list[int]:
    """The ticks (Unix ms) of the schedule's turns the agent committed."""
    ids = await store.zrange(client.transport.keys.done(agent), 0, -1)
    prefix = f"sched.{name}."
    return sorted(int(i.removeprefix(prefix)) for i in ids if i.startswith(prefix))


async def run_with_churn(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key, seconds: float
) -> None:
    workers = await start_together(functools.partial(start, target="sched_app"), [], [], [])
    deadline = time.monotonic() + seconds
    kills = 0
    victim = 0
    while time.monotonic() < deadline - 2:
        await asyncio.sleep(1.3)
        worker = workers[victim % len(workers)]
        if kills % 2 == 0:
            os.kill(worker.pid, signal.SIGKILL)  # dies wherever it is, mid-tick perhaps
        else:
            os.kill(worker.pid, signal.SIGTERM)
        kills += 1
        workers[victim % len(workers)] = start(target="sched_app")
        victim += 1
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    for worker in workers:
        worker.kill()
    ticks = await fired_ticks(client, store, "ticker", "beat")
    beats = await store.llen(app_key("beats"))
    assert len(ticks) >= seconds - 3, ticks
    steps = {b - a for a, b in itertools.pairwise(ticks)}
    assert steps == {1000}, steps  # every tick once: none lost, none twice
    # A beat whose worker was killed before its commit runs again (tool effects are
    # at-least-once, as for any turn); the tick itself fired once.
    assert len(ticks) <= beats <= len(ticks) + kills


async def test_a_schedule_fires_each_tick_once_while_workers_die(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key
) -> None:
    await run_with_churn(start, client, store, app_key, 8.0)


@pytest.mark.soak
async def test_a_schedule_fires_each_tick_once_for_20s_of_churn(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key
) -> None:
    await run_with_churn(start, client, store, app_key, 20.0)


async def test_add_list_pause_resume_remove(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key
) -> None:
    start(target="flow_app")
    info = await client.add_schedule(
        "clock", "fast", "record", Schedule.every(0.2), kwargs={"tag": "fast"}
    )
    assert (info.agent, info.name, info.schedule, info.tool) == (
        "clock",
        "fast",
        "every 0.2s",
        "record",
    )
    assert info.next_due is not None and not info.paused
    await eventually(lambda: _count(store, app_key("log"), "fast", 2), "two ticks")
    assert await client.pause_schedule("clock", "fast")
    [paused] = await client.schedules("clock")
    assert paused.paused and paused.next_due is None
    await asyncio.sleep(0.3)  # a tick being fired as it paused may still land
    before = await _tags(store, app_key("log"), "fast")
    await asyncio.sleep(0.6)
    assert await _tags(store, app_key("log"), "fast") == before
    assert await client.resume_schedule("clock", "fast")
    await eventually(lambda: _count(store, app_key("log"), "fast", before + 2), "resumed")
    assert await client.remove_schedule("clock", "fast")
    assert not await client.remove_schedule("clock", "fast")
    assert await client.schedules() == []
    assert not await client.pause_schedule("clock", "fast")


async def _tags(store: aioredis.Redis, key: str, tag: str) -> int:
    return sum(1 for row in await store.lrange(key, 0, -1) if row.split()[0] == tag)


async def _count(store: aioredis.Redis, key: str, tag: str, n: int) -> bool:
    return await _tags(store, key, tag) >= n


async def test_bad_schedules_are_refused_naming_the_field(
    start: StartWorker, client: Client
) -> None:
    start(target="flow_app")
    with pytest.raises(ValueError, match="minute"):
        await client.add_schedule("clock", "bad", "record", "61 * * * *")
    with pytest.raises(ValueError, match="seconds"):
        await client.add_schedule("clock", "bad", "record", "every -1s")
    with pytest.raises(ValueError, match="no tool 'nope'"):
        await client.add_schedule("clock", "bad", "nope", "every 1s")
    with pytest.raises(ValueError, match="schedule name"):
        await client.add_schedule("clock", "with space", "record", "every 1s")
    with pytest.raises(UnknownAgentError):
        await client.add_schedule("ghost", "bad", "record", "every 1s")
    assert await client.schedules() == []


async def test_ticks_missed_while_no_worker_ran_follow_the_policy(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key
) -> None:
    worker = start(target="flow_app")
    await client.add_schedule(
        "clock", "skip", "record", Schedule.every(1, missed=Missed.SKIP), kwargs={"tag": "skip"}
    )
    await client.add_schedule(
        "clock", "once", "record", "every 1s", kwargs={"tag": "once"}, missed="run_once"
    )
    worker.stop()
    await asyncio.sleep(6.5)  # past MISSED_AFTER_MS: six ticks missed
    start(target="flow_app")
    started = time.time()
    await eventually(lambda: _count(store, app_key("log"), "skip", 1), "the next tick", 5)
    await eventually(lambda: _count(store, app_key("log"), "once", 1), "the missed run", 5)
    rows = [row.split() for row in await store.lrange(app_key("log"), 0, -1)]
    once = [float(at) for tag, _pid, at in rows if tag == "once"]
    skip = [float(at) for tag, _pid, at in rows if tag == "skip"]
    assert once[0] - started < 0.5  # the missed ticks ran once, at once
    # For skip, none of them ran: its first run is its next tick's, after the one-off.
    assert skip[0] > once[0] and len(skip) <= len(once)
