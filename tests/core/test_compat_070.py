"""What pygents 0.7.0 does, pinned fact by fact (``shared/spec/core-0.7.0-facts.md``).

Each section is one numbered fact of that file (root causes R1-R20 in brackets), then the
smaller divergences listed at its end. Messages are checked for 0.7.0's required text and
for our own detail (the name of the tool, agent, hook or attribute at fault).
"""

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Optional

import pytest

from pygents import (
    Agent,
    AgentHook,
    AgentRegistry,
    AsyncGenTool,
    ContextItem,
    ContextPool,
    ContextPoolHook,
    ContextQueue,
    ContextQueueHook,
    Hook,
    HookMetadata,
    HookRegistry,
    SafeExecutionError,
    StopReason,
    Tool,
    ToolHook,
    ToolMetadata,
    ToolRegistry,
    Turn,
    TurnHook,
    TurnTimeoutError,
    UnregisteredAgentError,
    UnregisteredHookError,
    UnregisteredToolError,
    UnserializableHookError,
    hook,
    tool,
)

type Events = list[Any]


def typed[F: Callable[..., Awaitable[Any]]](fn: F, kind: Any) -> F:
    """``fn`` with a ``.type``: a duck-typed hook, as a 0.7.0 program writes one."""
    fn.type = kind  # type: ignore[attr-defined]
    return fn


def recorder(events: Events, label: str, kind: Any) -> Callable[..., Awaitable[None]]:
    """A plain async function with ``.type = kind`` that appends ``label`` when called."""

    async def record(*args: Any, **kwargs: Any) -> None:
        events.append(label)

    return typed(record, kind)


async def values_of(agent: Agent) -> list[Any]:
    return [value async for _turn, value in agent.run()]


# --- Fact 1: a sync function is rejected with "Tool must be async" (R16) ------------------


def test_fact1_tool_rejects_a_plain_function() -> None:
    def sync_tool() -> int:
        return 1

    with pytest.raises(TypeError, match="Tool must be async") as caught:
        tool(sync_tool)  # type: ignore[arg-type]
    assert "'sync_tool'" in str(caught.value)
    assert "sync_tool" not in ToolRegistry._tools


def test_fact1_called_tool_rejects_a_sync_generator_function() -> None:
    def sync_gen() -> Any:
        yield 1

    with pytest.raises(TypeError, match="Tool must be async") as caught:
        tool()(sync_gen)
    assert "'sync_gen' is a generator function" in str(caught.value)


def test_fact1_subtool_rejects_a_plain_function() -> None:
    @tool
    async def parent() -> None:
        pass

    def child() -> None:
        pass

    with pytest.raises(TypeError, match="Tool must be async"):
        parent.subtool()(child)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Tool must be async"):
        parent.subtool(child)  # type: ignore[arg-type]


# --- Fact 2: ToolMetadata defaults its schemas to None (R17) -------------------------------


def test_fact2_tool_metadata_defaults_are_none() -> None:
    metadata = ToolMetadata(name="x", description="d")
    assert metadata.start_time is None
    assert metadata.end_time is None
    assert metadata.input_schema is None
    assert metadata.output_schema is None


# --- Fact 3: schema inference (R17) --------------------------------------------------------


def test_fact3a_no_parameter_gives_no_input_schema() -> None:
    @tool
    async def bare() -> int:
        return 1

    @tool
    async def variadic(*args: int, **kwargs: str) -> int:
        return 1

    @tool
    async def method_like(self: Any) -> int:
        return 1

    assert bare.metadata.input_schema is None
    assert variadic.metadata.input_schema is None
    assert method_like.metadata.input_schema is None


def test_fact3a_self_and_cls_are_not_described() -> None:
    @tool
    async def method_like(self: Any, x: int) -> int:
        return x

    assert method_like.metadata.input_schema == {
        "type": "object",
        "properties": {"x": {"type": "integer"}},
        "required": ["x"],
    }


def test_fact3b_required_key_only_when_something_is_required() -> None:
    @tool
    async def defaults(a: int = 1, b: str = "x") -> None:
        pass

    @tool
    async def mixed(a: int, b: str = "x") -> None:
        pass

    assert defaults.metadata.input_schema == {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
    }
    assert mixed.metadata.input_schema == {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
        "required": ["a"],
    }


def test_fact3c_optional_gives_the_member_schema_alone() -> None:
    @tool
    async def optional(
        a: int | None = None,
        b: list[str] | None = None,
        c: Optional[float] = None,  # noqa: UP045
    ) -> None:
        pass

    assert optional.metadata.input_schema == {
        "type": "object",
        "properties": {
            "a": {"type": "integer"},
            "b": {"type": "array", "items": {"type": "string"}},
            "c": {"type": "number"},
        },
    }


def test_fact3c_optional_without_default_is_not_required() -> None:
    @tool
    async def optional(a: int | None, b: str) -> None:
        pass

    assert optional.metadata.input_schema == {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
        "required": ["b"],
    }


def test_fact3d_no_default_keys() -> None:
    @tool
    async def defaults(a: int = 3, b: str | None = "x", c: list[int] | None = None) -> None:
        pass

    schema = defaults.metadata.input_schema
    assert schema is not None
    assert all("default" not in prop for prop in schema["properties"].values())


def test_fact3e_no_output_schema_without_a_return_value() -> None:
    @tool
    async def unannotated():  # type: ignore[no-untyped-def]
        return 1

    @tool
    async def returns_none() -> None:
        pass

    assert unannotated.metadata.output_schema is None
    assert returns_none.metadata.output_schema is None


def test_fact3f_generator_output_schema_is_the_yielded_type() -> None:
    @tool
    async def numbers() -> AsyncIterator[int]:
        yield 1

    assert numbers.metadata.output_schema == {"type": "integer"}


def test_fact3g_list_schema_has_item_schema() -> None:
    @tool
    async def listing(names: list[str]) -> list[int]:
        return []

    assert listing.metadata.output_schema == {"type": "array", "items": {"type": "integer"}}
    assert listing.metadata.input_schema == {
        "type": "object",
        "properties": {"names": {"type": "array", "items": {"type": "string"}}},
        "required": ["names"],
    }


def test_fact3h_metadata_dict_of_an_undocumented_bare_tool() -> None:
    @tool
    async def quiet() -> None:
        pass

    assert quiet.metadata.dict() == {
        "name": "quiet",
        "description": None,
        "start_time": None,
        "end_time": None,
        "input_schema": None,
        "output_schema": None,
    }


def test_fact3_reference_rules_any_dict_and_unions() -> None:
    @tool
    async def shapes(  # type: ignore[no-untyped-def]
        a,
        b: Any,
        c: dict[str, int],
        d: int | str | None,
    ) -> None:
        pass

    schema = shapes.metadata.input_schema
    assert schema is not None
    assert schema["properties"] == {
        "a": {},
        "b": {},
        "c": {"type": "object"},
        "d": {"anyOf": [{"type": "integer"}, {"type": "string"}, {}]},
    }
    assert schema["required"] == ["a", "b", "c"]


