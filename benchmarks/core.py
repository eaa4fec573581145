"""Throughput benchmarks for the in-process ``pygents`` core, against pygents 0.7.0.

Run from the repository root::

    .venv/bin/python benchmarks/core.py --compare

``--compare`` creates (if missing) a virtualenv at ``benchmarks/.venv-baseline`` holding
``pygents==0.7.0`` (gitignored by ``.venv-*``), runs this same script there as a subprocess
(``--json``), then runs it in-process against the ``pygents`` importable in the current
interpreter (ours), and prints one table: case, ours ops/s, 0.7.0 ops/s, ratio, target (3x).

Other modes::

    .venv/bin/python benchmarks/core.py                  # only the importable implementation
    .venv/bin/python benchmarks/core.py --json           # the same, as JSON on stdout
    .venv/bin/python benchmarks/core.py --baseline       # only 0.7.0, in the baseline venv
    .venv/bin/python benchmarks/core.py --only chain -v  # some cases, every repetition shown
    .venv/bin/python benchmarks/core.py --compare --cached-baseline  # reuse the last 0.7.0 run

A fresh ``--compare`` takes about 2.5 minutes on the 2-vCPU dev machine, nearly all of it
0.7.0 (about 8k turns/s: 100k turns x 3 repetitions x 2 cases); ``--cached-baseline`` cuts it
to about 15 s. The machine must be otherwise idle for the figures to mean anything: on a
shared box, compare ratios from one run, not absolute figures across runs.

Only the public API is used, so the script runs unchanged against either implementation.
Each case is repeated ``--reps`` times (default 3) and the best time is kept; every registry is
cleared before each repetition. Cases:

1. ``turns``: 100k trivial coroutine turns put on one agent, then drained by one
   ``agent.run()``; put+run timed together (``turns (run only)``: the drain alone).
2. ``chain``: a 20k-step chain, a tool returning the next ``Turn`` until ``n`` reaches 0.
3. ``stream``: one async-generator tool yielding 100k values through ``agent.run()``.
4. ``queue_append``: 100k ``ContextQueue.append`` calls (limit 1000).
5. ``pool_add``: 100k ``ContextPool.add`` calls (limit 1000, ids cycling over 1500, so every
   add past the first 1000 evicts).
6. ``turns_hooked``: case 1 with one global ``@hook(TurnHook.BEFORE_RUN)`` and one global
   ``@hook(AgentHook.AFTER_TURN)`` registered.
7. ``put``: 100k ``await agent.put(Turn(...))`` of trivial turns, no ``run()``: queueing
   alone, each turn made in the loop as a program makes it (``put (turns made before)``: the
   put of turns made before the clock starts).

No ``from __future__ import annotations`` here on purpose: with string annotations on its
hook functions 0.7.0 runs case 6 about 2x slower (measured), which would flatter us.
"""

import argparse
import asyncio
import gc
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
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
BASELINE_CACHE = BASELINE_VENV / "last-results.json"  # the last full baseline run
TARGET_RATIO = 3.0

N_TURNS = 100_000
N_CHAIN = 20_000
N_STREAM = 100_000
N_APPEND = 100_000
N_ADD = 100_000
CONTEXT_LIMIT = 1000
POOL_ID_CYCLE = 1500

type Timings = dict[str, float]  # result name -> seconds, for one repetition
type Results = dict[str, float]  # result name -> best ops/s

# Every reported result, in table order, with the number of operations it times.
RESULTS: dict[str, int] = {
    "turns": N_TURNS,
    "turns (run only)": N_TURNS,
    "chain": N_CHAIN,
    "stream": N_STREAM,
    "queue_append": N_APPEND,
    "pool_add": N_ADD,
    "turns_hooked": N_TURNS,
    "turns_hooked (run only)": N_TURNS,
    "put": N_TURNS,
    "put (turns made before)": N_TURNS,
}
INFO_ONLY = frozenset({"turns (run only)", "turns_hooked (run only)", "put (turns made before)"})


def reset_registries() -> None:
    """Forget every tool, agent and (global) hook."""
    ToolRegistry.clear()
    AgentRegistry.clear()
    HookRegistry.clear()


async def _put_then_drain(agent: Agent, turns: list[Turn[Any]]) -> tuple[float, float]:
    """Put every turn, then drain them with one ``run()``; (put+run, run-only) seconds."""
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
    if hooked:
        assert calls == [N_TURNS, N_TURNS], f"hooks fired {calls}"
        return {"turns_hooked": total, "turns_hooked (run only)": run_only}
    return {"turns": total, "turns (run only)": run_only}


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
    """Case 4: ``ContextQueue.append``, one item at a time, mostly into a full window."""
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


async def bench_put() -> Timings:
    """Case 7: ``await agent.put(Turn(...))`` alone, as a program queues work: each trivial
    turn made and put in the loop, nothing runs them. ``put (turns made before)``: the put
    of turns made before the clock starts."""

    @tool()
    async def bench_noop() -> int:
        return 1

    agent = Agent("bench_put", "Queues trivial turns", [bench_noop])
    start = time.perf_counter()
    for _ in range(N_TURNS):
        await agent.put(Turn("bench_noop"))
    made_in_loop = time.perf_counter() - start
    assert len(agent.turns) == N_TURNS, len(agent.turns)

    other = Agent("bench_put_made", "Queues turns made before", [bench_noop])
    turns: list[Turn[Any]] = [Turn("bench_noop") for _ in range(N_TURNS)]
    start = time.perf_counter()
    for turn in turns:
        await other.put(turn)
    made_before = time.perf_counter() - start
    assert len(other.turns) == N_TURNS, len(other.turns)
    return {"put": made_in_loop, "put (turns made before)": made_before}


