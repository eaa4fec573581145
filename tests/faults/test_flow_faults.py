"""Flow control under faults: delayed turns through a worker SIGKILL and an AOF Redis restart,
their lateness, and 100k delayed turns leaving Redis's memory where it was.

Delayed turns must all reach their agent (none lost), in due order, never early; the tool
side effect is at-least-once as for any turn (a turn running when Redis died may run again),
so order is checked on first runs.

Soak: ``.venv/bin/python -m pytest tests/faults --soak -q``
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import pytest

from pygents_dist import Client
from pygents_dist.testing import RedisServer, WorkerPool
from tests.faults._support import raw_redis, report, wait_for

DIST_APPS = Path(__file__).parent.parent / "dist" / "apps"


def _start(pool: WorkerPool, url: str, namespace: str) -> None:
    pool(
        "flow_app",
        redis_url=url,
        args=("--namespace", namespace, "--lease-ms", "1000", "--log-level", "ERROR"),
        pythonpath=[DIST_APPS],
        env={"PYGENTS_REDIS_URL": url, "PYGENTS_KEY_PREFIX": namespace},
    )


def _rows(raw: list[bytes]) -> list[tuple[str, float]]:
    out = []
    for row in raw:
        tag, _pid, at = row.decode().split()
        out.append((tag, float(at)))
    return out


@pytest.mark.parametrize("private_redis", [{"appendonly": True}], indirect=True)
async def test_delayed_turns_survive_a_worker_kill_and_an_aof_restart(
    private_redis: RedisServer, key_prefix: str
) -> None:
    url, count = private_redis.url, 40
    log_key = f"{key_prefix}:app:log"
    with WorkerPool(url) as pool:
        _start(pool, url, key_prefix)
        _start(pool, url, key_prefix)
        due: dict[str, float] = {}
        async with Client(url, namespace=key_prefix) as client:
            t0 = time.time()
            for i in range(count):
                tag = f"d{i:02d}"
                due[tag] = t0 + 0.5 + i * 0.1
                await client.send("clock", "record", kwargs={"tag": tag}, at=due[tag])
        await asyncio.sleep(1.0)
        pool.workers[0].kill()  # SIGKILL while turns come due
        await asyncio.sleep(0.8)
        private_redis.kill()  # and Redis too, restarted from its AOF
        await asyncio.sleep(0.3)
        private_redis.start()
        async with raw_redis(url) as r:

            async def all_ran() -> list[tuple[str, float]] | None:
                rows = _rows(await r.lrange(log_key, 0, -1))
                return rows if {tag for tag, _ in rows} >= set(due) else None

            rows = await wait_for(all_ran, 30, "every delayed turn to run")
            left = await r.zcard(f"{key_prefix}:pyg1:{{clock}}:timers")
    first: dict[str, float] = {}
    for tag, at in rows:
        first.setdefault(tag, at)
    assert list(first) == sorted(due), "first runs out of due order"
    assert all(first[t] >= due[t] - 0.05 for t in due), "a delayed turn ran early"
    assert left == 0
    late_ms = sorted((first[t] - due[t]) * 1000 for t in due)
    report(
        "delayed_turns_worker_kill_aof_restart",
        turns=count,
        runs=len(rows),
        late_p50_ms=round(statistics.median(late_ms), 1),
        late_max_ms=round(late_ms[-1], 1),
    )


async def test_delayed_turn_lateness(redis_server: RedisServer, key_prefix: str) -> None:
    """Turns due every 10 ms over two seconds across two workers: p50/p99 lateness."""
    url, count = redis_server.url, 200
    log_key = f"{key_prefix}:app:log"
    with WorkerPool(url) as pool:
        _start(pool, url, key_prefix)
        _start(pool, url, key_prefix)
        due: dict[str, float] = {}
        async with Client(url, namespace=key_prefix) as client:
            t0 = time.time() + 0.5
            for i in range(count):
                tag = f"l{i:03d}"
                due[tag] = t0 + i * 0.01
                await client.send(f"clock{i % 4}", "record", kwargs={"tag": tag}, at=due[tag])
        async with raw_redis(url) as r:

            async def all_ran() -> list[tuple[str, float]] | None:
                rows = _rows(await r.lrange(log_key, 0, -1))
                return rows if len(rows) >= count else None

            rows = await wait_for(all_ran, 30, "every delayed turn to run")
    late_ms = sorted((at - due[tag]) * 1000 for tag, at in rows)
    assert len(rows) == count
    assert late_ms[0] >= -50  # never early (clock slack between processes)
    p50, p99 = statistics.median(late_ms), late_ms[int(len(late_ms) * 0.99) - 1]
    report("delayed_turn_lateness", turns=count, p50_ms=round(p50, 1), p99_ms=round(p99, 1))
    assert p99 < 1000


@pytest.mark.parametrize("private_redis", [{}], indirect=True)
async def test_100k_delayed_turns_leave_memory_at_baseline(
    private_redis: RedisServer, key_prefix: str
) -> None:
    """100,000 delayed turns stored, due at once and moved: the timers and payloads are
    gone (the turns sit in streams, which are then dropped here) and Redis's used memory
    comes back to within 1 MB of where it was."""
    url, count = private_redis.url, 100_000
    async with raw_redis(url) as r, Client(url, namespace=key_prefix) as client:
        from pygents_dist import _timers

        transport = client.transport
        baseline = (await r.info("memory"))["used_memory"]
        data = b"x" * 200
        started = time.perf_counter()
        for batch in range(0, count, 1000):
            agent = f"m{batch // 1000}"
            turns = [(f"t{i}", "+0", data, b"") for i in range(batch, batch + 1000)]
            await _timers.delay_turns(transport, agent, turns)
        stored = time.perf_counter() - started
        peak = (await r.info("memory"))["used_memory"]
        started = time.perf_counter()
        moved = 0
        while True:
            agents = await _timers.due_agents(transport, 1 << 62, 100)
            if not agents:
                break
            moved += await _timers.move_due(transport, agents)
        move_s = time.perf_counter() - started
        assert moved == count
        for batch in range(0, count, 1000):
            await r.delete(transport.keys.turns(f"m{batch // 1000}"))
        await r.delete(transport.keys.ready)
        left = [k async for k in r.scan_iter(match=f"{key_prefix}:*", count=1000)]
        after = (await r.info("memory"))["used_memory"]
    assert left == []  # no timer, payload or index entry is left behind
    report(
        "delayed_100k_memory",
        baseline_mb=round(baseline / 1e6, 2),
        peak_mb=round(peak / 1e6, 2),
        after_mb=round(after / 1e6, 2),
        store_per_s=round(count / stored),
        moved_per_s=round(count / move_s),
    )
    assert after - baseline < 1_000_000
