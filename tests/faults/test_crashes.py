"""Workers SIGKILLed at random moments while agents run chains of follow-up turns.

Each chain agent ``a<i>`` runs ``step`` from ``n = links`` down to 0: every link appends
``n`` to the agent's context queue, bumps a ``count`` item in its context pool and returns
the next link as a follow-up turn; the last link sends ``finish`` to the ``collector`` agent
(through the outbox). Bursts of independent ``echo`` turns are mixed in. Workers are killed
and replaced many times. Afterwards every chain must be complete, every agent's context must
equal the one an uninterrupted run leaves, no follow-up may have run twice, and the only
repeated side effects allowed are those of turns in flight in a worker when it was killed.

Fast variants run in the normal suite; the long ones are marked ``soak``::

    .venv/bin/python -m pytest tests/faults --soak -q

Set ``FAULT_SEED`` to replay a run (the seed is printed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import time
from pathlib import Path

import pytest

from pygents_dist import Client
from pygents_dist._keys import Keys
from pygents_dist.testing import WorkerPool, WorkerProcess
from tests.faults._support import (
    APPS,
    chain_agents,
    chains_finished,
    check_chain_context,
    check_chain_effects,
    check_repeats,
    consumers,
    count_keys,
    raw_redis,
    read_effects,
    report,
    start_chains,
    wait_for,
)


@dataclasses.dataclass(frozen=True)
class Scenario:
    workers: int
    agents: int
    links: int
    work_ms: float
    kills: int
    echo_burst: int


SCENARIOS = [
    pytest.param(Scenario(3, 6, 120, 15.0, 10, 30), id="fast"),
    pytest.param(Scenario(3, 12, 1500, 10.0, 150, 100), id="soak", marks=pytest.mark.soak),
]


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_chains_survive_random_sigkills(
    scenario: Scenario,
    worker_factory: WorkerPool,
    redis_url: str,
    key_prefix: str,
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get("FAULT_SEED") or random.randrange(2**32))
    print(f"FAULT_SEED={seed}")
    rng = random.Random(seed)
    log = tmp_path / "effects.log"
    env = {"FAULT_LOG": str(log), "FAULT_AGENTS": str(scenario.agents)}
    args = ["--lease-ms", "1000", "--max-deliveries", "50", "--log-level", "ERROR"]

    def start() -> WorkerProcess:
        return worker_factory("faultapp", args=args, pythonpath=[APPS], env=env)

    workers = [start() for _ in range(scenario.workers)]
    keys = Keys(key_prefix)
    agents = chain_agents(scenario.agents)
    killed: set[int] = set()
    echoes: list[str] = []
    began = time.monotonic()
    async with Client(redis_url) as client, raw_redis(redis_url) as r:
        await start_chains(client, scenario.agents, scenario.links, scenario.work_ms)
        for k in range(scenario.kills):
            burst = [{"value": f"e{k}.{j}"} for j in range(scenario.echo_burst)]
            await client.send_many(rng.choice(agents), "echo", burst)
            echoes += [b["value"] for b in burst]
            await asyncio.sleep(rng.uniform(0.05, 0.5))  # when the fault strikes, not a wait
            victim = workers.pop(rng.randrange(len(workers)))
            victim.kill()
            killed.add(victim.pid)
            workers.append(await asyncio.to_thread(start))

        timeout = 60 + scenario.links * scenario.work_ms / 50
        await wait_for(lambda: chains_finished(r, keys, scenario.agents), timeout, "the chains")
        elapsed = time.monotonic() - began
        await check_chain_context(r, keys, scenario.agents, scenario.links)
        groups = {a: await consumers(r, keys, a) for a in [*agents, "collector"]}

    effects = read_effects(log)
    runs, repeats = check_chain_effects(
        effects, scenario.agents, scenario.links, lambda e: e.pid in killed
    )
    assert set(count_keys(effects, "echo")) == set(echoes), "an echo turn never ran"
    repeats += check_repeats(effects, "echo", lambda e: e.pid in killed)
    report(
        f"sigkill[{scenario.kills}]",
        seed=seed,
        kills=len(killed),
        turns=runs + len(echoes),
        lost=0,
        duplicated_commits=0,
        repeated_side_effects=repeats,
        seconds=round(elapsed, 1),
        max_consumers_per_group=max(groups.values()),
    )
    # The last worker to take an agent over deletes the consumers of dead workers.
    assert max(groups.values()) <= 1, f"consumers of dead workers kept: {groups}"
