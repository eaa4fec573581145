"""Bounded memory: after a long run, Redis memory and key count return to their baseline (no
stream, reply, lock or consumer garbage) and worker RSS stays flat.

The load is ``echo`` turns sent in bulk to eight agents, with a share of calls (reply
streams) and ``lock=True`` calls mixed in. Committed turn ids are kept for the dedup window
(here 2 s) and reply streams for the reply TTL (an hour): the test checks that each reply
stream has a TTL, then deletes them, and waits out the dedup window, before comparing with
the baseline. The ready-signal stream is a capped log; its growth is reported.

The normal suite runs 20k turns; the full load test (200k turns) is the soak variant::

    .venv/bin/python -m pytest tests/faults --soak -q
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pygents_dist import Client
from pygents_dist._keys import Keys
from pygents_dist.testing import RedisServer, WorkerPool
from tests.faults._support import (
    APPS,
    chain_agents,
    namespace_keys,
    raw_redis,
    report,
    rss_bytes,
    stream_state,
    wait_for,
)

AGENTS = 8
CHUNK = 1000
REPLY_TTL_MS = 3_600_000


@pytest.mark.parametrize(
    "turns",
    [pytest.param(20_000, id="20k"), pytest.param(60_000, id="60k"), pytest.param(200_000, id="200k", marks=pytest.mark.soak)],
)
async def test_memory_returns_to_baseline_after_a_long_run(
    turns: int,
    private_redis: RedisServer,
    worker_factory: WorkerPool,
    key_prefix: str,
    tmp_path: Path,
) -> None:
    url = private_redis.url
    env = {"FAULT_AGENTS": str(AGENTS), "FAULT_HOLDER": str(tmp_path / "holder")}
    args = ("--lease-ms", "1000", "--log-level", "ERROR", "--dedup-window-ms", "2000")
    workers = [
        worker_factory("faultapp", redis_url=url, args=args, pythonpath=[APPS], env=env)
        for _ in range(2)
    ]
    keys = Keys(key_prefix)
    agents = chain_agents(AGENTS)
    async with Client(url) as client, raw_redis(url) as r:

        async def settled() -> bool:
            """Every stream drained and no committed-turn ids left (dedup window over)."""
            for agent in agents:
                if await stream_state(r, keys, agent) != (0, 0):
                    return False
            return not [k for k in await namespace_keys(r, key_prefix) if k.endswith(b":done")]

        async def used_memory() -> int:
            stats = await r.memory_stats()
            print({k: v for k, v in stats.items() if isinstance(v, int)})
            return int((await r.info("memory"))["used_memory"])

        # Warm up: every agent has served turns, so its stream, group and state exist.
        for agent in agents:
            assert await client.call(agent, "echo", kwargs={"value": 0}) == 0
        await wait_for(settled, 30, "the warm-up to settle")
        base_keys = set(await namespace_keys(r, key_prefix))
        base_usage = {k: await r.memory_usage(k, samples=0) for k in base_keys}
        base_memory = await used_memory()
        base_ready = await r.xlen(keys.ready)

        began = time.monotonic()
        calls = locks = 0
        rss: list[list[int]] = []
        peak = base_memory
        for n, start in enumerate(range(0, turns, CHUNK)):
            agent = agents[n % AGENTS]
            await client.send_many(agent, "echo", [{"value": i} for i in range(start, start + CHUNK)])
            if n % 5 == 0:  # a share of calls (reply streams) and locked calls
                assert await client.call(agent, "echo", kwargs={"value": n}) == n
                assert await client.call(agent, "locked", kwargs={"key": str(n), "hold_ms": 0})
                calls, locks = calls + 1, locks + 1
            if n % max(1, turns // CHUNK // 10) == 0:
                rss.append([rss_bytes(w.pid) for w in workers])
                peak = max(peak, await used_memory())
        await wait_for(settled, 60 + turns / 1000, "every turn to be committed")
        elapsed = time.monotonic() - began
        rss.append([rss_bytes(w.pid) for w in workers])

        left = set(await namespace_keys(r, key_prefix)) - base_keys
        replies = [k for k in left if b":reply:" in k]
        assert set(left) == set(replies), f"keys left behind: {sorted(left - set(replies))[:10]}"
        assert len(replies) == 2 * calls, "one reply stream per call"
        for key in replies:
            assert 0 < await r.pttl(key) <= REPLY_TTL_MS, f"{key!r} never expires"
        assert not await r.exists(keys.lock("tool:locked")), "a lock was left behind"
        for agent in agents:
            assert len(await r.xinfo_consumers(keys.turns(agent), "workers")) <= 2
        if replies:
            await r.delete(*replies)  # what their TTL does an hour later
        ready_growth = await r.xlen(keys.ready) - base_ready
        ready_bytes = await r.memory_usage(keys.ready) or 0
        end_memory = await used_memory()
        for k in base_keys:
            u = await r.memory_usage(k, samples=0)
            if u != base_usage[k]:
                print("USAGE", k, base_usage[k], u)
        end_keys = len(await namespace_keys(r, key_prefix))

    # RSS after the first tenth of the run (warm) against the end.
    growth = [end - warm for warm, end in zip(rss[1], rss[-1], strict=True)]
    report(
        f"memory[{turns}]",
        turns=turns + calls + locks + AGENTS,
        turns_per_s=round(turns / elapsed),
        redis_keys_before=len(base_keys),
        redis_keys_after=end_keys,
        redis_memory_before=base_memory,
        redis_memory_peak=peak,
        redis_memory_after=end_memory,
        ready_signals_added=ready_growth,
        ready_stream_bytes=ready_bytes,
        worker_rss_mb=[round(b / 2**20, 1) for b in rss[-1]],
        worker_rss_growth_kb=[g // 1024 for g in growth],
    )
    assert end_keys == len(base_keys)
    assert end_memory - base_memory < 512 * 1024, "Redis memory did not return to its baseline"
    for worker, grew in zip(workers, growth, strict=True):
        assert grew < 8 * 2**20, f"worker {worker.pid} RSS grew by {grew / 2**20:.1f} MiB"
