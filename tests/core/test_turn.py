"""``Turn``: resolving its tool, running it, timeouts, guards, hooks and serialisation."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from pygents import (
    Agent,
    ContextPool,
    ContextQueue,
    HookRegistry,
    SafeExecutionError,
    StopReason,
    ToolRegistry,
    Turn,
    TurnHook,
    TurnTimeoutError,
    UnregisteredHookError,
    UnregisteredToolError,
    WrongRunMethodError,
    hook,
    tool,
)
from pygents.turn import TurnMetadata


def _add_tool() -> Any:
    @tool()
    async def add(a: int, b: int = 0) -> int:
        return a + b

    return add


def _stream_tool() -> Any:
    @tool()
    async def stream(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    return stream


def _failing_tool() -> Any:
    @tool()
    async def failing() -> None:
        raise RuntimeError("tool failed")

    return failing


def _blocking_tool(started: asyncio.Event, release: asyncio.Event) -> Any:
    @tool()
    async def blocking() -> str:
        started.set()
        await release.wait()
        return "released"

    return blocking


def _hanging_tool() -> Any:
    @tool()
    async def hanging() -> None:
        await asyncio.Event().wait()

    return hanging


# --- construction -------------------------------------------------------------------------


def test_turn_resolves_tool_by_name() -> None:
    add = _add_tool()
    assert Turn("add").tool is add


def test_turn_accepts_tool_object() -> None:
    add = _add_tool()
    assert Turn(add).tool is add


def test_turn_with_unknown_name_raises_unregistered_tool_error() -> None:
    with pytest.raises(UnregisteredToolError):
        Turn("missing")


def test_turn_with_unregistered_tool_object_raises_unregistered_tool_error() -> None:
    add = _add_tool()
    ToolRegistry.unregister("add")
    with pytest.raises(UnregisteredToolError):
        Turn(add)


def test_turn_default_timeout_is_sixty_seconds() -> None:
    _add_tool()
    assert Turn("add").timeout == 60


def test_turn_tags_are_a_frozenset() -> None:
    _add_tool()
    assert Turn("add", tags=["a", "b", "a"]).tags == frozenset({"a", "b"})


def test_turn_tags_default_to_empty() -> None:
    _add_tool()
    assert Turn("add").tags == frozenset()


def test_turn_is_generic_at_runtime() -> None:
    _add_tool()
    turn = Turn[int]("add", args=[1])
    assert isinstance(turn, Turn)


def test_fresh_turn_output_is_none() -> None:
    _add_tool()
    assert Turn("add").output is None


def test_fresh_turn_metadata_is_all_none() -> None:
    _add_tool()
    metadata = Turn("add").metadata
    assert isinstance(metadata, TurnMetadata)
    assert metadata.start_time is None
    assert metadata.end_time is None
    assert metadata.stop_reason is None


def test_stop_reason_values_are_lowercase_words() -> None:
    assert StopReason.COMPLETED.value == "completed"
    assert StopReason.TIMEOUT.value == "timeout"
    assert StopReason.ERROR.value == "error"
    assert StopReason.CANCELLED.value == "cancelled"


# --- running ------------------------------------------------------------------------------


async def test_returning_returns_tool_result() -> None:
    _add_tool()
    assert await Turn("add", args=[1], kwargs={"b": 2}).returning() == 3


async def test_returning_sets_output() -> None:
    _add_tool()
    turn = Turn("add", args=[2, 3])
    await turn.returning()
    assert turn.output == 5


async def test_yielding_yields_each_value() -> None:
    _stream_tool()
    turn = Turn("stream", kwargs={"n": 3})
    assert [v async for v in turn.yielding()] == [0, 1, 2]


async def test_yielding_sets_output_to_all_values() -> None:
    _stream_tool()
    turn = Turn("stream", kwargs={"n": 3})
    _ = [v async for v in turn.yielding()]
    assert turn.output == [0, 1, 2]


async def test_returning_on_generator_tool_raises_wrong_run_method() -> None:
    _stream_tool()
    with pytest.raises(WrongRunMethodError):
        await Turn("stream", kwargs={"n": 1}).returning()


async def test_yielding_on_coroutine_tool_raises_wrong_run_method() -> None:
    _add_tool()
    with pytest.raises(WrongRunMethodError):
        async for _ in Turn("add", args=[1]).yielding():
            pass


async def test_callable_args_are_evaluated_when_run() -> None:
    _add_tool()
    config = {"a": 1}
    turn = Turn("add", args=[lambda: config["a"]])
    config["a"] = 10
    assert await turn.returning() == 10


async def test_callable_kwargs_are_evaluated_when_run() -> None:
    _add_tool()
    config = {"b": 1}
    turn = Turn("add", args=[0], kwargs={"b": lambda: config["b"]})
    config["b"] = 7
    assert await turn.returning() == 7


async def test_callable_args_are_evaluated_for_generator_turns() -> None:
    _stream_tool()
    size = {"n": 1}
    turn = Turn("stream", kwargs={"n": lambda: size["n"]})
    size["n"] = 2
    assert [v async for v in turn.yielding()] == [0, 1]


async def test_completed_turn_metadata() -> None:
    _add_tool()
    turn = Turn("add", args=[1])
    await turn.returning()
    start, end = turn.metadata.start_time, turn.metadata.end_time
    assert isinstance(start, datetime)
    assert isinstance(end, datetime)
    assert start <= end
    assert turn.metadata.stop_reason is StopReason.COMPLETED


async def test_completed_generator_turn_stop_reason() -> None:
    _stream_tool()
    turn = Turn("stream", kwargs={"n": 2})
    _ = [v async for v in turn.yielding()]
    assert turn.metadata.stop_reason is StopReason.COMPLETED


async def test_tool_error_propagates_and_sets_error_stop_reason() -> None:
    _failing_tool()
    turn = Turn("failing")
    with pytest.raises(RuntimeError, match="tool failed"):
        await turn.returning()
    assert turn.metadata.stop_reason is StopReason.ERROR
    assert isinstance(turn.metadata.end_time, datetime)


async def test_generator_error_sets_error_stop_reason() -> None:
    @tool()
    async def broken() -> AsyncIterator[int]:
        yield 1
        raise RuntimeError("stream failed")

    turn = Turn("broken")
    with pytest.raises(RuntimeError, match="stream failed"):
        _ = [v async for v in turn.yielding()]
    assert turn.metadata.stop_reason is StopReason.ERROR


async def test_missing_argument_raises_type_error_when_run() -> None:
    _add_tool()
    turn = Turn("add")
    with pytest.raises(TypeError):
        await turn.returning()


async def test_extra_turn_arguments_are_dropped() -> None:
    _add_tool()
    assert await Turn("add", args=[1, 2, 3], kwargs={"junk": 1}).returning() == 3


async def test_returning_timeout_raises_turn_timeout_error() -> None:
    _hanging_tool()
    turn = Turn("hanging", timeout=0.01)
    with pytest.raises(TurnTimeoutError):
        await turn.returning()
    assert turn.metadata.stop_reason is StopReason.TIMEOUT


async def test_turn_timeout_error_is_a_timeout_error() -> None:
    _hanging_tool()
    with pytest.raises(TimeoutError):
        await Turn("hanging", timeout=0.01).returning()


async def test_yielding_timeout_raises_turn_timeout_error() -> None:
    @tool()
    async def stalls() -> AsyncIterator[int]:
        yield 1
        await asyncio.Event().wait()
        yield 2

    turn = Turn("stalls", timeout=0.01)
    received: list[int] = []
    with pytest.raises(TurnTimeoutError):
        async for v in turn.yielding():
            received.append(v)
    assert received == [1]
    assert turn.metadata.stop_reason is StopReason.TIMEOUT


async def test_yielding_timeout_covers_whole_iteration() -> None:
    @tool()
    async def slow_stream() -> AsyncIterator[int]:
        for i in range(10):
            await asyncio.sleep(0.02)
            yield i

    turn = Turn("slow_stream", timeout=0.05)
    received: list[int] = []
    with pytest.raises(TurnTimeoutError):
        async for v in turn.yielding():
            received.append(v)
    assert len(received) < 10


# --- guards while running -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("attribute", "value"),
    [("args", [1]), ("kwargs", {"x": 1}), ("timeout", 5), ("tags", ["t"]), ("tool", "other")],
)
async def test_setting_attribute_while_running_raises(attribute: str, value: Any) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    _blocking_tool(started, release)

    @tool()
    async def other() -> None:
        pass

    turn = Turn("blocking")
    task = asyncio.create_task(turn.returning())
    await started.wait()
    try:
        with pytest.raises(SafeExecutionError):
            setattr(turn, attribute, value)
    finally:
        release.set()
        await task


async def test_output_and_metadata_stay_writable_while_running() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    _blocking_tool(started, release)
    turn = Turn("blocking")
    task = asyncio.create_task(turn.returning())
    await started.wait()
    turn.output = "interim"
    turn.metadata = TurnMetadata(None, None, None)
    release.set()
    await task
    assert turn.output == "released"


async def test_attributes_writable_after_run() -> None:
    _add_tool()
    turn = Turn("add", args=[1])
    await turn.returning()
    turn.timeout = 5
    turn.args = [2]
    assert turn.timeout == 5
    assert await turn.returning() == 2


async def test_returning_again_while_running_raises() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    _blocking_tool(started, release)
    turn = Turn("blocking")
    task = asyncio.create_task(turn.returning())
    await started.wait()
    try:
        with pytest.raises(SafeExecutionError):
            await turn.returning()
    finally:
        release.set()
        await task


async def test_yielding_again_while_running_raises() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    @tool()
    async def blocking_stream() -> AsyncIterator[int]:
        started.set()
        await release.wait()
        yield 1

    turn = Turn("blocking_stream")

    async def consume() -> list[int]:
        return [v async for v in turn.yielding()]

    task = asyncio.create_task(consume())
    await started.wait()
    try:
        with pytest.raises(SafeExecutionError):
            async for _ in turn.yielding():
                pass
    finally:
        release.set()
        assert await task == [1]


async def test_failed_run_releases_running_guard() -> None:
    _failing_tool()
    turn = Turn("failing")
    with pytest.raises(RuntimeError):
        await turn.returning()
    turn.timeout = 1
    assert turn.timeout == 1


# --- hooks --------------------------------------------------------------------------------


async def test_turn_hooks_fire_in_order_on_success() -> None:
    _add_tool()
    events: list[Any] = []
    turn = Turn("add", args=[1, 2])

    @turn.before_run
    async def before(turn: Turn[Any]) -> None:
        events.append(("before_run", turn))

    @turn.after_run
    async def after(turn: Turn[Any], output: Any) -> None:
        events.append(("after_run", turn, output))

    @turn.on_complete
    async def complete(turn: Turn[Any], stop_reason: StopReason) -> None:
        events.append(("on_complete", turn, stop_reason))

    await turn.returning()
    assert events == [
        ("before_run", turn),
        ("after_run", turn, 3),
        ("on_complete", turn, StopReason.COMPLETED),
    ]


async def test_after_run_receives_generator_values() -> None:
    _stream_tool()
    seen: list[Any] = []
    turn = Turn("stream", kwargs={"n": 3})

    @turn.after_run
    async def after(turn: Turn[Any], output: Any) -> None:
        seen.append(output)

    _ = [v async for v in turn.yielding()]
    assert seen == [[0, 1, 2]]


async def test_on_error_hook_receives_exception() -> None:
    _failing_tool()
    events: list[Any] = []
    turn = Turn("failing")

    @turn.on_error
    async def errored(turn: Turn[Any], exception: BaseException) -> None:
        events.append(("on_error", str(exception)))

    @turn.after_run
    async def after(turn: Turn[Any], output: Any) -> None:
        events.append(("after_run",))

    @turn.on_complete
    async def complete(turn: Turn[Any], stop_reason: StopReason) -> None:
        events.append(("on_complete", stop_reason))

    with pytest.raises(RuntimeError):
        await turn.returning()
    assert events == [("on_error", "tool failed"), ("on_complete", StopReason.ERROR)]


async def test_on_timeout_hook_fires_on_timeout() -> None:
    _hanging_tool()
    events: list[Any] = []
    turn = Turn("hanging", timeout=0.01)

    @turn.on_timeout
    async def timed_out(turn: Turn[Any]) -> None:
        events.append("on_timeout")

    @turn.on_complete
    async def complete(turn: Turn[Any], stop_reason: StopReason) -> None:
        events.append(stop_reason)

    with pytest.raises(TurnTimeoutError):
        await turn.returning()
    assert events == ["on_timeout", StopReason.TIMEOUT]


async def test_on_complete_fires_when_before_run_raises() -> None:
    _add_tool()
    events: list[Any] = []
    turn = Turn("add", args=[1])

    @turn.before_run
    async def refuse(turn: Turn[Any]) -> None:
        raise PermissionError("refused")

    @turn.on_complete
    async def complete(turn: Turn[Any], stop_reason: StopReason) -> None:
        events.append(stop_reason)

    with pytest.raises(PermissionError):
        await turn.returning()
    assert len(events) == 1


async def test_turn_hook_called_with_function() -> None:
    _add_tool()
    seen: list[Any] = []

    async def after(turn: Turn[Any], output: Any) -> None:
        seen.append(output)

    turn = Turn("add", args=[4])
    turn.after_run(after)
    await turn.returning()
    assert seen == [4]


async def test_turn_hooks_list_append() -> None:
    _add_tool()
    seen: list[Any] = []

    async def after(turn: Turn[Any], output: Any) -> None:
        seen.append(output)

    turn = Turn("add", args=[4])
    turn.hooks.append(HookRegistry.wrap(after, TurnHook.AFTER_RUN))
    await turn.returning()
    assert seen == [4]


async def test_turn_hook_decorator_with_fixed_kwargs() -> None:
    _add_tool()
    seen: list[Any] = []
    turn = Turn("add", args=[4])

    @turn.after_run(label="x")
    async def after(turn: Turn[Any], output: Any, label: str) -> None:
        seen.append((output, label))

    await turn.returning()
    assert seen == [(4, "x")]


async def test_instance_turn_hook_does_not_fire_for_other_turns() -> None:
    _add_tool()
    seen: list[Any] = []
    hooked, plain = Turn("add", args=[1]), Turn("add", args=[2])

    @hooked.after_run
    async def after(turn: Turn[Any], output: Any) -> None:
        seen.append(output)

    await plain.returning()
    assert seen == []


async def test_global_turn_hook_fires_on_complete_for_every_turn() -> None:
    _add_tool()
    seen: list[Any] = []

    @hook(TurnHook.ON_COMPLETE)
    async def complete(turn: Turn[Any], stop_reason: StopReason) -> None:
        seen.append(stop_reason)

    await Turn("add", args=[1]).returning()
    await Turn("add", args=[2]).returning()
    assert seen == [StopReason.COMPLETED, StopReason.COMPLETED]


async def test_turn_hook_gets_context_injection_in_agent() -> None:
    _add_tool()
    seen: list[Any] = []

    @hook(TurnHook.BEFORE_RUN)
    async def inspect_context(
        turn: Turn[Any], queue: ContextQueue[Any], pool: ContextPool[Any]
    ) -> None:
        seen.extend([queue, pool])

    agent = Agent("injected", "Injects", [ToolRegistry.get("add")])
    await agent.put(Turn("add", args=[1]))
    _ = [v async for v in agent.run()]
    assert seen[0] is agent.context_queue
    assert seen[1] is agent.context_pool


async def test_required_context_parameter_outside_agent_raises_type_error() -> None:
    @tool()
    async def needs_queue(queue: ContextQueue[Any]) -> None:
        pass

    with pytest.raises(TypeError):
        await Turn("needs_queue").returning()


async def test_optional_context_parameter_outside_agent_gets_none() -> None:
    @tool()
    async def maybe_pool(pool: ContextPool[Any] | None) -> bool:
        return pool is None

    assert await Turn("maybe_pool").returning() is True


# --- serialisation ------------------------------------------------------------------------


def test_to_dict_has_spec_keys() -> None:
    _add_tool()
    assert set(Turn("add").to_dict()) == {
        "tool_name",
        "args",
        "kwargs",
        "timeout",
        "metadata",
        "output",
        "hooks",
        "tags",
    }


def test_to_dict_evaluates_callable_args() -> None:
    _add_tool()
    data = Turn("add", args=[lambda: 1], kwargs={"b": lambda: 2}).to_dict()
    assert data["tool_name"] == "add"
    assert data["args"] == [1]
    assert data["kwargs"] == {"b": 2}


async def test_to_dict_has_iso_datetimes_and_stop_reason_value() -> None:
    _add_tool()
    turn = Turn("add", args=[1], timeout=5)
    await turn.returning()
    data = turn.to_dict()
    assert data["timeout"] == 5
    assert data["output"] == 1
    assert data["metadata"]["start_time"] == turn.metadata.start_time.isoformat()  # type: ignore[union-attr]
    assert data["metadata"]["end_time"] == turn.metadata.end_time.isoformat()  # type: ignore[union-attr]
    assert data["metadata"]["stop_reason"] == "completed"


async def test_to_dict_is_json_serialisable() -> None:
    _add_tool()
    turn = Turn("add", args=[1], tags=["t"])
    await turn.returning()
    assert json.loads(json.dumps(turn.to_dict())) == turn.to_dict()


def test_to_dict_stores_hooks_by_type_value() -> None:
    _add_tool()
    turn = Turn("add")

    @turn.before_run
    async def log_start(turn: Turn[Any]) -> None:
        pass

    @turn.on_complete
    async def log_end(turn: Turn[Any], stop_reason: StopReason) -> None:
        pass

    hooks = turn.to_dict()["hooks"]
    assert hooks[TurnHook.BEFORE_RUN.value] == ["log_start"]
    assert hooks[TurnHook.ON_COMPLETE.value] == ["log_end"]


def test_to_dict_stores_tags() -> None:
    _add_tool()
    assert sorted(Turn("add", tags=["b", "a"]).to_dict()["tags"]) == ["a", "b"]


def test_to_dict_uses_scoped_subtool_name() -> None:
    @tool()
    async def parent() -> None:
        pass

    @parent.subtool()
    async def child() -> None:
        pass

    assert Turn(child).to_dict()["tool_name"] == "parent.child"


async def test_from_dict_round_trip() -> None:
    add = _add_tool()
    turn = Turn("add", args=[1], kwargs={"b": 2}, timeout=7, tags=["x"])

    @turn.after_run
    async def log_output(turn: Turn[Any], output: Any) -> None:
        pass

    await turn.returning()
    restored = Turn.from_dict(turn.to_dict())
    assert restored.tool is add
    assert list(restored.args) == [1]
    assert restored.kwargs == {"b": 2}
    assert restored.timeout == 7
    assert restored.tags == frozenset({"x"})
    assert restored.output == 3
    assert restored.metadata.start_time == turn.metadata.start_time
    assert restored.metadata.end_time == turn.metadata.end_time
    assert restored.metadata.stop_reason is StopReason.COMPLETED
    assert restored.hooks == [HookRegistry.get("log_output")]


def test_from_dict_of_fresh_turn_keeps_empty_metadata() -> None:
    _add_tool()
    restored = Turn.from_dict(Turn("add", args=[1]).to_dict())
    assert restored.metadata.start_time is None
    assert restored.metadata.end_time is None
    assert restored.metadata.stop_reason is None
    assert restored.output is None


async def test_restored_turn_hooks_fire() -> None:
    _add_tool()
    seen: list[Any] = []
    turn = Turn("add", args=[1])

    @turn.after_run
    async def record(turn: Turn[Any], output: Any) -> None:
        seen.append(output)

    restored = Turn.from_dict(turn.to_dict())
    await restored.returning()
    assert seen == [1]


def test_from_dict_with_unknown_hook_raises_unregistered_hook_error() -> None:
    _add_tool()
    data = Turn("add").to_dict()
    data["hooks"] = {TurnHook.BEFORE_RUN.value: ["nobody"]}
    with pytest.raises(UnregisteredHookError):
        Turn.from_dict(data)


def test_from_dict_with_unknown_tool_raises_unregistered_tool_error() -> None:
    _add_tool()
    data = Turn("add").to_dict()
    data["tool_name"] = "missing"
    with pytest.raises(UnregisteredToolError):
        Turn.from_dict(data)
