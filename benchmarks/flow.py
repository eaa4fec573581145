"""Benchmarks of flow control in workers (``pygents_dist``): limits, delayed turns, schedules.

Run from the repository root (one command, about a minute; never part of the test run)::

    .venv/bin/python benchmarks/flow.py [--turns 5000] [--delayed 100000] [--schedules 10000]

It starts a private ``redis-server`` (no persistence) and real ``pygents-worker`` processes
serving ``benchmarks/flow_app.py``, and prints:

- **limits**: worker CPU per call (us) of ``--turns`` trivial turns over 8 agents, one worker,
  for a plain tool, a rate-limited one (``Rate`` never reached: the Redis limiter's own cost,
  one script call per call) and a concurrency-limited one (``concurrency=N`` never reached:
  take and give back a slot, two round trips per call);
- **delayed**: ``--delayed`` turns over 1,000 agents stored (``Client.send(delay_s=...)``
  path, 1,000 per script call), then all due at once: turns/s moved into the agents' streams
  by one worker's timer loop (the agents are not served: only the moving is timed), the
  lateness of the last one, and Redis memory before/after;
- **schedules**: ``--schedules`` schedules ticking every 10 s on agents no worker serves
  (their turns pile up unrun): the worker's and Redis's CPU per tick fired over 20 s, and
  the idle cost of as many paused schedules.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dist import tree_cpu, wait_until  # noqa: E402

from pygents import Schedule  # noqa: E402
from pygents_dist import Client, _schedules, _streams, _timers  # noqa: E402
from pygents_dist._transport import Transport  # noqa: E402
from pygents_dist.testing import RedisServer, WorkerPool  # noqa: E402

#: A worker serving only ``idle``: it moves delayed turns and fires ticks, and runs nothing.
IDLE_WORKER = ("--agents", "idle", "--log-level", "ERROR")


async def _drained(client: Client, agents: list[str]) -> None:
    async def empty() -> bool:
        return not sum(await _streams.backlog(client.transport, agents))

    await wait_until(empty, time.monotonic() + 600, 0.02)


async def bench_limits(pool: WorkerPool, url: str, turns: int) -> list[str]:
    worker = pool("flow_app", args=("--log-level", "ERROR"), pythonpath=[HERE])
    agents = [f"f{i}" for i in range(8)]
    out = []
    async with Client(url) as client:
        for tool in ("plain", "limited", "pooled", "plain"):
            batch = [(agents[i % 8], tool, {"i": i}) for i in range(turns)]
            for agent in agents:
                await client.pause(agent)
            for start in range(0, turns, 1000):
                await client.send_batch(batch[start : start + 1000])
            cpu0, t0 = tree_cpu([worker.pid]), time.perf_counter()
            for agent in agents:
                await client.resume(agent)
            await _drained(client, agents)
            elapsed, cpu = time.perf_counter() - t0, tree_cpu([worker.pid]) - cpu0
            out.append(
                f"limits  {tool:<8} {turns / elapsed:>9,.0f} turns/s  "
                f"worker CPU {cpu / turns * 1e6:>6.1f} us/turn"
            )
    worker.stop()
    return out


async def bench_delayed(pool: WorkerPool, server: RedisServer, url: str, count: int) -> list[str]:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url)
    before = (await r.info("memory"))["used_memory"]
    async with Client(url) as client:
        data = b"\x80" * 120
        due_ms = int(time.time() * 1000) + 60_000
        t0 = time.perf_counter()
        per_agent = max(1, count // 1000)
        for agent_no in range(0, count // per_agent):
            turns = [(f"t{agent_no}.{i}", due_ms, data, b"") for i in range(per_agent)]
            await _timers.delay_turns(client.transport, f"d{agent_no}", turns)
        stored_s = time.perf_counter() - t0
        peak = (await r.info("memory"))["used_memory"]
        # All due now: move the due time of every agent's index entry back (the timers'
        # own scores say 60 s from now, so they are rewritten too, in one script per agent).
        now_ms = int(time.time() * 1000)
        for agent_no in range(0, count // per_agent):
            agent = f"d{agent_no}"
            members = [f"t{agent_no}.{i}" for i in range(per_agent)]
            pipe = r.pipeline(transaction=False)
            pipe.zadd(client.transport.keys.timers(agent), dict.fromkeys(members, now_ms))
            pipe.zadd(client.transport.keys.due, {agent: now_ms})
            await pipe.execute()
        worker = pool(
            "flow_app", args=("--agents", "idle", "--log-level", "ERROR"), pythonpath=[HERE]
        )
        cpu0 = tree_cpu([worker.pid])
        t0 = time.perf_counter()

        async def moved() -> bool:
            return not await r.zcard(client.transport.keys.due)

        await wait_until(moved, time.monotonic() + 600, 0.01)
        moved_s = time.perf_counter() - t0
        cpu = tree_cpu([worker.pid]) - cpu0
        worker.stop()
        for agent_no in range(0, count // per_agent):
            await r.delete(client.transport.keys.turns(f"d{agent_no}"))
        await r.delete(client.transport.keys.ready)
        after = (await r.info("memory"))["used_memory"]
    await r.aclose()
    return [
        f"delayed stored {count:,} in {stored_s:.2f}s ({count / stored_s:,.0f}/s); "
        f"Redis +{(peak - before) / 1e6:.1f} MB ({(peak - before) / count:.0f} B/turn)",
        f"delayed all due at once: moved {count / moved_s:,.0f} turns/s by one worker "
        f"(timed from its READY line); worker CPU {cpu / count * 1e6:.1f} us/turn",
        f"delayed Redis memory: before {before / 1e6:.2f} MB, after moving and dropping the "
        f"streams {after / 1e6:.2f} MB",
    ]


async def bench_schedules(pool: WorkerPool, server: RedisServer, url: str, count: int) -> list[str]:
    async with Client(url) as client:
        transport = client.transport
        for i in range(count):
            stored = _schedules.spec(Schedule.every(10), "plain", kwargs={"i": i})
            await _schedules.put(transport, f"s{i % 1000}", f"n{i}", stored, paused=True)
        worker = pool(
            "flow_app", args=("--agents", "idle", "--log-level", "ERROR"), pythonpath=[HERE]
        )
        await asyncio.sleep(1.0)
        w0, r0, t0 = tree_cpu([worker.pid]), tree_cpu([server.pid]), time.perf_counter()
        await asyncio.sleep(10.0)
        idle_w = (tree_cpu([worker.pid]) - w0) / (time.perf_counter() - t0)
        idle_r = (tree_cpu([server.pid]) - r0) / (time.perf_counter() - t0)
        for i in range(count):
            await _schedules.resume(transport, f"s{i % 1000}", f"n{i}")
        await asyncio.sleep(10.0)  # every schedule has ticked once at least
        w0, r0, t0 = tree_cpu([worker.pid]), tree_cpu([server.pid]), time.perf_counter()
        ticks0 = await _ticks(transport, count)
        await asyncio.sleep(20.0)
        ticks = await _ticks(transport, count) - ticks0
        wall = time.perf_counter() - t0
        w_cpu, r_cpu = tree_cpu([worker.pid]) - w0, tree_cpu([server.pid]) - r0
        worker.stop()
    return [
        f"schedules {count:,} paused: worker {idle_w * 100:.1f}% CPU, Redis {idle_r * 100:.1f}%",
        f"schedules {count:,} every 10s: {ticks / wall:,.0f} ticks/s fired; worker CPU "
        f"{w_cpu / ticks * 1e6:.0f} us/tick ({w_cpu / wall * 100:.1f}%), Redis "
        f"{r_cpu / ticks * 1e6:.0f} us/tick",
    ]


async def _ticks(transport: Transport, count: int) -> int:
    """Turns fired so far: the entries appended to the schedules' agents' streams."""
    total = 0
    agents = [f"s{i}" for i in range(min(count, 1000))]
    for start in range(0, len(agents), 500):
        got = await transport.execute(
            [("XINFO", "STREAM", transport.keys.turns(a)) for a in agents[start : start + 500]],
            "bench",
        )
        for info in got:
            fields = dict(zip(info[::2], info[1::2], strict=False))
            total += int(fields[b"entries-added"])
    return total


async def main_async(args: argparse.Namespace) -> None:
    with RedisServer() as server:
        url = server.url
        os.environ["PYGENTS_REDIS_URL"] = url
        lines: list[str] = []
        with WorkerPool(url) as pool:
            if "limits" in args.only:
                lines += await bench_limits(pool, url, args.turns)
            if "delayed" in args.only:
                lines += await bench_delayed(pool, server, url, args.delayed)
            if "schedules" in args.only:
                lines += await bench_schedules(pool, server, url, args.schedules)
    print("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=5000)
    parser.add_argument("--delayed", type=int, default=100_000)
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--only", default="limits,delayed,schedules")
    asyncio.run(main_async(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
