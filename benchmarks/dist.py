"""End-to-end benchmarks of ``pygents_dist`` against the raw Redis bound and peer task queues.

Run from the repository root (one command; a few minutes; never part of the test run)::

    .venv/bin/python benchmarks/dist.py

It starts a private ``redis-server`` (``pygents_dist.testing.RedisServer``, no persistence)
and measures, in one run, on this machine:

Raw bound (redis-py asyncio + hiredis + msgpack, uvloop; consumers in their own process):
  (a) pipelined ``XADD`` of msgpack turn envelopes (1,000 per round trip);
  (b) one consumer: ``XREADGROUP COUNT 100`` + one ``XACK`` per batch, decoding each entry;
  (c) the same consumer also awaiting a no-op coroutine and publishing one result entry per
      message (``XADD`` pipelined with the ``XACK``);
  (d) one-message ping-pong between two processes over two streams (p50/p99).

pygents_dist (real ``pygents-worker`` processes, default settings, serving
``benchmarks/dist_app.py``):
  - 20,000 trivial turns on one agent, 1 worker, three ways: "e2e" (the client enqueues with
    ``Client.send_many``, 1,000 per call, while the worker drains), "drain (paused)"
    (enqueued while the agent is paused, timed from ``Client.resume`` until its stream is
    empty) and "drain (cold)" (enqueued with no worker running, timed from a fresh worker's
    READY line until the stream is empty);
  - the same 20,000 turns spread over 8 agents, drained by 1 and by 2 worker processes;
  - 10,000 agents with 3 turns each, 1 worker, e2e (sent 1,000 turns per ``send_batch``)
    and drain (cold);
  - send-to-result round trip over 2,000 sequential ``Client.call`` (p50/p99), with the
    default ``--linger-ms`` and with ``--linger-ms 0``;
  - a streaming tool read through ``Client.stream`` (values/s).

Cluster (``--only cluster``; ``pygents_dist.testing.RedisCluster``: 3 primaries and 3
replicas of ``redis-server`` on this machine): 1 worker with 1 agent and with 10,000 agents x
3 (e2e), the round trip, and the same 1-agent e2e and round trip with ``--durability
replicated`` on the worker and the client (every write confirmed by a replica, ``WAIT``).
Redis CPU there is the three primaries' (the replicas, which only apply what they are sent,
run on the same two cores but are not counted).

Peers (installed on demand into ``benchmarks/.venv-peers`` with ``python3 -m venv`` + pip):
taskiq + taskiq-redis (stream broker), streaq and arq, each with its default worker settings
and one worker process, the same trivial task and the same counts (each measurement is capped
in time; a capped one reports how many it finished). A peer that cannot be installed or run is
reported and skipped.

Printed: turns/s, latency percentiles, CPU seconds per 1,000 turns of the worker processes
(``/proc/<pid>/stat``, children included) and of redis-server, and ratios to the raw bound and
to every peer.

Options::

    --repeat N          rounds of the raw bound and pygents_dist (default 3); each row is its
                        median round, with the spread of the rounds in its note (peers run once)
    --skip-peers        only the raw bound and pygents_dist
    --quick             smaller counts (a smoke run)
    --json PATH         also write every measurement as JSON
    --only NAMES        comma-separated subset: raw, pygents, cluster, taskiq, streaq, arq
                        (cluster: the cases below on a local Redis Cluster; not by default)
    --worker-args ARGS  extra pygents-worker arguments (e.g. "--batch 200")

Internal modes (run by the script itself): ``--raw-consume``, ``--raw-echo`` and ``--peer``
(the latter inside the peers venv, where ``pygents`` is not installed: so only the standard
library is imported at module level).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from pygents_dist import _streams

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS_VENV = HERE / ".venv-peers"
PEERS = {
    "taskiq": (["taskiq", "taskiq-redis"], "taskiq_redis"),
    "streaq": (["streaq"], "streaq"),
    "arq": (["arq"], "arq"),
}
PEER_COMMON = ["redis", "hiredis", "msgpack", "uvloop"]
RAW_STREAM = "raw:turns"
RAW_RESULTS = "raw:results"

# -- measurement helpers ---------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and its reaped children)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2 :].split()
    ticks = sum(int(v) for v in rest[11:15])  # utime stime cutime cstime
    return int(rest[1]), ticks / _TICK


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds used so far by ``pids`` and every descendant (live or reaped)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None:
                stats[int(entry)] = stat
    children: dict[int, list[int]] = {}
    for pid, (ppid, _cpu) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total = 0.0
    todo = list(pids)
    seen: set[int] = set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        total += stats[pid][1]
        todo.extend(children.get(pid, ()))
    return total


class CpuMeter:
    """CPU seconds of worker process trees and of redis-server between start() and stop()."""

    def __init__(self, workers: list[int], redis_pid: int | list[int] | None) -> None:
        self.workers = workers
        if isinstance(redis_pid, list):  # a cluster: every node
            self.redis = redis_pid
        else:
            self.redis = [redis_pid] if redis_pid else []
        self.worker_s = self.redis_s = 0.0

    def start(self) -> None:
        self._w0, self._r0 = tree_cpu(self.workers), tree_cpu(self.redis)

    def stop(self) -> None:
        self.worker_s = tree_cpu(self.workers) - self._w0
        self.redis_s = tree_cpu(self.redis) - self._r0


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of an ascending list (nearest rank)."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def result(
    group: str,
    name: str,
    *,
    n: int,
    seconds: float | None = None,
    latencies: list[float] | None = None,
    cpu: CpuMeter | None = None,
    note: str = "",
    unit: str = "turns",
) -> dict[str, Any]:
    """One measurement as a JSON-able dict."""
    row: dict[str, Any] = {"group": group, "name": name, "n": n, "unit": unit, "note": note}
    if seconds is not None:
        row["rate"] = n / seconds if seconds > 0 else float("nan")
        row["seconds"] = seconds
    if latencies is not None:
        lat = sorted(latencies)
        row["p50_ms"] = percentile(lat, 0.50) * 1000
        row["p99_ms"] = percentile(lat, 0.99) * 1000
        row["rate"] = len(lat) / sum(lat) if lat else float("nan")
    if cpu is not None and n:
        row["worker_cpu_1k"] = cpu.worker_s / n * 1000
        row["redis_cpu_1k"] = cpu.redis_s / n * 1000
    return row


def medians(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per measurement (by name, in first-run order), the row of its median run: the median
    p50 for latency rows, the median rate otherwise; the note gives the spread of the runs."""
    if len(runs) <= 1:
        return runs[0] if runs else []
    out = []
    for first in runs[0]:
        same = [row for run in runs for row in run if row["name"] == first["name"]]
        latency = "p50_ms" in first

        def figure(row: dict[str, Any], latency: bool = latency) -> float:
            return float(row["p50_ms"] if latency else row.get("rate", 0.0))

        same.sort(key=figure)
        row = dict(same[len(same) // 2])
        low, high = figure(same[0]), figure(same[-1])
        spread = f"p50 {low:.3f}..{high:.3f} ms" if latency else f"{low:,.0f}..{high:,.0f}/s"
        row["note"] = "; ".join(filter(None, [row.get("note"), f"median of {len(same)}: {spread}"]))
        out.append(row)
    return out


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_loop[T](coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop when installed (as the workers do), else asyncio."""
    try:
        import uvloop

        return uvloop.run(coro)  # type: ignore[no-any-return]
    except ImportError:
        return asyncio.run(coro)


async def wait_until(
    check: Callable[[], Awaitable[bool]], deadline: float, interval: float = 0.002
) -> bool:
    """Poll ``check`` until it is true (True) or ``deadline`` (monotonic) passes (False)."""
    while True:
        if await check():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)


def envelope(i: int) -> dict[bytes, bytes]:
    """The fields of a raw turn entry, shaped like a pygents_dist turn (id + msgpack)."""
    import msgpack

    turn_id = uuid.uuid4().hex
    data = msgpack.packb(
        {
            "v": 1,
            "id": turn_id,
            "agent": "a0",
            "tool": "noop",
            "args": [],
            "kwargs": {"i": i},
            "timeout": 60.0,
            "tags": [],
            "reply": False,
            "ts": time.time(),
        }
    )
    return {b"id": turn_id.encode(), b"m": data}


# -- raw bound ----------------------------------------------------------------------------------


async def _noop_coroutine() -> None:
    return None


async def raw_consume(url: str, mode: str, count: int) -> dict[str, float]:
    """Drain ``count`` entries of the raw stream: mode ``b`` (read+ack) or ``c`` (+work)."""
    import msgpack
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url)
    import resource

    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    done = 0
    while done < count:
        got = await r.xreadgroup("g", "c", {RAW_STREAM: ">"}, count=100, block=1000)
        if not got:
            continue
        entries = got[0][1]
        ids = []
        if mode == "b":
            for entry_id, fields in entries:
                msgpack.unpackb(fields[b"m"])
                ids.append(entry_id)
            await r.xack(RAW_STREAM, "g", *ids)
        else:
            pipe = r.pipeline(transaction=False)
            for entry_id, fields in entries:
                msg = msgpack.unpackb(fields[b"m"])
                await _noop_coroutine()
                ids.append(entry_id)
                pipe.xadd(
                    RAW_RESULTS,
                    {b"k": b"e", b"q": 0, b"d": msgpack.packb(msg["kwargs"]["i"])},
                    maxlen=10_000,
                    approximate=True,
                )
            pipe.xack(RAW_STREAM, "g", *ids)
            await pipe.execute()
        done += len(entries)
    seconds = time.perf_counter() - t0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    await r.aclose()
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    return {"seconds": seconds, "cpu": cpu, "count": done}


async def raw_echo(url: str) -> None:
    """Answer every entry of ``raw:ping`` with one on ``raw:pong`` until a stop entry."""
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url)
    last = b"0-0"
    while True:
        got = await r.xread({"raw:ping": last}, count=100, block=0)
        for entry_id, fields in got[0][1]:
            last = entry_id
            if fields.get(b"stop"):
                await r.aclose()
                return
            await r.xadd("raw:pong", {b"d": fields[b"d"]}, maxlen=1000, approximate=True)


def _internal(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *args], stdout=subprocess.PIPE
    )


async def bench_raw(url: str, redis_pid: int, count: int, calls: int) -> list[dict[str, Any]]:
    import msgpack
    import redis.asyncio as aioredis

    rows = []
    r = aioredis.Redis.from_url(url)
    await r.flushall()
    await r.xgroup_create(RAW_STREAM, "g", id="0", mkstream=True)
    # (a) pipelined XADD
    cpu = CpuMeter([], redis_pid)
    cpu.start()
    t0 = time.perf_counter()
    for start in range(0, count, 1000):
        pipe = r.pipeline(transaction=False)
        for i in range(start, min(count, start + 1000)):
            pipe.xadd(RAW_STREAM, envelope(i))
        await pipe.execute()
    seconds = time.perf_counter() - t0
    cpu.stop()
    rows.append(result("raw", "(a) pipelined XADD", n=count, seconds=seconds, cpu=cpu))
    rows[-1].pop("worker_cpu_1k", None)
    log(f"raw (a): {count / seconds:,.0f}/s")
    # (b) and (c): a consumer process drains the pre-filled stream
    for mode, name in (
        ("b", "(b) XREADGROUP 100 + XACK"),
        ("c", "(c) (b) + no-op coroutine + result XADD"),
    ):
        if mode == "c":
            await r.delete(RAW_STREAM, RAW_RESULTS)
            await r.xgroup_create(RAW_STREAM, "g", id="0", mkstream=True)
            for start in range(0, count, 1000):
                pipe = r.pipeline(transaction=False)
                for i in range(start, min(count, start + 1000)):
                    pipe.xadd(RAW_STREAM, envelope(i))
                await pipe.execute()
        cpu = CpuMeter([], redis_pid)
        cpu.start()
        proc = _internal(["--raw-consume", url, mode, str(count)])
        out, _ = await asyncio.to_thread(proc.communicate)
        cpu.stop()
        got = json.loads(out)
        cpu.worker_s = got["cpu"]
        rows.append(result("raw", name, n=count, seconds=got["seconds"], cpu=cpu))
        log(f"raw ({mode}): {count / got['seconds']:,.0f}/s")
    # (d) ping-pong over two streams with an echo process
    await r.delete("raw:ping", "raw:pong")
    proc = _internal(["--raw-echo", url])
    latencies: list[float] = []
    last = b"0-0"
    payload = msgpack.packb({"i": 0})
    try:
        for i in range(calls + 200):
            t = time.perf_counter()
            await r.xadd("raw:ping", {b"d": payload}, maxlen=1000, approximate=True)
            while True:
                got = await r.xread({"raw:pong": last}, count=1, block=5000)
                if got:
                    last = got[0][1][-1][0]
                    break
            if i >= 200:
                latencies.append(time.perf_counter() - t)
        await r.xadd("raw:ping", {b"stop": b"1"})
        await asyncio.to_thread(proc.wait, 10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    rows.append(result("raw", "(d) ping-pong round trip", n=calls, latencies=latencies))
    log(f"raw (d): p50 {rows[-1]['p50_ms']:.3f} ms p99 {rows[-1]['p99_ms']:.3f} ms")
    await r.flushall()
    await r.aclose()
    return rows


# -- pygents_dist ------------------------------------------------------------------------------


class Pygents:
    """Runs the pygents_dist cases against one Redis."""

    def __init__(
        self,
        url: str,
        redis_pid: int | list[int],
        worker_args: list[str],
        client_options: dict[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.redis_pid = redis_pid
        self.worker_args = ["--log-level", "WARNING", *worker_args]
        self.round = 0
        #: Extra ``Client`` options (``durability``).
        self.client_options = client_options or {}

    def _pool(self, agents: int) -> tuple[Any, str]:
        from pygents_dist.testing import WorkerPool

        self.round += 1
        namespace = f"bench{self.round}"
        env = {"BENCH_AGENTS": str(agents), "PYGENTS_NAMESPACE": namespace}
        return WorkerPool(self.url, pythonpath=[HERE], env=env, ready_timeout=120), namespace

    async def _flush(self) -> None:
        import redis.asyncio as aioredis

        if isinstance(self.redis_pid, list):  # a cluster: every primary
            r: Any = aioredis.RedisCluster.from_url(self.url)
            await r.flushall(target_nodes=aioredis.RedisCluster.PRIMARIES)
        else:
            r = aioredis.Redis.from_url(self.url)
            await r.flushall()
        await r.aclose()

    async def throughput(
        self,
        name: str,
        *,
        agents: int,
        per_agent: int,
        workers: int,
        mode: str,
        deadline_s: float = 300.0,
    ) -> dict[str, Any]:
        """Turns/s of ``agents`` x ``per_agent`` trivial turns. ``mode``: ``e2e`` (sent while
        the workers run), ``paused`` (sent while the agents are paused, timed from resume)
        or ``cold`` (sent with no worker running, timed from the READY of a fresh one)."""
        from pygents_dist import Client

        await self._flush()
        pool, namespace = self._pool(agents)
        names = [f"a{i}" for i in range(agents)]
        total = agents * per_agent
        try:
            procs = [pool("dist_app", args=self.worker_args) for _ in range(workers)]
            async with Client(self.url, namespace=namespace, **self.client_options) as client:
                for start in range(0, agents, 200):  # learn every name (no timed lookups)
                    await asyncio.gather(
                        *(client._check_agent(a) for a in names[start : start + 200])
                    )
                await client.call("a0", "noop", kwargs={"i": -1})  # warm the worker up
                if mode == "paused":
                    for a in names:
                        await client.pause(a)
                    await self._send(client, names, per_agent)
                elif mode == "cold":
                    for proc in procs:
                        proc.terminate()
                        proc.wait(30)
                    await self._send(client, names, per_agent)
                    procs = [pool("dist_app", args=self.worker_args) for _ in range(workers)]
                cpu = CpuMeter([p.pid for p in procs], self.redis_pid)
                cpu.start()
                t0 = time.perf_counter()
                if mode == "paused":
                    await asyncio.gather(*(client.resume(a) for a in names))
                elif mode == "e2e":
                    await self._send(client, names, per_agent)
                finished = await self._drained(client, names, time.monotonic() + deadline_s)
                seconds = time.perf_counter() - t0
                cpu.stop()
        finally:
            pool.close()
        note = "" if finished else f"unfinished after {deadline_s:.0f}s"
        row = result("pygents", name, n=total, seconds=seconds, cpu=cpu, note=note)
        log(f"{name}: {row['rate']:,.0f} turns/s")
        return row

    async def _send(self, client: Any, names: list[str], per_agent: int) -> None:
        if len(names) <= 8:  # chunks of 1,000 turns, round robin over the agents
            sent = {a: 0 for a in names}
            while any(v < per_agent for v in sent.values()):
                for a in names:
                    k = min(1000, per_agent - sent[a])
                    if k > 0:
                        calls = [{"i": sent[a] + j} for j in range(k)]
                        await client.send_many(a, "noop", calls)
                        sent[a] += k
            return
        # many agents: one service fanning work out, 1,000 turns per call and round trip
        # (as the few-agent case sends 1,000 per send_many call)
        turns = [(a, "noop", {"i": j}) for a in names for j in range(per_agent)]
        for start in range(0, len(turns), 1000):
            await client.send_batch(turns[start : start + 1000])

    async def _drained(self, client: Any, names: list[str], deadline: float) -> bool:
        remaining = list(names)

        async def check() -> bool:
            # Agents finish roughly in the order they were sent: watch the last unfinished
            # one alone, and sweep the others only once it is done (polling many agents
            # every few ms would take CPU from the two cores the worker and Redis share).
            nonlocal remaining
            if await _streams.backlog(client.transport, remaining[-1:]) != [0]:
                return False
            while remaining:
                head = remaining[:2000]
                depths = await _streams.backlog(client.transport, head)
                left = [a for a, d in zip(head, depths, strict=True) if d]
                remaining = left + remaining[2000:]
                if left:
                    return False
            return True

        return await wait_until(check, deadline, 0.005)

    async def round_trip(
        self, calls: int, name: str = "Client.call round trip", args: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        from pygents_dist import Client

        await self._flush()
        pool, namespace = self._pool(1)
        try:
            procs = [pool("dist_app", args=[*self.worker_args, *args])]
            async with Client(self.url, namespace=namespace, **self.client_options) as client:
                for i in range(200):
                    await client.call("a0", "noop", kwargs={"i": i})
                cpu = CpuMeter([p.pid for p in procs], self.redis_pid)
                cpu.start()
                latencies = []
                for i in range(calls):
                    t = time.perf_counter()
                    value = await client.call("a0", "noop", kwargs={"i": i})
                    latencies.append(time.perf_counter() - t)
                    assert value == i, value
                cpu.stop()
        finally:
            pool.close()
        row = result("pygents", name, n=calls, latencies=latencies, cpu=cpu)
        log(f"{name}: p50 {row['p50_ms']:.3f} ms p99 {row['p99_ms']:.3f} ms")
        return row

    async def stream(self, values: int) -> dict[str, Any]:
        from pygents_dist import Client

        await self._flush()
        pool, namespace = self._pool(1)
        try:
            procs = [pool("dist_app", args=self.worker_args)]
            async with Client(self.url, namespace=namespace) as client:
                assert [v async for v in client.stream("a0", "count", kwargs={"n": 10})] == list(
                    range(10)
                )
                cpu = CpuMeter([p.pid for p in procs], self.redis_pid)
                cpu.start()
                t0 = time.perf_counter()
                got = 0
                async for v in client.stream("a0", "count", kwargs={"n": values}):
                    assert v == got
                    got += 1
                seconds = time.perf_counter() - t0
                cpu.stop()
        finally:
            pool.close()
        row = result("pygents", "streaming tool (Client.stream)", n=got, seconds=seconds, cpu=cpu)
        row["unit"] = "values"
        log(f"stream: {row['rate']:,.0f} values/s")
        return row


async def bench_pygents(
    url: str, redis_pid: int, turns: int, calls: int, many: int, worker_args: list[str]
) -> list[dict[str, Any]]:
    p = Pygents(url, redis_pid, worker_args)
    eighth = turns // 8
    cases: list[tuple[str, int, int, int, str]] = [
        # name, agents, turns per agent, workers, mode
        ("1 worker, 1 agent, e2e", 1, turns, 1, "e2e"),
        ("1 worker, 1 agent, drain (paused)", 1, turns, 1, "paused"),
        ("1 worker, 1 agent, drain (cold)", 1, turns, 1, "cold"),
        ("1 worker, 8 agents, e2e", 8, eighth, 1, "e2e"),
        ("2 workers, 8 agents, e2e", 8, eighth, 2, "e2e"),
        ("1 worker, 8 agents, drain (paused)", 8, eighth, 1, "paused"),
        ("2 workers, 8 agents, drain (paused)", 8, eighth, 2, "paused"),
        (f"1 worker, {many:,} agents x 3, e2e", many, 3, 1, "e2e"),
        (f"1 worker, {many:,} agents x 3, drain (cold)", many, 3, 1, "cold"),
    ]
    rows = []
    for name, agents, per_agent, workers, mode in cases:
        rows.append(
            await p.throughput(name, agents=agents, per_agent=per_agent, workers=workers, mode=mode)
        )
    rows.append(await p.round_trip(calls))
    off = ("--linger-ms", "0")
    rows.append(await p.round_trip(calls, "Client.call round trip, linger off", off))
    rows.append(await p.stream(turns))
    return rows


async def bench_cluster(
    url: str, pids: list[int], turns: int, calls: int, many: int, worker_args: list[str]
) -> list[dict[str, Any]]:
    """The cluster section: the single node's main cases on a local 3-primary cluster
    (Redis CPU: the three primaries'; their replicas' is not counted), then the durability
    mode's cost."""
    p = Pygents(url, pids, worker_args)
    rows = [
        await p.throughput(
            "cluster: 1 worker, 1 agent, e2e", agents=1, per_agent=turns, workers=1, mode="e2e"
        ),
        await p.throughput(
            f"cluster: 1 worker, {many:,} agents x 3, e2e",
            agents=many,
            per_agent=3,
            workers=1,
            mode="e2e",
        ),
        await p.round_trip(calls, "cluster: Client.call round trip"),
    ]
    durable = ["--durability", "replicated"]
    d = Pygents(url, pids, [*worker_args, *durable], {"durability": "replicated"})
    rows.append(
        await d.throughput(
            "cluster, durability replicated: 1 worker, 1 agent, e2e",
            agents=1,
            per_agent=turns,
            workers=1,
            mode="e2e",
        )
    )
    rows.append(await d.round_trip(calls, "cluster, durability replicated: Client.call round trip"))
    return rows


# -- peers --------------------------------------------------------------------------------------


def ensure_peers(wanted: list[str]) -> dict[str, str]:
    """Create the peers venv if needed; ``{peer: problem}`` for peers that cannot be used."""
    python = PEERS_VENV / "bin" / "python"
    problems: dict[str, str] = {}
    if not python.exists():
        log(f"creating {PEERS_VENV} (once)")
        made = subprocess.run(
            ["python3", "-m", "venv", str(PEERS_VENV)], capture_output=True, text=True
        )
        if made.returncode:
            return dict.fromkeys(wanted, f"python3 -m venv failed: {made.stderr.strip()}")
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-U", "pip"], check=False)
    pip = [str(python), "-m", "pip", "install", "-q"]
    check = [str(python), "-c", "import redis, msgpack, hiredis"]
    if subprocess.run(check, capture_output=True).returncode:
        for package in PEER_COMMON:  # one by one: uvloop may be unavailable (then asyncio)
            subprocess.run([*pip, package], capture_output=True, check=False)
    for peer in wanted:
        packages, module = PEERS[peer]
        if (
            subprocess.run([str(python), "-c", f"import {module}"], capture_output=True).returncode
            == 0
        ):
            continue
        log(f"installing {' '.join(packages)} into {PEERS_VENV}")
        done = subprocess.run([*pip, *packages], capture_output=True, text=True)
        imported = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True)
        if done.returncode or imported.returncode:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            problems[peer] = "cannot be installed: " + " / ".join(tail)
    return problems


def bench_peers(
    url: str, redis_pid: int, wanted: list[str], turns: int, calls: int
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    problems = ensure_peers(wanted)
    rows: list[dict[str, Any]] = []
    for peer in wanted:
        if peer in problems:
            log(f"{peer}: {problems[peer]}")
            continue
        log(f"{peer}: running")
        command = [
            str(PEERS_VENV / "bin" / "python"),
            str(Path(__file__).resolve()),
            "--peer",
            peer,
            "--redis-url",
            url,
            "--redis-pid",
            str(redis_pid),
            "--turns",
            str(turns),
            "--calls",
            str(calls),
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=400)
        except subprocess.TimeoutExpired:
            problems[peer] = "did not finish within 400 s"
            continue
        got = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode or not got:
            tail = done.stderr.strip().splitlines()[-5:]
            problems[peer] = f"failed (exit {done.returncode}): " + " / ".join(tail)
            log(f"{peer}: {problems[peer]}")
        rows.extend(got)
        for row in got:
            log(f"{peer} {row['name']}: {_short(row)}")
    return rows, problems


def _short(row: dict[str, Any]) -> str:
    if "p50_ms" in row:
        return f"p50 {row['p50_ms']:.2f} ms p99 {row['p99_ms']:.2f} ms (n={row['n']})"
    return f"{row.get('rate', float('nan')):,.0f}/s {row.get('note', '')}"


# The peer driver: runs inside the peers venv. -------------------------------------------------


class PeerDriver:
    """Starts one peer's worker, enqueues, waits, measures (peers venv only)."""

    def __init__(self, peer: str, url: str, redis_pid: int) -> None:
        self.peer = peer
        self.url = url
        self.redis_pid = redis_pid
        self.bin = PEERS_VENV / "bin"
        self.proc: subprocess.Popen[bytes] | None = None
        os.environ["BENCH_REDIS_URL"] = url
        sys.path.insert(0, str(HERE))

    def start_worker(self, results: bool) -> int:
        commands = {
            "taskiq": [
                str(self.bin / "taskiq"),
                "worker",
                "peer_taskiq:broker_results" if results else "peer_taskiq:broker",
                "--workers",
                "1",
                "--log-level",
                "WARNING",
            ],
            # streaq and arq through their documented programmatic entry points, so that
            # their per-task INFO log lines are not produced (pygents logs none either)
            "streaq": [
                str(self.bin / "python"),
                str(Path(__file__).resolve()),
                "--peer-worker",
                "streaq",
                str(int(results)),
            ],
            "arq": [
                str(self.bin / "python"),
                str(Path(__file__).resolve()),
                "--peer-worker",
                "arq",
                str(int(results)),
            ],
        }
        env = dict(os.environ, PYTHONPATH=str(HERE))
        self.proc = subprocess.Popen(
            commands[self.peer],
            cwd=HERE,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self.proc.pid

    def stop_worker(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    async def run(self, turns: int, calls: int) -> list[dict[str, Any]]:
        import redis.asyncio as aioredis

        self.redis = aioredis.Redis.from_url(self.url)
        rows = []
        try:
            await self.redis.flushall()
            rows.append(await self.throughput(turns))
            self.stop_worker()
            await self.redis.flushall()
            rows.append(await self.round_trip(calls))
        finally:
            self.stop_worker()
            await self.redis.aclose()
        return rows

    # per peer: client objects, enqueue, drained check, one call

    async def _open(self, results: bool) -> None:
        if self.peer == "taskiq":
            import peer_taskiq

            self.broker = peer_taskiq.broker_results if results else peer_taskiq.broker
            self.task = peer_taskiq.noop_results if results else peer_taskiq.noop
            await self.broker.startup()
        elif self.peer == "streaq":
            import peer_streaq

            self.sq = peer_streaq.worker_results if results else peer_streaq.worker
            self.task = peer_streaq.noop_results if results else peer_streaq.noop
            await self.sq.__aenter__()
        else:
            from arq.connections import RedisSettings, create_pool

            self.arq = await create_pool(RedisSettings.from_dsn(self.url))

    async def _close(self) -> None:
        if self.peer == "taskiq":
            await self.broker.shutdown()
        elif self.peer == "streaq":
            await self.sq.__aexit__(None, None, None)
        else:
            await self.arq.aclose()

    async def _enqueue(self, start: int, count: int) -> None:
        if self.peer == "taskiq":  # one XADD per kiq: 100 at once
            for s in range(start, start + count, 100):
                end = min(s + 100, start + count)
                await asyncio.gather(*(self.task.kiq(i) for i in range(s, end)))
        elif self.peer == "streaq":  # its pipelined batch API
            await self.sq.enqueue_many([self.task.enqueue(i) for i in range(start, start + count)])
        else:
            for s in range(start, start + count, 100):
                end = min(s + 100, start + count)
                await asyncio.gather(*(self.arq.enqueue_job("noop", i) for i in range(s, end)))

    async def _remaining(self) -> int:
        """Tasks enqueued and not finished (0 when drained)."""
        r = self.redis
        if self.peer == "taskiq":
            groups = await r.xinfo_groups("taskiq")
            if not groups:
                return 1
            group = groups[0]
            return int(group["pending"]) + int(group.get("lag") or 0)
        if self.peer == "streaq":
            return int(await r.xlen("streaq:default:queues:normal"))
        return int(await r.zcard("arq:queue"))

    async def _call(self, i: int) -> Any:
        if self.peer == "taskiq":
            task = await self.task.kiq(i)
            res = await task.wait_result(check_interval=0.001, timeout=30)
            return res.return_value
        if self.peer == "streaq":
            task = await self.task.enqueue(i)
            res = await task.result(timeout=30)
            return res.result
        from arq.jobs import ResultNotFound

        job = await self.arq.enqueue_job("noop", i)
        try:
            return await job.result(timeout=30, poll_delay=0.005)
        except ResultNotFound:  # arq reads result and queue non-atomically: a finished job
            info = await job.result_info()  # can look "not in queue" between the two reads
            if info is None:
                raise
            return info.result

    async def _ready(self, results: bool) -> None:
        """Wait until the worker runs tasks (a first task is finished)."""
        deadline = time.monotonic() + 60
        if results:
            while True:
                try:
                    await asyncio.wait_for(self._call(0), 30)
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
        await self._enqueue(0, 1)

        async def drained() -> bool:
            return await self._remaining() == 0

        if not await wait_until(drained, deadline, 0.01):
            raise RuntimeError(f"{self.peer} worker ran nothing within 60 s")

    async def throughput(self, turns: int, budget: float = 60.0) -> dict[str, Any]:
        pid = self.start_worker(results=False)
        await self._open(results=False)
        try:
            await self._ready(results=False)
            cpu = CpuMeter([pid], self.redis_pid)
            cpu.start()
            t0 = time.perf_counter()
            deadline = time.monotonic() + budget
            for start in range(0, turns, 1000):
                await self._enqueue(start, min(1000, turns - start))
                if time.monotonic() > deadline:
                    turns = min(turns, start + 1000)
                    break

            async def drained() -> bool:
                return await self._remaining() == 0

            finished = await wait_until(drained, deadline)
            left = 0 if finished else await self._remaining()
            seconds = time.perf_counter() - t0
            cpu.stop()
        finally:
            await self._close()
        done = turns - left
        note = "" if finished else f"capped: {done:,} of {turns:,} done in {budget:.0f}s"
        return result(
            self.peer, f"{self.peer}, 1 worker, e2e", n=done, seconds=seconds, cpu=cpu, note=note
        )

    async def round_trip(self, calls: int, budget: float = 30.0) -> dict[str, Any]:
        pid = self.start_worker(results=True)
        await self._open(results=True)
        try:
            await self._ready(results=True)
            for i in range(20):
                await self._call(i)
            cpu = CpuMeter([pid], self.redis_pid)
            cpu.start()
            latencies = []
            deadline = time.monotonic() + budget
            for i in range(calls):
                t = time.perf_counter()
                value = await self._call(i)
                latencies.append(time.perf_counter() - t)
                assert value == i, value
                if time.monotonic() > deadline:
                    break
            cpu.stop()
        finally:
            await self._close()
        note = (
            "" if len(latencies) == calls else f"capped: {len(latencies):,} calls in {budget:.0f}s"
        )
        return result(
            self.peer,
            f"{self.peer} round trip",
            n=len(latencies),
            latencies=latencies,
            cpu=cpu,
            note=note,
        )


def peer_worker(peer: str, results: bool) -> None:
    """Run a streaq or arq worker (peers venv), logging warnings only."""
    sys.path.insert(0, str(HERE))
    if peer == "streaq":
        import peer_streaq

        (peer_streaq.worker_results if results else peer_streaq.worker).run_sync()
    else:
        import peer_arq
        from arq.worker import run_worker

        run_worker(peer_arq.WorkerSettingsResults if results else peer_arq.WorkerSettings)


# -- report -------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ",.0f") -> str:
    if value is None or value != value:
        return "-"
    return format(value, spec)


def report(rows: list[dict[str, Any]], problems: dict[str, str], peers: list[str]) -> str:
    by_name = {r["name"]: r for r in rows}
    raw_c = by_name.get("(c) (b) + no-op coroutine + result XADD", {}).get("rate")
    raw_d = by_name.get("(d) ping-pong round trip", {})
    peer_thr = {p: by_name.get(f"{p}, 1 worker, e2e", {}).get("rate") for p in peers}
    peer_rt = {p: by_name.get(f"{p} round trip", {}) for p in peers}
    lines = []
    head = f"{'throughput':52} {'n':>7} {'per s':>9} {'wCPU/1k':>8} {'rCPU/1k':>8} {'xraw(c)':>8}"
    head += "".join(f" {'x' + p:>8}" for p in peers)
    lines += [head, "-" * len(head)]
    for r in rows:
        if "p50_ms" in r:
            continue
        ratio_raw = r["rate"] / raw_c if raw_c and r["group"] != "raw" else None
        line = f"{r['group'] + ': ' + r['name']:52} {r['n']:>7,} {_fmt(r.get('rate')):>9}"
        line += f" {_fmt(r.get('worker_cpu_1k'), '.3f'):>8} {_fmt(r.get('redis_cpu_1k'), '.3f'):>8}"
        line += f" {_fmt(ratio_raw, '.2f'):>8}"
        for p in peers:
            ok = r["group"] == "pygents" and r.get("unit") == "turns" and peer_thr.get(p)
            line += f" {_fmt(r['rate'] / peer_thr[p] if ok else None, '.2f'):>8}"
        lines.append(line + (f"  ({r['note']})" if r.get("note") else ""))
    lines.append("")
    head = f"{'round trip (ms)':52} {'n':>7} {'p50':>7} {'p99':>7} {'wCPU/1k':>8} {'xraw(d)':>10}"
    head += "".join(f" {'x' + p:>12}" for p in peers)
    lines += [head, "-" * len(head)]
    for r in rows:
        if "p50_ms" not in r:
            continue
        line = f"{r['group'] + ': ' + r['name']:52} {r['n']:>7,} {r['p50_ms']:>7.3f}"
        line += f" {r['p99_ms']:>7.3f} {_fmt(r.get('worker_cpu_1k'), '.3f'):>8}"
        if r["group"] != "raw" and raw_d:
            ratio = f"{r['p50_ms'] / raw_d['p50_ms']:.2f}/{r['p99_ms'] / raw_d['p99_ms']:.2f}"
        else:
            ratio = "-"
        line += f" {ratio:>10}"
        for p in peers:
            other = peer_rt.get(p)
            if r["group"] == "pygents" and other and "p50_ms" in other:
                cell = f"{r['p50_ms'] / other['p50_ms']:.2f}/{r['p99_ms'] / other['p99_ms']:.2f}"
            else:
                cell = "-"
            line += f" {cell:>12}"
        lines.append(line + (f"  ({r['note']})" if r.get("note") else ""))
    lines.append("")
    lines.append(
        "per s: turns (values for the stream) per second; wCPU/rCPU: CPU seconds per 1,000 of "
        "the worker processes / redis-server; x...: ours / theirs (throughput: higher is "
        "better; round trip: p50/p99 ratio, lower is better). e2e: the client enqueues while "
        "the workers drain; drain (paused): enqueued while the agents are paused, timed from "
        "resume to empty; drain (cold): enqueued with no worker running, timed from a fresh "
        "worker's READY to empty."
    )
    for peer, problem in problems.items():
        lines.append(f"{peer}: {problem}")
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--only", default="raw,pygents,taskiq,streaq,arq")
    parser.add_argument("--worker-args", default="")
    parser.add_argument("--turns", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--raw-count", type=int, default=100_000)
    parser.add_argument("--raw-consume", nargs=3, metavar=("URL", "MODE", "COUNT"))
    parser.add_argument("--raw-echo", metavar="URL")
    parser.add_argument("--peer", choices=sorted(PEERS))
    parser.add_argument("--peer-worker", nargs=2, metavar=("PEER", "RESULTS"))
    parser.add_argument("--redis-url")
    parser.add_argument("--redis-pid", type=int, default=0)
    ns = parser.parse_args(argv)

    if ns.raw_consume:
        url, mode, count = ns.raw_consume
        print(json.dumps(run_loop(raw_consume(url, mode, int(count)))))
        return 0
    if ns.raw_echo:
        run_loop(raw_echo(ns.raw_echo))
        return 0
    if ns.peer_worker:
        peer_worker(ns.peer_worker[0], ns.peer_worker[1] == "1")
        return 0
    if ns.peer:
        driver = PeerDriver(ns.peer, ns.redis_url, ns.redis_pid)
        for row in run_loop(driver.run(ns.turns, ns.calls)):
            print(json.dumps(row), flush=True)
        return 0

    sys.path.insert(0, str(ROOT))
    from pygents_dist.testing import RedisServer

    if ns.quick:
        ns.turns, ns.calls, ns.agents, ns.raw_count = 4_000, 300, 1_000, 20_000
    only = [s.strip() for s in ns.only.split(",") if s.strip()]
    peers = [] if ns.skip_peers else [p for p in PEERS if p in only]
    rows: list[dict[str, Any]] = []
    problems: dict[str, str] = {}
    started = time.monotonic()
    with RedisServer() as server:
        log(f"private redis-server at {server.url} (pid {server.pid})")
        # The raw bound and pygents_dist run ``--repeat`` times, interleaved, and each row
        # reports its median run (shared machines are noisy; one unlucky run says little).
        raw_runs: list[list[dict[str, Any]]] = []
        pygents_runs: list[list[dict[str, Any]]] = []
        for round_no in range(ns.repeat):
            if ns.repeat > 1:
                log(f"round {round_no + 1} of {ns.repeat}")
            if "raw" in only:
                raw_runs.append(run_loop(bench_raw(server.url, server.pid, ns.raw_count, ns.calls)))
            if "pygents" in only:
                args = shlex.split(ns.worker_args)
                pygents_runs.append(
                    run_loop(
                        bench_pygents(server.url, server.pid, ns.turns, ns.calls, ns.agents, args)
                    )
                )
        rows += medians(raw_runs) + medians(pygents_runs)
        if "cluster" in only:
            from pygents_dist.testing import RedisCluster

            with RedisCluster() as cluster:
                log(f"local Redis Cluster at {cluster.url}")
                args = shlex.split(ns.worker_args)
                rows += run_loop(
                    bench_cluster(
                        cluster.url,
                        cluster.pids(primaries=True),
                        ns.turns,
                        ns.calls,
                        ns.agents,
                        args,
                    )
                )
        if peers:
            peer_rows, problems = bench_peers(server.url, server.pid, peers, ns.turns, ns.calls)
            rows += peer_rows
    text = report(rows, problems, peers)
    print(text)
    log(f"total {time.monotonic() - started:.0f} s")
    if ns.json:
        Path(ns.json).write_text(json.dumps({"rows": rows, "problems": problems}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
