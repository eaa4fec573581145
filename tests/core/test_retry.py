"""Retries: ``Backoff`` delays, ``Retry`` validation, and the retry loop of coroutine and
generator tools (attempts, which errors, hooks, per-attempt timeout, the retry-wait seam)."""

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from pygents import (
    Agent,
    Backoff,
    Rate,
    Retry,
    StopReason,
    ToolHook,
    Turn,
    TurnTimeoutError,
    _flow,
    _seams,
    hook,
    tool,
)

# -- Backoff -------------------------------------------------------------------------------


def test_exponential_without_jitter_doubles_up_to_the_cap() -> None:
    backoff = Backoff.exponential(initial_s=0.5, multiplier=2, cap_s=3, jitter=False)
    assert [backoff.delay_s(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_exponential_jitter_is_equal_jitter_between_half_and_full_nominal() -> None:
    backoff = Backoff.exponential(initial_s=1, multiplier=2, cap_s=100)
    rng = random.Random(1)
    for attempt in range(1, 8):
        nominal = min(100, 2 ** (attempt - 1))
        for _ in range(50):
            assert nominal / 2 <= backoff.delay_s(attempt, rng) <= nominal


def test_jitter_is_reproducible_with_a_seeded_rng() -> None:
    backoff = Backoff.exponential()
    first = [backoff.delay_s(n, random.Random(42)) for n in range(1, 5)]
    again = [backoff.delay_s(n, random.Random(42)) for n in range(1, 5)]
    assert first == again


def test_huge_attempt_numbers_stay_at_the_cap() -> None:
    backoff = Backoff.exponential(cap_s=30, jitter=False)
    assert backoff.delay_s(10_000) == 30


def test_fixed_backoff_waits_the_same_every_time() -> None:
    backoff = Backoff.fixed(0.25)
    assert [backoff.delay_s(n) for n in (1, 2, 10)] == [0.25, 0.25, 0.25]
    assert Backoff.from_dict(backoff.to_dict()) == backoff


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: Backoff.exponential(initial_s=-1), ValueError, "backoff.initial_s must be >= 0"),
        (lambda: Backoff.exponential(multiplier=0.5), ValueError, "backoff.multiplier"),
        (lambda: Backoff.exponential(initial_s=5, cap_s=1), ValueError, "backoff.cap_s"),
        (lambda: Backoff.exponential(initial_s="1"), TypeError, "backoff.initial_s"),
        (lambda: Backoff.fixed(float("nan")), TypeError, "backoff.initial_s"),
        (lambda: Backoff.exponential(jitter=1), TypeError, "backoff.jitter must be a bool"),
    ],
)
def test_bad_backoff_is_refused_naming_the_field(make: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        make()


# -- validation at decoration --------------------------------------------------------------


async def _noop() -> None:
    return None


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        (
            {"retry": Retry(attempts=0)},
            ValueError,
            r"tool 'fetch': retry.attempts must be an int >= 1, got 0",
        ),
        ({"retry": Retry(attempts=2.5)}, ValueError, r"tool 'fetch': retry.attempts"),
        ({"retry": Retry(on=())}, ValueError, r"tool 'fetch': retry.on must name"),
        ({"retry": Retry(on=(asyncio.CancelledError,))}, TypeError, r"tool 'fetch': retry.on"),
        ({"retry": Retry(on=("ValueError",))}, TypeError, r"tool 'fetch': retry.on"),
        ({"retry": Retry(backoff=2)}, TypeError, r"tool 'fetch': retry.backoff must be"),
        (
            {"retry": Retry(backoff=Backoff(initial_s=-1))},
            ValueError,
            r"tool 'fetch': retry.backoff.initial_s",
        ),
        (
            {"retry": Retry(attempt_timeout_s=0)},
            ValueError,
            r"tool 'fetch': retry.attempt_timeout_s",
        ),
        ({"retry": 3}, TypeError, r"tool 'fetch': retry must be a Retry"),
        ({"rate": Rate(0, 1)}, ValueError, r"tool 'fetch': rate.calls must be an int >= 1"),
        ({"rate": Rate(1, 0)}, ValueError, r"tool 'fetch': rate.per_s must be"),
        ({"rate": Rate(1, 1, burst=0)}, ValueError, r"tool 'fetch': rate.burst must be"),
        ({"rate": (1, 1)}, TypeError, r"tool 'fetch': rate must be a Rate"),
        ({"concurrency": 0}, ValueError, r"tool 'fetch': concurrency must be an int >= 1"),
        ({"concurrency": True}, ValueError, r"tool 'fetch': concurrency must be an int"),
        (
            {"lock": True, "concurrency": 2},
            ValueError,
            r"tool 'fetch': lock=True means concurrency=1",
        ),
    ],
)
def test_bad_flow_options_are_refused_at_decoration(
    options: dict[str, Any], error: type, match: str
) -> None:
    async def fetch() -> None:
        return None

    with pytest.raises(error, match=match):
        tool(**options)(fetch)


