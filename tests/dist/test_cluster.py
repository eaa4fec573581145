"""pygents_dist on a Redis Cluster: the session's local cluster (3 primaries, 3 replicas) and
real worker processes serving agents whose keys live on each of the three primaries
(``apps/sharded_app.py``).

The key scenarios run here as on one node: calls, streams, sends between agents on
different primaries (the outbox relay), follow-ups and context, pause, resume and cancel,
dead letters and replay, ``lock=True`` across workers, signed turns, the status's node column,
and the durability mode. The faults: a primary SIGKILLed during chained turns over agents on
every primary (with a worker SIGKILLed too), and a busy agent's slot moved live to another
primary; each checks that every turn ran and committed once, in order.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from pygents_dist import (
    Client,
    DeadLetteredError,
    NotReplicatedError,
    Transport,
    TurnCancelledError,
    _control,
    _dead_letters,
)
from pygents_dist.testing import RedisCluster, RedisEndpoint
from tests.dist.conftest import Shared, module_workers
from tests.dist.helpers import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Agents of ``apps/sharded_app.py``, one per primary of the fresh local cluster.
AGENTS = ("north", "south", "east")
CLUSTER_ENV = {"PYGENTS_TEST_CLUSTER": "1"}


@pytest.fixture(scope="module")
def shared(redis_cluster: RedisCluster) -> Iterator[Shared]:
    """Two workers serving the sharded agents on the session's cluster."""
    with module_workers(
        redis_cluster,
        target="sharded_app",
        count=2,
        env=CLUSTER_ENV,  # type: ignore[arg-type]
    ) as workers:
        yield workers


@pytest.fixture
async def client(redis_cluster: RedisCluster, shared: Shared) -> AsyncIterator[Client]:
    """A client of the module's namespace, given the URL of one node."""
    async with Client(redis_cluster.url, namespace=shared.namespace) as c:
        yield c


@pytest.fixture
async def store(redis_cluster: RedisCluster) -> AsyncIterator[aioredis.RedisCluster]:
    """A Redis Cluster client (str replies) for what the tools wrote."""
    r = aioredis.RedisCluster.from_url(redis_cluster.url, decode_responses=True)
    try:
        yield r
    finally:
        await r.aclose()


def key(shared: Shared, name: str) -> str:
    """A key the app's tools write (``app_store.app_key``)."""
    return f"{shared.namespace}:app:{name}"


async def notes(client: Client, agent: str, tag: str) -> list[str]:
    """The agent's context notes of one chain, as its worker sees them."""
    seen = await client.call(agent, "history")
    return [n for n in seen if n.startswith(f"{tag} ")]


def chain_intact(got: list[str], tag: str, n: int) -> bool:
    """Each step of ``chain(n, tag)`` noted once, in order."""
    return got == [f"{tag} {i}" for i in range(n, -1, -1)]


# -- the scenarios ----------------------------------------------------------------------------


async def test_agents_on_every_primary_answer_calls_and_streams(
    client: Client, redis_cluster: RedisCluster
) -> None:
    keys = client.transport.keys
    nodes = {redis_cluster.primary_of(keys.turns(a)) for a in AGENTS}
    assert len(nodes) == 3  # the agents' keys live on three primaries
    for agent in AGENTS:
        assert await client.call(agent, "add", kwargs={"a": 2, "b": 3}) == 5
        assert [v async for v in client.stream(agent, "count", kwargs={"n": 4})] == [0, 1, 2, 3]
    rows = await _control.agent_status(client.transport, list(AGENTS))
    for row in rows:
        assert row["node"] == f"127.0.0.1:{redis_cluster.primary_of(keys.turns(row['agent']))}"


async def test_the_cli_status_shows_each_agents_node_and_the_clusters_health(
    client: Client, redis_cluster: RedisCluster, shared: Shared
) -> None:
    from tests.dist.test_cli import cli

    env = {"PYGENTS_REDIS_URL": redis_cluster.url, "PYGENTS_NAMESPACE": shared.namespace}
    done = await cli("status", env=env)
    assert done.returncode == 0, done.stderr
    keys = client.transport.keys
    for agent in AGENTS:
        [line] = [x for x in done.stdout.splitlines() if x.startswith(f"{agent} ")]
        assert f"127.0.0.1:{redis_cluster.primary_of(keys.turns(agent))}" in line
    assert "cluster: ok" in done.stdout
    assert done.stdout.count(" primary ") == 3


