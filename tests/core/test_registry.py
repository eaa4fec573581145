"""ToolRegistry, AgentRegistry and HookRegistry: lookups, registration and the hook helpers."""

from typing import Any

import pytest

from pygents import (
    Agent,
    AgentRegistry,
    Hook,
    HookRegistry,
    ToolRegistry,
    Turn,
    TurnHook,
    UnregisteredAgentError,
    UnregisteredHookError,
    UnregisteredToolError,
    UnserializableHookError,
    hook,
    tool,
)


def test_tool_registry_get_returns_registered_tool() -> None:
    @tool()
    async def lookup() -> None:
        pass

    assert ToolRegistry.get("lookup") is lookup


def test_tool_registry_get_unknown_raises_unregistered_tool_error() -> None:
    with pytest.raises(UnregisteredToolError):
        ToolRegistry.get("nope")


def test_tool_registry_unregister_removes_tool() -> None:
    @tool()
    async def temporary() -> None:
        pass

    ToolRegistry.unregister("temporary")
    with pytest.raises(UnregisteredToolError):
        ToolRegistry.get("temporary")


def test_tool_registry_unregister_unknown_raises_unregistered_tool_error() -> None:
    with pytest.raises(UnregisteredToolError):
        ToolRegistry.unregister("nope")


def test_tool_registry_register_adds_tool_back() -> None:
    @tool()
    async def again() -> None:
        pass

    ToolRegistry.unregister("again")
    ToolRegistry.register(again)
    assert ToolRegistry.get("again") is again


def test_tool_registry_register_duplicate_name_raises_value_error() -> None:
    def make() -> Any:
        @tool()
        async def dup() -> None:
            pass

        return dup

    first = make()
    ToolRegistry.unregister("dup")
    second = make()
    with pytest.raises(ValueError):
        ToolRegistry.register(first)
    assert ToolRegistry.get("dup") is second


def test_tool_registry_register_same_tool_again_raises() -> None:
    @tool()
    async def same() -> None:
        pass

    with pytest.raises(ValueError, match="'same' already registered"):
        ToolRegistry.register(same)
    assert ToolRegistry.get("same") is same


def test_tool_registry_all_lists_every_tool() -> None:
    @tool()
    async def one() -> None:
        pass

    @tool()
    async def two() -> None:
        pass

    assert set(ToolRegistry.all()) == {one, two}


def test_tool_registry_clear_empties_it() -> None:
    @tool()
    async def gone() -> None:
        pass

    ToolRegistry.clear()
    assert list(ToolRegistry.all()) == []


def test_agent_registry_get_returns_agent() -> None:
    @tool()
    async def work() -> None:
        pass

    agent = Agent("alpha", "First", [work])
    assert AgentRegistry.get("alpha") is agent


def test_agent_registry_get_unknown_raises_unregistered_agent_error() -> None:
    with pytest.raises(UnregisteredAgentError):
        AgentRegistry.get("nobody")


def test_agent_registry_unregister_removes_agent() -> None:
    @tool()
    async def work() -> None:
        pass

    Agent("alpha", "First", [work])
    AgentRegistry.unregister("alpha")
    with pytest.raises(UnregisteredAgentError):
        AgentRegistry.get("alpha")


def test_agent_registry_unregister_unknown_raises_unregistered_agent_error() -> None:
    with pytest.raises(UnregisteredAgentError):
        AgentRegistry.unregister("nobody")


def test_agent_registry_register_duplicate_raises_value_error() -> None:
    @tool()
    async def work() -> None:
        pass

    first = Agent("alpha", "First", [work])
    AgentRegistry.unregister("alpha")
    second = Agent("alpha", "Second", [work])
    with pytest.raises(ValueError):
        AgentRegistry.register(first)
    assert AgentRegistry.get("alpha") is second


def test_agent_registry_register_same_agent_again_raises() -> None:
    @tool()
    async def work() -> None:
        pass

    agent = Agent("alpha", "First", [work])
    with pytest.raises(ValueError, match="'alpha' already registered"):
        AgentRegistry.register(agent)
    assert AgentRegistry.get("alpha") is agent


def test_agent_registry_register_adds_agent_back() -> None:
    @tool()
    async def work() -> None:
        pass

    agent = Agent("alpha", "First", [work])
    AgentRegistry.unregister("alpha")
    AgentRegistry.register(agent)
    assert AgentRegistry.get("alpha") is agent


def test_agent_registry_clear_empties_it() -> None:
    @tool()
    async def work() -> None:
        pass

    Agent("alpha", "First", [work])
    AgentRegistry.clear()
    with pytest.raises(UnregisteredAgentError):
        AgentRegistry.get("alpha")


def test_hook_registry_get_returns_hook_by_function_name() -> None:
    @hook(TurnHook.BEFORE_RUN)
    async def named(*args: Any) -> None:
        pass

    assert HookRegistry.get("named") is named


def test_hook_registry_get_unknown_raises_unregistered_hook_error() -> None:
    with pytest.raises(UnregisteredHookError):
        HookRegistry.get("nope")


def test_hook_registry_unregister_unknown_raises_unregistered_hook_error() -> None:
    with pytest.raises(UnregisteredHookError):
        HookRegistry.unregister("nope")


def test_hook_registry_unregister_removes_hook() -> None:
    @hook(TurnHook.BEFORE_RUN)
    async def named(*args: Any) -> None:
        pass

    HookRegistry.unregister("named")
    with pytest.raises(UnregisteredHookError):
        HookRegistry.get("named")


