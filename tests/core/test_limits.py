"""Rate and concurrency limits: ``Rate``, the GCRA ``RateLimiter``, ``@tool(rate=...)`` and
``@tool(concurrency=N)``, and the seams that move them out of the process."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from pygents import Agent, Rate, Retry, Turn, _seams, tool
from pygents.limits import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_defaults_burst_to_calls() -> None:
    assert Rate(10, 1).burst_size == 10
    assert Rate(10, 1, burst=2).burst_size == 2
    assert Rate(10, 2).interval_s == 0.2
    assert Rate.from_dict(Rate(3, 1.5).to_dict()) == Rate(3, 1.5, 3)


def test_gcra_lets_a_burst_through_then_spaces_calls() -> None:
    clock = Clock()
    limiter = RateLimiter(Rate(calls=2, per_s=1, burst=3), clock)  # one call per 0.5 s
    assert [limiter.reserve() for _ in range(3)] == [0, 0, 0]
    assert limiter.reserve() == pytest.approx(0.5)
    assert limiter.reserve() == pytest.approx(1.0)


def test_gcra_refills_at_the_sustained_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(Rate(calls=1, per_s=1, burst=2), clock)
    assert [limiter.reserve(), limiter.reserve()] == [0, 0]
    clock.now += 1.0  # one interval: one slot back
    assert limiter.reserve() == 0
    assert limiter.reserve() == pytest.approx(1.0)
    clock.now += 100  # a long quiet spell refills the burst, not more
    assert [limiter.reserve() for _ in range(2)] == [0, 0]
    assert limiter.reserve() == pytest.approx(1.0)


async def test_a_cancelled_waiter_gives_its_slot_back() -> None:
    limiter = RateLimiter(Rate(calls=1, per_s=10, burst=1))
    await limiter.wait()  # takes the burst
    waiter = asyncio.create_task(limiter.wait())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.reserve() == pytest.approx(10, abs=0.1)  # the cancelled slot is free again


def _max_starts_in_window(starts: list[float], rate: Rate) -> None:
    """GCRA's bound: between the i-th and j-th start, at most burst + elapsed / interval calls."""
    starts = sorted(starts)
    for i in range(len(starts)):
        for j in range(i, len(starts)):
            allowed = rate.burst_size + (starts[j] - starts[i]) / rate.interval_s
            assert j - i + 1 <= allowed + 1e-6, (i, j, starts[j] - starts[i])


async def test_a_rate_limited_tool_never_starts_faster_than_its_rate() -> None:
    rate = Rate(calls=10, per_s=0.1, burst=3)  # one call per 10 ms, bursts of 3
    starts: list[float] = []

    @tool(rate=rate)
    async def call_api(i: int) -> int:
        starts.append(time.monotonic())
        return i

    results = await asyncio.gather(*(call_api(i) for i in range(20)))
    assert results == list(range(20))  # over the limit: they waited, none failed
    _max_starts_in_window(starts, rate)
    # and the limiter is not idle either: 20 calls take about (20 - 3) intervals
    assert starts[-1] - starts[0] >= (20 - 3) * rate.interval_s - 0.005


async def test_every_retry_attempt_passes_the_rate_gate_again() -> None:
    gates: list[str] = []

    async def gate(t: Any) -> None:
        gates.append(t.__name__)

    async def no_wait(*_: Any) -> None:
        return None

    _seams.set_rate_gate(gate)
    _seams.set_retry_wait(no_wait)
    try:
        calls: list[int] = []

        @tool(rate=Rate(1, 1), retry=Retry(attempts=3))
        async def flaky() -> str:
            calls.append(1)
            if len(calls) < 3:
                raise ConnectionError
            return "ok"

        assert await flaky() == "ok"
        assert gates == ["flaky", "flaky", "flaky"]
    finally:
        _seams.set_rate_gate(None)
        _seams.set_retry_wait(None)


async def _track(state: dict[str, int]) -> None:
    state["now"] += 1
    state["max"] = max(state["max"], state["now"])
    for _ in range(5):
        await asyncio.sleep(0)
    state["now"] -= 1


async def test_concurrency_n_is_never_exceeded() -> None:
    state = {"now": 0, "max": 0}

    @tool(concurrency=3)
    async def work(i: int) -> int:
        await _track(state)
        return i

    assert await asyncio.gather(*(work(i) for i in range(20))) == list(range(20))
    assert state["max"] == 3


async def test_concurrency_covers_a_generator_s_whole_iteration() -> None:
    state = {"now": 0, "max": 0}

    @tool(concurrency=2)
    async def produce(n: int) -> AsyncIterator[int]:
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        try:
            for i in range(n):
                await asyncio.sleep(0)
                yield i
        finally:
            state["now"] -= 1

    async def consume() -> list[int]:
        return [v async for v in produce(4)]

    assert await asyncio.gather(*(consume() for _ in range(6))) == [[0, 1, 2, 3]] * 6
    assert state["max"] == 2


async def test_concurrency_holds_across_agents_sharing_a_tool() -> None:
    state = {"now": 0, "max": 0}

    @tool(concurrency=2)
    async def shared() -> None:
        await _track(state)

    agents = [Agent(f"a{i}", "shares a tool", [shared]) for i in range(5)]
    for agent in agents:
        await agent.put(Turn("shared"))

    async def drain(agent: Agent) -> None:
        async for _ in agent.run():
            pass

    await asyncio.gather(*(drain(a) for a in agents))
    assert state["max"] == 2


async def test_the_slot_provider_seam_holds_concurrency_slots() -> None:
    entered: list[tuple[str, int | None]] = []

    @asynccontextmanager
    async def slots(t: Any) -> AsyncIterator[None]:
        entered.append((t.__name__, t.concurrency))
        yield

    _seams.set_slot_provider(slots)
    try:

        @tool(concurrency=4)
        async def limited() -> str:
            return "ran"

        @tool(lock=True)
        async def locked() -> str:
            return "ran"

        assert await limited() == "ran" and await locked() == "ran"
        assert entered == [("limited", 4)]  # lock=True keeps going through the lock seam
    finally:
        _seams.set_slot_provider(None)


async def test_lock_true_still_serialises_through_the_lock_provider() -> None:
    names: list[str] = []

    def provider(name: str, lock: asyncio.Lock) -> Any:
        names.append(name)
        return lock

    _seams.set_lock_provider(provider)
    try:

        @tool(lock=True, retry=Retry(attempts=2))
        async def locked() -> str:
            return "ran"

        assert await locked() == "ran"
        assert names == ["tool:locked"]
    finally:
        _seams.set_lock_provider(None)