async def test_sends_between_agents_on_different_primaries_arrive_once(
    client: Client, store: aioredis.RedisCluster, shared: Shared
) -> None:
    pairs = [("north", "east"), ("east", "south"), ("south", "north")]
    sent = [
        client.call(frm, "relay", kwargs={"x": i * 3 + j, "frm": frm, "to": to})
        for i in range(10)
        for j, (frm, to) in enumerate(pairs)
    ]
    assert set(await asyncio.gather(*sent)) == {"relayed"}
    records = key(shared, "records")
    await eventually(lambda: _at_least(store, records, 30), "30 relayed records")
    assert sorted(int(x) for x in await store.lrange(records, 0, -1)) == list(range(30))


async def _at_least(store: aioredis.RedisCluster, name: str, n: int) -> bool:
    return int(await store.llen(name)) >= n


async def test_follow_ups_and_context_on_every_primary(
    client: Client, store: aioredis.RedisCluster, shared: Shared
) -> None:
    for agent in AGENTS:
        await client.send(agent, "chain", kwargs={"n": 15, "tag": "f"})
    for got in (await chains_done(client, "f")).values():
        assert chain_intact(got, "f", 15)


async def test_pause_resume_and_cancel(client: Client) -> None:
    await client.pause("south")
    kept = asyncio.create_task(client.call("south", "add", kwargs={"a": 1, "b": 2}))
    dropped = await client.send("south", "add", kwargs={"a": 5, "b": 5}, reply=True)
    assert await client.cancel("south", dropped)
    done, _ = await asyncio.wait({kept}, timeout=0.5)  # nothing may run while paused
    assert not done
    await client.resume("south")  # its signal goes to a ready shard on another primary
    assert await asyncio.wait_for(kept, 10) == 3
    with pytest.raises(TurnCancelledError):
        async for _ in client.results("south", dropped):
            pass


async def test_dead_letters_and_their_replay(client: Client) -> None:
    with pytest.raises(DeadLetteredError) as info:
        await client.call("east", "nope")
    letters = await _dead_letters.dead_letters(client.transport, 100)
    [(entry_id, fields)] = [(i, f) for i, f in letters if f[b"id"].decode() == info.value.turn_id]
    letter = (entry_id, "east", info.value.turn_id, fields[b"m"], fields.get(b"s", b""))
    await _dead_letters.requeue_dead(client.transport, [letter])  # it runs, and fails, again

    async def letters_of_turn() -> int:
        got = await _dead_letters.dead_letters(client.transport, 100)
        return sum(1 for _i, f in got if f[b"id"].decode() == info.value.turn_id)

    await eventually(letters_of_turn, "the replayed turn dead-lettered again")


async def test_a_locked_tool_runs_in_one_worker_at_a_time(
    client: Client, store: aioredis.RedisCluster, shared: Shared
) -> None:
    calls = [client.call(AGENTS[i % 3], "guarded", kwargs={"i": i}) for i in range(18)]
    pids = await asyncio.gather(*calls)
    assert len(set(pids)) >= 1
    assert await store.get(key(shared, "overlaps")) is None
    assert int(await store.llen(key(shared, "guarded"))) == 18


async def test_signed_turns_on_a_cluster(redis_cluster: RedisCluster) -> None:
    env = {**CLUSTER_ENV, "PYGENTS_SECRETS": "k1"}
    with module_workers(redis_cluster, target="sharded_app", env=env) as signed:  # type: ignore[arg-type]
        async with Client(redis_cluster.url, namespace=signed.namespace, secret="k1") as good:
            assert await good.call("east", "add", kwargs={"a": 1, "b": 1}) == 2
        async with Client(redis_cluster.url, namespace=signed.namespace, secret="k2") as bad:
            with pytest.raises(DeadLetteredError, match="bad_signature"):
                await bad.call("north", "add", kwargs={"a": 1, "b": 1})


