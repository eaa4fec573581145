"""Throughput benchmarks for the in-process ``pygents`` core, against pygents 0.7.0.

Run from the repository root::

    .venv/bin/python benchmarks/core.py --compare

``--compare`` creates (if missing) a virtualenv at ``benchmarks/.venv-baseline`` holding
``pygents==0.7.0``, runs this same script there as a subprocess (``--json``), runs it in-process
against the ``pygents`` importable in the current interpreter (ours), and prints a table of
ops/s per case, the ratio ours / 0.7.0 and the target (3x).

Other modes::

    .venv/bin/python benchmarks/core.py             # just the importable implementation
    .venv/bin/python benchmarks/core.py --json      # same, as JSON on stdout
    .venv/bin/python benchmarks/core.py --baseline  # just 0.7.0, in the baseline venv

Only the public API is used, so the script runs unchanged against either implementation.
Cases (best of ``--reps`` repetitions, default 3; every registry is cleared before each one):

1. ``turns``: 100k trivial coroutine turns put on one agent, then drained by one
   ``agent.run()``; timed put+run together (``turns (run only)`` times the drain alone).
2. ``chain``: a 20k-step chain, a tool returning the next ``Turn`` until ``n`` reaches 0.
3. ``stream``: one async-generator tool yielding 100k values through ``agent.run()``.
4. ``queue_append``: 100k ``ContextQueue.append`` calls (limit 1000).
5. ``pool_add``: 100k ``ContextPool.add`` calls (limit 1000, ids cycling over 1500 so that
   every add past the first 1000 evicts).
6. ``turns_hooked``: case 1 with one global ``@hook(TurnHook.BEFORE_RUN)`` and one global
   ``@hook(AgentHook.AFTER_TURN)`` registered.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from pygents import (
    Agent,
    AgentHook,
    AgentRegistry,
    HookRegistry,
    ToolRegistry,
    Turn,
    TurnHook,
    hook,
    tool,
)
from pygents.context import ContextItem, ContextPool, ContextQueue

BASELINE_VERSION = "0.7.0"
BASELINE_VENV = Path(__file__).resolve().parent / ".venv-baseline"
TARGET_RATIO = 3.0

N_TURNS = 100_000
N_CHAIN = 20_000
N_STREAM = 100_000
N_APPEND = 100_000
N_ADD = 100_000
CONTEXT_LIMIT = 1000
POOL_ID_CYCLE = 1500

# A timed run returns {case name: seconds}; ops counts the operations behind each name.
Timings = dict[str, float]
Results = dict[str, float]  # case name -> best ops/s

CASES: list[tuple[str, int]] = [
    ("turns", N_TURNS),
    ("turns (run only)", N_TURNS),
    ("chain", N_CHAIN),
    ("stream", N_STREAM),
    ("queue_append", N_APPEND),
    ("pool_add", N_ADD),
    ("turns_hooked", N_TURNS),
    ("turns_hooked (run only)", N_TURNS),
]
INFO_ONLY = {"turns (run only)", "turns_hooked (run only)"}


def reset_registries() -> None:
    """Forget every tool, agent and (global) hook."""
    ToolRegistry.clear()
    AgentRegistry.clear()
    HookRegistry.clear()


async def _put_then_drain(agent: Agent, turns: list[Turn[Any]]) -> tuple[float, float]:
    start = time.perf_counter()
    for turn in turns:
        await agent.put(turn)
    mid = time.perf_counter()
    count = 0
    async for _turn, _value in agent.run():
        count += 1
    end = time.perf_counter()
    assert count == len(turns), f"expected {len(turns)} values, got {count}"
    return end - start, end - mid


async def bench_turns(hooked: bool) -> Timings:
    """Cases 1 and 6: many trivial coroutine turns through one ``agent.run()``."""
    calls = [0, 0]
    if hooked:

        @hook(TurnHook.BEFORE_RUN)
        async def bench_before_run(turn: Turn[Any]) -> None:
            calls[0] += 1

        @hook(AgentHook.AFTER_TURN)
        async def bench_after_turn(agent: Agent, turn: Turn[Any]) -> None:
            calls[1] += 1

    @tool()
    async def bench_noop() -> int:
        return 1

    agent = Agent("bench_turns", "Runs trivial turns", [bench_noop])
    turns: list[Turn[Any]] = [Turn("bench_noop") for _ in range(N_TURNS)]
    total, run_only = await _put_then_drain(agent, turns)
    name = "turns_hooked" if hooked else "turns"
    if hooked:
        assert calls == [N_TURNS, N_TURNS], f"hooks fired {calls}"
    return {name: total, f"{name} (run only)": run_only}


async def bench_chain() -> Timings:
    """Case 2: a tool that returns the next ``Turn`` until ``n`` reaches 0."""

    @tool()
    async def bench_step(n: int) -> int | Turn[Any]:
        if n > 0:
            return Turn("bench_step", kwargs={"n": n - 1})
        return n

    agent = Agent("bench_chain", "Follows a chain of turns", [bench_step])
    start = time.perf_counter()
    await agent.put(Turn("bench_step", kwargs={"n": N_CHAIN}))
    values = [value async for _turn, value in agent.run()]
    elapsed = time.perf_counter() - start
    assert values == [0], values
    return {"chain": elapsed}


async def bench_stream() -> Timings:
    """Case 3: one async-generator tool yielding many values through ``agent.run()``."""

    @tool()
    async def bench_count(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    agent = Agent("bench_stream", "Streams values", [bench_count])
    start = time.perf_counter()
    await agent.put(Turn("bench_count", kwargs={"n": N_STREAM}))
    count = 0
    async for _turn, _value in agent.run():
        count += 1
    elapsed = time.perf_counter() - start
    assert count == N_STREAM, count
    return {"stream": elapsed}


async def bench_queue_append() -> Timings:
    """Case 4: ``ContextQueue.append`` one item at a time into a full window."""
    queue: ContextQueue[int] = ContextQueue(limit=CONTEXT_LIMIT)
    items = [ContextItem(i) for i in range(N_APPEND)]
    start = time.perf_counter()
    for item in items:
        await queue.append(item)
    elapsed = time.perf_counter() - start
    assert len(queue) == CONTEXT_LIMIT, len(queue)
    return {"queue_append": elapsed}


async def bench_pool_add() -> Timings:
    """Case 5: ``ContextPool.add`` with ids cycling past the limit, so adds evict."""
    pool: ContextPool[int] = ContextPool(limit=CONTEXT_LIMIT)
    items = [
        ContextItem(i, description=f"item {i}", id=f"id{i % POOL_ID_CYCLE}") for i in range(N_ADD)
    ]
    start = time.perf_counter()
    for item in items:
        await pool.add(item)
    elapsed = time.perf_counter() - start
    assert len(pool) == CONTEXT_LIMIT, len(pool)
    return {"pool_add": elapsed}


BENCHES: list[Callable[[], Awaitable[Timings]]] = [
    lambda: bench_turns(hooked=False),
    bench_chain,
    bench_stream,
    bench_queue_append,
    bench_pool_add,
    lambda: bench_turns(hooked=True),
]


def run_all(reps: int, verbose: bool = False) -> Results:
    """Run every case ``reps`` times and keep the best (lowest) time per case, as ops/s."""
    ops = dict(CASES)
    best: dict[str, float] = {}
    for bench in BENCHES:
        for rep in range(reps):
            reset_registries()
            gc.collect()
            timings = asyncio.run(bench())
            for name, seconds in timings.items():
                best[name] = min(seconds, best.get(name, float("inf")))
                if verbose:
                    rate = ops[name] / seconds
                    print(f"  [{rep + 1}/{reps}] {name:<24} {rate:>12,.0f} ops/s", file=sys.stderr)
        reset_registries()
    return {name: ops[name] / best[name] for name, _ in CASES}


def describe_impl() -> str:
    import pygents

    try:
        version = importlib.metadata.version("pygents")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return f"pygents {version} ({Path(pygents.__file__).parent})"


def print_results(label: str, results: Results) -> None:
    print(label)
    for name, _ in CASES:
        print(f"  {name:<24} {results[name]:>14,.0f} ops/s")


def ensure_baseline_venv() -> Path:
    """Create ``benchmarks/.venv-baseline`` with ``pygents==0.7.0`` unless already there."""
    python = BASELINE_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {BASELINE_VENV} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(BASELINE_VENV)], check=True)
    probe = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('pygents'))"],
        capture_output=True,
        text=True,
    )
    if probe.stdout.strip() != BASELINE_VERSION:
        print(f"installing pygents=={BASELINE_VERSION} ...", file=sys.stderr)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"pygents=={BASELINE_VERSION}"],
            check=True,
        )
    return python


def run_baseline(reps: int, verbose: bool) -> tuple[str, Results]:
    """Run this script under the baseline venv and parse its ``--json`` output."""
    python = ensure_baseline_venv()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # cwd outside the repository so that our ``pygents/`` can never shadow the installed one.
    cmd = [str(python), str(Path(__file__).resolve()), "--json", "--reps", str(reps)]
    if verbose:
        cmd.append("--verbose")
    proc = subprocess.run(
        cmd,
        stdout=subprocess.PIPE,  # stderr passes through (progress, tracebacks)
        text=True,
        env=env,
        cwd=str(BASELINE_VENV),
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"baseline run failed (exit {proc.returncode})")
    data = json.loads(proc.stdout)
    return str(data["impl"]), {k: float(v) for k, v in data["results"].items()}


def print_table(ours: Results, base: Results) -> None:
    header = f"{'case':<24} {'ours ops/s':>14} {'0.7.0 ops/s':>14} {'ratio':>7} {'target':>7}  ok"
    print(header)
    print("-" * len(header))
    for name, _ in CASES:
        ratio = ours[name] / base[name]
        target = "-" if name in INFO_ONLY else f"{TARGET_RATIO:g}x"
        ok = "" if name in INFO_ONLY else ("yes" if ratio >= TARGET_RATIO else "NO")
        print(
            f"{name:<24} {ours[name]:>14,.0f} {base[name]:>14,.0f} {ratio:>6.2f}x {target:>7}  {ok}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--json", action="store_true", help="print results as JSON")
    mode.add_argument("--compare", action="store_true", help="ours vs pygents 0.7.0, as a table")
    mode.add_argument("--baseline", action="store_true", help="only pygents 0.7.0 (baseline venv)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per case (best kept)")
    parser.add_argument("-v", "--verbose", action="store_true", help="every repetition, on stderr")
    args = parser.parse_args(argv)

    if args.json:
        print(json.dumps({"impl": describe_impl(), "results": run_all(args.reps, args.verbose)}))
    elif args.baseline:
        impl, base = run_baseline(args.reps, args.verbose)
        print_results(impl, base)
    elif args.compare:
        impl, base = run_baseline(args.reps, args.verbose)
        print(f"baseline: {impl}", flush=True)
        print(f"ours:     {describe_impl()}", flush=True)
        print_table(run_all(args.reps, args.verbose), base)
    else:
        print_results(describe_impl(), run_all(args.reps, args.verbose))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