# --- Fact 4: overriding a fixed kwarg logs a WARNING (R18) ---------------------------------


async def test_fact4_tool_fixed_kwarg_override_logs_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @tool(permission="read")
    async def override_tool(permission: str) -> str:
        return permission

    with caplog.at_level(logging.WARNING, logger="pygents"):
        assert await override_tool(permission="write") == "write"
        assert await override_tool(permission="admin") == "admin"
    assert "Fixed kwarg 'permission' is overridden" in caplog.text
    assert "override_tool" in caplog.text
    assert [r.getMessage() for r in caplog.records] == [
        "Fixed kwarg 'permission' is overridden by call-time argument for tool 'override_tool'."
    ] * 2
    assert all(r.levelno == logging.WARNING for r in caplog.records)


async def test_fact4_generator_tool_fixed_kwarg_override_logs_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @tool(permission="read")
    async def override_gen(permission: str) -> AsyncIterator[str]:
        yield permission

    with caplog.at_level(logging.WARNING, logger="pygents"):
        assert [v async for v in override_gen(permission="write")] == ["write"]
    assert "Fixed kwarg 'permission' is overridden" in caplog.text
    assert "for tool 'override_gen'." in caplog.text


async def test_fact4_hook_fixed_kwarg_override_names_the_hook(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    @hook(TurnHook.BEFORE_RUN, permission="read")
    async def override_hook(turn: Any, permission: str) -> None:
        seen.append(permission)

    with caplog.at_level(logging.WARNING, logger="pygents"):
        await override_hook(None, permission="write")
    assert seen == ["write"]
    assert (
        "Fixed kwarg 'permission' is overridden by call-time argument for hook 'override_hook'."
        in caplog.text
    )


# --- Fact 5: AsyncGenTool AFTER_INVOKE on any exit but a tool error (R19) ------------------


def _gen_tool(events: Events, body: Callable[[], AsyncIterator[int]]) -> AsyncGenTool:
    """Register ``body`` as a generator tool whose AFTER_INVOKE and ON_ERROR record."""
    made = tool(body)

    @made.after_invoke
    async def after(values: list[int]) -> None:
        events.append(("after", list(values)))

    @made.on_error
    async def failed(exc: BaseException) -> None:
        events.append(("error", type(exc).__name__))

    return made


async def test_fact5_after_invoke_on_exhaustion() -> None:
    events: Events = []

    async def counted() -> AsyncIterator[int]:
        yield 1
        yield 2

    made = _gen_tool(events, counted)
    assert [v async for v in made()] == [1, 2]
    assert events == [("after", [1, 2])]


async def test_fact5_after_invoke_on_aclose_with_partial_values() -> None:
    events: Events = []

    async def counted() -> AsyncIterator[int]:
        yield 10
        yield 20

    gen = _gen_tool(events, counted)()
    assert await gen.__anext__() == 10
    await gen.aclose()
    assert events == [("after", [10])]


async def test_fact5_after_invoke_when_cancelled_at_the_yield() -> None:
    events: Events = []

    async def counted() -> AsyncIterator[int]:
        yield 10
        yield 20

    gen = _gen_tool(events, counted)()
    assert await gen.__anext__() == 10
    with pytest.raises(asyncio.CancelledError):
        await gen.athrow(asyncio.CancelledError())
    assert events == [("after", [10])]


async def test_fact5_after_invoke_when_the_body_raises_cancelled_error() -> None:
    events: Events = []

    async def counted() -> AsyncIterator[int]:
        yield 1
        raise asyncio.CancelledError

    made = _gen_tool(events, counted)
    seen: list[int] = []
    with pytest.raises(asyncio.CancelledError):
        async for value in made():
            seen.append(value)
    assert seen == [1]
    assert events == [("after", [1])]


async def test_fact5_after_invoke_when_the_consumer_task_is_cancelled() -> None:
    events: Events = []
    waiting = asyncio.Event()

    async def stalls() -> AsyncIterator[int]:
        yield 1
        waiting.set()
        await asyncio.Event().wait()
        yield 2

    made = _gen_tool(events, stalls)

    async def consume() -> None:
        async for _value in made():
            pass

    task = asyncio.create_task(consume())
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events == [("after", [1])]


async def test_fact5_after_invoke_before_a_yielding_turn_times_out() -> None:
    events: Events = []

    async def stalls() -> AsyncIterator[int]:
        yield 1
        await asyncio.Event().wait()
        yield 2

    _gen_tool(events, stalls)
    turn = Turn("stalls", timeout=0.05)
    turn.hooks.append(recorder(events, "on_timeout", TurnHook.ON_TIMEOUT))
    with pytest.raises(TurnTimeoutError):
        async for _value in turn.yielding():
            pass
    assert events == [("after", [1]), "on_timeout"]
    assert turn.metadata.stop_reason is StopReason.TIMEOUT


def test_fact5_after_invoke_when_an_abandoned_generator_is_finalised() -> None:
    events: Events = []

    async def counted() -> AsyncIterator[int]:
        yield 10
        yield 20

    made = _gen_tool(events, counted)

    async def main() -> None:
        async for _value in made():
            break  # the generator is left unclosed: asyncio's finaliser ends it

    asyncio.run(main())
    gc.collect()
    assert events == [("after", [10])]


async def test_fact5_a_tool_error_fires_on_error_and_not_after_invoke() -> None:
    events: Events = []

    async def broken() -> AsyncIterator[int]:
        yield 1
        raise ValueError("broken")

    made = _gen_tool(events, broken)
    with pytest.raises(ValueError, match="broken"):
        async for _value in made():
            pass
    assert events == [("error", "ValueError")]


async def test_fact5_an_on_yield_error_fires_on_error_and_not_after_invoke() -> None:
    events: Events = []

    async def counted() -> AsyncIterator[int]:
        yield 1

    made = _gen_tool(events, counted)

    @made.on_yield
    async def refuse(value: int) -> None:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        async for _value in made():
            pass
    assert events == [("error", "RuntimeError")]


# --- Fact 6: Tool.hooks holds (ToolHook, Hook) pairs (R3) ----------------------------------


async def test_fact6_each_decorator_form_appends_a_pair_and_returns_the_hook() -> None:
    @tool
    async def numbers() -> AsyncIterator[int]:
        yield 1

    async def bare_before() -> None:
        pass

    async def called_after(values: list[int]) -> None:
        pass

    async def given_error(exc: BaseException) -> None:
        pass

    async def each_value(value: int) -> None:
        pass

    made = [
        (numbers.before_invoke(bare_before), bare_before, ToolHook.BEFORE_INVOKE),
        (numbers.after_invoke(lock=True)(called_after), called_after, ToolHook.AFTER_INVOKE),
        (numbers.on_error(given_error), given_error, ToolHook.ON_ERROR),
        (numbers.on_yield()(each_value), each_value, ToolHook.ON_YIELD),
    ]
    for returned, fn, kind in made:
        assert isinstance(returned, Hook)
        assert returned is not fn  # type: ignore[comparison-overlap]
        assert returned.fn is fn
        assert returned.type == kind
        assert HookRegistry.get(fn.__name__) is returned
    assert numbers.hooks == [(kind, returned) for returned, _fn, kind in made]


async def test_fact6_a_tool_event_fires_the_pairs_of_that_event() -> None:
    seen: Events = []

    @tool
    async def double(x: int) -> int:
        return 2 * x

    async def plain_after(result: int) -> None:  # no .type: the pair says when it fires
        seen.append(("after", result))

    async def plain_before(x: int) -> None:
        seen.append(("before", x))

    double.hooks.append((ToolHook.AFTER_INVOKE, plain_after))
    double.hooks.append((ToolHook.BEFORE_INVOKE, plain_before))
    assert await double(4) == 8
    assert seen == [("before", 4), ("after", 8)]


async def test_fact6_other_owners_still_hold_bare_hooks() -> None:
    @tool
    async def work() -> int:
        return 1

    agent = Agent("a", "An agent", [work])
    turn = Turn("work")

    async def note(*args: Any) -> None:
        pass

    made = [
        turn.before_run(note),
        agent.before_turn(note),
        agent.on_complete(note),
        agent.context_queue.after_append(note),
        agent.context_pool.after_add(note),
    ]
    assert all(h is made[0] for h in made)
    assert turn.hooks == [made[0]]
    assert agent.hooks == [made[0]]
    assert agent.turn_hooks == [made[0]]
    assert agent.context_queue.hooks == [made[0]]
    assert agent.context_pool.hooks == [made[0]]


# --- Fact 7: Turn mutation guard (R9) ------------------------------------------------------


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("tool", "guarded"),
        ("args", [1]),
        ("kwargs", {"x": 1}),
        ("timeout", 5),
        ("tags", ["t"]),
        ("hooks", []),
        ("brand_new_attribute", 1),
    ],
)
async def test_fact7_setting_an_attribute_while_the_turn_runs_raises(
    attribute: str, value: Any
) -> None:
    caught: list[BaseException] = []
    holder: list[Turn[Any]] = []

    @tool
    async def guarded() -> str:
        try:
            setattr(holder[0], attribute, value)
        except SafeExecutionError as exc:
            caught.append(exc)
        return "ran"

    turn = Turn("guarded")
    holder.append(turn)
    assert await turn.returning() == "ran"
    assert len(caught) == 1
    message = str(caught[0])
    assert f"Cannot change property '{attribute}' while the turn is running" in message
    assert "'guarded'" in message  # names the tool
    setattr(turn, attribute, value)  # allowed again once it is over