async def test_a_call_after_its_agents_slot_moved_follows_it(
    client: Client, redis_cluster: RedisCluster
) -> None:
    """The client's slot map is stale: its append goes to the old primary (``MOVED``), then
    to the new one with a ready shard of the old one (refused before anything is written),
    then again signalling in a round trip of its own."""
    turns = client.transport.keys.turns("north")
    assert await client.call("north", "add", kwargs={"a": 1, "b": 1}) == 2
    source = redis_cluster.primary_of(turns)
    target = next(p for p in redis_cluster.primaries() if p != source)
    slot = redis_cluster.slot(turns)
    await asyncio.to_thread(redis_cluster.move_slot, slot, target)
    try:
        for i in range(3):
            assert await client.call("north", "add", kwargs={"a": i, "b": 1}) == i + 1
    finally:
        await asyncio.to_thread(redis_cluster.move_slot, slot, source)
    assert await client.call("north", "add", kwargs={"a": 2, "b": 2}) == 4


async def test_the_functions_library_is_refused_on_a_cluster(client: Client) -> None:
    from pygents_dist import RedisCommandError, _functions

    with pytest.raises(RedisCommandError, match="not for a Redis Cluster") as info:
        await _functions.install(client.transport)
    assert info.value.code == "CLUSTER"


# -- durability -------------------------------------------------------------------------------


async def test_durability_replicated_confirms_writes_on_the_cluster(
    redis_cluster: RedisCluster,
) -> None:
    with module_workers(
        redis_cluster,  # type: ignore[arg-type]
        "--durability",
        "replicated",
        target="sharded_app",
        env=CLUSTER_ENV,
    ) as durable:
        async with Client(
            redis_cluster.url, namespace=durable.namespace, durability="replicated"
        ) as c:
            for agent in AGENTS:
                assert await c.call(agent, "add", kwargs={"a": 4, "b": 4}) == 8


async def test_durability_replicated_is_refused_without_a_replica(
    redis_server: RedisEndpoint,
) -> None:
    transport = Transport.from_url(redis_server.url, durability="replicated")
    try:
        with pytest.raises(NotReplicatedError, match="at least one replica"):
            await transport.ping()
    finally:
        await transport.aclose()
    with pytest.raises(ValueError, match="durability must be one of"):
        Transport.from_url(redis_server.url, durability="sometimes")
    # a worker told so exits at once, saying why (exit 3: Redis, not the worker)
    import subprocess
    import sys

    from tests.dist.conftest import APPS

    done = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "pygents_dist",
            "worker",
            "sharded_app",
            "--durability",
            "replicated",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=APPS,
        env={**os.environ, "PYGENTS_REDIS_URL": redis_server.url, "PYTHONPATH": str(APPS)},
    )
    assert done.returncode == 3
    assert "needs a Redis with at least one replica" in done.stderr


# -- faults -----------------------------------------------------------------------------------


async def _chains(client: Client, tag: str, n: int) -> None:
    for agent in AGENTS:
        await client.send(agent, "chain", kwargs={"n": n, "tag": tag})


