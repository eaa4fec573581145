"""One real worker process: bad input and dead letters, cleanup, hooks, signing, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from pygents.errors import TurnTimeoutError
from pygents_dist import Client, DeadLetteredError, DeadLetterReason
from pygents_dist._keys import GROUP
from pygents_dist._wire import encode_turn, new_turn_id
from tests.dist.conftest import StartWorker
from tests.dist.helpers import eventually, pop, start_together


async def dead_letters(client: Client) -> dict[str, dict[str, str]]:
    """Dead letters by turn id: their fields (``m`` left out) as text."""
    out: dict[str, dict[str, str]] = {}
    for _entry_id, fields in await client.transport.dead_letters(100):
        text = {k.decode(): v.decode(errors="replace") for k, v in fields.items() if k != b"m"}
        out[text["id"]] = text
    return out


async def raw_turn(client: Client, agent: str, fields: dict[bytes, bytes]) -> None:
    """What a non-Python publisher does: a plain XADD on the agent's stream."""
    await client.transport.redis.xadd(client.transport.keys.turns(agent), fields)


async def refused(client: Client, agent: str, turn_id: str) -> DeadLetteredError:
    """The DeadLetteredError a caller waiting on ``turn_id`` gets."""
    with pytest.raises(DeadLetteredError) as info:
        await asyncio.wait_for(anext(aiter(client.results(agent, turn_id)), None), 15)
    return info.value


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "kwargs", "reason", "detail"),
    [
        ("nope", {}, DeadLetterReason.UNKNOWN_TOOL, "no tool named 'nope'"),
        ("outsider", {}, DeadLetterReason.TOOL_NOT_IN_AGENT, "does not have tool 'outsider'"),
        ("add", {"a": 1}, DeadLetterReason.BAD_ARGUMENTS, "missing required argument(s): b"),
    ],
)
async def test_bad_turn_is_dead_lettered_and_the_caller_told(
    start: StartWorker,
    client: Client,
    tool: str,
    kwargs: dict[str, int],
    reason: DeadLetterReason,
    detail: str,
) -> None:
    start()
    with pytest.raises(DeadLetteredError) as info:
        await client.call("alpha", tool, kwargs=kwargs)
    assert info.value.reason == reason
    assert detail in info.value.detail
    letter = (await dead_letters(client))[info.value.turn_id]
    assert letter["reason"] == reason.value
    assert letter["agent"] == "alpha"
    assert detail in letter["detail"]
    assert await client.call("alpha", "add", kwargs={"a": 1, "b": 2}) == 3


async def test_malformed_messages_are_dead_lettered_and_waiting_callers_told(
    start: StartWorker, client: Client
) -> None:
    start()
    await client.call("alpha", "add", kwargs={"a": 0, "b": 0})  # the group exists
    garbage, old = new_turn_id(), new_turn_id()
    await raw_turn(client, "alpha", {b"id": garbage.encode(), b"m": b"\xc1\xc1 not msgpack"})
    future = encode_turn(turn_id=old, agent="alpha", tool="add", args=[1, 2], kwargs={}, timeout=5)
    await raw_turn(client, "alpha", {b"id": old.encode(), b"m": future.replace(b"\x01", b"\x09")})
    assert await client.call("alpha", "add", kwargs={"a": 2, "b": 2}) == 4  # still serving

    for turn_id, detail in ((garbage, "not valid msgpack"), (old, "unsupported wire version")):
        error = await refused(client, "alpha", turn_id)
        assert error.reason == DeadLetterReason.UNDECODABLE
        assert detail in error.detail
    letters = await dead_letters(client)
    assert letters[garbage]["reason"] == letters[old]["reason"] == "undecodable"
    assert await client.transport.redis.xlen(client.transport.keys.turns("alpha")) == 0


async def test_turn_that_killed_its_worker_is_dead_lettered_not_the_one_behind_it(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key: Callable[[str], str]
) -> None:
    options = ["--max-deliveries", "1", "--lease-ms", "1000"]
    first, second = await start_together(start, options, options)
    await client.pause("alpha")  # so both turns are read together
    poison = await client.send("alpha", "die", reply=True)
    innocent = await client.send("alpha", "seq", kwargs={"i": 1}, reply=True)
    await client.resume("alpha")

    error = await refused(client, "alpha", poison)
    assert error.reason == DeadLetterReason.TOO_MANY_DELIVERIES
    assert [v async for v in client.results("alpha", innocent)] == []  # ran, no error
    assert await store.lrange(app_key("seq"), 0, -1) == ["1"]
    victim = int(await pop(store, app_key("died")))
    survivor = second if victim == first.pid else first
    assert await store.llen(app_key("died")) == 0  # the survivor never ran it
    letters = await dead_letters(client)
    assert set(letters) == {poison}
    assert letters[poison]["worker"] == survivor.worker_id