async def test_fact7_output_and_metadata_stay_writable_while_running() -> None:
    holder: list[Turn[Any]] = []

    @tool
    async def writes() -> str:
        turn = holder[0]
        turn.output = "early"
        turn.metadata = turn.metadata
        return "done"

    turn = Turn("writes")
    holder.append(turn)
    assert await turn.returning() == "done"
    assert turn.output == "done"


# --- Fact 8: repr(Turn) (R14) --------------------------------------------------------------


def test_fact8_turn_repr_has_0_7_0_shape() -> None:
    @tool
    async def turn_run_sync(x: int) -> int:
        return x

    turn = Turn("turn_run_sync", timeout=30, kwargs={"x": 1})
    expected = (
        "Turn(tool='turn_run_sync', timeout=30, "
        "metadata=TurnMetadata(start_time=None, end_time=None, stop_reason=None))"
    )
    assert repr(turn) == expected
    assert str(turn) == expected
    assert "'x'" not in repr(turn)  # arguments are left out


# --- Fact 9: a generator that yields nothing (R1) ------------------------------------------


async def test_fact9_an_empty_generator_turn_completes_with_an_empty_list() -> None:
    calls: Events = []

    @tool
    async def nothing() -> AsyncIterator[int]:
        return
        yield

    async def after_run(*args: Any) -> None:
        calls.append(("after_run", args))

    async def on_complete(*args: Any) -> None:
        calls.append(("on_complete", args))

    turn = Turn("nothing")
    turn.hooks.append(typed(after_run, TurnHook.AFTER_RUN))
    turn.hooks.append(typed(on_complete, TurnHook.ON_COMPLETE))
    assert [v async for v in turn.yielding()] == []
    assert turn.output == []
    assert turn.metadata.stop_reason is StopReason.COMPLETED
    assert calls == [
        ("after_run", (turn, [])),
        ("on_complete", (turn, StopReason.COMPLETED)),
    ]


# --- Fact 10: Agent(...) checks each tool by registered name (R5) --------------------------


def test_fact10a_unknown_tool_raises_unregistered_tool_error() -> None:
    @tool
    async def unregistered_tool() -> None:
        pass

    ToolRegistry.unregister("unregistered_tool")
    with pytest.raises(UnregisteredToolError, match="not found") as caught:
        Agent("a", "An agent", [unregistered_tool])
    assert isinstance(caught.value, KeyError)
    assert not isinstance(caught.value, ValueError)
    assert "'unregistered_tool' not found" in str(caught.value)
    assert "agent 'a'" in str(caught.value)
    with pytest.raises(UnregisteredAgentError):
        AgentRegistry.get("a")


def test_fact10b_another_instance_under_the_name_raises_value_error() -> None:
    @tool
    async def add_agent() -> None:
        pass

    stale = add_agent
    ToolRegistry.unregister("add_agent")

    @tool  # type: ignore[no-redef]
    async def add_agent() -> None:
        pass

    with pytest.raises(ValueError, match="not the instance given") as caught:
        Agent("b", "An agent", [stale])
    assert "'add_agent'" in str(caught.value)
    assert "agent 'b'" in str(caught.value)
    with pytest.raises(UnregisteredAgentError):
        AgentRegistry.get("b")


def test_fact10_an_object_without_a_name_raises_value_error() -> None:
    with pytest.raises(ValueError, match="is not a tool"):
        Agent("c", "An agent", [object()])  # type: ignore[list-item]


# --- Fact 11: Agent mutation guard (R9) ----------------------------------------------------


async def test_fact11_setting_an_attribute_while_running_reports_running_first() -> None:
    caught: list[str] = []
    holder: list[Agent] = []

    @tool
    async def meddle() -> None:
        agent = holder[0]
        agent.pause()  # running and paused at once: "running" is reported
        try:
            agent.name = "other"
        except SafeExecutionError as exc:
            caught.append(str(exc))

    agent = Agent("a", "An agent", [meddle])
    holder.append(agent)
    await agent.put(Turn("meddle"))
    assert await values_of(agent) == [None]
    assert len(caught) == 1
    assert "Cannot change property 'name' while the agent is running" in caught[0]
    assert "agent 'a'" in caught[0]


def test_fact11_setting_an_attribute_while_paused_raises() -> None:
    @tool
    async def work() -> None:
        pass

    agent = Agent("a", "An agent", [work])
    agent.pause()
    with pytest.raises(
        SafeExecutionError, match="Cannot change property 'name' while the agent is paused"
    ):
        agent.name = "other"
    agent.resume()
    agent.name = "other"
    assert agent.name == "other"


