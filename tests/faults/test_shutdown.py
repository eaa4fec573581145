"""Graceful shutdown: SIGTERM during a long turn lets it finish and commit within the grace
period, and the worker exits 0; past the grace period the turn is handed back (left for
another worker), not lost.

Soak: ``.venv/bin/python -m pytest tests/faults --soak -q``
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from pygents_dist import Client
from pygents_dist.testing import WorkerPool, WorkerProcess
from tests.faults._support import APPS, count_keys, read_effects, report, wait_for


def start(
    worker_factory: WorkerPool, log: Path, grace: float, lease_ms: int = 1000
) -> WorkerProcess:
    env = {"FAULT_LOG": str(log), "FAULT_AGENTS": "1"}
    args = ("--lease-ms", str(lease_ms), "--grace", str(grace), "--log-level", "WARNING")
    return worker_factory("faultapp", args=args, pythonpath=[APPS], env=env)


async def started(log: Path, key: str) -> bool:
    return count_keys(read_effects(log), "slow")[key] >= 1


async def test_sigterm_lets_the_running_turn_finish_and_commit(
    worker_factory: WorkerPool, redis_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "effects.log"
    worker = start(worker_factory, log, grace=10)
    async with Client(redis_url) as client:
        call = asyncio.create_task(
            client.call("a0", "slow", kwargs={"key": "long", "seconds": 1.5})
        )
        await wait_for(lambda: started(log, "long"), 10, "the long turn to start")
        worker.terminate()
        signalled = time.monotonic()
        assert await asyncio.wait_for(call, 10) == "long"
        code = await asyncio.to_thread(worker.wait, 10)
        exited = time.monotonic() - signalled
    assert code == 0, worker.output_text
    effects = read_effects(log)
    assert count_keys(effects, "slow")["long"] == 1
    assert count_keys(effects, "slow_end")["long"] == 1
    report("sigterm_within_grace", exit_code=code, exit_after_s=round(exited, 2), turn_runs=1)


async def test_past_the_grace_period_the_turn_is_handed_back(
    worker_factory: WorkerPool, redis_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "effects.log"
    # A long lease: the periodic backlog scan would find the turn only after 5 s, so a quick
    # takeover shows that the stopping worker handed it back actively.
    first = start(worker_factory, log, grace=0.5, lease_ms=5000)
    async with Client(redis_url) as client:
        call = asyncio.create_task(
            client.call("a0", "slow", kwargs={"key": "long", "seconds": 4.0})
        )
        await wait_for(lambda: started(log, "long"), 10, "the long turn to start")
        second = start(worker_factory, log, grace=10, lease_ms=5000)  # a0 is owned: it waits
        first.terminate()
        signalled = time.monotonic()
        code = await asyncio.to_thread(first.wait, 10)
        exited_at = time.monotonic()
        exited = exited_at - signalled
        assert code == 0, first.output_text
        assert "handed back" in first.output_text
        assert await asyncio.wait_for(call, 30) == "long"
        finished = time.monotonic() - signalled
    assert exited < 3.0, f"exit took {exited:.1f}s with a 0.5s grace period"
    effects = read_effects(log)
    runs = [e for e in effects if e.kind == "slow" and e.key == "long"]
    assert [e.pid for e in runs] == [first.pid, second.pid], runs
    assert [e.pid for e in effects if e.kind == "slow_end"] == [second.pid]
    taken_over = runs[1].t - exited_at
    assert taken_over < 1.0, f"the turn was taken over {taken_over:.2f}s after the exit"
    report(
        "sigterm_past_grace",
        exit_code=code,
        exit_after_s=round(exited, 2),
        taken_over_after_exit_s=round(taken_over, 3),
        handed_back_and_done_after_s=round(finished, 2),
        lost=0,
    )
