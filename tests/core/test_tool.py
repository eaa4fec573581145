"""``@tool``: decoration, calling, fixed kwargs, locks, registration, subtools and tool hooks."""

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from pygents import (
    Agent,
    AsyncGenTool,
    BaseTool,
    ContextPool,
    ContextQueue,
    HookRegistry,
    Tool,
    ToolHook,
    ToolMetadata,
    ToolRegistry,
    Turn,
    hook,
    tool,
)


async def _spin(times: int = 10) -> None:
    for _ in range(times):
        await asyncio.sleep(0)


# --- decoration ---------------------------------------------------------------------------


async def test_bare_decorator_makes_a_tool() -> None:
    @tool
    async def bare(x: int) -> int:
        return x + 1

    assert isinstance(bare, Tool)
    assert await bare(1) == 2


async def test_called_decorator_makes_a_tool() -> None:
    @tool()
    async def called(x: int) -> int:
        return x * 2

    assert isinstance(called, Tool)
    assert await called(3) == 6


def test_async_generator_function_makes_async_gen_tool() -> None:
    @tool()
    async def stream() -> AsyncIterator[int]:
        yield 1

    assert isinstance(stream, AsyncGenTool)


def test_tool_classes_share_base_tool() -> None:
    assert issubclass(Tool, BaseTool)
    assert issubclass(AsyncGenTool, BaseTool)


def test_sync_function_raises_type_error() -> None:
    def sync(x: int) -> int:
        return x

    with pytest.raises(TypeError):
        tool(sync)  # type: ignore[arg-type]


def test_sync_function_with_called_decorator_raises_type_error() -> None:
    def sync(x: int) -> int:
        return x

    with pytest.raises(TypeError):
        tool()(sync)  # type: ignore[arg-type]


def test_sync_generator_function_raises_type_error() -> None:
    def sync_gen() -> Any:
        yield 1

    with pytest.raises(TypeError):
        tool()(sync_gen)


def test_unknown_fixed_kwarg_raises_type_error() -> None:
    async def strict(x: int) -> int:
        return x

    with pytest.raises(TypeError):
        tool(nope=1)(strict)