# --- Fact 12: send() to an unknown agent (R4) ----------------------------------------------


async def test_fact12_send_to_an_unknown_agent_says_not_found() -> None:
    @tool
    async def work() -> None:
        pass

    agent = Agent("a", "An agent", [work])
    with pytest.raises(UnregisteredAgentError, match="'nonexistent' not found"):
        await agent.send("nonexistent", Turn("work"))


# --- Fact 13: routing a ContextItem with an id but no description (R8) ---------------------


async def test_fact13_routing_an_item_without_description_fails_run() -> None:
    @tool
    async def half_item() -> ContextItem[str]:
        return ContextItem("content", id="k")

    agent = Agent("a", "An agent", [half_item])
    await agent.put(Turn("half_item"))
    with pytest.raises(ValueError, match="'id' and 'description'"):
        await values_of(agent)
    assert len(agent.context_pool) == 0


# --- Fact 14: Agent.branch and hooks (R10) -------------------------------------------------


def test_fact14_branch_hooks_inherit_none_or_given() -> None:
    @tool
    async def work() -> None:
        pass

    parent = Agent("parent", "An agent", [work])
    inherited = recorder([], "inherited", AgentHook.BEFORE_TURN)
    given = recorder([], "given", AgentHook.AFTER_TURN)
    turn_hook = recorder([], "turn", TurnHook.ON_COMPLETE)
    parent.hooks.append(inherited)
    parent.turn_hooks.append(turn_hook)

    kept = parent.branch("kept")
    assert kept.hooks == [inherited]
    assert kept.hooks is not parent.hooks
    emptied = parent.branch("emptied", hooks=None)
    assert emptied.hooks == []
    replacement = [given]
    replaced = parent.branch("replaced", hooks=replacement)
    assert replaced.hooks == [given]
    assert replaced.hooks is not replacement
    for child in (kept, emptied, replaced):
        assert child.turn_hooks == [turn_hook]


# --- Fact 15: the pause gate holds only a waiting turn (R20) -------------------------------


def _pause_probe_agent(events: Events) -> Agent:
    """An agent whose tool and hooks record into ``events``."""

    @tool
    async def add_p(a: int, b: int) -> int:
        events.append(f"tool({a}+{b})")
        return a + b

    agent = Agent("probe", "Pause probes", [add_p])
    for kind in (
        AgentHook.BEFORE_TURN,
        AgentHook.ON_TURN_VALUE,
        AgentHook.AFTER_TURN,
        AgentHook.ON_PAUSE,
        AgentHook.ON_RESUME,
    ):
        agent.hooks.append(recorder(events, kind.name, kind))
    return agent


async def test_fact15_consumer_pausing_after_each_value() -> None:
    events: Events = []
    agent = _pause_probe_agent(events)
    at_gate = asyncio.Event()
    agent.hooks.append(typed(lambda _agent: _set(at_gate), AgentHook.ON_PAUSE))
    await agent.put(Turn("add_p", kwargs={"a": 1, "b": 1}))
    await agent.put(Turn("add_p", kwargs={"a": 2, "b": 2}))
    results: list[int] = []

    async def consume() -> None:
        async for _turn, value in agent.run():
            events.append(f"yield {value}")
            results.append(value)
            agent.pause()

    task = asyncio.create_task(consume())
    await at_gate.wait()
    assert results == [2]
    assert agent.is_paused
    agent.resume()
    await asyncio.wait_for(task, 5)
    assert events == [
        "BEFORE_TURN",
        "tool(1+1)",
        "ON_TURN_VALUE",
        "yield 2",
        "AFTER_TURN",
        "ON_PAUSE",
        "ON_RESUME",
        "BEFORE_TURN",
        "tool(2+2)",
        "ON_TURN_VALUE",
        "yield 4",
        "AFTER_TURN",
    ]
    assert results == [2, 4]
    assert agent.is_paused  # run() ended on the empty queue, still paused


async def _set(event: asyncio.Event) -> None:
    event.set()


async def test_fact15_pause_mid_turn_with_nothing_queued_ends_run() -> None:
    events: Events = []
    started, release = asyncio.Event(), asyncio.Event()

    @tool
    async def slow() -> str:
        events.append("tool starts")
        started.set()
        await release.wait()
        events.append("tool ends")
        return "done"

    agent = Agent("probe", "Pause probes", [slow])
    for kind in (AgentHook.BEFORE_TURN, AgentHook.ON_TURN_VALUE, AgentHook.AFTER_TURN):
        agent.hooks.append(recorder(events, kind.name, kind))
    agent.hooks.append(recorder(events, "ON_PAUSE", AgentHook.ON_PAUSE))

    async def consume() -> None:
        async for _turn, value in agent.run():
            events.append(f"yield {value}")

    await agent.put(Turn("slow"))
    task = asyncio.create_task(consume())
    await started.wait()
    agent.pause()
    events.append("pause")
    release.set()
    await asyncio.wait_for(task, 5)  # resume() is never called
    assert events == [
        "BEFORE_TURN",
        "tool starts",
        "pause",
        "tool ends",
        "ON_TURN_VALUE",
        "yield done",
        "AFTER_TURN",
    ]
    assert agent.is_paused


async def test_fact15_run_on_a_paused_agent_with_an_empty_queue_returns_at_once() -> None:
    events: Events = []
    agent = _pause_probe_agent(events)
    agent.pause()
    assert await asyncio.wait_for(values_of(agent), 5) == []
    assert events == []
    assert agent.is_paused


async def test_fact15_a_pre_paused_agent_waits_at_the_gate_for_its_turn() -> None:
    events: Events = []
    agent = _pause_probe_agent(events)
    at_gate = asyncio.Event()
    agent.hooks.append(typed(lambda _agent: _set(at_gate), AgentHook.ON_PAUSE))
    await agent.put(Turn("add_p", kwargs={"a": 1, "b": 1}))
    agent.pause()
    task = asyncio.create_task(values_of(agent))
    await at_gate.wait()
    assert events == ["ON_PAUSE"]
    agent.resume()
    assert await asyncio.wait_for(task, 5) == [2]
    assert events == [
        "ON_PAUSE",
        "ON_RESUME",
        "BEFORE_TURN",
        "tool(1+1)",
        "ON_TURN_VALUE",
        "AFTER_TURN",
    ]


async def test_fact15_a_pause_mid_turn_holds_the_next_queued_turn() -> None:
    events: Events = []
    started, release, at_gate = asyncio.Event(), asyncio.Event(), asyncio.Event()

    @tool
    async def slow(n: int) -> int:
        events.append(f"tool {n}")
        if n == 1:
            started.set()
            await release.wait()
        return n

    agent = Agent("probe", "Pause probes", [slow])
    agent.hooks.append(typed(lambda _agent: _set(at_gate), AgentHook.ON_PAUSE))
    await agent.put(Turn("slow", kwargs={"n": 1}))
    await agent.put(Turn("slow", kwargs={"n": 2}))
    task = asyncio.create_task(values_of(agent))
    await started.wait()
    agent.pause()
    release.set()
    await at_gate.wait()
    assert events == ["tool 1"]
    agent.resume()
    assert await asyncio.wait_for(task, 5) == [1, 2]


