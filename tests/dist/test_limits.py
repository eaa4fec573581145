"""Rate and concurrency limits across three real workers: the observed rate never above the
limit plus the burst, and never more than N runs at once, holders SIGKILLed included."""

from __future__ import annotations

import functools
import os
import signal
import time

import redis.asyncio as aioredis

from pygents_dist import Client
from pygents_dist.testing import WorkerProcess
from tests.dist.conftest import StartWorker
from tests.dist.helpers import eventually, start_together


async def test_a_rate_limit_holds_across_three_workers(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key
) -> None:
    for i in range(3):  # each serves two of the six agents: the three share the limit
        start("--agents", f"lim{2 * i},lim{2 * i + 1}", target="flow_app")
    calls = 30  # Rate(calls=10, per_s=1, burst=2) on six agents: about 2.8 s
    await client.send_batch([(f"lim{i % 6}", "limited", {"tag": f"r{i}"}) for i in range(calls)])
    await eventually(lambda: _length(store, app_key("rate"), calls), "every call", timeout=30)
    rows = [row.split() for row in await store.lrange(app_key("rate"), 0, -1)]
    starts = sorted(float(at) for _tag, _pid, at in rows)
    assert len({pid for _tag, pid, _at in rows}) == 3  # the limit was shared
    # Over any window of w seconds: at most burst + 10 * w calls (a 10 ms slack for clocks).
    for i, t0 in enumerate(starts):
        for j in range(i, len(starts)):
            window = starts[j] - t0
            assert j - i + 1 <= 2 + 10 * (window + 0.01), (i, j, window)
    span = starts[-1] - starts[0]
    assert span >= (calls - 2) / 10 - 0.05  # and it did wait


async def _length(store: aioredis.Redis, key: str, n: int) -> bool:
    return await store.llen(key) >= n


async def test_a_concurrency_limit_holds_across_three_workers_with_holders_killed(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key
) -> None:
    served = [f"lim{2 * i},lim{2 * i + 1}" for i in range(3)]
    workers = [start("--agents", agents, target="flow_app") for agents in served]
    calls = 36  # at most two at once, 0.15 s each: about 2.7 s
    await client.send_batch(
        [(f"lim{i % 6}", "pooled", {"tag": f"c{i}", "hold_s": 0.15}) for i in range(calls)]
    )
    killed: dict[int, float] = {}  # pid: when it was killed
    restart: list[str] = []
    for _ in range(2):  # kill two holders inside the limited section, whichever come first
        live = [
            (w, agents) for w, agents in zip(workers, served, strict=True) if w.pid not in killed
        ]
        victim, agents = await eventually(
            lambda live=live: _any_inside(store, app_key("pool"), live), "a holder to kill"
        )
        os.kill(victim.pid, signal.SIGKILL)
        killed[victim.pid] = time.time()
        restart.append(agents)
    starting = functools.partial(start, target="flow_app")
    await start_together(starting, *(["--agents", agents] for agents in restart))
    await eventually(lambda: _finished(store, app_key("pool"), calls), "every call", timeout=60)
    events = []
    for row in await store.lrange(app_key("pool"), 0, -1):
        kind, tag, pid, at = row.split()
        events.append((float(at), kind, tag, int(pid)))
    open_: dict[tuple[str, int], float] = {}
    intervals: list[tuple[float, float]] = []
    for at, kind, tag, pid in sorted(events):
        if kind == "in":
            open_[(tag, pid)] = at
        else:
            intervals.append((open_.pop((tag, pid)), at))
    for (_tag, pid), at in open_.items():  # a killed holder's run ends when it is killed
        assert pid in killed, (pid, at)
        intervals.append((at, killed[pid]))
    edges = sorted([(a, 1) for a, _b in intervals] + [(b, -1) for _a, b in intervals])
    inside = peak = 0
    for _at, step in edges:
        inside += step
        peak = max(peak, inside)
    assert peak <= 2, (peak, sorted(events), killed)
    assert peak == 2  # the limit was reached, not just obeyed by accident


async def _any_inside(
    store: aioredis.Redis, key: str, live: list[tuple[WorkerProcess, str]]
) -> tuple[WorkerProcess, str] | None:
    for worker, agents in live:
        if await _inside(store, key, worker.pid) is not None:
            return worker, agents
    return None


async def _inside(store: aioredis.Redis, key: str, pid: int) -> float | None:
    rows = [row.split() for row in await store.lrange(key, 0, -1)]
    ins = {(tag, at) for kind, tag, p, at in rows if kind == "in" and int(p) == pid}
    outs = {tag for kind, tag, p, _at in rows if kind == "out" and int(p) == pid}
    for tag, at in ins:
        if tag not in outs:
            return float(at)
    return None


async def _finished(store: aioredis.Redis, key: str, n: int) -> bool:
    rows = [row.split() for row in await store.lrange(key, 0, -1)]
    return len({tag for kind, tag, _p, _at in rows if kind == "out"}) >= n