async def test_a_turn_sent_twice_with_one_id_runs_once(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key: Callable[[str], str]
) -> None:
    start()
    await client.pause("alpha")  # so both copies are read in one batch
    turn_id = await client.send("alpha", "seq", kwargs={"i": 1}, reply=True)
    await client.send("alpha", "seq", kwargs={"i": 1}, reply=True, turn_id=turn_id)  # a retry
    await client.resume("alpha")
    assert await client.call("alpha", "seq", kwargs={"i": 2}) is None  # after both copies
    await client.send("alpha", "seq", kwargs={"i": 1}, turn_id=turn_id)  # after the commit
    assert await client.call("alpha", "seq", kwargs={"i": 3}) is None
    assert await store.lrange(app_key("seq"), 0, -1) == ["1", "2", "3"]
    assert [v async for v in client.results("alpha", turn_id)] == []


async def test_a_pause_during_a_batch_lets_only_the_running_turn_finish(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key: Callable[[str], str]
) -> None:
    start()
    await client.pause("alpha")  # so the four turns are read as one batch
    slow = await client.send("alpha", "long", kwargs={"seconds": 0.5}, reply=True)
    await client.send_many("alpha", "seq", [{"i": i} for i in range(3)])
    await client.resume("alpha")
    await eventually(lambda: store.exists(app_key("runs:long")), "the slow turn to start")
    await client.pause("alpha")
    assert [v async for v in client.results("alpha", slow)] == []  # it completed
    assert await store.blpop([app_key("seq")], timeout=0.5) is None  # nothing else ran
    assert await client.transport.redis.xlen(client.transport.keys.turns("alpha")) == 3

    await client.resume("alpha")
    assert await client.call("alpha", "seq", kwargs={"i": 3}) is None
    assert await store.lrange(app_key("seq"), 0, -1) == ["0", "1", "2", "3"]


# -- cleanup ---------------------------------------------------------------------------------


async def test_processed_entries_are_deleted_and_replies_expire(
    start: StartWorker, client: Client
) -> None:
    start()
    ids = await client.send_many("alpha", "add", [{"a": i, "b": 1} for i in range(50)])
    turn_id = await client.send("alpha", "count", kwargs={"n": 3}, reply=True)
    assert [v async for v in client.results("alpha", turn_id)] == [0, 1, 2]
    with pytest.raises(TurnTimeoutError):
        await client.call("alpha", "slow", kwargs={"seconds": 3}, timeout=0.1)

    redis, keys = client.transport.redis, client.transport.keys
    assert await redis.xlen(keys.turns("alpha")) == 0
    assert (await redis.xpending(keys.turns("alpha"), GROUP))["pending"] == 0
    ttl = await redis.pttl(keys.reply("alpha", turn_id))
    assert 0 < ttl <= 3_600_000
    for done_id in ids[:3]:
        assert await redis.zscore(keys.done("alpha"), done_id) is not None
    assert await redis.exists(keys.reply("alpha", ids[0])) == 0  # no reply asked, none kept


# -- hooks, signing, shutdown ----------------------------------------------------------------


async def test_timeout_hook_fires_in_the_worker(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key: Callable[[str], str]
) -> None:
    worker = start()
    with pytest.raises(TurnTimeoutError):
        await client.call("alpha", "slow", kwargs={"seconds": 5}, timeout=0.2)
    assert await pop(store, app_key("timeouts")) == f"slow {worker.pid}"


async def test_signed_turns_run_and_unsigned_ones_are_refused(
    start: StartWorker, redis_url: str, client: Client
) -> None:
    start(env={"PYGENTS_SECRETS": "new-key,old-key"})
    async with Client(redis_url, secret="old-key") as signed:
        assert await signed.call("alpha", "add", kwargs={"a": 1, "b": 2}) == 3
    with pytest.raises(DeadLetteredError) as info:
        await client.call("alpha", "add", kwargs={"a": 1, "b": 2})
    assert info.value.reason == DeadLetterReason.BAD_SIGNATURE
    async with Client(redis_url, secret="wrong") as forged:
        with pytest.raises(DeadLetteredError):
            await forged.call("alpha", "add", kwargs={"a": 1, "b": 2})


async def test_sigterm_lets_a_turn_longer_than_the_lease_commit_then_exits_0(
    start: StartWorker, client: Client, store: aioredis.Redis, app_key: Callable[[str], str]
) -> None:
    worker = start("--lease-ms", "700")
    call = asyncio.create_task(client.call("alpha", "long", kwargs={"seconds": 1.6}))
    await eventually(lambda: store.exists(app_key("runs:long")), "the long turn to start")
    worker.terminate()
    assert await asyncio.wait_for(call, 15) == worker.pid
    assert await asyncio.to_thread(worker.wait, 15) == 0
    assert await store.get(app_key("runs:long")) == "1"
    assert await client.transport.redis.xlen(client.transport.keys.turns("alpha")) == 0