async def test_fact15_pause_then_resume_before_the_gate_fires_neither_hook() -> None:
    events: Events = []
    agent = _pause_probe_agent(events)
    await agent.put(Turn("add_p", kwargs={"a": 1, "b": 1}))
    agent.pause()
    agent.resume()
    assert await values_of(agent) == [2]
    assert "ON_PAUSE" not in events
    assert "ON_RESUME" not in events


# --- Fact 16: ContextQueue limit check (R7) ------------------------------------------------


@pytest.mark.parametrize("limit", [0, -1, -3])
def test_fact16_queue_limit_below_one_raises(limit: int) -> None:
    with pytest.raises(ValueError, match="limit must be >= 1") as caught:
        ContextQueue(limit)
    assert "ContextQueue" in str(caught.value)
    with pytest.raises(ValueError, match="limit must be >= 1"):
        ContextQueue.from_dict({"limit": limit, "items": []})


@pytest.mark.parametrize("limit", [1.5, True, "3", None])
def test_fact16_queue_limit_that_is_not_an_integer_raises(limit: Any) -> None:
    with pytest.raises(ValueError, match="limit must be >= 1"):
        ContextQueue(limit)


# --- Fact 17: queue hook calls with duck-typed hooks (R1) ----------------------------------


async def test_fact17_before_append_once_per_call_with_a_snapshot() -> None:
    calls: Events = []

    async def before(queue: Any, incoming: list[Any], current: list[Any]) -> None:
        calls.append((queue, [i.content for i in incoming], [i.content for i in current]))
        current.clear()  # a snapshot: the queue is untouched

    queue: ContextQueue[str] = ContextQueue(5)
    queue.hooks.append(typed(before, ContextQueueHook.BEFORE_APPEND))
    await queue.append(ContextItem("a"))
    await queue.append(ContextItem("b"), ContextItem("c"))
    assert calls == [(queue, ["a"], []), (queue, ["b", "c"], ["a"])]
    assert [i.content for i in queue] == ["a", "b", "c"]


async def test_fact17_after_append_gets_no_queue_argument() -> None:
    calls: Events = []

    async def after(*args: Any) -> None:
        calls.append(args)

    queue: ContextQueue[str] = ContextQueue(5)
    queue.hooks.append(typed(after, ContextQueueHook.AFTER_APPEND))
    a, b = ContextItem("a"), ContextItem("b")
    await queue.append(a, b)
    assert calls == [([a, b], [a, b])]


async def test_fact17_a_branch_fires_inherited_hooks_with_its_own_items() -> None:
    calls: Events = []

    async def before(queue: Any, incoming: list[Any], current: list[Any]) -> None:
        calls.append(("inherited", queue, [i.content for i in current]))

    async def other(queue: Any, incoming: list[Any], current: list[Any]) -> None:
        calls.append(("other", queue, [i.content for i in current]))

    typed(before, ContextQueueHook.BEFORE_APPEND)
    typed(other, ContextQueueHook.BEFORE_APPEND)
    parent: ContextQueue[str] = ContextQueue(5)
    await parent.append(ContextItem("a"))
    parent.hooks.append(before)
    child = parent.branch()
    await child.append(ContextItem("b"))
    assert calls == [("inherited", child, ["a"])]
    calls.clear()
    replaced = parent.branch(hooks=[other])
    await replaced.append(ContextItem("c"))
    await parent.append(ContextItem("p"))
    assert calls == [("other", replaced, ["a"]), ("inherited", parent, ["a"])]
    assert [i.content for i in child] == ["a", "b"]
    assert [i.content for i in replaced] == ["a", "c"]
    assert [i.content for i in parent] == ["a", "p"]


# --- Fact 18: ContextQueue.branch (R10) ----------------------------------------------------


async def test_fact18_queue_branch_hooks_inherit_none_or_given() -> None:
    first = recorder([], "first", ContextQueueHook.AFTER_APPEND)
    second = recorder([], "second", ContextQueueHook.AFTER_APPEND)
    queue: ContextQueue[str] = ContextQueue(3)
    queue.hooks.append(first)
    assert queue.branch().hooks == [first]
    assert queue.branch().hooks is not queue.hooks
    assert queue.branch(hooks=None).hooks == []
    given = [second]
    assert queue.branch(hooks=given).hooks == [second]
    assert queue.branch(hooks=given).hooks is not given


async def test_fact18_queue_branch_limit_none_keeps_the_limit_and_newest_items() -> None:
    events: Events = []
    queue: ContextQueue[str] = ContextQueue(3)
    await queue.append(ContextItem("a"), ContextItem("b"), ContextItem("c"))
    queue.hooks.append(recorder(events, "evict", ContextQueueHook.ON_EVICT))
    queue.hooks.append(recorder(events, "append", ContextQueueHook.BEFORE_APPEND))
    assert queue.branch(limit=None).limit == 3
    smaller = queue.branch(limit=2)
    assert [i.content for i in smaller] == ["b", "c"]
    assert events == []  # copying fires nothing


# --- Fact 19: repr(ContextQueue) (R13) -----------------------------------------------------


async def test_fact19_queue_repr() -> None:
    queue: ContextQueue[str] = ContextQueue(4)
    await queue.append(ContextItem("a"), ContextItem("b"))
    assert repr(queue) == "ContextQueue(limit=4, len=2)"
    assert str(queue) == "ContextQueue(limit=4, len=2)"


# --- Fact 20: ContextPool limit check (R7) -------------------------------------------------


@pytest.mark.parametrize("limit", [0, -5])
def test_fact20_pool_limit_below_one_raises(limit: int) -> None:
    with pytest.raises(ValueError, match="limit must be >= 1") as caught:
        ContextPool(limit=limit)
    assert "ContextPool" in str(caught.value)


def test_fact20_pool_limit_none_is_unbounded() -> None:
    assert ContextPool().limit is None
    assert ContextPool(limit=None).limit is None


# --- Fact 21: ContextPool.add needs an id and a description (R8) ---------------------------


@pytest.mark.parametrize(
    "item",
    [ContextItem("c", description="desc"), ContextItem("c", id="k")],
    ids=["no id", "no description"],
)
async def test_fact21_add_without_id_or_description_raises_before_anything(
    item: ContextItem[str],
) -> None:
    events: Events = []
    pool: ContextPool[str] = ContextPool(limit=1)
    await pool.add(ContextItem("old", description="old", id="old"))
    for kind in ContextPoolHook:
        pool.hooks.append(recorder(events, kind.name, kind))
    with pytest.raises(ValueError, match="'id' and 'description'") as caught:
        await pool.add(item)
    assert f"id={item.id!r}, description={item.description!r}" in str(caught.value)
    assert events == []
    assert [i.id for i in pool] == ["old"]


# --- Fact 22: ContextPool.branch returns the same class (R11) ------------------------------


