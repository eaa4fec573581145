"""The same small program on a local core Agent and on a Redis-served agent: same results.

The ``served`` fixture runs ``apps/parity_app`` either in this process (``local``) or in a
real worker behind a ``Client`` (``redis``); every test runs on both and expects one answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

import pytest

from pygents import Agent, HookRegistry, Turn
from pygents.errors import TurnTimeoutError
from pygents_dist import Client, RemoteError
from pygents_dist.testing import RedisEndpoint
from tests.dist.apps.parity_app import AGENT, build
from tests.dist.conftest import module_workers
from tests.dist.helpers import eventually


class Served(Protocol):
    """One way of running the parity agent."""

    async def call(self, tool: str, **kwargs: Any) -> Any:
        """Run a coroutine tool with ``kwargs`` and return its result."""

    async def stream(self, tool: str, **kwargs: Any) -> list[Any]:
        """Run a generator tool and return the values it yielded, in order."""

    async def settle(self, tool: str, **kwargs: Any) -> None:
        """Run a tool whose values are routed, and wait until its follow-ups ran."""

    async def error(self, tool: str, timeout: float = 60, **kwargs: Any) -> tuple[str, str]:
        """Run a failing tool: its exception's type name and message."""

    def iterate(self, tool: str, **kwargs: Any) -> AsyncIterator[Any]:
        """Run a generator tool, yielding its values as they come."""

    async def call_turn(self, turn: Turn[Any]) -> Any:
        """Run a core ``Turn`` (its hooks go with it) and return its result."""

    async def pause(self) -> None:
        """Pause the agent: no new turn of it starts until ``resume``."""

    async def resume(self) -> None:
        """Let the paused agent run again."""


class Local:
    """The parity agent on the core, in this process."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    async def _run(self, tool: str, timeout: float, kwargs: dict[str, Any]) -> list[Any]:
        await self.agent.put(Turn(tool, timeout=timeout, kwargs=kwargs))
        return [value async for _turn, value in self.agent.run()]

    async def call(self, tool: str, **kwargs: Any) -> Any:
        values = await self._run(tool, 60, kwargs)
        assert len(values) == 1
        return values[0]

    async def stream(self, tool: str, **kwargs: Any) -> list[Any]:
        return await self._run(tool, 60, kwargs)

    async def settle(self, tool: str, **kwargs: Any) -> None:
        assert await self._run(tool, 60, kwargs) == []  # run() also runs the follow-ups

    async def error(self, tool: str, timeout: float = 60, **kwargs: Any) -> tuple[str, str]:
        try:
            await self._run(tool, timeout, kwargs)
        except Exception as exc:
            return type(exc).__name__, str(exc)
        raise AssertionError(f"{tool} did not fail")

    async def call_turn(self, turn: Turn[Any]) -> Any:
        await self.agent.put(turn)
        (value,) = [value async for _turn, value in self.agent.run()]
        return value

    async def iterate(self, tool: str, **kwargs: Any) -> AsyncIterator[Any]:
        await self.agent.put(Turn(tool, kwargs=kwargs))
        async for _turn, value in self.agent.run():
            yield value

    async def pause(self) -> None:
        self.agent.pause()

    async def resume(self) -> None:
        self.agent.resume()


class Remote:
    """The parity agent in a worker process, through a client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def call(self, tool: str, **kwargs: Any) -> Any:
        return await self.client.call(AGENT, tool, kwargs=kwargs)

    async def stream(self, tool: str, **kwargs: Any) -> list[Any]:
        return [value async for value in self.client.stream(AGENT, tool, kwargs=kwargs)]

    async def settle(self, tool: str, **kwargs: Any) -> None:
        assert await self.call(tool, **kwargs) is None
        # Follow-ups run after the call returns; the last one fills the pool.
        await eventually(self._pool, "the follow-ups to finish")

    async def _pool(self) -> str:
        return str((await self.call("context"))["pool"])

    async def error(self, tool: str, timeout: float = 60, **kwargs: Any) -> tuple[str, str]:
        try:
            await self.client.call(AGENT, tool, kwargs=kwargs, timeout=timeout)
        except TurnTimeoutError:
            return "TurnTimeoutError", ""  # the message names the turn id
        except RemoteError as exc:
            return exc.type_name, exc.remote_message
        raise AssertionError(f"{tool} did not fail")

    async def call_turn(self, turn: Turn[Any]) -> Any:
        return await self.client.call(AGENT, turn)

    async def iterate(self, tool: str, **kwargs: Any) -> AsyncIterator[Any]:
        async for value in self.client.stream(AGENT, tool, kwargs=kwargs):
            yield value

    async def pause(self) -> None:
        await self.client.pause(AGENT)

    async def resume(self) -> None:
        await self.client.resume(AGENT)