def test_hook_registry_register_same_hook_again_is_allowed() -> None:
    @hook(TurnHook.BEFORE_RUN)
    async def named(*args: Any) -> None:
        pass

    HookRegistry.register(named)
    assert HookRegistry.get("named") is named


def test_hook_registry_different_hook_under_used_name_raises_value_error() -> None:
    def factory() -> Any:
        async def clash(*args: Any) -> None:
            pass

        return clash

    hook(TurnHook.BEFORE_RUN)(factory())
    with pytest.raises(ValueError):
        hook(TurnHook.BEFORE_RUN)(factory())


def test_hook_registry_clear_drops_named_hooks() -> None:
    @hook(TurnHook.BEFORE_RUN)
    async def named(*args: Any) -> None:
        pass

    HookRegistry.clear()
    with pytest.raises(UnregisteredHookError):
        HookRegistry.get("named")


async def test_hook_registry_clear_drops_global_hooks() -> None:
    calls: list[str] = []

    @hook(TurnHook.BEFORE_RUN)
    async def named(*args: Any) -> None:
        calls.append("named")

    HookRegistry.clear()
    await HookRegistry.fire(TurnHook.BEFORE_RUN, [], "turn")
    assert calls == []
    assert list(HookRegistry.get_global_by_type(TurnHook.BEFORE_RUN)) == []


def test_hook_registry_get_by_type_filters_list_in_order() -> None:
    async def a(*args: Any) -> None:
        pass

    async def b(*args: Any) -> None:
        pass

    async def c(*args: Any) -> None:
        pass

    ha = HookRegistry.wrap(a, TurnHook.BEFORE_RUN)
    hb = HookRegistry.wrap(b, TurnHook.AFTER_RUN)
    hc = HookRegistry.wrap(c, TurnHook.BEFORE_RUN)
    assert list(HookRegistry.get_by_type(TurnHook.BEFORE_RUN, [ha, hb, hc])) == [ha, hc]


def test_hook_registry_get_global_by_type_lists_global_hooks() -> None:
    @hook(TurnHook.BEFORE_RUN)
    async def first(*args: Any) -> None:
        pass

    @hook(TurnHook.AFTER_RUN)
    async def second(*args: Any) -> None:
        pass

    assert list(HookRegistry.get_global_by_type(TurnHook.BEFORE_RUN)) == [first]


def test_hook_registry_wrap_returns_hook_of_type() -> None:
    async def plain(*args: Any) -> None:
        pass

    wrapped = HookRegistry.wrap(plain, TurnHook.AFTER_RUN)
    assert isinstance(wrapped, Hook)
    assert wrapped.type == TurnHook.AFTER_RUN
    assert wrapped.fn is plain


def test_hook_registry_wrap_registers_by_name() -> None:
    async def plain(*args: Any) -> None:
        pass

    wrapped = HookRegistry.wrap(plain, TurnHook.AFTER_RUN)
    assert HookRegistry.get("plain") is wrapped


def test_hook_registry_wrap_reuses_wrapper_for_same_function() -> None:
    async def plain(*args: Any) -> None:
        pass

    assert HookRegistry.wrap(plain, TurnHook.AFTER_RUN) is HookRegistry.wrap(
        plain, TurnHook.AFTER_RUN
    )


async def test_hook_registry_wrap_is_not_global() -> None:
    calls: list[str] = []

    async def local(*args: Any) -> None:
        calls.append("local")

    HookRegistry.wrap(local, TurnHook.BEFORE_RUN)
    await HookRegistry.fire(TurnHook.BEFORE_RUN, [], "turn")
    assert calls == []


async def test_hook_registry_wrap_name_clash_still_fires_but_is_unregistered() -> None:
    calls: list[str] = []

    def factory(label: str) -> Any:
        async def clash(*args: Any) -> None:
            calls.append(label)

        return clash

    first = HookRegistry.wrap(factory("first"), TurnHook.BEFORE_RUN)
    second = HookRegistry.wrap(factory("second"), TurnHook.BEFORE_RUN)
    await HookRegistry.fire(TurnHook.BEFORE_RUN, [second], "turn")
    assert calls == ["second"]
    assert HookRegistry.get("clash") is first


async def test_hook_registry_wrap_name_clash_owner_cannot_be_saved() -> None:
    @tool()
    async def work() -> None:
        pass

    def factory() -> Any:
        async def clash(*args: Any) -> None:
            pass

        return clash

    saved, unsaved = Turn("work"), Turn("work")
    saved.before_run(factory())
    unsaved.before_run(factory())
    assert saved.to_dict()["hooks"]
    with pytest.raises(UnserializableHookError):
        unsaved.to_dict()


async def test_hook_registry_register_global_makes_hook_fire_everywhere() -> None:
    calls: list[str] = []

    async def promoted(*args: Any) -> None:
        calls.append("promoted")

    wrapped = HookRegistry.wrap(promoted, TurnHook.BEFORE_RUN)
    HookRegistry.register_global(wrapped)
    await HookRegistry.fire(TurnHook.BEFORE_RUN, [], "turn")
    assert calls == ["promoted"]
    assert wrapped in list(HookRegistry.get_global_by_type(TurnHook.BEFORE_RUN))


def test_tool_registry_definitions_lists_root_tools_only() -> None:
    @tool()
    async def parent() -> None:
        """Parent tool."""

    @parent.subtool()
    async def child() -> None:
        """Child tool."""

    @tool()
    async def other() -> None:
        """Other tool."""

    definitions = ToolRegistry.definitions()
    assert sorted(d["name"] for d in definitions) == ["other", "parent"]
    tree = next(d for d in definitions if d["name"] == "parent")
    assert [s["name"] for s in tree["subtools"]] == ["child"]
