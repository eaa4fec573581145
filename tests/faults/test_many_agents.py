"""Many agents: 10,000 agents declared on two workers. Idle, the workers (and Redis) use
almost no CPU (measured from /proc/<pid>/stat); a turn sent to any one of them is served
promptly.

Soak (a longer idle window, and the default 15 s lease):
``.venv/bin/python -m pytest tests/faults --soak -q``
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from pathlib import Path

import pytest

from pygents_dist import Client
from pygents_dist.testing import RedisServer, WorkerPool
from tests.faults._support import APPS, cpu_seconds, raw_redis, report, rss_bytes

AGENTS = 10_000


@pytest.mark.parametrize(
    ("lease_ms", "idle_s"),
    [
        pytest.param(1500, 5.0, id="fast"),
        pytest.param(15_000, 60.0, id="soak", marks=pytest.mark.soak),
    ],
)
async def test_ten_thousand_idle_agents_cost_almost_nothing(
    lease_ms: int,
    idle_s: float,
    private_redis: RedisServer,
    worker_factory: WorkerPool,
    key_prefix: str,
    tmp_path: Path,
) -> None:
    url = private_redis.url
    env = {"FAULT_AGENTS": str(AGENTS)}
    args = ("--lease-ms", str(lease_ms), "--log-level", "WARNING")
    began = time.monotonic()
    workers = [
        worker_factory("faultapp", redis_url=url, args=args, pythonpath=[APPS], env=env)
        for _ in range(2)
    ]
    startup = time.monotonic() - began
    async with raw_redis(url) as r:
        declared = await r.hlen(f"{key_prefix}:pyg1:agents")
    assert declared == AGENTS + 1  # and the collector

    # Let start-up work (a full backlog scan, the garbage collection of 10k agents' objects)
    # finish, then measure a window of idleness.
    await asyncio.sleep(max(3.0, lease_ms / 1000))
    pids = [w.pid for w in workers] + [private_redis.pid]
    before = [cpu_seconds(pid) for pid in pids]
    await asyncio.sleep(idle_s)  # the measurement window itself
    after = [cpu_seconds(pid) for pid in pids]
    cpu = [round(100 * (a - b) / idle_s, 2) for a, b in zip(after, before, strict=True)]

    rng = random.Random(AGENTS)
    latencies = []
    async with Client(url) as client:
        for agent in rng.sample(range(AGENTS), 30):
            sent = time.monotonic()
            value = await asyncio.wait_for(
                client.call(f"a{agent}", "echo", kwargs={"value": agent}), 10
            )
            latencies.append(time.monotonic() - sent)
            assert value == agent
    for worker in workers:
        assert worker.is_running()
    report(
        f"many_agents[{lease_ms}ms lease]",
        agents=AGENTS,
        workers=2,
        startup_s=round(startup, 2),
        idle_window_s=idle_s,
        idle_cpu_percent_workers=cpu[:2],
        idle_cpu_percent_redis=cpu[2],
        worker_rss_mb=[round(rss_bytes(w.pid) / 2**20, 1) for w in workers],
        turn_latency_ms_p50=round(1000 * statistics.median(latencies), 1),
        turn_latency_ms_max=round(1000 * max(latencies), 1),
    )
    assert max(cpu[:2]) < 3.0, f"idle workers use {cpu[:2]}% CPU"
    assert max(latencies) < 1.0, f"slowest turn took {max(latencies):.2f}s"
