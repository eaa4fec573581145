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
from collections import defaultdict
from pathlib import Path

import pytest

from pygents_dist import Client
from pygents_dist._keys import Keys
from pygents_dist.testing import WorkerPool, WorkerProcess
from tests.faults._support import (
    APPS,
    Effect,
    agent_context,
    consumers,
    count_keys,
    raw_redis,
    read_effects,
    report,
    stream_state,
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


def check_duplicates(
    effects: list[Effect], kind: str, killed: set[int], chain_of: dict[str, str] | None = None
) -> int:
    """Assert every repeated execution of a ``kind`` key was in flight in a killed worker;
    return how many repeats there were.

    An execution that was followed by another of the same key must have run in a process
    that was later SIGKILLed and, when ``chain_of`` maps keys to chains, must be that
    process's last execution in the chain (it was in flight, not committed, at the kill).
    """
    runs: dict[str, list[Effect]] = defaultdict(list)
    last_in_chain: dict[tuple[int, str], float] = {}
    for e in effects:
        if e.kind != kind:
            continue
        runs[e.key].append(e)
        if chain_of is not None:
            key = (e.pid, chain_of[e.key])
            last_in_chain[key] = max(last_in_chain.get(key, 0.0), e.t)
    repeats = 0
    for key, executions in runs.items():
        executions.sort(key=lambda e: e.t)
        for earlier in executions[:-1]:
            repeats += 1
            assert earlier.pid in killed, (
                f"{kind} {key} ran again although its first run (pid {earlier.pid}) was never "
                f"killed: {executions}"
            )
            if chain_of is not None:
                last = last_in_chain[(earlier.pid, chain_of[key])]
                assert earlier.t == last, (
                    f"{kind} {key} ran again although pid {earlier.pid} went on with its chain "
                    f"(it had committed it): {executions}"
                )
    return repeats


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
    args = ["--lease-ms", "1000", "--max-deliveries", "50"]

    def start() -> WorkerProcess:
        return worker_factory("faultapp", args=args, pythonpath=[APPS], env=env)

    workers = [start() for _ in range(scenario.workers)]
    keys = Keys(key_prefix)
    agents = [f"a{i}" for i in range(scenario.agents)]
    killed: set[int] = set()
    echoes: list[str] = []
    began = time.monotonic()
    async with Client(redis_url) as client, raw_redis(redis_url) as r:
        for i, agent in enumerate(agents):
            kwargs = {"chain": f"c{i}", "n": scenario.links, "work_ms": scenario.work_ms}
            await client.send(agent, "step", kwargs=kwargs)
        for k in range(scenario.kills):
            burst = [{"value": f"e{k}.{j}"} for j in range(scenario.echo_burst)]
            await client.send_many(rng.choice(agents), "echo", burst)
            echoes += [b["value"] for b in burst]
            await asyncio.sleep(rng.uniform(0.05, 0.5))  # when the fault strikes, not a wait
            victim = workers.pop(rng.randrange(len(workers)))
            victim.kill()
            killed.add(victim.pid)
            workers.append(await asyncio.to_thread(start))

        async def finished() -> bool:
            _queue, pool = await agent_context(r, keys, "collector")
            if any(f"c{i}" not in pool for i in range(scenario.agents)):
                return False
            states = [await stream_state(r, keys, a) for a in [*agents, "collector"]]
            return all(s == (0, 0) for s in states)

        await wait_for(finished, 60 + scenario.links * scenario.work_ms / 50, "every chain")
        elapsed = time.monotonic() - began

        for i, agent in enumerate(agents):
            queue, pool = await agent_context(r, keys, agent)
            assert queue == list(range(scenario.links, -1, -1)), f"{agent} context queue"
            assert pool == {"count": scenario.links + 1}, f"{agent} context pool"
        _queue, pool = await agent_context(r, keys, "collector")
        assert pool == {"count": scenario.agents, **{f"c{i}": True for i in agents_ids(scenario)}}
        assert await r.xlen(keys.dead) == 0, "nothing may be dead-lettered"
        groups = {a: await consumers(r, keys, a) for a in [*agents, "collector"]}

    effects = read_effects(log)
    steps = count_keys(effects, "step")
    wanted = {f"c{i}:{n}" for i in range(scenario.agents) for n in range(scenario.links + 1)}
    assert set(steps) == wanted, "a link never ran"
    assert set(count_keys(effects, "echo")) == set(echoes), "an echo turn never ran"
    assert set(count_keys(effects, "finish")) == {f"c{i}" for i in range(scenario.agents)}
    chain_of = {key: key.split(":")[0] for key in steps}
    step_repeats = check_duplicates(effects, "step", killed, chain_of)
    echo_repeats = check_duplicates(effects, "echo", killed)
    finish_repeats = check_duplicates(effects, "finish", killed)
    report(
        f"sigkill[{scenario.kills}]",
        seed=seed,
        kills=len(killed),
        turns=sum(steps.values()) + len(echoes) + scenario.agents,
        links=len(wanted),
        lost=0,
        duplicated_commits=0,
        repeated_side_effects=step_repeats + echo_repeats + finish_repeats,
        seconds=round(elapsed, 1),
        max_consumers_per_group=max(groups.values()),
    )
    # The last worker to take an agent over deletes the consumers of dead workers.
    assert max(groups.values()) <= 1, f"consumers of dead workers kept: {groups}"


def agents_ids(scenario: Scenario) -> range:
    return range(scenario.agents)