class NotedPool(ContextPool[str]):
    """A subclass whose ``__init__`` takes ``limit=`` and ``tags=`` as keywords."""

    def __init__(self, *, limit: int | None = None, tags: Any = None, note: str = "n") -> None:
        super().__init__(limit=limit, tags=tags)
        self.note = note


async def test_fact22_pool_branch_keeps_the_subclass_hooks_and_items() -> None:
    events: Events = []
    pool = NotedPool(limit=3, tags=["t"])
    await pool.add(ContextItem("a", description="A", id="a"))
    hook_ = recorder(events, "add", ContextPoolHook.BEFORE_ADD)
    pool.hooks.append(hook_)
    child = pool.branch()
    assert type(child) is NotedPool
    assert child.limit == 3
    assert child.tags == frozenset({"t"})
    assert child.hooks == [hook_]
    assert [i.id for i in child] == ["a"]
    assert events == []


# --- Fact 23: ContextPool.from_dict rejects items without an id (R12) ----------------------


@pytest.mark.parametrize(
    "bad", [{"content": "x", "description": "d"}, {"content": "x", "description": "d", "id": None}]
)
def test_fact23_from_dict_with_an_id_less_item_raises(bad: dict[str, Any]) -> None:
    good = {"content": "y", "description": "d", "id": "y"}
    with pytest.raises(ValueError, match="ContextPool requires a ContextItem with 'id' set"):
        ContextPool.from_dict({"limit": None, "items": [good, bad]})


def test_fact23_from_dict_accepts_items_without_description() -> None:
    pool = ContextPool.from_dict({"limit": None, "items": [{"content": "x", "id": "k"}]})
    assert pool.get("k").description is None


# --- Fact 24: hooks are duck-typed (R1) ----------------------------------------------------


async def test_fact24a_plain_hooks_fire_in_every_instance_list() -> None:
    events: Events = []

    @tool
    async def give() -> ContextItem[str]:
        return ContextItem("pooled", description="d", id="p")

    @tool
    async def note() -> ContextItem[str]:
        return ContextItem("queued")

    agent = Agent("a", "An agent", [give, note])
    agent.hooks.append(recorder(events, "agent", AgentHook.AFTER_TURN))
    agent.turn_hooks.append(recorder(events, "turn_hooks", TurnHook.ON_COMPLETE))
    agent.context_queue.hooks.append(recorder(events, "queue", ContextQueueHook.AFTER_APPEND))
    agent.context_pool.hooks.append(recorder(events, "pool", ContextPoolHook.AFTER_ADD))
    turn = Turn("give")
    turn.hooks.append(recorder(events, "turn", TurnHook.BEFORE_RUN))
    await agent.put(turn)
    await agent.put(Turn("note"))
    assert await values_of(agent) == []
    assert events == ["turn", "turn_hooks", "pool", "agent", "turn_hooks", "queue", "agent"]


async def test_fact24a_type_may_be_a_tuple_or_a_frozenset() -> None:
    events: Events = []

    @tool
    async def work() -> int:
        return 1

    turn = Turn("work")
    turn.hooks.append(recorder(events, "tuple", (TurnHook.BEFORE_RUN, TurnHook.AFTER_RUN)))
    turn.hooks.append(recorder(events, "frozenset", frozenset({TurnHook.AFTER_RUN})))
    await turn.returning()
    assert events == ["tuple", "tuple", "frozenset"]


@pytest.mark.parametrize(
    "declared",
    [None, [TurnHook.BEFORE_RUN], "before_run", ToolHook.ON_ERROR, "missing"],
    ids=["none", "list", "string", "equal member of another type", "no attribute"],
)
async def test_fact24a_hooks_without_a_usable_type_are_skipped(declared: Any) -> None:
    events: Events = []

    @tool
    async def fails() -> None:
        raise ValueError("x")

    async def silent(*args: Any, **kwargs: Any) -> None:
        events.append("fired")

    if declared == "missing":
        hook_: Any = silent
    else:
        hook_ = typed(silent, TurnHook.BEFORE_RUN if declared == "before_run" else declared)
        if declared == "before_run":
            hook_.type = "before_run"
    turn = Turn("fails")
    turn.hooks.append(hook_)
    with pytest.raises(ValueError):
        await turn.returning()  # fires BEFORE_RUN, ON_ERROR, ON_COMPLETE
    assert events == []


async def test_fact24a_matching_is_by_identity_across_equal_members() -> None:
    assert ToolHook.ON_ERROR == TurnHook.ON_ERROR  # type: ignore[comparison-overlap]
    events: Events = []

    @tool
    async def fails() -> None:
        raise ValueError("x")

    turn = Turn("fails")
    turn.hooks.append(recorder(events, "turn", TurnHook.ON_ERROR))
    turn.hooks.append(recorder(events, "tool", ToolHook.ON_ERROR))
    with pytest.raises(ValueError):
        await turn.returning()
    assert events == ["turn"]


async def test_fact24a_a_plain_hook_gets_exactly_the_event_arguments() -> None:
    calls: Events = []

    @tool
    async def work() -> int:
        return 1

    async def plain(*args: Any, **kwargs: Any) -> None:
        calls.append((args, kwargs))

    async def wants_queue(turn: Any, queue: ContextQueue[Any] | None = None) -> None:
        calls.append(("queue", queue))

    agent = Agent("a", "An agent", [work])
    agent.turn_hooks.append(typed(plain, TurnHook.BEFORE_RUN))
    agent.turn_hooks.append(typed(wants_queue, TurnHook.BEFORE_RUN))
    turn = Turn("work")
    await agent.put(turn)
    await values_of(agent)
    assert calls == [((turn,), {}), ("queue", None)]  # no context injection


async def test_fact24a_instance_hooks_first_then_globals_once_each() -> None:
    events: Events = []

    @hook(TurnHook.BEFORE_RUN)
    async def global_one(turn: Any) -> None:
        events.append("global_one")

    @hook(TurnHook.BEFORE_RUN)
    async def global_two(turn: Any) -> None:
        events.append("global_two")

    @tool
    async def work() -> int:
        return 1

    turn = Turn("work")
    turn.hooks.append(recorder(events, "plain", TurnHook.BEFORE_RUN))
    turn.hooks.append(global_two)
    await turn.returning()
    assert events == ["plain", "global_two", "global_one"]


def test_fact24b_get_by_type_returns_every_match_in_order() -> None:
    first = recorder([], "first", TurnHook.BEFORE_RUN)
    other = recorder([], "other", TurnHook.AFTER_RUN)
    both = recorder([], "both", (TurnHook.AFTER_RUN, TurnHook.BEFORE_RUN))

    async def typeless() -> None:
        pass

    @hook(TurnHook.BEFORE_RUN)
    async def made(turn: Any) -> None:
        pass

    hooks = [first, other, typeless, both, made]
    found = HookRegistry.get_by_type(TurnHook.BEFORE_RUN, hooks)
    assert found == [first, both, made]
    assert all(a is b for a, b in zip(found, [first, both, made], strict=True))
    assert HookRegistry.get_by_type(TurnHook.BEFORE_RUN, []) == []
    assert HookRegistry.get_by_type(TurnHook.BEFORE_RUN, [typeless]) == []