def test_flow_specs_are_readable_on_the_tool() -> None:
    policy = Retry(attempts=4, on=ValueError)

    @tool(retry=policy, rate=Rate(5, 1), concurrency=2)
    async def limited() -> None:
        return None

    @tool(lock=True)
    async def locked() -> None:
        return None

    @tool
    async def plain() -> None:
        return None

    assert limited.retry is policy and limited.retry.on == (ValueError,)
    assert limited.rate == Rate(5, 1) and limited.concurrency == 2
    assert locked.concurrency == 1 and locked.lock is not None
    assert (plain.retry, plain.rate, plain.concurrency) == (None, None, None)
    assert policy.to_dict()["on"] == ["builtins.ValueError"]


def test_subtools_take_the_flow_options_too() -> None:
    @tool
    async def parent() -> None:
        return None

    @parent.subtool(retry=Retry(attempts=2), concurrency=3)
    async def child() -> None:
        return None

    assert child.retry == Retry(attempts=2) and child.concurrency == 3
    with pytest.raises(ValueError, match=r"tool 'parent.bad': retry.attempts"):
        parent.subtool(retry=Retry(attempts=0))(_bad_named())


def _bad_named() -> Any:
    async def bad() -> None:
        return None

    return bad


# -- the retry loop ------------------------------------------------------------------------