async def _turns() -> Timings:
    return await bench_turns(hooked=False)


async def _turns_hooked() -> Timings:
    return await bench_turns(hooked=True)


CASES: dict[str, Callable[[], Coroutine[Any, Any, Timings]]] = {
    "turns": _turns,
    "chain": bench_chain,
    "stream": bench_stream,
    "queue_append": bench_queue_append,
    "pool_add": bench_pool_add,
    "turns_hooked": _turns_hooked,
    "put": bench_put,
}


def run_cases(names: list[str], reps: int, verbose: bool = False) -> Results:
    """Run each named case ``reps`` times; the best time of each result, as ops/s."""
    best: dict[str, float] = {}
    for case in names:
        for rep in range(reps):
            reset_registries()
            gc.collect()
            timings = asyncio.run(CASES[case]())
            for name, seconds in timings.items():
                best[name] = min(seconds, best.get(name, float("inf")))
                if verbose:
                    rate = RESULTS[name] / seconds
                    print(f"  [{rep + 1}/{reps}] {name:<24} {rate:>12,.0f} ops/s", file=sys.stderr)
        reset_registries()
    return {name: RESULTS[name] / best[name] for name in RESULTS if name in best}


def describe_impl() -> str:
    """Which ``pygents`` this interpreter imports: version and location."""
    import pygents

    try:
        version = importlib.metadata.version("pygents")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return f"pygents {version} ({Path(pygents.__file__).parent})"


def print_results(label: str, results: Results) -> None:
    print(label)
    for name, rate in results.items():
        print(f"  {name:<24} {rate:>14,.0f} ops/s")


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
        cwd=str(BASELINE_VENV),  # not the repo root: its pygents.egg-info would answer
        check=False,
    )
    if probe.stdout.strip() != BASELINE_VERSION:
        print(f"installing pygents=={BASELINE_VERSION} ...", file=sys.stderr)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"pygents=={BASELINE_VERSION}"],
            check=True,
        )
    return python


def run_baseline(
    names: list[str], reps: int, verbose: bool, cached: bool = False
) -> tuple[str, Results]:
    """Run this script under the baseline venv with ``--json`` and parse what it prints.

    Every full run is saved in ``BASELINE_CACHE``; with ``cached`` that file is used instead
    when it holds the same cases at the same number of repetitions.
    """
    if cached and BASELINE_CACHE.exists():
        saved = json.loads(BASELINE_CACHE.read_text())
        if saved["reps"] == reps and all(n in saved["cases"] for n in names):
            print(f"0.7.0 figures from {BASELINE_CACHE} ({saved['when']})", file=sys.stderr)
            results = {k: float(v) for k, v in saved["results"].items()}
            return str(saved["impl"]), results
    python = ensure_baseline_venv()
    cmd = [str(python), str(Path(__file__).resolve()), "--json", "--reps", str(reps)]
    cmd += [arg for name in names for arg in ("--only", name)]
    if verbose:
        cmd.append("--verbose")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # cwd outside the repository, so our ``pygents/`` can never shadow the installed 0.7.0.
    proc = subprocess.run(
        cmd,
        stdout=subprocess.PIPE,  # stderr passes through: progress and tracebacks
        text=True,
        env=env,
        cwd=str(BASELINE_VENV),
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"baseline run failed (exit {proc.returncode})")
    data = json.loads(proc.stdout)
    if set(names) == set(CASES):
        when = time.strftime("%Y-%m-%d %H:%M:%S")
        BASELINE_CACHE.write_text(json.dumps({**data, "reps": reps, "cases": names, "when": when}))
    return str(data["impl"]), {k: float(v) for k, v in data["results"].items()}


def print_table(ours: Results, base: Results) -> None:
    header = f"{'case':<24} {'ours ops/s':>12} {'0.7.0 ops/s':>12} {'ratio':>7} {'target':>7}  met"
    print(header)
    print("-" * len(header))
    for name, rate in ours.items():
        ratio = rate / base[name]
        target, met = ("-", "") if name in INFO_ONLY else (f"{TARGET_RATIO:g}x", "yes")
        if name not in INFO_ONLY and ratio < TARGET_RATIO:
            met = "NO"
        print(f"{name:<24} {rate:>12,.0f} {base[name]:>12,.0f} {ratio:>6.2f}x {target:>7}  {met}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="pygents core throughput (ops/s); see the module docstring."
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--compare", action="store_true", help="ours vs pygents 0.7.0, as a table")
    mode.add_argument("--baseline", action="store_true", help="only pygents 0.7.0 (baseline venv)")
    mode.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per case (default 3)")
    parser.add_argument(
        "--only", action="append", choices=list(CASES), help="run only this case (repeatable)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="every repetition, on stderr")
    parser.add_argument(
        "--cached-baseline",
        action="store_true",
        help="reuse the last full 0.7.0 run (saved in the baseline venv) instead of re-measuring",
    )
    args = parser.parse_args(argv)
    names: list[str] = args.only or list(CASES)

    if args.json:
        results = run_cases(names, args.reps, args.verbose)
        print(json.dumps({"impl": describe_impl(), "results": results}))
    elif args.baseline:
        print_results(*run_baseline(names, args.reps, args.verbose, args.cached_baseline))
    elif args.compare:
        started = time.perf_counter()
        impl, base = run_baseline(names, args.reps, args.verbose, args.cached_baseline)
        print(f"0.7.0: {impl}\nours:  {describe_impl()}", flush=True)
        ours = run_cases(names, args.reps, args.verbose)
        print_table(ours, base)
        print(f"(best of {args.reps}; total {time.perf_counter() - started:.0f}s)")
    else:
        print_results(describe_impl(), run_cases(names, args.reps, args.verbose))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