async def test_fact24c_registry_takes_plain_functions_by_name() -> None:
    events: Events = []
    plain = recorder(events, "plain", TurnHook.BEFORE_RUN)
    HookRegistry.register(plain)
    assert HookRegistry.get("record") is plain
    HookRegistry.register(plain)  # the same object again: nothing happens
    assert HookRegistry.get("record") is plain
    assert HookRegistry.get_global_by_type(TurnHook.BEFORE_RUN) == []

    @tool
    async def work() -> int:
        return 1

    await Turn("work").returning()
    assert events == []  # registering does not make it global

    HookRegistry.clear()
    with pytest.raises(UnregisteredHookError, match="'record' not found"):
        HookRegistry.get("record")


def test_fact24c_a_different_object_under_a_registered_name_raises() -> None:
    HookRegistry.register(recorder([], "one", TurnHook.BEFORE_RUN))
    with pytest.raises(ValueError, match="'record' already registered"):
        HookRegistry.register(recorder([], "two", TurnHook.BEFORE_RUN))


async def test_fact24c_a_registered_plain_hook_survives_turn_to_dict() -> None:
    events: Events = []

    @tool
    async def work() -> int:
        return 1

    plain = recorder(events, "plain", TurnHook.AFTER_RUN)
    HookRegistry.register(plain)
    turn = Turn("work")
    turn.hooks.append(plain)
    restored = Turn.from_dict(turn.to_dict())
    assert restored.hooks == [plain]
    await restored.returning()
    assert events == ["plain"]


# --- Fact 25: Hook.type of a multi-type hook is a tuple (R2) -------------------------------


def test_fact25_multi_type_hook_has_a_tuple_type_in_declaration_order() -> None:
    @hook([TurnHook.ON_COMPLETE, TurnHook.BEFORE_RUN])
    async def several(*args: Any) -> None:
        pass

    assert several.type == (TurnHook.ON_COMPLETE, TurnHook.BEFORE_RUN)
    assert isinstance(several.type, tuple)
    assert HookRegistry.get_by_type(TurnHook.ON_COMPLETE, [several]) == [several]
    assert HookRegistry.get_by_type(TurnHook.BEFORE_RUN, [several]) == [several]


def test_fact25_single_type_hook_has_the_bare_member() -> None:
    @hook(TurnHook.BEFORE_RUN)
    async def single(turn: Any) -> None:
        pass

    @hook([TurnHook.AFTER_RUN])
    async def listed(turn: Any, output: Any) -> None:
        pass

    assert single.type is TurnHook.BEFORE_RUN
    assert listed.type is TurnHook.AFTER_RUN


def test_fact25_a_type_added_later_goes_at_the_end() -> None:
    @tool
    async def work() -> int:
        return 1

    async def both(*args: Any) -> None:
        pass

    turn = Turn("work")
    made = turn.on_complete(both)
    assert turn.before_run(both) is made
    assert made.type == (TurnHook.ON_COMPLETE, TurnHook.BEFORE_RUN)


def test_fact25_hook_attributes() -> None:
    async def documented(turn: Any) -> None:
        """Say so."""

    plain = hook(TurnHook.BEFORE_RUN)(documented)
    assert plain.fn is documented
    assert plain.lock is None
    assert plain.tags is None
    assert plain.metadata == HookMetadata("documented", "Say so.")
    assert plain.__name__ == "documented"
    assert plain.__qualname__ == documented.__qualname__
    assert plain.__doc__ == "Say so."
    assert plain.__module__ == __name__
    assert plain.__wrapped__ is documented

    HookRegistry.clear()
    locked = hook(TurnHook.BEFORE_RUN, lock=True, tags=["a"])(documented)
    assert isinstance(locked.lock, asyncio.Lock)
    assert locked.tags == frozenset({"a"})


# --- Fact 26: @hook([]) (R15) --------------------------------------------------------------


def test_fact26_an_empty_type_list_raises_at_once() -> None:
    with pytest.raises(ValueError, match="at least one type"):
        hook([])


# --- Fact 27: not-found messages (R4) ------------------------------------------------------


def test_fact27_registries_say_not_found_with_the_name() -> None:
    lookups: list[tuple[type[KeyError], Callable[[], object], str]] = [
        (UnregisteredToolError, lambda: ToolRegistry.get("nonexistent"), "nonexistent"),
        (UnregisteredToolError, lambda: ToolRegistry.unregister("gone"), "gone"),
        (
            UnregisteredAgentError,
            lambda: AgentRegistry.get("nonexistent_agent"),
            "nonexistent_agent",
        ),
        (UnregisteredAgentError, lambda: AgentRegistry.unregister("gone_agent"), "gone_agent"),
        (UnregisteredHookError, lambda: HookRegistry.get("nonexistent_hook"), "nonexistent_hook"),
        (UnregisteredHookError, lambda: HookRegistry.unregister("gone_hook"), "gone_hook"),
    ]
    for error, lookup, name in lookups:
        with pytest.raises(error, match=f"'{name}' not found") as caught:
            lookup()
        assert isinstance(caught.value, KeyError)
        assert f"'{name}' not found" in caught.value.args[0]


def test_fact27_unknown_tool_name_in_a_turn_says_not_found() -> None:
    with pytest.raises(UnregisteredToolError, match="'nonexistent' not found"):
        Turn("nonexistent")


def test_fact27_not_found_lists_at_most_twenty_names() -> None:
    for i in range(30):

        async def fn() -> None:
            pass

        fn.__name__ = fn.__qualname__ = f"tool_{i:02}"
        tool(fn)
    with pytest.raises(UnregisteredToolError) as caught:
        ToolRegistry.get("nonexistent")
    message = str(caught.value)
    assert "'tool_19'" in message
    assert "'tool_20'" not in message
    assert "10 more" in message


# --- Fact 28: duplicate names (R6) ---------------------------------------------------------


def test_fact28_a_tool_name_is_taken_once() -> None:
    @tool
    async def duplicate_name() -> None:
        pass

    with pytest.raises(ValueError, match="'duplicate_name' already registered"):
        ToolRegistry.register(duplicate_name)

    async def duplicate_name_again() -> None:
        pass

    duplicate_name_again.__name__ = "duplicate_name"
    with pytest.raises(ValueError, match="'duplicate_name' already registered"):
        tool(duplicate_name_again)
    assert ToolRegistry.get("duplicate_name") is duplicate_name


def test_fact28_an_agent_name_is_taken_once() -> None:
    @tool
    async def work() -> None:
        pass

    agent = Agent("duplicate_agent", "First", [work])
    with pytest.raises(ValueError, match="'duplicate_agent' already registered"):
        Agent("duplicate_agent", "Second", [work])
    with pytest.raises(ValueError, match="'duplicate_agent' already registered"):
        AgentRegistry.register(agent)
    assert AgentRegistry.get("duplicate_agent") is agent