@pytest.fixture(
    params=["local", pytest.param("redis", marks=[pytest.mark.integration, pytest.mark.slow])]
)
async def served(request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    """The parity agent, run locally or by a real worker."""
    if request.param == "local":
        yield Local(build())
        return
    server: RedisEndpoint = request.getfixturevalue("redis_server")
    namespace: str = request.getfixturevalue("parity_namespace")
    build()  # the caller's process has the app too, as a service sending core Turns does
    async with Client(server.url, namespace=namespace) as client:
        yield Remote(client)


@pytest.fixture(scope="module")
def parity_namespace(redis_server: RedisEndpoint) -> Iterator[str]:
    """One worker serving the parity agent for the module's ``redis`` tests; only the
    context test writes the agent's context."""
    with module_workers(redis_server, target="parity_served") as shared:
        yield shared.namespace


async def test_a_call_returns_the_same_result(served: Served) -> None:
    assert await served.call("add", a=2, b=40) == 42


async def test_a_stream_yields_the_same_values(served: Served) -> None:
    assert await served.stream("count", n=4) == [0, 1, 2, 3]
    assert await served.stream("count", n=0) == []


async def test_follow_ups_and_context_items_land_the_same(served: Served) -> None:
    await served.settle("chain", n=3)
    assert await served.call("context") == {
        "queue": ["step 3", "step 2", "step 1", "step 0"],
        "pool": "- [chain] the chain",
    }


async def test_a_tool_error_has_the_same_type_and_message(served: Served) -> None:
    assert await served.error("boom", message="no luck") == ("ValueError", "no luck")


async def test_a_timeout_is_the_same_error(served: Served) -> None:
    name, _message = await served.error("slow", timeout=0.2, seconds=5)
    assert name == "TurnTimeoutError"


async def test_the_agent_keeps_working_after_errors(served: Served) -> None:
    await served.error("boom", message="first")
    results = [await served.call("add", a=i, b=i) for i in range(3)]
    assert results == [0, 2, 4]
    assert await asyncio.wait_for(served.stream("count", n=2), 10) == [0, 1]


# --- behaviours of pygents 0.7.0 (core-0.7.0-facts.md) that cross the process boundary ----


@pytest.mark.parametrize(
    ("what", "type_name", "required"),
    [
        ("limit", "ValueError", "limit must be >= 1"),
        ("lookup", "UnregisteredToolError", "'nonexistent' not found"),
        ("item", "ValueError", "'id' and 'description'"),
    ],
)
async def test_a_core_error_reaches_the_caller_with_the_same_message(
    served: Served, what: str, type_name: str, required: str
) -> None:
    name, message = await served.error("misuse", what=what)
    assert name == type_name
    assert required in message
    expected = {
        "limit": "ContextQueue limit must be >= 1 (an integer), got 0",
        "item": "ContextPool requires a ContextItem with both 'id' and 'description' set; "
        "got id='half', description=None",
    }
    if what in expected:
        assert message == expected[what]


async def test_a_pause_lets_the_running_turn_finish_then_holds_the_next(served: Served) -> None:
    values: list[int] = []

    async def stream_and_pause() -> None:
        async for value in served.iterate("ticks", n=3, seconds=0.2):
            values.append(value)
            if value == 0:
                await served.pause()  # while the turn runs: it still completes

    try:
        # Locally run() then ends although paused (nothing else is queued): 0.7.0's gate.
        await asyncio.wait_for(stream_and_pause(), 10)
        assert values == [0, 1, 2]
        held = asyncio.create_task(served.call("add", a=1, b=2))
        done, _pending = await asyncio.wait({held}, timeout=0.5)
        assert not done, "a turn started while the agent was paused"
    finally:
        await served.resume()
    assert await asyncio.wait_for(held, 10) == 3


async def test_a_plain_function_hook_fires_the_same(served: Served) -> None:
    assert await served.call("mark", label="first") == "first"
    assert await served.call("mark", label="second") == "second"
    assert (await served.call("marks"))[-2:] == ["first", "second"]


async def test_a_turn_carries_a_plain_function_hook_by_name(served: Served) -> None:
    turn: Turn[Any] = Turn("mark", kwargs={"label": "carried"})
    turn.hooks.append(HookRegistry.get("note_output"))  # a plain function with .type
    assert await served.call_turn(turn) == "carried"
    assert (await served.call("marks"))[-2:] == ["output carried", "carried"]