async def chains_done(client: Client, tag: str, timeout: float = 60.0) -> dict[str, list[str]]:
    """Each agent's notes of chain ``tag`` once every chain reached step 0 (asked with a
    ``history`` turn, which queues behind the chain's own turns, every 0.2 s)."""
    deadline = time.monotonic() + timeout
    got: dict[str, list[str]] = {}
    while True:
        for agent in AGENTS:
            if not got.get(agent, [""])[-1].endswith(" 0"):
                got[agent] = await notes(client, agent, tag)
        if all(g and g[-1] == f"{tag} 0" for g in got.values()):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"chains {tag} not done after {timeout}s: {got}")
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("durability", ["primary", "replicated"])
async def test_a_primary_killed_during_chained_turns_fails_over_and_loses_nothing(
    redis_cluster: RedisCluster, store: aioredis.RedisCluster, durability: str
) -> None:
    """Chains of follow-up turns run on agents of every primary; one primary is SIGKILLed
    mid-run, and a worker too. Every step commits once, in order; in the durability mode a
    confirmed commit survives the failover (without it, Redis's asynchronous replication may
    lose the last writes the old primary acknowledged, and a chain may then restart a step:
    the test checks order and completion, and exactly-once only where it is promised)."""
    n = 40
    args = ("--durability", durability)
    with module_workers(
        redis_cluster,  # type: ignore[arg-type]
        *args,
        target="sharded_app",
        count=2,
        env=CLUSTER_ENV,
    ) as crew:
        async with Client(redis_cluster.url, namespace=crew.namespace, durability=durability) as c:
            keys = c.transport.keys
            victim = redis_cluster.primary_of(keys.turns("south"))
            await _chains(c, "x", n)
            await asyncio.sleep(0.2)  # some steps in
            started = time.monotonic()
            redis_cluster.kill(victim)
            crew.workers[0].kill()
            try:
                took = await asyncio.to_thread(redis_cluster.wait_failover, victim)
            finally:
                # Back as a replica of the node that replaced it: until then the durability
                # mode cannot confirm that shard's writes (its new primary has no replica).
                await asyncio.to_thread(redis_cluster.restart, victim)
            tag = f"failover {durability}"
            finished = await chains_done(c, "x")
            recovered = time.monotonic() - started
            for agent, got in finished.items():
                if durability == "replicated":
                    assert chain_intact(got, "x", n), (agent, got)
                else:  # in order, every step there; a lost commit may repeat a step
                    assert list(dict.fromkeys(got)) == [f"x {i}" for i in range(n, -1, -1)]
            print(f"{tag}: failover {took:.1f}s, chains done {recovered:.1f}s after the kill")


async def test_a_busy_agents_slot_moved_live_with_a_worker_killed_keeps_order_and_commits_once(
    redis_cluster: RedisCluster, store: aioredis.RedisCluster
) -> None:
    n = 60
    with module_workers(redis_cluster, target="sharded_app", count=2, env=CLUSTER_ENV) as crew:  # type: ignore[arg-type]
        async with Client(redis_cluster.url, namespace=crew.namespace) as c:
            keys = c.transport.keys
            slot = redis_cluster.slot(keys.turns("east"))
            source = redis_cluster.primary_of(keys.turns("east"))
            target = next(p for p in redis_cluster.primaries() if p != source)
            await _chains(c, "m", n)
            await asyncio.sleep(0.1)
            moving = asyncio.create_task(
                asyncio.to_thread(redis_cluster.move_slot, slot, target, 2)
            )
            crew.workers[0].kill()  # a worker SIGKILLed while the slot moves
            await moving
            assert redis_cluster.primary_of(keys.turns("east")) == target
            for agent, got in (await chains_done(c, "m")).items():
                assert chain_intact(got, "m", n), (agent, got)
            await asyncio.to_thread(redis_cluster.move_slot, slot, source)


