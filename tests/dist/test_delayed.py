"""Delayed turns across real workers: due order, lateness, cancel, exactly once."""

from __future__ import annotations

import asyncio
import datetime
import time

import pytest
import redis.asyncio as aioredis

from pygents_dist import Client
from tests.dist.conftest import StartWorker
from tests.dist.helpers import eventually


async def logged(store: aioredis.Redis, key: str) -> list[tuple[str, int, float]]:
    rows = await store.lrange(key, 0, -1)
    out = []
    for row in rows:
        tag, pid, at = row.split()
        out.append((tag, int(pid), float(at)))
    return out


async def test_delayed_turns_run_in_due_order_and_once(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key
) -> None:
    start(target="flow_app")
    start(target="flow_app")
    sent: dict[str, float] = {}
    t0 = time.time()
    # Sent in reverse order of due time: they must run by due time.
    for i in reversed(range(10)):
        await client.send("clock", "record", kwargs={"tag": f"t{i}"}, delay_s=0.3 + i * 0.1)
        sent[f"t{i}"] = t0 + 0.3 + i * 0.1
    rows = await eventually(
        lambda: _at_least(store, app_key("log"), 10), "ten delayed turns", timeout=20
    )
    assert [tag for tag, _pid, _at in rows] == [f"t{i}" for i in range(10)]
    for tag, _pid, at in rows:
        assert at >= sent[tag] - 0.05, (tag, at - sent[tag])  # never early (clock slack)
    await asyncio.sleep(0.3)
    assert len(await store.lrange(app_key("log"), 0, -1)) == 10  # once each


async def _at_least(store: aioredis.Redis, key: str, n: int) -> list[tuple[str, int, float]] | None:
    rows = await logged(store, key)
    return rows if len(rows) >= n else None


async def test_cancel_a_delayed_turn(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key
) -> None:
    start(target="flow_app")
    keep = await client.send("clock", "record", kwargs={"tag": "keep"}, delay_s=0.5)
    drop = await client.send("clock", "record", kwargs={"tag": "drop"}, delay_s=0.4)
    assert await client.cancel_delayed("clock", drop)
    assert not await client.cancel_delayed("clock", drop)  # once
    assert await client.call("clock", "record", kwargs={"tag": "after"}, delay_s=0.6) == "after"
    rows = await logged(store, app_key("log"))
    assert [tag for tag, _pid, _at in rows] == ["keep", "after"]
    assert not await client.cancel_delayed("clock", keep)  # already moved


async def test_at_and_bad_input(client: Client, start: StartWorker) -> None:
    start(target="flow_app")
    at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=0.3)
    assert await client.call("clock", "record", kwargs={"tag": "at"}, at=at) == "at"
    with pytest.raises(ValueError, match="time zone"):
        await client.send("clock", "record", kwargs={"tag": "x"}, at=datetime.datetime.now())
    with pytest.raises(ValueError, match="delay_s"):
        await client.send("clock", "record", kwargs={"tag": "x"}, delay_s=-1)
    with pytest.raises(ValueError, match="not both"):
        await client.send("clock", "record", kwargs={"tag": "x"}, delay_s=1, at=at)