def test_fact28_a_hook_name_holds_one_object() -> None:
    @hook(TurnHook.BEFORE_RUN)
    async def duplicate_hook(turn: Any) -> None:
        pass

    HookRegistry.register(duplicate_hook)  # the same object: allowed

    async def other(turn: Any) -> None:
        pass

    other.__name__ = "duplicate_hook"
    with pytest.raises(ValueError, match="'duplicate_hook' already registered"):
        hook(TurnHook.BEFORE_RUN)(other)


# --- Other divergences: dynamic arguments ------------------------------------------------


class Marker:
    """A class passed as an argument value."""


async def test_dynamic_arguments_call_only_functions_and_lambdas() -> None:
    @tool
    async def echo_all(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
        return (*args, *kwargs.values())

    def compute() -> int:
        return 7

    turn = Turn("echo_all", args=[Marker, lambda: 5], kwargs={"f": compute, "t": echo_all})
    assert await turn.returning() == (Marker, 5, 7, echo_all)


# --- Other divergences: ON_EVICT while the item is still there ----------------------------


async def test_queue_on_evict_sees_the_item_still_in_the_queue() -> None:
    seen: Events = []

    async def evict(queue: ContextQueue[str], item: ContextItem[str]) -> None:
        seen.append((item.content, [i.content for i in queue]))

    queue: ContextQueue[str] = ContextQueue(2)
    await queue.append(ContextItem("a"), ContextItem("b"))
    queue.hooks.append(typed(evict, ContextQueueHook.ON_EVICT))
    await queue.append(ContextItem("c"))
    assert seen == [("a", ["a", "b"])]
    assert [i.content for i in queue] == ["b", "c"]


async def test_pool_on_evict_sees_the_item_still_in_the_pool() -> None:
    seen: Events = []

    async def evict(pool: ContextPool[str], item: ContextItem[str]) -> None:
        seen.append((item.id, [i.id for i in pool]))

    pool: ContextPool[str] = ContextPool(limit=1)
    await pool.add(ContextItem("x", description="x", id="x"))
    pool.hooks.append(typed(evict, ContextPoolHook.ON_EVICT))
    await pool.add(ContextItem("y", description="y", id="y"))
    assert seen == [("x", ["x"])]
    assert [i.id for i in pool] == ["y"]


# --- Other divergences: str hook enums, dispatched by identity ----------------------------


def test_hook_enums_are_str_enums() -> None:
    # mypy sees these members as disjoint literals; at run time they are equal strings.
    assert TurnHook.BEFORE_RUN == "before_run"  # type: ignore[comparison-overlap]
    assert ToolHook.ON_ERROR == TurnHook.ON_ERROR  # type: ignore[comparison-overlap]
    assert ContextQueueHook.ON_EVICT == ContextPoolHook.ON_EVICT  # type: ignore[comparison-overlap]
    for kind in (TurnHook, AgentHook, ToolHook, ContextQueueHook, ContextPoolHook):
        assert all(isinstance(member, str) for member in kind)


async def test_a_global_hook_of_an_equal_member_does_not_fire() -> None:
    events: Events = []

    @hook(TurnHook.ON_ERROR)
    async def turn_error(turn: Any, exc: BaseException) -> None:
        events.append("turn")

    @hook(ToolHook.ON_ERROR)
    async def tool_error(exc: BaseException) -> None:
        events.append("tool")

    @tool
    async def fails() -> None:
        raise ValueError("x")

    with pytest.raises(ValueError):
        await fails()
    assert events == ["tool"]
    with pytest.raises(ValueError):
        await Turn("fails").returning()
    assert events == ["tool", "tool", "turn"]


# --- Other divergences: reprs -------------------------------------------------------------


async def test_pool_repr() -> None:
    pool: ContextPool[str] = ContextPool(limit=3)
    await pool.add(ContextItem("x", description="x", id="x"))
    assert repr(pool) == "ContextPool(limit=3, len=1)"
    assert repr(ContextPool()) == "ContextPool(limit=None, len=0)"


def test_hook_repr() -> None:
    @hook(TurnHook.BEFORE_RUN)
    async def on_start(turn: Any) -> None:
        pass

    assert repr(on_start) == (
        "Hook(type=<TurnHook.BEFORE_RUN: 'before_run'>, "
        "metadata=HookMetadata(name='on_start', description=None))"
    )


def test_agent_repr_quotes_tool_names() -> None:
    @tool
    async def add_p() -> None:
        pass

    assert repr(Agent("a", "An agent", [add_p])) == "Agent(name='a', tools=['add_p'])"


# --- Other divergences where ours stays (stricter or richer) -------------------------------


async def test_rewrapping_a_function_for_another_type_fires_for_both() -> None:
    events: Events = []

    @tool
    async def work() -> int:
        return 1

    async def both(*args: Any) -> None:
        events.append(len(args))

    turn = Turn("work")
    turn.before_run(both)
    turn.after_run(both)
    await turn.returning()
    assert events == [1, 2]


def test_hook_still_rejects_a_sync_function_and_unknown_fixed_kwargs() -> None:
    def sync_hook(turn: Any) -> None:
        pass

    async def strict(turn: Any) -> None:
        pass

    with pytest.raises(TypeError, match="'sync_hook'"):
        hook(TurnHook.BEFORE_RUN)(sync_hook)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'nope'"):
        hook(TurnHook.BEFORE_RUN, nope=1)(strict)


def test_tool_is_still_a_coroutine_tool() -> None:
    @tool
    async def work() -> int:
        return 1

    assert isinstance(work, Tool)


# --- Bad input: each misuse of the duck-typed surface names what is wrong -----------------


def test_register_global_of_an_object_without_a_hook_type_raises() -> None:
    async def untyped(turn: Any) -> None:
        pass

    with pytest.raises(TypeError, match="'untyped' has no hook type"):
        HookRegistry.register_global(untyped)
    assert HookRegistry.get_global_by_type(TurnHook.BEFORE_RUN) == []


def test_register_of_an_object_without_a_name_raises() -> None:
    with pytest.raises(TypeError, match="needs a hook or function with a __name__"):
        HookRegistry.register(object())  # type: ignore[arg-type]


def test_saving_an_unregistered_plain_hook_names_it() -> None:
    @tool
    async def work() -> int:
        return 1

    turn = Turn("work")
    turn.hooks.append(recorder([], "unsaved", TurnHook.BEFORE_RUN))
    with pytest.raises(UnserializableHookError, match="'record' cannot be saved"):
        turn.to_dict()


def test_saving_a_registered_hook_without_a_type_names_it() -> None:
    @tool
    async def work() -> int:
        return 1

    async def typeless(turn: Any) -> None:
        pass

    HookRegistry.register(typeless)
    turn = Turn("work")
    turn.hooks.append(typeless)
    with pytest.raises(UnserializableHookError, match="'typeless' cannot be saved: it declares"):
        turn.to_dict()


def test_a_hook_of_something_that_is_not_a_hook_type_raises() -> None:
    async def odd(turn: Any) -> None:
        pass

    with pytest.raises(TypeError, match="hook 'odd': 'before_run' is not a hook type"):
        hook("before_run")(odd)  # type: ignore[arg-type]
