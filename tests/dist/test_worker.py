"""One real worker process serving the whole module: bad input and dead letters, dedup,
pause between the turns of a batch, cleanup of processed entries, hooks.

The tests share the worker (under a namespace of their own) and leave its agents idle and
unpaused; each uses keys of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis.asyncio as aioredis

from pygents.errors import TurnTimeoutError
from pygents_dist import Client, DeadLetteredError, DeadLetterReason
from pygents_dist._keys import GROUP
from pygents_dist._wire import encode_turn, new_turn_id
from pygents_dist.testing import RedisEndpoint
from tests.dist.conftest import Shared, module_workers
from tests.dist.helpers import dead_letters, eventually, pop, refused

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def shared(redis_server: RedisEndpoint) -> Iterator[Shared]:
    """The module's worker."""
    with module_workers(redis_server) as workers:
        yield workers


@pytest.fixture
def namespace(shared: Shared) -> str:
    """The namespace of the module's worker."""
    return shared.namespace


async def raw_turn(
    raw_redis: aioredis.Redis, client: Client, agent: str, fields: dict[bytes, bytes]
) -> None:
    """What a non-Python publisher does: a plain XADD on the agent's stream."""
    await raw_redis.xadd(client.transport.keys.turns(agent), fields)


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
    client: Client,
    tool: str,
    kwargs: dict[str, int],
    reason: DeadLetterReason,
    detail: str,
) -> None:
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
    raw_redis: aioredis.Redis,
    client: Client,
) -> None:
    await client.call("alpha", "add", kwargs={"a": 0, "b": 0})  # the group exists
    garbage, old = new_turn_id(), new_turn_id()
    await raw_turn(
        raw_redis, client, "alpha", {b"id": garbage.encode(), b"m": b"\xc1\xc1 not msgpack"}
    )
    future = encode_turn(turn_id=old, agent="alpha", tool="add", args=[1, 2], kwargs={}, timeout=5)
    await raw_turn(
        raw_redis, client, "alpha", {b"id": old.encode(), b"m": future.replace(b"\x01", b"\x09")}
    )
    assert await client.call("alpha", "add", kwargs={"a": 2, "b": 2}) == 4  # still serving

    for turn_id, detail in ((garbage, "not valid msgpack"), (old, "unsupported wire version")):
        error = await refused(client, "alpha", turn_id)
        assert error.reason == DeadLetterReason.UNDECODABLE
        assert detail in error.detail
    letters = await dead_letters(client)
    assert letters[garbage]["reason"] == letters[old]["reason"] == "undecodable"
    assert await raw_redis.xlen(client.transport.keys.turns("alpha")) == 0


async def test_an_entry_whose_id_differs_from_its_envelopes_is_refused(
    raw_redis: aioredis.Redis, client: Client
) -> None:
    # Only the envelope is signed, and the entry's id names the reply stream and the dedup
    # record: a captured turn must not run again under an id of someone else's choosing.
    entry_id, envelope_id = new_turn_id(), new_turn_id()
    data = encode_turn(
        turn_id=envelope_id, agent="alpha", tool="add", args=[1, 2], kwargs={}, timeout=5
    )
    await raw_turn(raw_redis, client, "alpha", {b"id": entry_id.encode(), b"m": data})
    error = await refused(client, "alpha", entry_id)
    assert error.reason == DeadLetterReason.UNDECODABLE
    assert f"id field {entry_id!r} differs from the envelope's id {envelope_id!r}" in error.detail


# -- duplicates and pause ---------------------------------------------------------------


async def test_a_turn_sent_twice_with_one_id_runs_once(
    client: Client, store: aioredis.Redis, app_key: Callable[[str], str]
) -> None:
    one = {"i": 1, "key": "twice"}
    await client.pause("alpha")  # so both copies are read in one batch
    turn_id = await client.send("alpha", "seq", kwargs=one, reply=True)
    await client.send("alpha", "seq", kwargs=one, reply=True, turn_id=turn_id)  # a retry
    await client.resume("alpha")
    assert await client.call("alpha", "seq", kwargs={"i": 2, "key": "twice"}) is None
    await client.send("alpha", "seq", kwargs=one, turn_id=turn_id)  # after the commit
    assert await client.call("alpha", "seq", kwargs={"i": 3, "key": "twice"}) is None
    assert await store.lrange(app_key("twice"), 0, -1) == ["1", "2", "3"]
    assert [v async for v in client.results("alpha", turn_id)] == []


