"""Agents as kinds: instances addressed by key, made on first use, each with its own turns and
context."""

from __future__ import annotations

from typing import Any

import pytest

from pygents import Agent, AgentRegistry, ContextItem, ContextQueue, Turn, tool
from pygents.errors import UnregisteredAgentError


@pytest.fixture
def assistant() -> Agent:
    @tool
    async def remember(text: str) -> ContextItem[str]:
        return ContextItem(text)

    @tool
    async def recall() -> list[str]:
        from pygents._seams import active_context

        active = active_context.get()
        assert active is not None
        return [item.content for item in active[0].items]

    kind = Agent("assistant", "remembers", [remember, recall], context_queue=ContextQueue(5))
    kind.context_queue.items = [ContextItem("greeting")]
    return kind


async def run_all(agent: Agent) -> list[Any]:
    return [value async for _turn, value in agent.run()]


async def test_an_instance_is_made_on_first_use_and_is_the_same_after(assistant: Agent) -> None:
    one = assistant.instance("user-1")
    assert one.name == "assistant/user-1" and one.kind == "assistant"
    assert assistant.instance("user-1") is one
    assert AgentRegistry.get("assistant/user-1") is one
    assert one.tools == assistant.tools and one.description == assistant.description
    assert assistant.kind is None


async def test_addressing_by_name_makes_the_instance(assistant: Agent) -> None:
    sender = Agent("sender", "sends", [])
    await sender.send("assistant/user-2", Turn("remember", kwargs={"text": "hi"}))
    made = AgentRegistry.get("assistant/user-2")
    assert len(made.turns) == 1


async def test_instances_keep_their_own_turns_and_context(assistant: Agent) -> None:
    a, b = assistant.instance("a"), assistant.instance("b")
    await a.put(Turn("remember", kwargs={"text": "for a"}))
    await b.put(Turn("remember", kwargs={"text": "for b"}))
    await run_all(a)
    await run_all(b)
    await a.put(Turn("recall"))
    await b.put(Turn("recall"))
    assert await run_all(a) == [["greeting", "for a"]]
    assert await run_all(b) == [["greeting", "for b"]]
    # The kind's own context is untouched: instances start from a snapshot of it.
    assert [i.content for i in assistant.context_queue.items] == ["greeting"]
    assert a.context_queue.limit == 5


def test_bad_keys_and_unknown_kinds_are_refused(assistant: Agent) -> None:
    with pytest.raises(ValueError, match="non-empty str"):
        assistant.instance("")
    with pytest.raises(UnregisteredAgentError, match="'nobody/x' not found"):
        AgentRegistry.get("nobody/x")
    with pytest.raises(UnregisteredAgentError, match="'assistant/' not found"):
        AgentRegistry.get("assistant/")
    with pytest.raises(ValueError, match="cannot be a kind"):
        assistant.instance("a").instance("b")
