"""Agents for the fault tests, run by real ``pygents-worker`` processes.

Every tool call that matters appends one line to the effect log (``FAULT_LOG``): an
``O_APPEND`` write, so lines from concurrent processes never mix and a SIGKILLed worker
keeps what it wrote. A line is ``<kind> <key> <pid> <monotonic seconds>``; the tests read
the log to count side effects per turn and per process.

Environment:
    FAULT_LOG       effect log path (default: no log)
    FAULT_AGENTS    how many chain agents ``a0`` .. ``a<N-1>`` to define (default 4)
    FAULT_HOLDER    file marking the current holder of the ``locked`` tool's lock
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from pygents import Agent, ContextItem, ContextPool, ContextQueue, Turn, tool

_LOG = os.environ.get("FAULT_LOG", "")
_HOLDER = os.environ.get("FAULT_HOLDER", "")
_fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if _LOG else -1


def effect(kind: str, key: str) -> None:
    """Record one side effect (atomically appended; survives SIGKILL)."""
    if _fd >= 0:
        os.write(_fd, f"{kind} {key} {os.getpid()} {time.monotonic():.6f}\n".encode())


@tool
async def step(
    chain: str,
    n: int,
    work_ms: float = 0.0,
    q: ContextQueue[Any] | None = None,
    p: ContextPool[Any] | None = None,
) -> Any:
    """One link of a chain: count down from ``n``, writing context, then report to the
    collector. Context: the queue gets ``n``; the pool item ``count`` counts links run."""
    assert q is not None and p is not None
    effect("step", f"{chain}:{n}")
    if work_ms:
        await asyncio.sleep(work_ms / 1000)
    await q.append(ContextItem(n))
    count = p.get("count").content if "count" in {i.id for i in p.items} else 0
    await p.add(ContextItem(count + 1, "links run", "count"))
    if n > 0:
        return Turn("step", kwargs={"chain": chain, "n": n - 1, "work_ms": work_ms})
    await collector.put(Turn("finish", kwargs={"chain": chain}))
    return "done"


@tool
async def finish(chain: str, p: ContextPool[Any] | None = None) -> None:
    """The collector's record of a finished chain (pool item per chain, plus a count)."""
    assert p is not None
    effect("finish", chain)
    count = p.get("count").content if "count" in {i.id for i in p.items} else 0
    await p.add(ContextItem(count + 1, "chains finished", "count"))
    await p.add(ContextItem(True, "finished", chain))


@tool
async def slow(key: str, seconds: float) -> str:
    """Sleep ``seconds`` (a long turn), logging its start and end."""
    effect("slow", key)
    await asyncio.sleep(seconds)
    effect("slow_end", key)
    return key


@tool
async def die(key: str) -> None:
    """Kill the worker running it, on every delivery (a poison turn)."""
    effect("die", key)
    os._exit(1)


@tool
async def echo(value: Any = None) -> Any:
    """Return ``value``."""
    effect("echo", str(value))
    return value


@tool
async def add(a: int, b: int) -> int:
    """Two required arguments (for bad-argument messages)."""
    return a + b


@tool
async def stranger() -> None:
    """Registered, but in no agent's tool set."""


def _holder_pid() -> int | None:
    try:
        with open(_HOLDER) as f:
            return int(f.read().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@tool(lock=True)
async def locked(key: str, hold_ms: float = 5.0) -> str:
    """A critical section: checks, inside the lock, that no live process is also inside."""
    holder = _holder_pid()
    if holder is not None and _alive(holder):
        effect("overlap", f"{key}:{holder}")
    temp = f"{_HOLDER}.{os.getpid()}"
    # Plain blocking file calls on purpose: no await between the check and the claim.
    with open(temp, "w") as f:  # noqa: ASYNC230
        f.write(f"{os.getpid()} {key}")
    os.replace(temp, _HOLDER)
    effect("lock_in", key)
    await asyncio.sleep(hold_ms / 1000)
    effect("lock_out", key)
    if _holder_pid() == os.getpid():
        os.unlink(_HOLDER)
    return key


_TOOLS = [step, slow, die, echo, add, locked]
agents = [
    Agent(f"a{i}", "chain agent", _TOOLS, context_queue=ContextQueue(100_000))
    for i in range(int(os.environ.get("FAULT_AGENTS", "4")))
]
collector = Agent("collector", "records finished chains", [finish, echo])
