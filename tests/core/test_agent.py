"""``Agent``: queue, run loop and routing, messaging, branching, guards, pause, hooks, dicts."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pygents import (
    Agent,
    AgentHook,
    AgentRegistry,
    ContextItem,
    ContextPool,
    ContextPoolHook,
    ContextQueue,
    ContextQueueHook,
    HookRegistry,
    SafeExecutionError,
    StopReason,
    ToolRegistry,
    Turn,
    TurnHook,
    TurnTimeoutError,
    UnregisteredAgentError,
    UnregisteredToolError,
    UnserializableHookError,
    hook,
    tool,
)


async def _spin(times: int = 10) -> None:
    for _ in range(times):
        await asyncio.sleep(0)


async def _drain(agent: Agent) -> list[tuple[Turn[Any], Any]]:
    return [pair async for pair in agent.run()]


async def _values(agent: Agent) -> list[Any]:
    return [value async for _, value in agent.run()]


def _echo_tool() -> Any:
    @tool()
    async def echo(value: Any) -> Any:
        return value

    return echo


def _recorder(events: list[Any], label: str) -> Any:
    async def record(*args: Any, **kwargs: Any) -> None:
        events.append((label, *args, *kwargs.values()))

    record.__name__ = f"record_{label}"
    return record


# --- construction -------------------------------------------------------------------------


def test_agent_registers_itself() -> None:
    echo = _echo_tool()
    agent = Agent("a", "An agent", [echo])
    assert AgentRegistry.get("a") is agent


def test_agent_with_used_name_raises_value_error() -> None:
    echo = _echo_tool()
    Agent("a", "An agent", [echo])
    with pytest.raises(ValueError):
        Agent("a", "Another", [echo])


def test_agent_with_tool_not_in_registry_raises_unregistered_tool_error() -> None:
    echo = _echo_tool()
    ToolRegistry.unregister("echo")
    with pytest.raises(UnregisteredToolError, match="'echo' not found"):
        Agent("a", "An agent", [echo])
    assert "a" not in [agent.name for agent in AgentRegistry.all()]


def test_agent_with_replaced_tool_instance_raises_value_error() -> None:
    stale = _echo_tool()
    ToolRegistry.unregister("echo")
    _echo_tool()
    with pytest.raises(ValueError):
        Agent("a", "An agent", [stale])


def test_agent_default_contexts() -> None:
    agent = Agent("a", "An agent", [_echo_tool()])
    assert isinstance(agent.context_pool, ContextPool)
    assert agent.context_pool.limit is None
    assert isinstance(agent.context_queue, ContextQueue)
    assert agent.context_queue.limit == 10


def test_agent_default_contexts_are_not_shared() -> None:
    echo = _echo_tool()
    first, second = Agent("a", "A", [echo]), Agent("b", "B", [echo])
    assert first.context_pool is not second.context_pool
    assert first.context_queue is not second.context_queue


def test_agent_uses_given_contexts() -> None:
    pool: ContextPool[Any] = ContextPool(limit=3)
    queue: ContextQueue[Any] = ContextQueue(limit=2)
    agent = Agent("a", "An agent", [_echo_tool()], context_pool=pool, context_queue=queue)
    assert agent.context_pool is pool
    assert agent.context_queue is queue


def test_agent_tags_are_a_frozenset() -> None:
    agent = Agent("a", "An agent", [_echo_tool()], tags=["x", "x", "y"])
    assert agent.tags == frozenset({"x", "y"})


def test_agent_repr_names_agent_and_tools() -> None:
    @tool()
    async def fetch_page() -> None:
        pass

    text = repr(Agent("crawler", "Crawls", [fetch_page]))
    assert "crawler" in text
    assert "fetch_page" in text


# --- queue --------------------------------------------------------------------------------


async def test_put_queues_turn() -> None:
    agent = Agent("a", "An agent", [_echo_tool()])
    turn = Turn("echo", args=[1])
    await agent.put(turn)
    assert agent.turns == [turn]


async def test_put_with_foreign_tool_raises_value_error() -> None:
    _echo_tool()

    @tool()
    async def other() -> None:
        pass

    agent = Agent("a", "An agent", [ToolRegistry.get("echo")])
    with pytest.raises(ValueError):
        await agent.put(Turn("other"))
    assert agent.turns == []


async def test_turns_is_a_non_destructive_snapshot() -> None:
    agent = Agent("a", "An agent", [_echo_tool()])
    first, second = Turn("echo", args=[1]), Turn("echo", args=[2])
    await agent.put(first)
    await agent.put(second)
    snapshot = agent.turns
    snapshot.clear()
    assert agent.turns == [first, second]
    assert agent.turns == [first, second]


async def test_iterating_agent_gives_queued_turns() -> None:
    agent = Agent("a", "An agent", [_echo_tool()])
    first, second = Turn("echo", args=[1]), Turn("echo", args=[2])
    await agent.put(first)
    await agent.put(second)
    assert list(agent) == [first, second]
    assert list(agent) == agent.turns


async def test_put_fires_before_and_after_put_hooks() -> None:
    events: list[Any] = []
    agent = Agent("a", "An agent", [_echo_tool()])
    queued_at: list[int] = []

    @agent.before_put
    async def before(agent: Agent, turn: Turn[Any]) -> None:
        queued_at.append(len(agent.turns))
        events.append(("before", agent, turn))

    @agent.after_put
    async def after(agent: Agent, turn: Turn[Any]) -> None:
        queued_at.append(len(agent.turns))
        events.append(("after", agent, turn))

    turn = Turn("echo", args=[1])
    await agent.put(turn)
    assert events == [("before", agent, turn), ("after", agent, turn)]
    assert queued_at == [0, 1]


async def test_global_put_hooks_fire() -> None:
    events: list[Any] = []
    hook(AgentHook.BEFORE_PUT)(_recorder(events, "before"))
    hook(AgentHook.AFTER_PUT)(_recorder(events, "after"))
    agent = Agent("a", "An agent", [_echo_tool()])
    turn = Turn("echo", args=[1])
    await agent.put(turn)
    assert events == [("before", agent, turn), ("after", agent, turn)]


async def test_send_puts_turn_on_named_agent() -> None:
    echo = _echo_tool()
    alice = Agent("alice", "Delegates", [echo])
    bob = Agent("bob", "Works", [echo])
    turn = Turn("echo", args=[42])
    await alice.send("bob", turn)
    assert bob.turns == [turn]
    assert alice.turns == []


async def test_send_to_unknown_agent_raises_unregistered_agent_error() -> None:
    alice = Agent("alice", "Delegates", [_echo_tool()])
    with pytest.raises(UnregisteredAgentError):
        await alice.send("nobody", Turn("echo", args=[1]))


async def test_send_fires_target_put_hooks() -> None:
    events: list[Any] = []
    echo = _echo_tool()
    alice = Agent("alice", "Delegates", [echo])
    bob = Agent("bob", "Works", [echo])
    bob.before_put(_recorder(events, "before"))
    turn = Turn("echo", args=[1])
    await alice.send("bob", turn)
    assert events == [("before", bob, turn)]


# --- running ------------------------------------------------------------------------------


async def test_run_yields_turn_and_value() -> None:
    agent = Agent("a", "An agent", [_echo_tool()])
    turn = Turn("echo", args=["hello"])
    await agent.put(turn)
    assert await _drain(agent) == [(turn, "hello")]


async def test_run_takes_turns_in_fifo_order() -> None:
    agent = Agent("a", "An agent", [_echo_tool()])
    for i in range(3):
        await agent.put(Turn("echo", args=[i]))
    assert await _values(agent) == [0, 1, 2]


async def test_run_empties_the_queue() -> None:
    agent = Agent("a", "An agent", [_echo_tool()])
    await agent.put(Turn("echo", args=[1]))
    await _drain(agent)
    assert agent.turns == []


async def test_run_on_empty_queue_returns_immediately() -> None:
    agent = Agent("a", "An agent", [_echo_tool()])
    assert await _drain(agent) == []


async def test_run_yields_generator_values_as_produced() -> None:
    order: list[str] = []

    @tool()
    async def stream() -> AsyncIterator[int]:
        for i in range(2):
            order.append(f"produce-{i}")
            yield i

    agent = Agent("a", "An agent", [stream])
    await agent.put(Turn("stream"))
    async for _, value in agent.run():
        order.append(f"consume-{value}")
    assert order == ["produce-0", "consume-0", "produce-1", "consume-1"]


async def test_run_yields_each_generator_value_with_its_turn() -> None:
    @tool()
    async def stream() -> AsyncIterator[int]:
        yield 1
        yield 2

    agent = Agent("a", "An agent", [stream])
    turn = Turn("stream")
    await agent.put(turn)
    assert await _drain(agent) == [(turn, 1), (turn, 2)]


async def test_returned_turn_is_queued_and_run_in_same_run() -> None:
    @tool()
    async def decide(n: int) -> Any:
        if n < 2:
            return Turn("decide", args=[n + 1])
        return f"done at {n}"

    agent = Agent("a", "An agent", [decide])
    await agent.put(Turn("decide", args=[0]))
    assert await _values(agent) == ["done at 2"]


async def test_returned_turn_goes_through_put() -> None:
    events: list[Any] = []

    @tool()
    async def chain() -> Any:
        return Turn("finish")

    @tool()
    async def finish() -> str:
        return "finished"

    agent = Agent("a", "An agent", [chain, finish])
    await agent.put(Turn("chain"))
    agent.before_put(_recorder(events, "before_put"))
    assert await _values(agent) == ["finished"]
    assert [e[2].tool for e in events] == [finish]


async def test_returned_turn_for_foreign_tool_raises_value_error() -> None:
    @tool()
    async def chain() -> Any:
        return Turn("elsewhere")

    @tool()
    async def elsewhere() -> None:
        pass

    agent = Agent("a", "An agent", [chain])
    await agent.put(Turn("chain"))
    with pytest.raises(ValueError):
        await _drain(agent)


async def test_yielded_turns_are_queued_after_existing_turns() -> None:
    @tool()
    async def fan_out() -> AsyncIterator[Any]:
        yield Turn("echo", args=["child-1"])
        yield "parent"
        yield Turn("echo", args=["child-2"])

    echo = _echo_tool()
    agent = Agent("a", "An agent", [fan_out, echo])
    await agent.put(Turn("fan_out"))
    await agent.put(Turn("echo", args=["queued"]))
    assert await _values(agent) == ["parent", "queued", "child-1", "child-2"]


async def test_context_item_without_id_goes_to_context_queue() -> None:
    item = ContextItem("note")

    @tool()
    async def remember() -> Any:
        return item

    agent = Agent("a", "An agent", [remember])
    await agent.put(Turn("remember"))
    assert await _drain(agent) == []
    assert agent.context_queue.items == [item]
    assert len(agent.context_pool) == 0


async def test_context_item_with_id_goes_to_context_pool() -> None:
    item = ContextItem("page", description="a page", id="p1")

    @tool()
    async def store() -> Any:
        return item

    agent = Agent("a", "An agent", [store])
    await agent.put(Turn("store"))
    assert await _drain(agent) == []
    assert agent.context_pool.get("p1") is item
    assert len(agent.context_queue) == 0


async def test_generator_values_are_routed_one_by_one() -> None:
    note = ContextItem("note")
    page = ContextItem("page", description="a page", id="p1")

    @tool()
    async def mixed() -> AsyncIterator[Any]:
        yield "first"
        yield note
        yield page
        yield Turn("echo", args=["chained"])
        yield "last"

    agent = Agent("a", "An agent", [mixed, _echo_tool()])
    await agent.put(Turn("mixed"))
    assert await _values(agent) == ["first", "last", "chained"]
    assert agent.context_queue.items == [note]
    assert agent.context_pool.items == [page]


async def test_tool_error_propagates_out_of_run() -> None:
    @tool()
    async def failing() -> None:
        raise RuntimeError("tool failed")

    agent = Agent("a", "An agent", [failing])
    await agent.put(Turn("failing"))
    with pytest.raises(RuntimeError, match="tool failed"):
        await _drain(agent)


async def test_turn_timeout_propagates_out_of_run() -> None:
    @tool()
    async def hanging() -> None:
        await asyncio.Event().wait()

    agent = Agent("a", "An agent", [hanging])
    await agent.put(Turn("hanging", timeout=0.01))
    with pytest.raises(TurnTimeoutError):
        await _drain(agent)


async def test_agent_can_run_again_after_error() -> None:
    @tool()
    async def failing() -> None:
        raise RuntimeError("tool failed")

    echo = _echo_tool()
    agent = Agent("a", "An agent", [failing, echo])
    await agent.put(Turn("failing"))
    with pytest.raises(RuntimeError):
        await _drain(agent)
    await agent.put(Turn("echo", args=["again"]))
    assert await _values(agent) == ["again"]


# --- agent hooks --------------------------------------------------------------------------


async def test_turn_hooks_fire_around_each_turn() -> None:
    events: list[Any] = []
    agent = Agent("a", "An agent", [_echo_tool()])
    agent.hooks.append(HookRegistry.wrap(_recorder(events, "before"), AgentHook.BEFORE_TURN))
    agent.hooks.append(HookRegistry.wrap(_recorder(events, "after"), AgentHook.AFTER_TURN))
    turn = Turn("echo", args=[1])
    await agent.put(turn)
    await _drain(agent)
    assert events == [("before", agent), ("after", agent, turn)]


async def test_on_turn_value_fires_before_value_is_yielded() -> None:
    order: list[Any] = []
    agent = Agent("a", "An agent", [_echo_tool()])

    @agent.on_turn_value
    async def seen(agent: Agent, turn: Turn[Any], value: Any) -> None:
        order.append(("hook", turn, value))

    turn = Turn("echo", args=["v"])
    await agent.put(turn)
    async for _, value in agent.run():
        order.append(("consumer", value))
    assert order == [("hook", turn, "v"), ("consumer", "v")]


async def test_on_turn_value_fires_after_routing() -> None:
    queued_at_hook: list[int] = []
    item = ContextItem("note")

    @tool()
    async def remember() -> Any:
        return item

    agent = Agent("a", "An agent", [remember])

    @agent.on_turn_value
    async def seen(agent: Agent, turn: Turn[Any], value: Any) -> None:
        queued_at_hook.append(len(agent.context_queue))

    await agent.put(Turn("remember"))
    await _drain(agent)
    assert queued_at_hook == [1]


async def test_agent_hook_decorators_add_to_hooks() -> None:
    agent = Agent("a", "An agent", [_echo_tool()])

    @agent.before_turn
    async def before(agent: Agent) -> None:
        pass

    assert agent.hooks == [before]
    assert before.type is AgentHook.BEFORE_TURN


async def test_global_agent_hook_fires_for_every_agent() -> None:
    events: list[Any] = []
    hook(AgentHook.BEFORE_TURN)(_recorder(events, "before"))
    echo = _echo_tool()
    first, second = Agent("a", "A", [echo]), Agent("b", "B", [echo])
    await first.put(Turn("echo", args=[1]))
    await second.put(Turn("echo", args=[2]))
    await _drain(first)
    await _drain(second)
    assert events == [("before", first), ("before", second)]


async def test_tagged_global_agent_hook_fires_only_for_shared_tag() -> None:
    events: list[Any] = []
    hook(AgentHook.BEFORE_TURN, tags=["prod", "eu"])(_recorder(events, "before"))
    echo = _echo_tool()
    tagged = Agent("a", "A", [echo], tags=["eu"])
    plain = Agent("b", "B", [echo])
    await tagged.put(Turn("echo", args=[1]))
    await plain.put(Turn("echo", args=[2]))
    await _drain(tagged)
    await _drain(plain)
    assert events == [("before", tagged)]


async def test_agent_on_complete_is_a_turn_hook_for_every_turn() -> None:
    events: list[Any] = []
    agent = Agent("a", "An agent", [_echo_tool()])

    @agent.on_complete
    async def complete(turn: Turn[Any], stop_reason: StopReason) -> None:
        events.append((turn, stop_reason))

    first, second = Turn("echo", args=[1]), Turn("echo", args=[2])
    await agent.put(first)
    await agent.put(second)
    await _drain(agent)
    assert events == [(first, StopReason.COMPLETED), (second, StopReason.COMPLETED)]
    assert len(agent.turn_hooks) == 1
    assert HookRegistry.get_by_type(TurnHook.ON_COMPLETE, agent.turn_hooks) == agent.turn_hooks


async def test_agent_turn_hooks_are_not_added_to_turns() -> None:
    agent = Agent("a", "An agent", [_echo_tool()])

    @agent.on_complete
    async def complete(turn: Turn[Any], stop_reason: StopReason) -> None:
        pass

    turn = Turn("echo", args=[1])
    await agent.put(turn)
    await _drain(agent)
    assert turn.hooks == []


async def test_agent_on_error_turn_hook() -> None:
    events: list[Any] = []

    @tool()
    async def failing() -> None:
        raise RuntimeError("tool failed")

    agent = Agent("a", "An agent", [failing])

    @agent.on_error
    async def errored(turn: Turn[Any], exception: BaseException) -> None:
        events.append(str(exception))

    await agent.put(Turn("failing"))
    with pytest.raises(RuntimeError):
        await _drain(agent)
    assert events == ["tool failed"]


async def test_agent_on_timeout_turn_hook() -> None:
    events: list[Any] = []

    @tool()
    async def hanging() -> None:
        await asyncio.Event().wait()

    agent = Agent("a", "An agent", [hanging])

    @agent.on_timeout
    async def timed_out(turn: Turn[Any]) -> None:
        events.append(turn.tool.__name__)

    await agent.put(Turn("hanging", timeout=0.01))
    with pytest.raises(TurnTimeoutError):
        await _drain(agent)
    assert events == ["hanging"]


async def test_agent_turn_hooks_do_not_fire_outside_the_agent() -> None:
    events: list[Any] = []
    agent = Agent("a", "An agent", [_echo_tool()])
    agent.on_complete(_recorder(events, "complete"))
    await Turn("echo", args=[1]).returning()
    assert events == []


# --- re-entrancy and attribute guards -----------------------------------------------------


async def test_second_run_while_running_raises() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    @tool()
    async def blocking() -> str:
        started.set()
        await release.wait()
        return "done"

    agent = Agent("a", "An agent", [blocking])
    await agent.put(Turn("blocking"))
    task = asyncio.create_task(_values(agent))
    await started.wait()
    try:
        second = agent.run()
        with pytest.raises(SafeExecutionError):
            await anext(second)
    finally:
        release.set()
    assert await task == ["done"]


@pytest.mark.parametrize(("attribute", "value"), [("description", "new"), ("tags", ["t"])])
async def test_setting_attribute_while_running_raises(attribute: str, value: Any) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    @tool()
    async def blocking() -> None:
        started.set()
        await release.wait()

    agent = Agent("a", "An agent", [blocking])
    await agent.put(Turn("blocking"))
    task = asyncio.create_task(_drain(agent))
    await started.wait()
    try:
        with pytest.raises(SafeExecutionError):
            setattr(agent, attribute, value)
    finally:
        release.set()
        await task


async def test_setting_attribute_while_paused_raises() -> None:
    agent = Agent("a", "An agent", [_echo_tool()])
    agent.pause()
    with pytest.raises(SafeExecutionError):
        agent.description = "new"


async def test_attributes_writable_when_idle() -> None:
    agent = Agent("a", "An agent", [_echo_tool()])
    agent.pause()
    agent.resume()
    agent.description = "new"
    assert agent.description == "new"


# --- pause and resume ---------------------------------------------------------------------


def test_pause_and_resume_set_is_paused() -> None:
    agent = Agent("a", "An agent", [_echo_tool()])
    assert not agent.is_paused
    agent.pause()
    assert agent.is_paused
    agent.resume()
    assert not agent.is_paused


def test_pause_and_resume_are_idempotent() -> None:
    agent = Agent("a", "An agent", [_echo_tool()])
    agent.pause()
    agent.pause()
    assert agent.is_paused
    agent.resume()
    agent.resume()
    assert not agent.is_paused


async def test_run_started_while_paused_waits_for_resume() -> None:
    started = asyncio.Event()

    @tool()
    async def work() -> str:
        started.set()
        return "worked"

    agent = Agent("a", "An agent", [work])
    await agent.put(Turn("work"))
    agent.pause()
    task = asyncio.create_task(_values(agent))
    await _spin()
    assert not started.is_set()
    assert not task.done()
    agent.resume()
    assert await task == ["worked"]


async def test_pause_during_run_holds_next_turn_until_resume() -> None:
    ran: list[int] = []
    agent_ref: list[Agent] = []

    @tool()
    async def step(n: int) -> int:
        ran.append(n)
        if n == 1:
            agent_ref[0].pause()
        return n

    agent = Agent("a", "An agent", [step])
    agent_ref.append(agent)
    for n in (1, 2):
        await agent.put(Turn("step", args=[n]))
    received: list[int] = []
    first_received = asyncio.Event()

    async def consume() -> None:
        async for _, value in agent.run():
            received.append(value)
            first_received.set()

    task = asyncio.create_task(consume())
    await first_received.wait()
    await _spin()
    assert ran == [1]
    assert received == [1]
    agent.resume()
    await task
    assert ran == [1, 2]
    assert received == [1, 2]


async def test_pause_does_not_interrupt_current_turn() -> None:
    started, release, completed = asyncio.Event(), asyncio.Event(), asyncio.Event()

    @tool()
    async def blocking() -> str:
        started.set()
        await release.wait()
        return "finished"

    agent = Agent("a", "An agent", [blocking])

    @agent.on_complete
    async def complete(turn: Turn[Any], stop_reason: StopReason) -> None:
        completed.set()

    turn = Turn("blocking")
    await agent.put(turn)
    task = asyncio.create_task(_values(agent))
    await started.wait()
    agent.pause()
    release.set()
    await completed.wait()
    assert turn.metadata.stop_reason is StopReason.COMPLETED
    # Nothing else is queued, so run() ends although the agent is still paused (0.7.0).
    assert await asyncio.wait_for(task, 5) == ["finished"]
    assert agent.is_paused


async def test_pause_and_resume_hooks_fire_at_gate() -> None:
    events: list[Any] = []
    agent = Agent("a", "An agent", [_echo_tool()])
    agent.on_pause(_recorder(events, "pause"))
    agent.on_resume(_recorder(events, "resume"))
    await agent.put(Turn("echo", args=[1]))
    agent.pause()
    task = asyncio.create_task(_values(agent))
    await _spin()
    assert events == [("pause", agent)]
    agent.resume()
    assert await task == [1]
    assert events == [("pause", agent), ("resume", agent)]


# --- leaving run() early ------------------------------------------------------------------


def _stream_agent(events: list[Any], done: asyncio.Event) -> Agent:
    @tool()
    async def stream() -> AsyncIterator[int]:
        for i in range(5):
            yield i

    agent = Agent("a", "An agent", [stream, _echo_tool()])

    @agent.on_complete
    async def complete(turn: Turn[Any], stop_reason: StopReason) -> None:
        events.append(stop_reason)
        done.set()

    return agent


async def test_break_out_of_run_cancels_running_turn() -> None:
    events: list[Any] = []
    done = asyncio.Event()
    agent = _stream_agent(events, done)
    turn = Turn("stream")
    await agent.put(turn)
    async for _ in agent.run():
        break
    await asyncio.wait_for(done.wait(), timeout=5)
    assert events == [StopReason.CANCELLED]
    assert turn.metadata.stop_reason is StopReason.CANCELLED


async def test_agent_runs_again_after_break() -> None:
    events: list[Any] = []
    done = asyncio.Event()
    agent = _stream_agent(events, done)
    await agent.put(Turn("stream"))
    async for _ in agent.run():
        break
    await asyncio.wait_for(done.wait(), timeout=5)
    await agent.put(Turn("echo", args=["again"]))
    assert await _values(agent) == ["again"]


async def test_aclose_of_run_cancels_running_turn() -> None:
    events: list[Any] = []
    done = asyncio.Event()
    agent = _stream_agent(events, done)
    turn = Turn("stream")
    await agent.put(turn)
    run = agent.run()
    assert (await anext(run))[1] == 0
    await run.aclose()
    assert events == [StopReason.CANCELLED]
    assert turn.metadata.stop_reason is StopReason.CANCELLED
    await agent.put(Turn("echo", args=["again"]))
    assert await _values(agent) == ["again"]


async def test_cancelling_run_task_cancels_running_turn() -> None:
    events: list[Any] = []
    started = asyncio.Event()

    @tool()
    async def blocking() -> None:
        started.set()
        await asyncio.Event().wait()

    agent = Agent("a", "An agent", [blocking, _echo_tool()])

    @agent.on_complete
    async def complete(turn: Turn[Any], stop_reason: StopReason) -> None:
        events.append(stop_reason)

    turn = Turn("blocking")
    await agent.put(turn)
    task = asyncio.create_task(_drain(agent))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events == [StopReason.CANCELLED]
    assert turn.metadata.stop_reason is StopReason.CANCELLED
    await agent.put(Turn("echo", args=["again"]))
    assert await _values(agent) == ["again"]


# --- branch -------------------------------------------------------------------------------


async def test_branch_registers_new_agent() -> None:
    parent = Agent("parent", "Parent", [_echo_tool()])
    child = parent.branch("child")
    assert AgentRegistry.get("child") is child
    assert child.name == "child"


async def test_branch_inherits_description_tools_hooks_and_tags() -> None:
    echo = _echo_tool()
    parent = Agent("parent", "Parent", [echo], tags=["t"])
    parent.before_turn(_recorder([], "before"))
    parent.on_complete(_recorder([], "complete"))
    child = parent.branch("child")
    assert child.description == "Parent"
    assert child.tools == [echo]
    assert child.hooks == parent.hooks
    assert child.turn_hooks == parent.turn_hooks
    assert child.tags == frozenset({"t"})


async def test_branch_overrides_description_tools_and_hooks() -> None:
    echo = _echo_tool()

    @tool()
    async def other() -> None:
        pass

    parent = Agent("parent", "Parent", [echo])
    parent.before_turn(_recorder([], "before"))
    child = parent.branch("child", description="Child", tools=[other], hooks=[])
    assert child.description == "Child"
    assert child.tools == [other]
    assert child.hooks == []


async def test_branch_copies_the_queue() -> None:
    parent = Agent("parent", "Parent", [_echo_tool()])
    await parent.put(Turn("echo", args=[1]))
    await parent.put(Turn("echo", args=[2]))
    child = parent.branch("child")
    assert [t.args for t in child.turns] == [[1], [2]]
    assert await _values(child) == [1, 2]
    assert len(parent.turns) == 2


async def test_branch_contexts_are_snapshots() -> None:
    parent = Agent("parent", "Parent", [_echo_tool()])
    await parent.context_queue.append(ContextItem("note"))
    await parent.context_pool.add(ContextItem("page", description="p", id="p1"))
    child = parent.branch("child")
    assert child.context_queue is not parent.context_queue
    assert child.context_pool is not parent.context_pool
    assert [i.content for i in child.context_queue] == ["note"]
    assert child.context_pool.get("p1").content == "page"
    assert child.context_queue.limit == parent.context_queue.limit


async def test_branch_is_independent_afterwards() -> None:
    parent = Agent("parent", "Parent", [_echo_tool()])
    child = parent.branch("child")
    await child.put(Turn("echo", args=[1]))
    await child.context_queue.append(ContextItem("child note"))
    await parent.context_pool.add(ContextItem("parent page", description="p", id="p1"))
    assert parent.turns == []
    assert len(parent.context_queue) == 0
    assert len(child.context_pool) == 0


async def test_branch_with_used_name_raises_value_error() -> None:
    parent = Agent("parent", "Parent", [_echo_tool()])
    with pytest.raises(ValueError):
        parent.branch("parent")


async def test_branch_fires_no_hooks() -> None:
    events: list[Any] = []
    parent = Agent("parent", "Parent", [_echo_tool()])
    await parent.put(Turn("echo", args=[1]))
    await parent.context_queue.append(ContextItem("note"))
    await parent.context_pool.add(ContextItem("page", description="p", id="p1"))
    for kinds in (AgentHook, ContextQueueHook, ContextPoolHook):
        for kind in kinds:
            hook(kind)(_recorder(events, f"{kinds.__name__}.{kind.value}"))
    parent.branch("child")
    await _spin()
    assert events == []


# --- serialisation ------------------------------------------------------------------------


async def test_to_dict_has_spec_keys_and_values() -> None:
    echo = _echo_tool()
    agent = Agent("a", "An agent", [echo], tags=["t"])
    await agent.put(Turn("echo", args=[1]))
    data = agent.to_dict()
    assert set(data) == {
        "name",
        "description",
        "tool_names",
        "queue",
        "current_turn",
        "hooks",
        "turn_hooks",
        "context_pool",
        "context_queue",
        "is_paused",
        "tags",
    }
    assert data["name"] == "a"
    assert data["description"] == "An agent"
    assert data["tool_names"] == ["echo"]
    assert [t["args"] for t in data["queue"]] == [[1]]
    assert data["current_turn"] is None
    assert data["is_paused"] is False
    assert list(data["tags"]) == ["t"]
    assert data["context_queue"] == agent.context_queue.to_dict()
    assert data["context_pool"] == agent.context_pool.to_dict()


async def test_to_dict_stores_hooks_and_turn_hooks_by_name() -> None:
    agent = Agent("a", "An agent", [_echo_tool()])

    @agent.after_turn
    async def log_turn(agent: Agent, turn: Turn[Any]) -> None:
        pass

    @agent.on_error
    async def log_error(turn: Turn[Any], exception: BaseException) -> None:
        pass

    data = agent.to_dict()
    assert data["hooks"][AgentHook.AFTER_TURN.value] == ["log_turn"]
    assert data["turn_hooks"][TurnHook.ON_ERROR.value] == ["log_error"]


async def test_from_dict_round_trip() -> None:
    echo = _echo_tool()
    agent = Agent(
        "a",
        "An agent",
        [echo],
        context_pool=ContextPool(limit=4),
        context_queue=ContextQueue(limit=3),
        tags=["t"],
    )

    @agent.after_turn
    async def log_turn(agent: Agent, turn: Turn[Any]) -> None:
        pass

    @agent.on_complete
    async def log_complete(turn: Turn[Any], stop_reason: StopReason) -> None:
        pass

    await agent.put(Turn("echo", args=[1]))
    await agent.put(Turn("echo", args=[2]))
    await agent.context_queue.append(ContextItem("note"))
    await agent.context_pool.add(ContextItem("page", description="p", id="p1"))
    data = agent.to_dict()
    AgentRegistry.unregister("a")

    restored = Agent.from_dict(data)
    assert AgentRegistry.get("a") is restored
    assert restored.description == "An agent"
    assert restored.tools == [echo]
    assert restored.tags == frozenset({"t"})
    assert [t.args for t in restored.turns] == [[1], [2]]
    assert restored.hooks == [HookRegistry.get("log_turn")]
    assert restored.turn_hooks == [HookRegistry.get("log_complete")]
    assert restored.context_queue.limit == 3
    assert [i.content for i in restored.context_queue] == ["note"]
    assert restored.context_pool.limit == 4
    assert restored.context_pool.get("p1").content == "page"
    assert not restored.is_paused
    assert await _values(restored) == [1, 2]


async def test_from_dict_restores_pause_state() -> None:
    agent = Agent("a", "An agent", [_echo_tool()])
    agent.pause()
    data = agent.to_dict()
    assert data["is_paused"] is True
    AgentRegistry.unregister("a")
    assert Agent.from_dict(data).is_paused


async def test_to_dict_during_run_records_in_flight_turn() -> None:
    snapshots: list[dict[str, Any]] = []
    agent_ref: list[Agent] = []

    @tool()
    async def first() -> str:
        snapshots.append(agent_ref[0].to_dict())
        return "first"

    @tool()
    async def second() -> str:
        return "second"

    agent = Agent("a", "An agent", [first, second])
    agent_ref.append(agent)
    await agent.put(Turn("first"))
    await agent.put(Turn("second"))
    await _drain(agent)
    data = snapshots[0]
    assert data["current_turn"]["tool_name"] == "first"
    assert [t["tool_name"] for t in data["queue"]] == ["second"]


async def test_from_dict_puts_in_flight_turn_first() -> None:
    snapshots: list[dict[str, Any]] = []
    agent_ref: list[Agent] = []

    @tool()
    async def first() -> str:
        if not snapshots:
            snapshots.append(agent_ref[0].to_dict())
        return "first"

    @tool()
    async def second() -> str:
        return "second"

    agent = Agent("a", "An agent", [first, second])
    agent_ref.append(agent)
    await agent.put(Turn("first"))
    await agent.put(Turn("second"))
    await _drain(agent)
    AgentRegistry.unregister("a")

    restored = Agent.from_dict(snapshots[0])
    assert [t.tool.__name__ for t in restored.turns] == ["first", "second"]
    assert await _values(restored) == ["first", "second"]


async def test_to_dict_with_unregistered_closure_hook_raises() -> None:
    def factory() -> Any:
        async def shared_name(*args: Any) -> None:
            pass

        return shared_name

    echo = _echo_tool()
    first = Agent("a", "A", [echo])
    second = Agent("b", "B", [echo])
    first.before_turn(factory())
    second.before_turn(factory())
    assert first.to_dict()["hooks"]
    with pytest.raises(UnserializableHookError):
        second.to_dict()


async def test_from_dict_fires_no_hooks() -> None:
    events: list[Any] = []
    agent = Agent("a", "An agent", [_echo_tool()])
    await agent.put(Turn("echo", args=[1]))
    await agent.context_queue.append(ContextItem("note"))
    await agent.context_pool.add(ContextItem("page", description="p", id="p1"))
    data = agent.to_dict()
    AgentRegistry.unregister("a")
    for kinds in (AgentHook, ContextQueueHook, ContextPoolHook):
        for kind in kinds:
            hook(kind)(_recorder(events, f"{kinds.__name__}.{kind.value}"))
    Agent.from_dict(data)
    await _spin()
    assert events == []
