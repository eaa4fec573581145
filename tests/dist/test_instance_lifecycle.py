"""The life of keyed instances beyond their turns, with real workers: found when queued while
no worker ran, expired when idle, capped per kind (dead letters that name them, replayed),
summarised and paged by ``pygents status`` and ``pygents instances``.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as aioredis

from pygents_dist import Client, DeadLetteredError, _dead_letters
from pygents_dist.testing import WorkerProcess
from tests.dist.apps.virtual_app import KIND
from tests.dist.conftest import StartWorker
from tests.dist.helpers import cli, eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _cli_env(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    monkeypatch.setenv("PYGENTS_REDIS_URL", redis_url)


def served(start: StartWorker, *args: str) -> WorkerProcess:
    return start(*args, target="virtual_served")


async def instance_keys(raw_redis: aioredis.Redis, client: Client, kind: str) -> list[bytes]:
    """Every key of the instances of ``kind`` (reply streams aside: they expire on their own)."""
    pattern = f"{client.transport.keys.base}:{{{kind}/*"
    return [key async for key in raw_redis.scan_iter(match=pattern) if b":reply:" not in key]


async def test_turns_queued_while_no_worker_ran_are_served_when_one_starts(
    start: StartWorker, client: Client
) -> None:
    first = start(target="virtual_served")
    first.terminate()  # declares the kind, then no worker runs
    assert first.wait(30) == 0
    names = [f"{KIND}/cold-{i}" for i in range(300)]
    await client.send_batch([(n, "note", {"text": n}) for n in names])
    # The signals of those sends were written before this worker started: it reads signals
    # from the newest on, so only its backlog sweep can find these instances.
    served(start)
    got = await asyncio.wait_for(asyncio.gather(*(client.call(n, "notes") for n in names)), 60)
    assert got == [["hello", n] for n in names]


async def test_idle_instances_expire_and_leave_no_key_behind(
    start: StartWorker, client: Client, raw_redis: aioredis.Redis
) -> None:
    served(start, "--instance-expiry", "1")
    names = [f"{KIND}/idle-{i}" for i in range(50)]
    # Sent without a reply stream: nothing of an expired instance may stay in Redis.
    await client.send_batch([(n, "note", {"text": "remember me"}) for n in names])
    index = client.transport.keys.instances(KIND)

    async def all_taken() -> bool:
        return await raw_redis.zcard(index) == len(names)

    await eventually(all_taken, "every instance in its kind's index")

    async def none_left() -> bool:
        return not await instance_keys(raw_redis, client, KIND) and not await raw_redis.exists(
            index
        )

    await eventually(none_left, "the idle instances to expire", timeout=30)
    # Addressed again, an expired instance starts afresh from its kind's context.
    assert await client.call(names[0], "notes") == ["hello"]


async def test_a_kind_at_its_cap_dead_letters_turns_to_new_instances_which_replay_later(
    start: StartWorker, client: Client, raw_redis: aioredis.Redis
) -> None:
    served(start, "--max-instances", f"{KIND}=3")
    kept = [f"{KIND}/capped-{i}" for i in range(3)]
    for name in kept:
        await client.call(name, "note", kwargs={"text": "in"})
    refused = f"{KIND}/capped-late"
    with pytest.raises(DeadLetteredError) as caught:
        await client.call(refused, "note", kwargs={"text": "late"})
    assert caught.value.reason == "instance_limit"
    assert f"{KIND!r} already holds its cap of 3 instances" in caught.value.detail
    assert await raw_redis.zcard(client.transport.keys.instances(KIND)) == 3
    # The refused instance is forgotten again: nothing of it stays.
    refused_state = client.transport.keys.state(refused)
    await eventually(
        lambda: _gone(raw_redis, refused_state), "the refused instance to be forgotten"
    )
    letters = json.loads((await cli("dlq", "list", "--reason", "instance_limit", "--json")).stdout)
    assert [(d["agent"], d["id"]) for d in letters] == [(refused, caught.value.turn_id)]

    # Room again: the operator forgets one instance and replays the dead letter.
    async def forgotten() -> bool:
        return await client.forget(kept[0])  # False while the worker still lingers on it

    await eventually(forgotten, "an instance to be forgotten")
    replay = await cli("dlq", "replay", "--agent", refused)
    assert (replay.returncode, replay.stdout) == (0, "replayed 1 dead letter(s)\n"), replay.stderr
    await eventually(lambda: _notes_are(client, refused, ["hello", "late"]), "the replayed turn")
    assert await _dead_letters.dead_count(client.transport) == 0


async def _gone(raw_redis: aioredis.Redis, key: str) -> bool:
    return not await raw_redis.exists(key)


async def _notes_are(client: Client, name: str, notes: list[str]) -> bool:
    return bool(await client.call(name, "notes") == notes)


async def test_status_summarises_kinds_and_instances_page_least_recently_taken_first(
    start: StartWorker, client: Client, raw_redis: aioredis.Redis
) -> None:
    served(start)
    names = [f"{KIND}/page-{i}" for i in range(5)]
    for name in names:
        await client.call(name, "note", kwargs={"text": "x"})
    busy = f"{KIND}/page-held"
    await client.send(busy, "gate", kwargs={"seconds": 8.0})
    owner = client.transport.keys.owner(busy)
    await eventually(lambda: raw_redis.exists(owner), "a worker to hold the gated instance")

    done = await cli("status", "--json")
    assert done.returncode == 0, done.stderr
    (row,) = [k for k in json.loads(done.stdout)["kinds"] if k["kind"] == KIND]
    assert (row["instances"], row["active"], row["queued"]) == (6, 1, 1)
    text = (await cli("status")).stdout
    assert "INSTANCES" in text and KIND in text

    every = await client.instances(KIND)
    assert sorted(name for name, _taken in every) == sorted([*names, busy])
    taken = [taken_s for _name, taken_s in every]
    assert taken == sorted(taken)  # least recently taken first
    first = json.loads((await cli("instances", KIND, "--count", "2", "--json")).stdout)
    rest = json.loads((await cli("instances", KIND, "--offset", "2", "--json")).stdout)
    paged = [r["agent"] for r in first["instances"] + rest["instances"]]
    assert sorted(paged) == sorted([*names, busy]) and len(first["instances"]) == 2
    held = [r for r in first["instances"] + rest["instances"] if r["agent"] == busy]
    assert held[0]["owner"] is not None
    more = await cli("instances", KIND, "--count", "2")
    assert more.stdout.splitlines()[-1] == "(more: --offset 2)"
    bad = await cli("instances", KIND, "--offset", "-1")
    assert bad.returncode == 2 and "--offset must be at least 0" in bad.stderr


async def test_a_runtime_made_agent_queued_while_its_workers_were_down_is_served(
    start: StartWorker, client: Client
) -> None:
    from tests.dist.apps.virtual_app import COORDINATOR

    worker = start(target="virtual_served")
    assert await client.call(COORDINATOR, "spawn", kwargs={"key": "down", "text": "a"}) == (
        "helper-down"
    )
    await eventually(lambda: _has_notes(client, "helper-down", 1), "the first note to run")
    worker.terminate()
    assert worker.wait(30) == 0
    await client.send("helper-down", "note", kwargs={"text": "while down"})
    served(start)
    assert await asyncio.wait_for(client.call("helper-down", "notes"), 30) == ["a", "while down"]


async def _has_notes(client: Client, name: str, count: int) -> bool:
    try:
        return len(await client.call(name, "notes")) >= count
    except Exception:
        return False
