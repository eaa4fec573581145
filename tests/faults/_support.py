"""Helpers shared by the fault tests: effect logs, waiting with a deadline, /proc figures,
and the figures report."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from pygents_dist import _wire
from pygents_dist._keys import GROUP, Keys

APPS = Path(__file__).parent / "apps"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass(frozen=True, slots=True)
class Effect:
    """One line of an app's effect log."""

    kind: str
    key: str
    pid: int
    t: float


def read_effects(path: Path) -> list[Effect]:
    """Every effect logged so far, in file order."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        kind, rest = line.split(" ", 1)
        key, pid, t = rest.rsplit(" ", 2)
        out.append(Effect(kind, key, int(pid), float(t)))
    return out


def count_keys(effects: Iterable[Effect], kind: str) -> Counter[str]:
    """How many times each key of ``kind`` was executed."""
    return Counter(e.key for e in effects if e.kind == kind)


async def wait_for[T](
    check: Callable[[], Awaitable[T | None]], timeout: float, what: str, interval: float = 0.05
) -> T:
    """Poll ``check`` until it returns a value that is not None/False; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # after "pid (comm)": state is field 3, utime field 14, stime field 15 (1-based)
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def raw_redis(url: str) -> aioredis.Redis:
    """A plain redis-py client for inspecting and corrupting state (bytes replies)."""
    return aioredis.from_url(url, socket_timeout=10)


async def namespace_keys(r: aioredis.Redis, namespace: str) -> list[bytes]:
    """Every key of one namespace."""
    return [k async for k in r.scan_iter(match=f"{namespace}:*", count=1000)]


async def agent_context(
    r: aioredis.Redis, keys: Keys, agent: str
) -> tuple[list[Any], dict[str, Any]]:
    """An agent's committed context: queue contents, and pool ``{id: content}``."""
    blobs: list[Any] = await r.hmget(keys.state(agent), ["queue", "pool"])
    queue_blob, pool_blob = blobs
    queue = [d["content"] for d in _wire.unpack(queue_blob)] if queue_blob else []
    pool = {d["id"]: d["content"] for d in _wire.unpack(pool_blob)} if pool_blob else {}
    return queue, pool


async def stream_state(r: aioredis.Redis, keys: Keys, agent: str) -> tuple[int, int]:
    """``(entries, pending)`` of an agent's turn stream."""
    length = await r.xlen(keys.turns(agent))
    try:
        pending = (await r.xpending(keys.turns(agent), GROUP))["pending"]
    except Exception:
        pending = 0
    return int(length), int(pending)


async def consumers(r: aioredis.Redis, keys: Keys, agent: str) -> int:
    """How many consumers the agent's group remembers."""
    return len(await r.xinfo_consumers(keys.turns(agent), GROUP))


def report(test: str, **figures: Any) -> None:
    """Print measured figures (visible with ``-s``) and append them to ``$FAULTS_REPORT``."""
    line = " ".join(f"{k}={v}" for k, v in figures.items())
    print(f"\n[faults] {test}: {line}")
    path = os.environ.get("FAULTS_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"test": test, **figures}, default=str) + "\n")


# -- chains (tests/faults/apps/faultapp.py: ``step`` on a0..aN, ``finish`` on collector) -----


def chain_agents(count: int) -> list[str]:
    """The names of the first ``count`` chain agents."""
    return [f"a{i}" for i in range(count)]


async def start_chains(client: Any, agents: int, links: int, work_ms: float) -> None:
    """Start one chain of ``links + 1`` links on each of the first ``agents`` chain agents."""
    for i, agent in enumerate(chain_agents(agents)):
        kwargs = {"chain": f"c{i}", "n": links, "work_ms": work_ms}
        await client.send(agent, "step", kwargs=kwargs)


async def chains_finished(r: aioredis.Redis, keys: Keys, agents: int) -> bool:
    """Whether the collector recorded every chain and every stream is empty."""
    _queue, pool = await agent_context(r, keys, "collector")
    if any(f"c{i}" not in pool for i in range(agents)):
        return False
    for agent in [*chain_agents(agents), "collector"]:
        if await stream_state(r, keys, agent) != (0, 0):
            return False
    return True


async def check_chain_context(r: aioredis.Redis, keys: Keys, agents: int, links: int) -> None:
    """Every agent's committed context equals what an uninterrupted run leaves."""
    for agent in chain_agents(agents):
        queue, pool = await agent_context(r, keys, agent)
        assert queue == list(range(links, -1, -1)), f"{agent}'s context queue: {queue}"
        assert pool == {"count": links + 1}, f"{agent}'s context pool: {pool}"
    _queue, pool = await agent_context(r, keys, "collector")
    assert pool == {"count": agents, **{f"c{i}": True for i in range(agents)}}, pool
    assert await r.xlen(keys.dead) == 0, "nothing may be dead-lettered"


def check_repeats(
    effects: list[Effect],
    kind: str,
    may_repeat: Callable[[Effect], bool],
    chain_of: Callable[[str], str] | None = None,
) -> int:
    """Assert that every execution of a ``kind`` key that ran again was in flight at a
    fault (``may_repeat``); return how many repeats there were.

    With ``chain_of``, a repeated execution must also be the last of its chain in its
    process before the repeat: had it committed, its process would have gone on to the
    next link first.
    """
    runs: dict[str, list[Effect]] = {}
    for e in effects:
        if e.kind == kind:
            runs.setdefault(e.key, []).append(e)
    by_chain: dict[tuple[int, str], list[float]] = {}
    if chain_of is not None:
        for e in effects:
            if e.kind == kind:
                by_chain.setdefault((e.pid, chain_of(e.key)), []).append(e.t)
    repeats = 0
    for key, executions in runs.items():
        executions.sort(key=lambda e: e.t)
        for earlier, later in itertools.pairwise(executions):
            repeats += 1
            assert may_repeat(earlier), (
                f"{kind} {key} ran again though it was not in flight at a fault: {executions}"
            )
            if chain_of is not None:
                times = by_chain[(earlier.pid, chain_of(key))]
                assert not any(earlier.t < t < later.t for t in times), (
                    f"{kind} {key} ran again after pid {earlier.pid} had gone on with its "
                    f"chain (so it had committed it): {executions}"
                )
    return repeats


def check_chain_effects(
    effects: list[Effect], agents: int, links: int, may_repeat: Callable[[Effect], bool]
) -> tuple[int, int]:
    """Every link and every finish ran; repeats only where allowed. ``(runs, repeats)``."""
    steps = count_keys(effects, "step")
    wanted = {f"c{i}:{n}" for i in range(agents) for n in range(links + 1)}
    assert set(steps) == wanted, f"links never run: {sorted(wanted - set(steps))[:10]}"
    assert set(count_keys(effects, "finish")) == {f"c{i}" for i in range(agents)}
    repeats = check_repeats(effects, "step", may_repeat, lambda k: k.split(":")[0])
    repeats += check_repeats(effects, "finish", may_repeat)
    return sum(steps.values()) + agents, repeats
