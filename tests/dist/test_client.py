"""Client against one real worker process: call, stream, errors, cancel, pause and resume.

One worker serves the whole module (under a namespace of its own): every test leaves the
agents idle and unpaused, and uses its own tags.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
import redis.asyncio as aioredis

from pygents import Turn, UnregisteredAgentError, tool
from pygents.errors import TurnTimeoutError
from pygents_dist import (
    Client,
    PayloadError,
    RemoteError,
    RemoteTurnTimeoutError,
    TurnCancelledError,
    UnknownAgentError,
)
from pygents_dist.testing import RedisEndpoint
from tests.dist.conftest import module_workers
from tests.dist.helpers import eventually, pop

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def namespace(redis_server: RedisEndpoint) -> Iterator[str]:
    """The namespace of the module's worker."""
    with module_workers(redis_server) as shared:
        yield shared.namespace


async def test_call_returns_the_tool_result(client: Client) -> None:
    assert await client.call("alpha", "add", kwargs={"a": 2, "b": 3}) == 5
    assert await client.call("alpha", "add", args=[10], kwargs={"b": -1}) == 9


async def test_call_accepts_a_core_turn(client: Client) -> None:
    @tool
    async def add(a: int, b: int) -> int:  # the same name as the served tool
        return a + b

    assert await client.call("alpha", Turn(add, kwargs={"a": 1, "b": 1})) == 2


async def test_stream_yields_generator_values_as_produced(client: Client) -> None:
    seen = []
    async for value in client.stream("alpha", "count", kwargs={"n": 5, "delay": 0.01}):
        seen.append(value)
    assert seen == [0, 1, 2, 3, 4]


async def test_results_resume_after_a_given_value(
    client: Client, redis_url: str, namespace: str
) -> None:
    turn_id = await client.send("alpha", "count", kwargs={"n": 6}, reply=True)
    assert [v async for v in client.results("alpha", turn_id)] == [0, 1, 2, 3, 4, 5]
    async with Client(redis_url, namespace=namespace) as other:
        assert [v async for v in other.results("alpha", turn_id, after=3)] == [4, 5]


async def test_remote_exception_carries_type_message_and_traceback(client: Client) -> None:
    with pytest.raises(RemoteError) as info:
        await client.call("alpha", "boom", kwargs={"message": "it broke"})
    error = info.value
    assert error.type_name == "ValueError"
    assert error.remote_message == "it broke"
    assert "Traceback (most recent call last)" in error.remote_traceback
    assert "raise ValueError(message)" in error.remote_traceback
    assert error.turn_id and error.turn_id in str(error)


async def test_stream_raises_the_remote_error_where_it_happens(client: Client) -> None:
    with pytest.raises(TurnTimeoutError):
        async for _ in client.stream("alpha", "count", kwargs={"n": 3, "delay": 2}, timeout=0.3):
            pass


async def test_remote_timeout_is_a_turn_timeout_error(client: Client) -> None:
    with pytest.raises(TurnTimeoutError) as info:
        await client.call("alpha", "slow", kwargs={"seconds": 5}, timeout=0.2)
    assert isinstance(info.value, RemoteTurnTimeoutError)
    assert info.value.type_name == "TurnTimeoutError"
    # The sender set the timeout, so the message says how each kind of sender sets it.
    message = info.value.remote_message
    assert "timed out after 0.2s" in message
    assert "call(..., timeout=...)" in message and "Turn(timeout=...)" in message
    assert "'timeout' field" in message
    assert await client.call("alpha", "add", kwargs={"a": 1, "b": 1}) == 2


async def test_unknown_agent_is_refused_before_sending(
    client: Client, store: aioredis.Redis
) -> None:
    with pytest.raises(UnknownAgentError, match="'nobody'") as info:
        await client.call("nobody", "add", kwargs={"a": 1, "b": 2})
    assert isinstance(info.value, UnregisteredAgentError)
    assert await store.exists(client.transport.keys.turns("nobody")) == 0


async def test_unsendable_argument_is_named_and_nothing_is_sent(
    client: Client, store: aioredis.Redis
) -> None:
    with pytest.raises(PayloadError, match=r"kwargs\['b'\] is a function"):
        await client.call("alpha", "add", kwargs={"a": 1, "b": lambda: 2})
    assert await store.xlen(client.transport.keys.turns("alpha")) == 0


async def test_agents_lists_every_declared_agent(client: Client) -> None:
    assert await client.agents() == ["alpha", "back", "beta", "front"]


async def test_cancel_a_running_turn(
    raw_redis: aioredis.Redis, client: Client, store: aioredis.Redis, app_key: Callable[[str], str]
) -> None:
    call = asyncio.create_task(client.call("alpha", "hold", kwargs={"tag": "c"}))
    await pop(store, app_key("entered:c"))  # the tool is running (and waits forever)
    [turn_id] = await turn_ids(raw_redis, client, "alpha")
    assert await client.cancel("alpha", turn_id) is True
    with pytest.raises(TurnCancelledError):
        await asyncio.wait_for(call, 10)
    assert await client.call("alpha", "add", kwargs={"a": 1, "b": 2}) == 3
    assert await store.xlen(client.transport.keys.turns("alpha")) == 0
    # Too late for a finished turn: said so, and nothing is left behind.
    assert await client.cancel("alpha", turn_id) is False
    assert not await raw_redis.hexists(client.transport.keys.cancel("alpha"), turn_id)


async def test_cancel_a_queued_turn(
    raw_redis: aioredis.Redis, client: Client, store: aioredis.Redis, app_key: Callable[[str], str]
) -> None:
    blocker = await client.send("alpha", "hold", kwargs={"tag": "q"}, reply=True)
    await pop(store, app_key("entered:q"))
    queued = asyncio.create_task(client.call("alpha", "add", kwargs={"a": 1, "b": 2}))

    async def queued_id() -> str | None:
        ids = await turn_ids(raw_redis, client, "alpha")
        return ids[1] if len(ids) == 2 else None

    turn_id = await eventually(queued_id, "the queued turn in the stream")
    await client.cancel("alpha", turn_id)
    await store.rpush(app_key("release:q"), 1)
    assert [v async for v in client.results("alpha", blocker)] == ["released q"]
    with pytest.raises(TurnCancelledError):
        await asyncio.wait_for(queued, 10)


async def test_pause_holds_new_turns_until_resume(client: Client) -> None:
    await client.pause("alpha")
    held = asyncio.create_task(client.call("alpha", "add", kwargs={"a": 4, "b": 4}))
    done, _ = await asyncio.wait({held}, timeout=0.5)  # nothing may finish while paused
    assert not done
    assert await client.call("beta", "add", kwargs={"a": 1, "b": 1}) == 2  # others still run
    await client.resume("alpha")
    assert await asyncio.wait_for(held, 10) == 8


# -- helpers ---------------------------------------------------------------------------------


async def turn_ids(raw_redis: aioredis.Redis, client: Client, agent: str) -> list[str]:
    """The ids of the turns in ``agent``'s stream, oldest first."""
    entries = await raw_redis.xrange(client.transport.keys.turns(agent))
    return [fields[b"id"].decode() for _entry_id, fields in entries]
