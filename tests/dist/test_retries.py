"""Retries in workers: attempts and backoff observed, the caller sees the final outcome only,
the agent's later turns wait, exhausted attempts are dead-lettered and replayable."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from pygents_dist import Client, RemoteError, _dead_letters
from tests.dist.conftest import StartWorker
from tests.dist.helpers import dead_letters, eventually


async def log(store: aioredis.Redis, key: str) -> list[tuple[str, int, float]]:
    out = []
    for row in await store.lrange(key, 0, -1):
        tag, pid, at = row.split()
        out.append((tag, int(pid), float(at)))
    return out


async def test_a_failing_tool_is_retried_with_its_backoff_and_keeps_its_place(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key
) -> None:
    start(target="flow_app")
    start(target="flow_app")
    call = asyncio.create_task(client.call("retrier", "flaky", kwargs={"key": "k", "fails": 2}))
    await eventually(lambda: store.exists(app_key("attempts:k")), "the first attempt")
    await client.send("retrier", "record", kwargs={"tag": "later"})  # waits for the retry
    assert await asyncio.wait_for(call, 20) == 3  # the caller sees the outcome only
    rows = await log(store, app_key("log"))
    assert [tag for tag, _pid, _at in rows[:3]] == ["attempt:k:1", "attempt:k:2", "attempt:k:3"]
    gaps = [rows[i + 1][2] - rows[i][2] for i in range(2)]
    assert all(0.29 <= gap < 1.5 for gap in gaps), gaps  # Backoff.fixed(0.3), plus lateness
    await eventually(lambda: _tags(store, app_key("log"), 4), "the later turn")
    assert [tag for tag, _pid, _at in await log(store, app_key("log"))][3] == "later"
    assert await dead_letters(client) == {}


async def _tags(store: aioredis.Redis, key: str, n: int) -> bool:
    return await store.llen(key) >= n


async def test_exhausted_attempts_are_dead_lettered_and_replayable(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key
) -> None:
    start(target="flow_app")
    with pytest.raises(RemoteError, match="attempt 3 fails"):
        await asyncio.wait_for(client.call("retrier", "doomed", kwargs={"key": "d"}), 20)
    assert await store.get(app_key("attempts:d")) == "3"
    letters = await eventually(lambda: dead_letters(client), "the dead letter")
    [letter] = letters.values()
    assert letter["reason"] == "retries_exhausted"
    assert "3 attempts failed" in letter["detail"] and "attempt 3 fails" in letter["detail"]
    entries = await _dead_letters.dead_letters(client.transport, 10)
    await _dead_letters.requeue_dead(
        client.transport,
        [(e, "retrier", f[b"id"].decode(), f[b"m"], f.get(b"s", b"")) for e, f in entries],
    )
    await eventually(
        lambda: _at_least(store, app_key("attempts:d"), 6), "three more attempts on replay"
    )


async def _at_least(store: aioredis.Redis, key: str, n: int) -> bool:
    return int(await store.get(key) or 0) >= n


async def test_an_error_not_covered_is_not_retried(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key
) -> None:
    start(target="flow_app")
    with pytest.raises(RemoteError, match="KeyError"):
        await asyncio.wait_for(client.call("retrier", "wrong_type", kwargs={"key": "w"}), 20)
    assert await store.get(app_key("attempts:w")) == "1"
    assert await dead_letters(client) == {}


async def test_a_worker_killed_during_the_backoff_loses_nothing(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key
) -> None:
    first = start(target="flow_app")
    call = asyncio.create_task(
        client.call("retrier", "slow_flaky", kwargs={"key": "s", "fails": 1})
    )
    await eventually(lambda: store.exists(app_key("attempts:s")), "the first attempt")
    await asyncio.sleep(0.3)  # the hold is written before the lease goes
    first.kill()  # SIGKILL during the two-second backoff
    second = start(target="flow_app")
    assert await asyncio.wait_for(call, 30) == 2
    rows = await log(store, app_key("log"))
    assert [(tag, pid) for tag, pid, _at in rows] == [
        ("attempt:s:1", first.pid),
        ("attempt:s:2", second.pid),
    ]
    assert rows[1][2] - rows[0][2] >= 1.95  # the backoff was kept


async def test_a_failed_attempt_commits_nothing(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key
) -> None:
    start(target="flow_app")
    assert await client.call("retrier", "sends_then_fails", kwargs={"key": "f"}) == 2
    await eventually(lambda: _tags(store, app_key("log"), 3), "the follow-up")
    await asyncio.sleep(0.3)
    tags = [tag for tag, _pid, _at in await log(store, app_key("log"))]
    assert tags == ["attempt:f:1", "attempt:f:2", "fu:f:2"]  # no follow-up of attempt 1


async def test_a_tool_puts_a_turn_for_later(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key
) -> None:
    start(target="flow_app")
    started = time.time()
    turn_id = await client.call("retrier", "remind_later", kwargs={"tag": "hi", "delay_s": 0.4})
    assert turn_id
    await eventually(lambda: _tags(store, app_key("log"), 1), "the delayed turn")
    [(tag, _pid, at)] = await log(store, app_key("log"))
    assert tag == "hi" and at - started >= 0.4
    await asyncio.sleep(0.3)
    assert await store.llen(app_key("log")) == 1