async def test_a_pause_during_a_batch_lets_only_the_running_turn_finish(
    raw_redis: aioredis.Redis, client: Client, store: aioredis.Redis, app_key: Callable[[str], str]
) -> None:
    await client.pause("alpha")  # so the four turns are read as one batch
    slow = await client.send("alpha", "long", kwargs={"seconds": 0.5}, reply=True)
    await client.send_many("alpha", "seq", [{"i": i, "key": "held"} for i in range(3)])
    await client.resume("alpha")
    await eventually(lambda: store.exists(app_key("runs:long")), "the slow turn to start")
    await client.pause("alpha")
    assert [v async for v in client.results("alpha", slow)] == []  # it completed
    assert await store.blpop([app_key("held")], timeout=0.5) is None  # nothing else ran
    assert await raw_redis.xlen(client.transport.keys.turns("alpha")) == 3

    await client.resume("alpha")
    assert await client.call("alpha", "seq", kwargs={"i": 3, "key": "held"}) is None
    assert await store.lrange(app_key("held"), 0, -1) == ["0", "1", "2", "3"]


async def test_a_copy_read_with_a_long_batch_is_dropped_after_its_early_commit(
    client: Client, store: aioredis.Redis, app_key: Callable[[str], str]
) -> None:
    runs = app_key("runs:long")  # other tests of the module run `long` too
    before = int(await store.get(runs) or 0)
    await client.pause("alpha")  # so the turn and its copy are read as one batch
    first = await client.send("alpha", "long", kwargs={"seconds": 0.2}, reply=True)
    # a retried send: the copy is run after the batch commits what ran (the first copy)
    await client.send("alpha", "long", kwargs={"seconds": 0.2}, reply=True, turn_id=first)
    await client.resume("alpha")
    assert await client.call("alpha", "add", kwargs={"a": 1, "b": 1}) == 2
    assert int(await store.get(runs) or 0) == before + 1


async def test_a_slow_turns_result_does_not_wait_for_the_rest_of_its_batch(
    raw_redis: aioredis.Redis,
    client: Client,
) -> None:
    await client.pause("alpha")  # so the four turns are read as one batch
    ids = [
        await client.send("alpha", "slow", kwargs={"seconds": 0.3}, reply=True) for _ in range(4)
    ]
    await client.resume("alpha")
    assert [v async for v in client.results("alpha", ids[0])] == []  # the first one ended
    last = client.transport.keys.reply("alpha", ids[-1])
    assert await raw_redis.xlen(last) == 0  # while the last had not yet run
    assert [v async for v in client.results("alpha", ids[-1])] == []


# -- cleanup and hooks ------------------------------------------------------------------


async def test_processed_entries_are_deleted_and_replies_expire(
    raw_redis: aioredis.Redis, client: Client
) -> None:
    ids = await client.send_many("alpha", "add", [{"a": i, "b": 1} for i in range(50)])
    turn_id = await client.send("alpha", "count", kwargs={"n": 3}, reply=True)
    assert [v async for v in client.results("alpha", turn_id)] == [0, 1, 2]
    with pytest.raises(TurnTimeoutError):
        await client.call("alpha", "slow", kwargs={"seconds": 3}, timeout=0.1)

    redis, keys = raw_redis, client.transport.keys
    assert await redis.xlen(keys.turns("alpha")) == 0
    assert (await redis.xpending(keys.turns("alpha"), GROUP))["pending"] == 0
    ttl = await redis.pttl(keys.reply("alpha", turn_id))
    assert 0 < ttl <= 3_600_000
    for done_id in ids[:3]:
        assert await redis.zscore(keys.done("alpha"), done_id) is not None
    assert await redis.exists(keys.reply("alpha", ids[0])) == 0  # no reply asked, none kept


async def test_timeout_hook_fires_in_the_worker(
    client: Client, store: aioredis.Redis, app_key: Callable[[str], str], shared: Shared
) -> None:
    await store.delete(app_key("timeouts"))
    with pytest.raises(TurnTimeoutError):
        await client.call("alpha", "slow", kwargs={"seconds": 5}, timeout=0.2)
    assert await pop(store, app_key("timeouts")) == f"slow {shared.workers[0].pid}"