async def test_moved_and_ask_are_followed_by_the_transport(redis_cluster: RedisCluster) -> None:
    from pygents_dist.testing._redis_cluster import command

    transport = Transport.from_url(redis_cluster.url)
    try:
        tag = "{moving}"
        first, second = f"t:{tag}:a", f"t:{tag}:b"
        await transport.execute([("SET", first, "1"), ("SET", second, "2")], "set")
        slot = redis_cluster.slot(first)
        source = redis_cluster.primary_of(first)
        target = next(p for p in redis_cluster.primaries() if p != source)
        ids = {n["port"]: n["id"] for n in redis_cluster.nodes()}
        command(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
        command(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
        command(source, "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", first)
        # mid-migration: the moved key answers through ASK, the other one where it was
        assert await transport.execute([("GET", first), ("GET", second)], "get") == [b"1", b"2"]
        command(source, "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", second)
        for port in redis_cluster.primaries():
            command(port, "CLUSTER", "SETSLOT", slot, "NODE", ids[target])
        # moved: MOVED, then the new map
        assert await transport.execute([("GET", first), ("GET", second)], "get") == [b"1", b"2"]
        assert transport.cluster is not None
        assert transport.cluster.address_of(first) == ("127.0.0.1", target)
    finally:
        await transport.aclose()
        redis_cluster.move_slot(redis_cluster.slot("{moving}"), source)


@pytest.mark.soak
async def test_durable_mode_loses_no_acknowledged_send_or_commit_across_random_kills(
    redis_cluster: RedisCluster,
) -> None:
    """Soak (``--soak``): with ``durability="replicated"``, primaries are SIGKILLed at random
    moments (a random primary each round, restarted as a replica after its failover) while
    chains run and a client keeps sending; every send the client saw acknowledged runs, and
    every chain step commits exactly once."""
    import random

    rounds, n = 4, 30
    with module_workers(
        redis_cluster,  # type: ignore[arg-type]
        "--durability",
        "replicated",
        target="sharded_app",
        count=2,
        env=CLUSTER_ENV,
    ) as crew:
        async with Client(
            redis_cluster.url, namespace=crew.namespace, durability="replicated"
        ) as c:
            acked: dict[str, list[str]] = {agent: [] for agent in AGENTS}
            stop = asyncio.Event()

            async def keep_sending() -> None:
                i = 0
                while not stop.is_set():
                    agent = AGENTS[i % 3]
                    try:
                        await c.send(agent, "chain", kwargs={"n": 0, "tag": f"s{i}"})
                    except NotReplicatedError:
                        pass  # not acknowledged: may or may not run
                    else:
                        acked[agent].append(f"s{i} 0")
                    i += 1
                    await asyncio.sleep(0.01)

            sender = asyncio.create_task(keep_sending())
            kills = []
            for r in range(rounds):
                await _chains(c, f"k{r}", n)
                await asyncio.sleep(random.uniform(0.05, 0.4))
                victim = random.choice(redis_cluster.primaries())
                redis_cluster.kill(victim)
                kills.append(await asyncio.to_thread(redis_cluster.wait_failover, victim))
                await asyncio.to_thread(redis_cluster.restart, victim)
                for agent, got in (await chains_done(c, f"k{r}", timeout=120)).items():
                    assert chain_intact(got, f"k{r}", n), (r, agent, got)
            stop.set()
            await sender
            lost = dup = 0
            for agent in AGENTS:
                seen = [x for x in await client_history(c, agent) if x.startswith("s")]
                lost += len(set(acked[agent]) - set(seen))
                dup += len(seen) - len(set(seen))
            sent = sum(len(v) for v in acked.values())
            print(
                f"durable soak: {rounds} primary kills (failover {min(kills):.1f}-"
                f"{max(kills):.1f}s), {rounds * 3 * (n + 1)} chained turns, {sent} acknowledged "
                f"sends: lost {lost}, duplicated {dup}"
            )
            assert lost == 0 and dup == 0


async def client_history(client: Client, agent: str) -> list[str]:
    """The agent's whole context queue as its worker sees it."""
    return list(await client.call(agent, "history"))


async def test_group_scripts_go_one_per_primary_and_follow_a_moved_slot(
    redis_cluster: RedisCluster,
) -> None:
    """Sends and takes of many agents run one script call per primary; with a stale slot
    map (a slot moved behind the transport's back) the calls that meet it fail before they
    write and go again one slot per call: every agent gets its turns once and is taken."""
    from pygents_dist import _leases, _streams
    from pygents_dist._statuses import TakeStatus

    transport = Transport.from_url(redis_cluster.url, namespace="groups")
    agents = [f"g{i}" for i in range(60)]
    moved = transport.keys.turns(agents[0])
    try:
        await _streams.send_turns(transport, [(a, f"one-{a}", b"m", b"") for a in agents])
        source = redis_cluster.primary_of(moved)
        target = next(p for p in redis_cluster.primaries() if p != source)
        await asyncio.to_thread(redis_cluster.move_slot, redis_cluster.slot(moved), target)
        await _streams.send_turns(transport, [(a, f"two-{a}", b"m", b"") for a in agents])
        assert await _streams.backlog(transport, agents) == [2] * len(agents)
        await asyncio.to_thread(redis_cluster.move_slot, redis_cluster.slot(moved), source)
        taken = await _leases.take_many(transport, agents, "w1", 5_000, 10)
        assert [t.status for t in taken] == [TakeStatus.TAKEN] * len(agents)
        assert [len(t.entries) for t in taken] == [2] * len(agents)
    finally:
        await transport.aclose()
