"""Instances at scale: N instances of one kind, each sent one turn that writes a small context
item, served by 2 workers (``benchmarks/instances_app.py``).

One command (from the repository root; a few minutes, never part of the test run)::

    .venv/bin/python benchmarks/instances.py               # 1,000,000 instances
    .venv/bin/python benchmarks/instances.py --instances 200000

It starts a private ``redis-server`` and measures, in one run:

- turns/s from the first send to the last commit (the client sends 1,000 turns per
  ``send_batch`` while the workers drain);
- each worker's resident memory (VmRSS) at the end, and its active set;
- Redis bytes per idle instance beyond its context item (``used_memory`` growth per instance,
  less the context blob the state hash holds), right after the run and once the dedup
  window (10 s here, 10 minutes by default) has passed: the steady state of an idle instance;
- activation latency of never-seen instances: 500 sequential ``Client.call`` (p50/p99);
- keys left after ``Client.forget`` of a sample (back to the count before it);
- idle expiry: a third worker started with ``--instance-expiry 1``; seconds until every
  instance's keys (and its kind's index) are gone, and the key count then against the count
  before the first send (reply streams of the latency calls aside: they expire after an hour).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import redis.asyncio as aioredis

from pygents_dist import Client, _control, _wire
from pygents_dist.testing import RedisServer, WorkerPool

HERE = Path(__file__).parent


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def turns_done(client: Client) -> tuple[int, dict[str, int]]:
    infos = await _control.workers(client.transport)
    decoded = {wid: _wire.unpack(blob) for wid, blob in infos.items()}
    return sum(int(i["turns"]) for i in decoded.values()), {
        wid: int(i.get("active_agents", 0)) for wid, i in decoded.items()
    }


async def main(n: int, workers: int) -> None:
    with RedisServer() as server, WorkerPool(server.url, pythonpath=[HERE]) as pool:
        admin = aioredis.Redis.from_url(server.url)
        # A 10 s dedup window: an idle instance's dedup set expires within the run, so
        # the steady state of an idle instance (its state hash and index entry) is measured.
        args = ("--lease-ms", "3000", "--log-level", "WARNING", "--dedup-window-ms", "10000")
        procs = [pool("instances_app", args=args) for _ in range(workers)]
        async with Client(server.url) as client:
            base_mem = int((await admin.info("memory"))["used_memory"])
            base_keys = int(await admin.dbsize())
            started = time.perf_counter()
            for start in range(0, n, 1000):
                batch = [
                    (f"assistant/u{i}", "remember", {"text": f"fact {i}"})
                    for i in range(start, min(n, start + 1000))
                ]
                await client.send_batch(batch)
            sent_s = time.perf_counter() - started
            while True:
                done, active = await turns_done(client)
                if done >= n:
                    break
                await asyncio.sleep(0.2)
            # Heartbeats report every lease/3 (1 s): the true end is up to 1 s earlier.
            total_s = time.perf_counter() - started
            print(f"instances            {n:,}")
            print(f"sent in              {sent_s:.1f} s")
            print(f"turns/s (e2e)        {n / total_s:,.0f}   ({total_s:.1f} s, +-1 s heartbeat)")
            for proc in procs:
                print(f"worker {proc.pid} RSS       {rss_mb(proc.pid):.0f} MB")
            print(f"active sets          {sorted(active.values())}")
            mem = int((await admin.info("memory"))["used_memory"])
            keys = int(await admin.dbsize())
            sample = await admin.hget("pyg1:{assistant/u1}:state", "queue")
            blob = len(sample or b"")
            per = (mem - base_mem) / n
            print(
                f"Redis bytes/instance {per:,.0f} (context blob {blob} B: {per - blob:,.0f} beyond)"
            )
            print(f"keys/instance        {(keys - base_keys) / n:.2f}")
            for key in ("turns", "state", "done", "owner"):
                usage = await admin.memory_usage(f"pyg1:{{assistant/u1}}:{key}")
                print(f"  MEMORY USAGE {key:<6} {usage}")
            while True:  # the dedup sets expire 10 s after each instance's turn
                if not await admin.exists(f"pyg1:{{assistant/u{n - 1}}}:done"):
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(1.0)  # Redis expires keys a few at a time: let it catch up
            mem = int((await admin.info("memory"))["used_memory"])
            per = (mem - base_mem) / n
            print(
                f"  past the dedup window: {per:,.0f} B/instance ({per - blob:,.0f} beyond the "
                f"context blob), keys/instance {(int(await admin.dbsize()) - base_keys) / n:.2f}"
            )
            lat = []
            for i in range(500):
                t = time.perf_counter()
                await client.call(f"assistant/new{i}", "remember", kwargs={"text": "x"})
                lat.append((time.perf_counter() - t) * 1000)
            q = statistics.quantiles(lat, n=100)
            print(f"activation call      p50 {statistics.median(lat):.2f} ms  p99 {q[98]:.2f} ms")
            before = int(await admin.dbsize())
            forgotten = 0
            for i in range(1000):
                forgotten += await client.forget(f"assistant/u{i}")
            after = int(await admin.dbsize())
            print(f"forget 1,000         {forgotten} forgotten, keys {before:,} -> {after:,}")
            started = time.perf_counter()
            pool("instances_app", args=(*args, "--instance-expiry", "1"))
            index = "pyg1:{assistant}:instances"
            while True:
                if not await admin.exists(index):
                    break
                await asyncio.sleep(0.5)
            gone_s = time.perf_counter() - started
            left = [k async for k in admin.scan_iter(match="pyg1:{assistant/*", count=10_000)]
            left = [k for k in left if b":reply:" not in k]
            print(
                f"idle expiry          {gone_s:.1f} s to forget every instance "
                f"({n / gone_s:,.0f}/s); instance keys left: {len(left)}; keys "
                f"{int(await admin.dbsize()):,} (before the sends {base_keys:,}; the rest are "
                "the latency calls' reply streams, expiring in an hour, and heartbeats)"
            )
        await admin.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    ns = parser.parse_args()
    asyncio.run(main(ns.instances, ns.workers))
