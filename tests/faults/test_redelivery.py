"""No false redelivery: a turn many times longer than the lease, on a live worker, runs
exactly once while other workers poll and serve the other agents.

Soak: ``.venv/bin/python -m pytest tests/faults --soak -q``
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from pygents_dist import Client
from pygents_dist.testing import WorkerPool
from tests.faults._support import APPS, count_keys, read_effects, report, wait_for

LEASE_MS = 1000


@pytest.mark.parametrize(
    "seconds", [pytest.param(6.0, id="fast"), pytest.param(60.0, id="soak", marks=pytest.mark.soak)]
)
async def test_a_long_turn_on_a_live_worker_runs_once(
    seconds: float, worker_factory: WorkerPool, redis_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "effects.log"
    env = {"FAULT_LOG": str(log), "FAULT_AGENTS": "4"}
    args = ("--lease-ms", str(LEASE_MS), "--log-level", "WARNING")
    workers = [worker_factory("faultapp", args=args, pythonpath=[APPS], env=env) for _ in range(3)]
    async with Client(redis_url) as client:
        long_call = asyncio.create_task(
            client.call("a0", "slow", kwargs={"key": "long", "seconds": seconds}, timeout=300)
        )

        async def running() -> bool:
            return count_keys(read_effects(log), "slow")["long"] == 1

        await wait_for(running, 10, "the long turn to start")
        served = 0
        deadline = time.monotonic() + seconds + 30
        while not long_call.done():  # the other agents keep being served meanwhile
            assert time.monotonic() < deadline, "the long turn never finished"
            for agent in ("a1", "a2", "a3"):
                call = client.call(agent, "echo", kwargs={"value": served})
                assert await asyncio.wait_for(call, 10) == served
                served += 1
            await asyncio.sleep(0.1)  # pace the side traffic
        assert long_call.result() == "long"
    effects = read_effects(log)
    assert count_keys(effects, "slow")["long"] == 1, "the long turn ran twice"
    assert count_keys(effects, "slow_end")["long"] == 1
    echo_pids = {e.pid for e in effects if e.kind == "echo"}
    for worker in workers:
        assert worker.is_running()
        assert "lost the lease" not in worker.output_text, worker.output_text
    report(
        f"no_false_redelivery[{seconds:g}s]",
        turn_s=seconds,
        lease_ms=LEASE_MS,
        lease_multiples=round(seconds * 1000 / LEASE_MS),
        runs=1,
        side_turns_served=served,
        workers_serving_side_turns=len(echo_pids),
    )
