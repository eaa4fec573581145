"""``@tool(lock=True)`` under contention: many invocations on several workers never overlap,
also when a holder is SIGKILLed, and releasing a lock never frees another holder's lock.

The ``locked`` tool checks, inside the critical section, that no live process is inside too
(a holder file), and logs when it enters and leaves; the test also checks afterwards that the
logged intervals never overlap (a killed holder's interval ends at its kill).

Soak: ``.venv/bin/python -m pytest tests/faults --soak -q``
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import os
import signal
import time
from pathlib import Path

import pytest

from pygents_dist import Client, _lock
from pygents_dist._keys import Keys
from pygents_dist._transport import Transport
from pygents_dist.testing import WorkerPool, WorkerProcess
from tests.faults._support import APPS, Effect, raw_redis, read_effects, report, wait_for

LOCK = "tool:locked"


@dataclasses.dataclass(frozen=True)
class Scenario:
    workers: int
    agents: int
    per_agent: int
    hold_ms: float
    kills: int


SCENARIOS = [
    pytest.param(Scenario(3, 6, 12, 15.0, 2), id="fast"),
    pytest.param(Scenario(3, 8, 150, 10.0, 25), id="soak", marks=pytest.mark.soak),
]


def holder_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def intervals(effects: list[Effect], killed_at: dict[int, float]) -> list[tuple[float, float, str]]:
    """``(start, end, who)`` of every stay in the critical section."""
    open_: dict[tuple[int, str], float] = {}
    out: list[tuple[float, float, str]] = []
    for e in sorted(effects, key=lambda e: e.t):
        if e.kind == "lock_in":
            open_[(e.pid, e.key)] = e.t
        elif e.kind == "lock_out":
            out.append((open_.pop((e.pid, e.key)), e.t, f"{e.key}@{e.pid}"))
    for (pid, key), start in open_.items():  # entered, never left: killed inside
        assert pid in killed_at, f"{key} in pid {pid} never left the lock and was not killed"
        out.append((start, killed_at[pid], f"{key}@{pid} (killed)"))
    return sorted(out)


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_locked_tool_never_overlaps_across_workers_and_kills(
    scenario: Scenario,
    worker_factory: WorkerPool,
    redis_url: str,
    tmp_path: Path,
) -> None:
    log, holder = tmp_path / "effects.log", tmp_path / "holder"
    env = {
        "FAULT_LOG": str(log),
        "FAULT_HOLDER": str(holder),
        "FAULT_AGENTS": str(scenario.agents),
    }
    args = ["--lease-ms", "1000", "--max-deliveries", "50", "--log-level", "ERROR"]

    def start() -> WorkerProcess:
        return worker_factory("faultapp", args=args, pythonpath=[APPS], env=env)

    workers = [start() for _ in range(scenario.workers)]
    killed_at: dict[int, float] = {}
    began = time.monotonic()
    async with Client(redis_url) as client:
        for i in range(scenario.agents):
            calls = [
                {"key": f"k{i}.{j}", "hold_ms": scenario.hold_ms} for j in range(scenario.per_agent)
            ]
            await client.send_many(f"a{i}", "locked", calls)
        for _ in range(scenario.kills):
            # Kill whichever worker is inside the critical section right now.
            pids = {w.pid: w for w in workers}
            victim_pid = await wait_for(
                functools.partial(_holder_in, holder, pids), 30, "a worker holding the lock"
            )
            victim = pids[victim_pid]
            victim.kill()
            killed_at[victim.pid] = time.monotonic()
            workers.remove(victim)
            workers.append(await asyncio.to_thread(start))

        async def all_left() -> bool:
            done = {e.key for e in read_effects(log) if e.kind == "lock_out"}
            return len(done) == scenario.agents * scenario.per_agent

        await wait_for(all_left, 120, "every locked call to finish")
    elapsed = time.monotonic() - began
    effects = read_effects(log)
    overlaps = [e for e in effects if e.kind == "overlap"]
    assert not overlaps, f"two holders inside the lock at once: {overlaps[:5]}"
    stays = intervals(effects, killed_at)
    for (s1, e1, who1), (s2, _e2, who2) in itertools.pairwise(stays):
        assert e1 <= s2, f"{who1} [{s1}, {e1}] overlaps {who2} starting {s2}"
    killed_inside = sum(1 for s in stays if s[2].endswith("(killed)"))
    report(
        f"locks[{scenario.kills}]",
        invocations=len(stays),
        distinct=scenario.agents * scenario.per_agent,
        workers=scenario.workers,
        kills=len(killed_at),
        holders_killed_inside=killed_inside,
        overlaps=0,
        seconds=round(elapsed, 1),
    )


async def _holder_in(path: Path, pids: dict[int, WorkerProcess]) -> int | None:
    pid = holder_pid(path)
    return pid if pid in pids else None


async def test_release_never_frees_another_holders_lock(redis_url: str, key_prefix: str) -> None:
    transport = Transport.from_url(redis_url, namespace=key_prefix)
    keys = Keys(key_prefix)
    try:
        assert await _lock.try_lock(transport, LOCK, "first", 200)
        async with raw_redis(redis_url) as r:

            async def expired() -> bool:
                return not await r.exists(keys.lock(LOCK))

            await wait_for(expired, 5, "the first holder's lease to expire")
            assert await _lock.try_lock(transport, LOCK, "second", 10_000)
            assert not await _lock.unlock(transport, LOCK, "first"), "a late release freed the lock"
            assert not await _lock.renew_lock(transport, LOCK, "first", 10_000)
            assert await r.get(keys.lock(LOCK)) == b"second"
            assert not await _lock.try_lock(transport, LOCK, "third", 10_000)
            assert await _lock.unlock(transport, LOCK, "second")
            assert await _lock.try_lock(transport, LOCK, "third", 10_000)
    finally:
        await _lock.unlock(transport, LOCK, "third")
        await transport.aclose()


async def test_stalled_holder_does_not_free_the_next_holders_lock(
    worker_factory: WorkerPool, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    log, holder = tmp_path / "effects.log", tmp_path / "holder"
    env = {"FAULT_LOG": str(log), "FAULT_HOLDER": str(holder), "FAULT_AGENTS": "2"}
    args = ("--lease-ms", "1000", "--log-level", "WARNING")
    first = worker_factory("faultapp", args=(*args, "--agents", "a0"), pythonpath=[APPS], env=env)
    second = worker_factory("faultapp", args=(*args, "--agents", "a1"), pythonpath=[APPS], env=env)
    keys = Keys(key_prefix)

    async def logged(kind: str, key: str) -> bool:
        return any(e.kind == kind and e.key == key for e in read_effects(log))

    async with Client(redis_url) as client, raw_redis(redis_url) as r:
        await client.send("a0", "locked", kwargs={"key": "A", "hold_ms": 500})
        await wait_for(lambda: logged("lock_in", "A"), 10, "A inside the lock")
        os.kill(first.pid, signal.SIGSTOP)  # a GC pause or a frozen VM: renewals stop
        try:
            await client.send("a1", "locked", kwargs={"key": "B", "hold_ms": 3000})
            await wait_for(lambda: logged("lock_in", "B"), 10, "B to get the expired lock")
            token = await r.get(keys.lock(LOCK))
        finally:
            os.kill(first.pid, signal.SIGCONT)
        # A leaves, releases, and then fails to commit (its agent lease expired too): once
        # that is logged, its release is done.
        await wait_for(lambda: _logged_line(first, "batch discarded"), 10, "A's release")
        assert not await logged("lock_out", "B"), "B left too early for the check"
        assert await r.get(keys.lock(LOCK)) == token, "A's late release freed B's lock"
        await wait_for(lambda: logged("lock_out", "B"), 10, "B to leave")
    assert second.is_running()
    report("stalled_lock_holder", late_release_freed_other=False)


async def _logged_line(worker: WorkerProcess, text: str) -> bool:
    return text in worker.output_text