def test_fixed_kwarg_accepted_by_var_keyword() -> None:
    @tool(extra=1)
    async def loose(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    assert isinstance(loose, Tool)


def test_tool_attributes() -> None:
    @tool()
    async def described(x: int) -> int:
        """Add one."""
        return x + 1

    assert isinstance(described.metadata, ToolMetadata)
    assert described.__name__ == "described"
    assert described.__doc__ == "Add one."
    assert described.hooks == []
    assert described.lock is None
    assert described.tags == frozenset()
    assert callable(described.fn)


async def test_tool_fn_is_the_original_function() -> None:
    async def original(x: int) -> int:
        return x

    wrapped = tool()(original)
    assert wrapped.fn is original


def test_tool_tags_are_a_frozenset() -> None:
    @tool(tags=["web", "io", "web"])
    async def tagged() -> None:
        pass

    assert tagged.tags == frozenset({"web", "io"})


def test_lock_true_gives_asyncio_lock() -> None:
    @tool(lock=True)
    async def locked() -> None:
        pass

    assert isinstance(locked.lock, asyncio.Lock)


# --- registration -------------------------------------------------------------------------


def test_tool_registers_under_function_name() -> None:
    @tool()
    async def registered() -> None:
        pass

    assert ToolRegistry.get("registered") is registered


def test_second_tool_with_same_name_raises_value_error() -> None:
    @tool()
    async def same() -> None:
        pass

    async def same_again() -> None:
        pass

    same_again.__name__ = "same"
    with pytest.raises(ValueError):
        tool()(same_again)


# --- calling ------------------------------------------------------------------------------


async def test_coroutine_tool_called_directly_returns_result() -> None:
    @tool()
    async def add(a: int, b: int) -> int:
        return a + b

    assert await add(1, b=2) == 3


async def test_generator_tool_called_directly_yields_values() -> None:
    @tool()
    async def count(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    assert [v async for v in count(3)] == [0, 1, 2]


async def test_extra_positional_arguments_are_dropped() -> None:
    @tool()
    async def one(x: int) -> int:
        return x

    assert await one(1, 2, 3) == 1


async def test_extra_keyword_arguments_are_dropped() -> None:
    @tool()
    async def one(x: int) -> int:
        return x

    assert await one(x=5, unknown="ignored") == 5


async def test_extra_arguments_are_dropped_for_generator_tool() -> None:
    @tool()
    async def echo(x: int) -> AsyncIterator[int]:
        yield x

    assert [v async for v in echo(7, 8, junk=True)] == [7]


async def test_var_keyword_tool_receives_all_keywords() -> None:
    @tool()
    async def everything(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    assert await everything(a=1, b=2) == {"a": 1, "b": 2}


async def test_missing_required_argument_raises_type_error_when_run() -> None:
    @tool()
    async def needs(x: int) -> int:
        return x

    with pytest.raises(TypeError):
        await needs()


# --- fixed kwargs -------------------------------------------------------------------------


async def test_fixed_kwarg_is_merged_into_call() -> None:
    @tool(unit="cm")
    async def measure(value: int, unit: str) -> str:
        return f"{value}{unit}"

    assert await measure(3) == "3cm"


async def test_callable_fixed_kwarg_is_evaluated_each_call() -> None:
    counter = iter(range(100))

    @tool(seq=lambda: next(counter))
    async def numbered(seq: int) -> int:
        return seq

    assert [await numbered(), await numbered(), await numbered()] == [0, 1, 2]


async def test_call_time_kwarg_overrides_fixed_kwarg() -> None:
    @tool(unit="cm")
    async def measure(value: int, unit: str) -> str:
        return f"{value}{unit}"

    assert await measure(3, unit="mm") == "3mm"


async def test_fixed_kwarg_override_logs_warning(caplog: pytest.LogCaptureFixture) -> None:
    @tool(unit="cm")
    async def measure(value: int, unit: str) -> str:
        return f"{value}{unit}"

    with caplog.at_level(logging.WARNING):
        await measure(3, unit="mm")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "unit" in warnings[0].getMessage()
    assert warnings[0].name.startswith("pygents")


async def test_fixed_kwarg_without_override_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @tool(unit="cm")
    async def measure(value: int, unit: str) -> str:
        return f"{value}{unit}"

    with caplog.at_level(logging.WARNING):
        await measure(3)
    assert caplog.records == []


async def test_fixed_kwarg_reaches_generator_tool() -> None:
    @tool(step=2)
    async def stepped(n: int, step: int) -> AsyncIterator[int]:
        for i in range(0, n, step):
            yield i

    assert [v async for v in stepped(5)] == [0, 2, 4]


# --- metadata -----------------------------------------------------------------------------


def test_metadata_name_and_description() -> None:
    @tool()
    async def documented() -> None:
        """Does a thing."""

    assert documented.metadata.name == "documented"
    assert documented.metadata.description == "Does a thing."


def test_metadata_times_are_none_before_first_run() -> None:
    @tool()
    async def fresh() -> None:
        pass

    assert fresh.metadata.start_time is None
    assert fresh.metadata.end_time is None


async def test_metadata_times_are_set_on_run() -> None:
    @tool()
    async def timed() -> None:
        pass

    await timed()
    start, end = timed.metadata.start_time, timed.metadata.end_time
    assert isinstance(start, datetime)
    assert isinstance(end, datetime)
    assert start <= end


async def test_metadata_times_are_set_on_generator_run() -> None:
    @tool()
    async def timed_stream() -> AsyncIterator[int]:
        yield 1

    _ = [v async for v in timed_stream()]
    assert isinstance(timed_stream.metadata.start_time, datetime)
    assert isinstance(timed_stream.metadata.end_time, datetime)


async def test_metadata_times_are_updated_on_each_run() -> None:
    @tool()
    async def rerun() -> None:
        pass

    await rerun()
    first = rerun.metadata.start_time
    await rerun()
    second = rerun.metadata.start_time
    assert first is not None and second is not None
    assert second >= first
    assert second is not first


def test_metadata_dict_before_run_has_six_keys() -> None:
    @tool()
    async def described(x: int) -> int:
        """Doc."""
        return x

    data = described.metadata.dict()
    assert set(data) == {
        "name",
        "description",
        "start_time",
        "end_time",
        "input_schema",
        "output_schema",
    }
    assert data["name"] == "described"
    assert data["description"] == "Doc."
    assert data["start_time"] is None
    assert data["end_time"] is None


async def test_metadata_dict_has_iso_datetimes_after_run() -> None:
    @tool()
    async def described() -> None:
        pass

    await described()
    data = described.metadata.dict()
    assert described.metadata.start_time is not None
    assert described.metadata.end_time is not None
    assert data["start_time"] == described.metadata.start_time.isoformat()
    assert data["end_time"] == described.metadata.end_time.isoformat()


def test_metadata_dict_includes_schemas() -> None:
    @tool()
    async def typed(x: int) -> str:
        return str(x)

    data = typed.metadata.dict()
    assert data["input_schema"] == typed.metadata.input_schema
    assert data["output_schema"] == typed.metadata.output_schema


# --- locks --------------------------------------------------------------------------------


async def test_lock_serialises_concurrent_runs() -> None:
    release = asyncio.Event()
    active = 0
    peak = 0

    @tool(lock=True)
    async def exclusive() -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await release.wait()
        active -= 1

    tasks = [asyncio.create_task(exclusive()) for _ in range(3)]
    await _spin()
    assert active == 1
    release.set()
    await asyncio.gather(*tasks)
    assert peak == 1


async def test_unlocked_tool_runs_concurrently() -> None:
    release = asyncio.Event()
    active = 0

    @tool()
    async def shared() -> None:
        nonlocal active
        active += 1
        await release.wait()

    tasks = [asyncio.create_task(shared()) for _ in range(3)]
    await _spin()
    assert active == 3
    release.set()
    await asyncio.gather(*tasks)


async def test_lock_serialises_whole_generator_iteration() -> None:
    events: list[str] = []

    @tool(lock=True)
    async def stream(label: str) -> AsyncIterator[str]:
        events.append(f"{label}-start")
        yield label
        await asyncio.sleep(0)
        events.append(f"{label}-end")

    async def consume(label: str) -> None:
        async for _ in stream(label):
            await asyncio.sleep(0)

    await asyncio.gather(consume("a"), consume("b"))
    assert events == ["a-start", "a-end", "b-start", "b-end"]


async def test_lock_covers_on_yield_hooks() -> None:
    held: list[bool] = []

    @tool(lock=True)
    async def stream() -> AsyncIterator[int]:
        yield 1
        yield 2

    @stream.on_yield
    async def check(value: int) -> None:
        assert stream.lock is not None
        held.append(stream.lock.locked())

    _ = [v async for v in stream()]
    assert held == [True, True]


async def test_lock_does_not_cover_before_and_after_invoke() -> None:
    held: dict[str, bool] = {}

    @tool(lock=True)
    async def locked() -> int:
        assert locked.lock is not None
        held["call"] = locked.lock.locked()
        return 1

    @locked.before_invoke
    async def before() -> None:
        assert locked.lock is not None
        held["before"] = locked.lock.locked()

    @locked.after_invoke
    async def after(result: int) -> None:
        assert locked.lock is not None
        held["after"] = locked.lock.locked()

    await locked()
    assert held == {"before": False, "call": True, "after": False}


async def test_lock_does_not_cover_generator_before_and_after_invoke() -> None:
    held: dict[str, bool] = {}

    @tool(lock=True)
    async def stream() -> AsyncIterator[int]:
        yield 1

    @stream.before_invoke
    async def before() -> None:
        assert stream.lock is not None
        held["before"] = stream.lock.locked()

    @stream.after_invoke
    async def after(values: list[int]) -> None:
        assert stream.lock is not None
        held["after"] = stream.lock.locked()

    _ = [v async for v in stream()]
    assert held == {"before": False, "after": False}


async def test_lock_does_not_cover_on_error() -> None:
    held: list[bool] = []

    @tool(lock=True)
    async def failing() -> None:
        raise RuntimeError("boom")

    @failing.on_error
    async def check(exc: BaseException) -> None:
        assert failing.lock is not None
        held.append(failing.lock.locked())

    with pytest.raises(RuntimeError):
        await failing()
    assert held == [False]


async def test_lock_is_released_after_error() -> None:
    @tool(lock=True)
    async def failing() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await failing()
    assert failing.lock is not None
    assert not failing.lock.locked()


# --- tool hooks ---------------------------------------------------------------------------


async def test_before_invoke_receives_tool_arguments() -> None:
    seen: list[Any] = []

    @tool()
    async def add(a: int, b: int) -> int:
        return a + b

    @add.before_invoke
    async def check(a: int, b: int) -> None:
        seen.append((a, b))

    await add(1, b=2)
    assert seen == [(1, 2)]


async def test_after_invoke_receives_result() -> None:
    seen: list[Any] = []

    @tool()
    async def double(x: int) -> int:
        return x * 2

    @double.after_invoke
    async def check(result: int) -> None:
        seen.append(result)

    await double(4)
    assert seen == [8]


async def test_after_invoke_on_generator_receives_all_values() -> None:
    seen: list[Any] = []

    @tool()
    async def stream() -> AsyncIterator[int]:
        for i in range(3):
            yield i

    @stream.after_invoke
    async def check(values: list[int]) -> None:
        seen.append(values)

    _ = [v async for v in stream()]
    assert seen == [[0, 1, 2]]


async def test_after_invoke_on_generator_stopped_early_receives_partial_values() -> None:
    seen: list[Any] = []

    @tool()
    async def stream() -> AsyncIterator[int]:
        for i in range(10):
            yield i

    @stream.after_invoke
    async def check(values: list[int]) -> None:
        seen.append(values)

    agen = stream()
    assert await anext(agen) == 0
    assert await anext(agen) == 1
    await agen.aclose()
    assert seen == [[0, 1]]


async def test_on_yield_receives_each_value() -> None:
    seen: list[Any] = []

    @tool()
    async def stream() -> AsyncIterator[str]:
        yield "a"
        yield "b"

    @stream.on_yield
    async def check(value: str) -> None:
        seen.append(value)

    _ = [v async for v in stream()]
    assert seen == ["a", "b"]


async def test_on_yield_runs_before_consumer_gets_value() -> None:
    order: list[str] = []

    @tool()
    async def stream() -> AsyncIterator[str]:
        yield "a"

    @stream.on_yield
    async def check(value: str) -> None:
        order.append(f"hook-{value}")

    async for v in stream():
        order.append(f"consumer-{v}")
    assert order == ["hook-a", "consumer-a"]


async def test_on_error_receives_exception_as_exc() -> None:
    seen: list[BaseException] = []

    @tool()
    async def failing() -> None:
        raise RuntimeError("boom")

    @failing.on_error
    async def check(exc: BaseException) -> None:
        seen.append(exc)

    with pytest.raises(RuntimeError):
        await failing()
    assert len(seen) == 1
    assert isinstance(seen[0], RuntimeError)


async def test_after_invoke_not_fired_on_error() -> None:
    seen: list[str] = []

    @tool()
    async def failing() -> None:
        raise RuntimeError("boom")

    @failing.after_invoke
    async def after(result: Any) -> None:
        seen.append("after")

    @failing.on_error
    async def errored(exc: BaseException) -> None:
        seen.append("error")

    with pytest.raises(RuntimeError):
        await failing()
    assert seen == ["error"]


async def test_on_error_fires_for_generator_tool() -> None:
    seen: list[str] = []

    @tool()
    async def failing_stream() -> AsyncIterator[int]:
        yield 1
        raise RuntimeError("boom")

    @failing_stream.on_error
    async def errored(exc: BaseException) -> None:
        seen.append(str(exc))

    @failing_stream.after_invoke
    async def after(values: list[int]) -> None:
        seen.append("after")

    with pytest.raises(RuntimeError):
        _ = [v async for v in failing_stream()]
    assert seen == ["boom"]


async def test_on_error_fires_for_missing_argument() -> None:
    seen: list[BaseException] = []

    @tool()
    async def needs(x: int) -> int:
        return x

    @needs.on_error
    async def errored(exc: BaseException) -> None:
        seen.append(exc)

    with pytest.raises(TypeError):
        await needs()
    assert [type(e) for e in seen] == [TypeError]


async def test_tool_hook_order_before_call_after() -> None:
    order: list[str] = []

    @tool()
    async def traced() -> None:
        order.append("call")

    @traced.before_invoke
    async def before() -> None:
        order.append("before")

    @traced.after_invoke
    async def after(result: None) -> None:
        order.append("after")

    await traced()
    assert order == ["before", "call", "after"]


async def test_tool_hook_decorator_adds_to_hooks_list() -> None:
    @tool()
    async def hooked() -> None:
        pass

    @hooked.before_invoke
    async def before() -> None:
        pass

    assert hooked.hooks == [(ToolHook.BEFORE_INVOKE, before)]
    assert before.type is ToolHook.BEFORE_INVOKE


async def test_tool_hook_decorator_called_with_function() -> None:
    seen: list[int] = []

    @tool()
    async def add(a: int) -> int:
        return a

    async def after(result: int) -> None:
        seen.append(result)

    add.after_invoke(after)
    await add(5)
    assert seen == [5]


async def test_tool_hook_decorator_with_fixed_kwargs() -> None:
    seen: list[Any] = []

    @tool()
    async def add(a: int) -> int:
        return a

    @add.after_invoke(label="x")
    async def after(result: int, label: str) -> None:
        seen.append((result, label))

    await add(5)
    assert seen == [(5, "x")]


async def test_tool_hook_decorator_with_lock() -> None:
    @tool()
    async def add(a: int) -> int:
        return a

    @add.after_invoke(lock=True)
    async def after(result: int) -> None:
        pass

    event, made = add.hooks[0]
    assert event is ToolHook.AFTER_INVOKE
    assert made is after
    assert isinstance(after.lock, asyncio.Lock)


async def test_one_hook_function_stacked_on_several_tools() -> None:
    seen: list[Any] = []

    @tool()
    async def first() -> str:
        return "first"

    @tool()
    async def second() -> str:
        return "second"

    @second.after_invoke
    @first.after_invoke
    async def record(result: str) -> None:
        seen.append(result)

    await first()
    await second()
    assert seen == ["first", "second"]


async def test_instance_tool_hook_does_not_fire_for_other_tools() -> None:
    seen: list[str] = []

    @tool()
    async def hooked() -> str:
        return "hooked"

    @tool()
    async def plain() -> str:
        return "plain"

    @hooked.after_invoke
    async def record(result: str) -> None:
        seen.append(result)

    await plain()
    assert seen == []


async def test_global_tool_hook_fires_for_every_tool() -> None:
    seen: list[Any] = []

    @tool()
    async def first() -> str:
        return "first"

    @tool()
    async def second() -> str:
        return "second"

    @hook(ToolHook.AFTER_INVOKE)
    async def record(result: str) -> None:
        seen.append(result)

    await first()
    await second()
    assert seen == ["first", "second"]


async def test_global_tool_hook_with_tags_fires_only_for_tagged_tool() -> None:
    seen: list[Any] = []

    @tool(tags=["net"])
    async def fetch() -> str:
        return "fetch"

    @tool(tags=["disk"])
    async def read() -> str:
        return "read"

    @hook(ToolHook.AFTER_INVOKE, tags=["net", "other"])
    async def record(result: str) -> None:
        seen.append(result)

    await fetch()
    await read()
    assert seen == ["fetch"]


async def test_tool_instance_hook_fires_before_global_hook() -> None:
    order: list[str] = []

    @tool()
    async def traced() -> None:
        pass

    @hook(ToolHook.BEFORE_INVOKE)
    async def global_before() -> None:
        order.append("global")

    @traced.before_invoke
    async def local_before() -> None:
        order.append("local")

    await traced()
    assert order == ["local", "global"]


async def test_instance_tool_hook_is_registered_by_name() -> None:
    @tool()
    async def hooked() -> None:
        pass

    @hooked.before_invoke
    async def named_before() -> None:
        pass

    assert HookRegistry.get("named_before") is hooked.hooks[0][1] is named_before


# --- subtools -----------------------------------------------------------------------------


def test_subtool_registered_under_scoped_name() -> None:
    @tool()
    async def parent() -> None:
        pass

    @parent.subtool()
    async def child() -> None:
        pass

    assert ToolRegistry.get("parent.child") is child
    assert child.__name__ == "parent.child"


def test_subtool_metadata_name_is_short_name() -> None:
    @tool()
    async def parent() -> None:
        pass

    @parent.subtool()
    async def child() -> None:
        pass

    assert child.metadata.name == "child"


def test_nested_subtool_key_has_every_level() -> None:
    @tool()
    async def a() -> None:
        pass

    @a.subtool()
    async def b() -> None:
        pass

    @b.subtool()
    async def c() -> None:
        pass

    assert ToolRegistry.get("a.b.c") is c
    assert c.metadata.name == "c"


async def test_subtool_is_a_full_tool() -> None:
    @tool()
    async def parent() -> None:
        pass

    @parent.subtool(lock=True, tags=["x"], factor=3)
    async def child(x: int, factor: int) -> int:
        return x * factor

    assert isinstance(child, Tool)
    assert isinstance(child.lock, asyncio.Lock)
    assert child.tags == frozenset({"x"})
    assert await child(2) == 6


def test_subtool_can_be_a_generator() -> None:
    @tool()
    async def parent() -> None:
        pass

    @parent.subtool()
    async def child() -> AsyncIterator[int]:
        yield 1

    assert isinstance(child, AsyncGenTool)


def test_subtool_with_unknown_fixed_kwarg_raises_type_error() -> None:
    @tool()
    async def parent() -> None:
        pass

    async def child() -> None:
        pass

    with pytest.raises(TypeError):
        parent.subtool(nope=1)(child)


def test_subtool_on_sync_function_raises_type_error() -> None:
    @tool()
    async def parent() -> None:
        pass

    def child() -> None:
        pass

    with pytest.raises(TypeError):
        parent.subtool()(child)  # type: ignore[arg-type]


def test_duplicate_subtool_raises_value_error() -> None:
    @tool()
    async def parent() -> None:
        pass

    @parent.subtool()
    async def child() -> None:
        pass

    async def child_again() -> None:
        pass

    child_again.__name__ = "child"
    with pytest.raises(ValueError):
        parent.subtool()(child_again)


def test_subtool_short_name_does_not_clash_with_root_tool() -> None:
    @tool()
    async def parent() -> None:
        pass

    @parent.subtool()
    async def child() -> None:
        pass

    async def root_child() -> None:
        pass

    root_child.__name__ = "child"
    root = tool()(root_child)
    assert ToolRegistry.get("child") is root
    assert ToolRegistry.get("parent.child") is child


async def test_turn_uses_scoped_subtool_name() -> None:
    @tool()
    async def parent() -> None:
        pass

    @parent.subtool()
    async def child() -> str:
        return "child ran"

    turn: Turn[str] = Turn("parent.child")
    assert turn.tool is child
    assert await turn.returning() == "child ran"


def test_doc_tree_of_leaf_tool() -> None:
    @tool()
    async def leaf() -> None:
        """A leaf."""

    assert leaf.doc_tree() == {"name": "leaf", "description": "A leaf.", "subtools": []}


def test_doc_tree_is_recursive() -> None:
    @tool()
    async def a() -> None:
        """Tool a."""

    @a.subtool()
    async def b() -> None:
        """Tool b."""

    @b.subtool()
    async def c() -> None:
        """Tool c."""

    @a.subtool()
    async def d() -> None:
        """Tool d."""

    assert a.doc_tree() == {
        "name": "a",
        "description": "Tool a.",
        "subtools": [
            {
                "name": "b",
                "description": "Tool b.",
                "subtools": [{"name": "c", "description": "Tool c.", "subtools": []}],
            },
            {"name": "d", "description": "Tool d.", "subtools": []},
        ],
    }


def test_definitions_are_root_doc_trees() -> None:
    @tool()
    async def a() -> None:
        """Tool a."""

    @a.subtool()
    async def b() -> None:
        """Tool b."""

    @tool()
    async def z() -> None:
        """Tool z."""

    assert ToolRegistry.definitions() == [a.doc_tree(), z.doc_tree()]


# --- context injection --------------------------------------------------------------------


async def test_context_queue_parameter_injected_in_agent() -> None:
    seen: list[Any] = []

    @tool()
    async def reader(queue: ContextQueue[Any]) -> None:
        seen.append(queue)

    agent = Agent("reader_agent", "Reads", [reader])
    await agent.put(Turn("reader"))
    _ = [v async for v in agent.run()]
    assert seen == [agent.context_queue]
    assert seen[0] is agent.context_queue


async def test_context_pool_parameter_injected_in_agent() -> None:
    seen: list[Any] = []

    @tool()
    async def reader(pool: ContextPool[Any]) -> None:
        seen.append(pool)

    agent = Agent("reader_agent", "Reads", [reader])
    await agent.put(Turn("reader"))
    _ = [v async for v in agent.run()]
    assert seen[0] is agent.context_pool


async def test_unparameterised_context_annotation_is_injected() -> None:
    seen: list[Any] = []

    @tool()
    async def reader(queue: ContextQueue, pool: ContextPool) -> None:  # type: ignore[type-arg]
        seen.extend([queue, pool])

    agent = Agent("reader_agent", "Reads", [reader])
    await agent.put(Turn("reader"))
    _ = [v async for v in agent.run()]
    assert seen[0] is agent.context_queue
    assert seen[1] is agent.context_pool


async def test_optional_context_parameter_injected_in_agent() -> None:
    seen: list[Any] = []

    @tool()
    async def reader(queue: ContextQueue[Any] | None = None) -> None:
        seen.append(queue)

    agent = Agent("reader_agent", "Reads", [reader])
    await agent.put(Turn("reader"))
    _ = [v async for v in agent.run()]
    assert seen[0] is agent.context_queue


async def test_explicit_context_kwarg_wins_over_injection() -> None:
    seen: list[Any] = []
    mine: ContextQueue[Any] = ContextQueue(limit=3)

    @tool()
    async def reader(queue: ContextQueue[Any]) -> None:
        seen.append(queue)

    agent = Agent("reader_agent", "Reads", [reader])
    await agent.put(Turn("reader", kwargs={"queue": mine}))
    _ = [v async for v in agent.run()]
    assert seen[0] is mine


async def test_required_context_parameter_outside_agent_raises_type_error() -> None:
    @tool()
    async def reader(queue: ContextQueue[Any]) -> None:
        pass

    with pytest.raises(TypeError):
        await reader()


async def test_optional_context_parameter_outside_agent_gets_none() -> None:
    @tool()
    async def reader(queue: ContextQueue[Any] | None) -> bool:
        return queue is None

    assert await reader() is True


async def test_explicit_context_argument_outside_agent_is_used() -> None:
    mine: ContextPool[Any] = ContextPool()

    @tool()
    async def reader(pool: ContextPool[Any]) -> ContextPool[Any]:
        return pool

    assert await reader(pool=mine) is mine


async def test_context_parameter_injected_into_generator_tool() -> None:
    seen: list[Any] = []

    @tool()
    async def reader(queue: ContextQueue[Any]) -> AsyncIterator[int]:
        seen.append(queue)
        yield 1

    agent = Agent("reader_agent", "Reads", [reader])
    await agent.put(Turn("reader"))
    _ = [v async for v in agent.run()]
    assert seen[0] is agent.context_queue


async def test_tool_hook_gets_context_injection_in_agent() -> None:
    seen: list[Any] = []

    @tool()
    async def work() -> int:
        return 1

    @work.after_invoke
    async def check(result: int, pool: ContextPool[Any]) -> None:
        seen.append(pool)

    agent = Agent("worker", "Works", [work])
    await agent.put(Turn("work"))
    _ = [v async for v in agent.run()]
    assert seen[0] is agent.context_pool


def test_on_yield_on_coroutine_tool_raises_type_error() -> None:
    @tool()
    async def plain() -> int:
        return 1

    async def check(value: int) -> None:
        pass

    with pytest.raises(TypeError):
        plain.on_yield(check)


async def test_lock_does_not_cover_generator_on_error() -> None:
    held: list[bool] = []

    @tool(lock=True)
    async def failing_stream() -> AsyncIterator[int]:
        yield 1
        raise RuntimeError("boom")

    @failing_stream.on_error
    async def check(exc: BaseException) -> None:
        assert failing_stream.lock is not None
        held.append(failing_stream.lock.locked())

    with pytest.raises(RuntimeError):
        _ = [v async for v in failing_stream()]
    assert held == [False]
