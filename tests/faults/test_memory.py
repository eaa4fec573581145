"""Bounded memory: after a long run, Redis memory and key count return to their baseline (no
stream, reply, lock or consumer garbage) and worker RSS stays flat.

The load is ``echo`` turns sent in bulk to eight agents, with a share of calls (reply
streams) and ``lock=True`` calls mixed in. The baseline is taken after a warm-up with a
quarter of the load. Committed turn ids are kept for the dedup window (here 2 s) and reply
streams for the reply TTL (an hour): the test checks that each reply stream has a TTL, then
deletes them, and waits out the dedup window, before comparing with the baseline. The
ready-signal stream is a capped log; its growth is reported and left out of the comparison.

The normal suite runs 20k turns; the full load test (200k turns) is the soak variant::

    .venv/bin/python -m pytest tests/faults --soak -q
"""

from __future__ import annotations

import asyncio
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
#: Redis's used memory may end this far over the baseline: internal structures sized by the
#: load's peak (measured: 100-200 KiB whatever the number of turns). A leak of two bytes a
#: turn exceeds it in the 200k-turn soak run.
SLACK = 256 * 1024


def warm_up(turns: int) -> int:
    return max(CHUNK * AGENTS, turns // 4)


@pytest.mark.parametrize(
    "turns",
    [pytest.param(20_000, id="20k"), pytest.param(200_000, id="200k", marks=pytest.mark.soak)],
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
            """Every stream drained, every lease given up (a lingering agent keeps its own a
            moment) and no committed-turn ids left (dedup window over)."""
            for agent in agents:
                if await stream_state(r, keys, agent) != (0, 0):
                    return False
            transient = (b":done", b":owner", b":owned")
            return not [k for k in await namespace_keys(r, key_prefix) if k.endswith(transient)]

        async def used_memory() -> int:
            return int((await r.info("memory"))["used_memory"])

        async def load(first: int, count: int) -> int:
            """Send ``count`` echo turns (and a call and a locked call per five thousand);
            return how many calls were made."""
            made = 0
            for n, start in enumerate(range(first, first + count, CHUNK)):
                agent = agents[n % AGENTS]
                batch = [{"value": i} for i in range(start, start + CHUNK)]
                await client.send_many(agent, "echo", batch)
                if n % 5 == 0:  # a share of calls (reply streams) and locked calls
                    assert (
                        await asyncio.wait_for(client.call(agent, "echo", kwargs={"value": n}), 60)
                        == n
                    )
                    locked = client.call(agent, "locked", kwargs={"key": str(n)})
                    assert await asyncio.wait_for(locked, 60) == str(n)
                    made += 2
                if n % max(1, count // CHUNK // 10) == 0:
                    rss.append([rss_bytes(w.pid) for w in workers])
                    samples.append(await used_memory())
            return made

        rss: list[list[int]] = []
        samples: list[int] = []
        # Warm up with a quarter of the load, so most of Redis's and the workers' one-time
        # growth (connection buffers, caches, structures sized by the peak) is in the baseline.
        warm_calls = await load(0, warm_up(turns))
        await wait_for(settled, 60, "the warm-up to settle")
        async for key in r.scan_iter(match=f"{key_prefix}:*:reply:*"):
            await r.delete(key)
        base_keys = set(await namespace_keys(r, key_prefix))
        base_memory = await used_memory()
        base_ready, base_ready_bytes = await r.xlen(keys.ready), await r.memory_usage(keys.ready)
        rss.clear()

        began = time.monotonic()
        calls = await load(10**9, turns)
        await wait_for(settled, 60 + turns / 1000, "every turn to be committed")
        elapsed = time.monotonic() - began
        rss.append([rss_bytes(w.pid) for w in workers])

        left = set(await namespace_keys(r, key_prefix)) - base_keys
        replies = [k for k in left if b":reply:" in k]
        assert set(left) == set(replies), f"keys left behind: {sorted(left - set(replies))[:10]}"
        assert len(replies) == calls, "one reply stream per call"
        for key in replies:
            assert 0 < await r.pttl(key) <= REPLY_TTL_MS, f"{key!r} never expires"
        assert not await r.exists(keys.lock("tool:locked")), "a lock was left behind"
        for agent in agents:
            # An agent let go with nothing left has its empty stream (and group) deleted; one
            # still there keeps at most a consumer per worker.
            if await r.exists(keys.turns(agent)):
                assert len(await r.xinfo_consumers(keys.turns(agent), "workers")) <= 2
        if replies:
            await r.delete(*replies)  # what their TTL does an hour later
        ready_growth = await r.xlen(keys.ready) - base_ready
        ready_bytes = (await r.memory_usage(keys.ready) or 0) - (base_ready_bytes or 0)
        end_memory = await used_memory()
        end_keys = len(await namespace_keys(r, key_prefix))

    # RSS after the warm-up against the end of the run.
    growth = [end - warm for warm, end in zip(rss[0], rss[-1], strict=True)]
    report(
        f"memory[{turns}]",
        turns=turns + calls,
        warm_up_turns=warm_up(turns) + warm_calls,
        turns_per_s=round(turns / elapsed),
        redis_keys_before=len(base_keys),
        redis_keys_after=end_keys,
        redis_memory_before=base_memory,
        redis_memory_peak=max(samples),
        redis_memory_after=end_memory,
        ready_signals_added=ready_growth,
        ready_stream_growth_bytes=ready_bytes,
        worker_rss_mb=[round(b / 2**20, 1) for b in rss[-1]],
        worker_rss_growth_kb=[g // 1024 for g in growth],
    )
    assert end_keys == len(base_keys)
    # The ready-signal stream is a capped log (its growth is reported); the rest returns.
    grown = end_memory - base_memory - ready_bytes
    assert grown < SLACK, f"Redis memory is {grown} bytes over its baseline"
    for worker, grew in zip(workers, growth, strict=True):
        assert grew < 8 * 2**20, f"worker {worker.pid} RSS grew by {grew / 2**20:.1f} MiB"