class Waits:
    """A retry-wait seam that records each wait instead of sleeping."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, float, BaseException]] = []

    async def __call__(self, t: Any, attempt: int, delay_s: float, error: BaseException) -> None:
        self.calls.append((t.__name__, attempt, delay_s, error))


@pytest.fixture
def waits() -> Iterator[Waits]:
    recorder = Waits()
    _seams.set_retry_wait(recorder)
    try:
        yield recorder
    finally:
        _seams.set_retry_wait(None)


def _flaky(failures: int, error: type[Exception] = ConnectionError) -> tuple[Any, list[int]]:
    calls: list[int] = []

    async def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) <= failures:
            raise error(f"failure {len(calls)}")
        return x * 10

    return flaky, calls


async def test_a_tool_failing_twice_succeeds_on_the_third_attempt(waits: Waits) -> None:
    fn, calls = _flaky(2)
    flaky = tool(retry=Retry(attempts=3, backoff=Backoff.fixed(0.5)))(fn)
    seen: list[tuple[str, Any]] = []

    @flaky.on_retry
    async def on_retry(attempt: int, exc: Exception, delay_s: float) -> None:
        seen.append(("retry", (attempt, str(exc), delay_s)))

    @flaky.after_invoke
    async def after(result: int) -> None:
        seen.append(("after", result))

    @flaky.on_error
    async def failed(exc: Exception) -> None:
        seen.append(("error", exc))

    assert await flaky(4) == 40
    assert calls == [4, 4, 4]
    assert seen == [
        ("retry", (1, "failure 1", 0.5)),
        ("retry", (2, "failure 2", 0.5)),
        ("after", 40),
    ]
    assert [(name, n, d) for name, n, d, _ in waits.calls] == [("flaky", 1, 0.5), ("flaky", 2, 0.5)]


async def test_exhausted_attempts_raise_the_last_error_and_fire_on_error_once(
    waits: Waits,
) -> None:
    fn, calls = _flaky(10)
    flaky = tool(retry=Retry(attempts=3))(fn)
    errors: list[str] = []

    @flaky.on_error
    async def failed(exc: Exception) -> None:
        errors.append(str(exc))

    with pytest.raises(ConnectionError, match="failure 3"):
        await flaky(1)
    assert len(calls) == 3
    assert errors == ["failure 3"]
    assert [n for _, n, _, _ in waits.calls] == [1, 2]


async def test_an_error_not_in_on_fails_at_once(waits: Waits) -> None:
    fn, calls = _flaky(1, KeyError)
    flaky = tool(retry=Retry(attempts=5, on=(ConnectionError, TimeoutError)))(fn)
    with pytest.raises(KeyError):
        await flaky(1)
    assert len(calls) == 1 and waits.calls == []


async def test_a_subclass_of_a_retried_type_is_retried(waits: Waits) -> None:
    fn, calls = _flaky(1, ConnectionResetError)
    flaky = tool(retry=Retry(attempts=2, on=OSError))(fn)
    assert await flaky(2) == 20
    assert len(calls) == 2


async def test_global_on_retry_hooks_get_the_tool(waits: Waits) -> None:
    fn, _ = _flaky(1)
    flaky = tool(retry=Retry(attempts=2))(fn)
    seen: list[tuple[str, int]] = []

    @hook(ToolHook.ON_RETRY)
    async def log_retry(tool: Any, attempt: int) -> None:
        seen.append((tool.__name__, attempt))

    await flaky(1)
    assert seen == [("flaky", 1)]


async def test_backoff_delays_follow_the_policy_with_the_process_rng(
    waits: Waits, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_flow, "rng", random.Random(7))
    backoff = Backoff.exponential(initial_s=1, multiplier=3, cap_s=20)
    fn, _ = _flaky(4)
    flaky = tool(retry=Retry(attempts=5, backoff=backoff))(fn)
    await flaky(1)
    expected_rng = random.Random(7)
    expected = [backoff.delay_s(n, expected_rng) for n in range(1, 5)]
    assert [d for _, _, d, _ in waits.calls] == expected
    for n, delay in enumerate(expected, start=1):
        nominal = min(20, 3 ** (n - 1))
        assert nominal / 2 <= delay <= nominal


async def test_the_default_wait_sleeps_the_backoff() -> None:
    fn, _calls = _flaky(2)
    flaky = tool(retry=Retry(attempts=3, backoff=Backoff.fixed(0.02)))(fn)
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await flaky(1) == 10
    assert loop.time() - start >= 0.04


async def test_the_turn_timeout_ends_a_backoff_wait_and_is_not_retried() -> None:
    fn, calls = _flaky(10)
    flaky = tool(retry=Retry(attempts=5, backoff=Backoff.fixed(30)))(fn)
    agent = Agent("a", "retries", [flaky])
    turn = Turn("flaky", timeout=0.05, args=[1])
    await agent.put(turn)
    with pytest.raises(TurnTimeoutError):
        async for _ in agent.run():
            pass
    assert len(calls) == 1
    assert turn.metadata.stop_reason is StopReason.TIMEOUT


async def test_cancelled_error_is_never_retried(waits: Waits) -> None:
    calls: list[int] = []

    @tool(retry=Retry(attempts=5, on=Exception))
    async def cancelled() -> None:
        calls.append(1)
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await cancelled()
    assert calls == [1] and waits.calls == []


async def test_attempt_timeout_fails_the_attempt_with_timeout_error_and_retries(
    waits: Waits,
) -> None:
    calls: list[int] = []

    @tool(retry=Retry(attempts=2, on=TimeoutError, attempt_timeout_s=0.02))
    async def slow_once() -> str:
        calls.append(1)
        if len(calls) == 1:
            await asyncio.sleep(10)
        return "done"

    assert await slow_once() == "done"
    assert len(calls) == 2
    ((_, attempt, _, error),) = waits.calls
    assert attempt == 1 and isinstance(error, TimeoutError)
    assert "tool 'slow_once': attempt 1 timed out after 0.02s" in str(error)


async def test_attempt_timeout_not_in_on_fails_at_once(waits: Waits) -> None:
    @tool(retry=Retry(attempts=3, on=ConnectionError, attempt_timeout_s=0.01))
    async def slow() -> None:
        await asyncio.sleep(10)

    with pytest.raises(TimeoutError, match="attempt 1 timed out"):
        await slow()
    assert waits.calls == []


async def test_a_tool_s_own_timeout_error_is_not_mistaken_for_the_attempt_timeout(
    waits: Waits,
) -> None:
    @tool(retry=Retry(attempts=2, on=ConnectionError, attempt_timeout_s=5))
    async def raises_timeout() -> None:
        raise TimeoutError("mine")

    with pytest.raises(TimeoutError, match="mine"):
        await raises_timeout()


async def test_a_retrying_turn_in_an_agent_yields_the_final_value_once(waits: Waits) -> None:
    fn, _ = _flaky(2)
    flaky = tool(retry=Retry(attempts=3))(fn)
    agent = Agent("a", "retries", [flaky])
    await agent.put(Turn("flaky", args=[3]))
    assert [v async for _, v in agent.run()] == [30]


async def test_backoff_wait_holds_no_concurrency_slot() -> None:
    release = asyncio.Event()
    waiting = asyncio.Event()

    async def wait(t: Any, attempt: int, delay_s: float, error: BaseException) -> None:
        waiting.set()
        await release.wait()

    _seams.set_retry_wait(wait)
    try:
        fn, _ = _flaky(1)
        flaky = tool(retry=Retry(attempts=2), concurrency=1)(fn)
        first = asyncio.create_task(flaky(1))
        await waiting.wait()
        # The first call is in its backoff: the single slot is free for another call.
        assert await asyncio.wait_for(flaky(2), 1) == 20
        release.set()
        assert await first == 10
    finally:
        _seams.set_retry_wait(None)


# -- durable retries: the seam a worker replaces ------------------------------------------------


async def test_a_deferring_retry_wait_ends_the_call_without_on_error() -> None:
    async def defer(t: Any, attempt: int, delay_s: float, error: BaseException) -> None:
        raise _seams.RetryDeferred(t.__name__, attempt, delay_s, error)

    _seams.set_retry_wait(defer)
    try:
        fn, calls = _flaky(5)
        flaky = tool(retry=Retry(attempts=3, backoff=Backoff.fixed(2)))(fn)
        errors: list[Exception] = []

        @flaky.on_error
        async def failed(exc: Exception) -> None:
            errors.append(exc)

        turn = Turn("flaky", args=[1])
        with pytest.raises(_seams.RetryDeferred) as caught:
            await turn.returning()
        assert (caught.value.attempt, caught.value.delay_s) == (1, 2)
        assert isinstance(caught.value.error, ConnectionError)
        assert errors == [] and len(calls) == 1
        assert turn.metadata.stop_reason is StopReason.CANCELLED
    finally:
        _seams.set_retry_wait(None)


async def test_retry_attempt_starts_a_redelivered_call_at_that_attempt(waits: Waits) -> None:
    fn, calls = _flaky(10)
    flaky = tool(retry=Retry(attempts=3))(fn)
    _seams.retry_attempt.set(3)  # a worker re-delivering attempt 3 (of 3)
    with pytest.raises(ConnectionError):
        await flaky(1)
    assert len(calls) == 1 and waits.calls == []
    assert _seams.retry_attempt.get() == 1  # consumed: the next call starts afresh


# -- generator tools -------------------------------------------------------------------------


async def test_a_generator_failing_before_its_first_value_is_retried(waits: Waits) -> None:
    attempts: list[int] = []

    @tool(retry=Retry(attempts=3))
    async def stream(n: int) -> AsyncIterator[int]:
        attempts.append(n)
        if len(attempts) < 3:
            raise ConnectionError("not yet")
        for i in range(n):
            yield i

    seen: list[Any] = []

    @stream.after_invoke
    async def after(values: list[int]) -> None:
        seen.append(values)

    assert [v async for v in stream(3)] == [0, 1, 2]
    assert len(attempts) == 3 and seen == [[0, 1, 2]]
    assert [n for _, n, _, _ in waits.calls] == [1, 2]


async def test_a_generator_failing_after_a_value_is_not_retried(waits: Waits) -> None:
    attempts: list[int] = []

    @tool(retry=Retry(attempts=3))
    async def stream() -> AsyncIterator[int]:
        attempts.append(1)
        yield 1
        raise ConnectionError("broke midway")

    errors: list[Exception] = []

    @stream.on_error
    async def failed(exc: Exception) -> None:
        errors.append(exc)

    got: list[int] = []
    with pytest.raises(ConnectionError, match="broke midway"):
        async for value in stream():
            got.append(value)
    assert got == [1] and attempts == [1] and waits.calls == []
    assert len(errors) == 1


async def test_a_generator_attempt_timeout_bounds_the_first_value(waits: Waits) -> None:
    attempts: list[int] = []

    @tool(retry=Retry(attempts=2, on=TimeoutError, attempt_timeout_s=0.02))
    async def stream() -> AsyncIterator[str]:
        attempts.append(1)
        if len(attempts) == 1:
            await asyncio.sleep(10)
        yield "first"
        await asyncio.sleep(0.05)  # past attempt_timeout_s, after the first value: allowed
        yield "second"

    assert [v async for v in stream()] == ["first", "second"]
    assert len(attempts) == 2


async def test_an_empty_generator_with_retry_yields_nothing() -> None:
    @tool(retry=Retry(attempts=2))
    async def empty() -> AsyncIterator[int]:
        return
        yield 0  # pragma: no cover

    assert [v async for v in empty()] == []


def test_a_plain_tool_calls_its_function_directly() -> None:
    @tool
    async def plain() -> None:
        return None

    @tool(retry=Retry())
    async def retried() -> None:
        return None

    assert plain._plain and not retried._plain


async def test_a_deferring_retry_wait_ends_a_generator_without_after_invoke() -> None:
    async def defer(t: Any, attempt: int, delay_s: float, error: BaseException) -> None:
        raise _seams.RetryDeferred(t.__name__, attempt, delay_s, error)

    _seams.set_retry_wait(defer)
    try:

        @tool(retry=Retry(attempts=2))
        async def stream() -> AsyncIterator[int]:
            raise ConnectionError("down")
            yield 0  # pragma: no cover

        outcomes: list[str] = []

        @stream.after_invoke
        async def after(values: list[int]) -> None:
            outcomes.append("after")

        @stream.on_error
        async def failed(exc: Exception) -> None:
            outcomes.append("error")

        with pytest.raises(_seams.RetryDeferred, match="attempt 2 deferred"):
            async for _ in stream():
                pass
        assert outcomes == []
    finally:
        _seams.set_retry_wait(None)
