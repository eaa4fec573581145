"""Poison and bad input, thrown straight into the streams with raw ``XADD``.

Hypothesis builds malformed, truncated, oversized, deeply nested and wrong-version messages,
messages with fields of the wrong type or missing, for unknown agents and tools, tools outside
the agent's set and bad arguments. Each example adds a few of them to an agent's stream,
followed by a good turn. The good turn must complete, every bad message must be in the
dead-letter stream with the expected reason (and, when its sender asked for a reply, the
sender gets a ``DeadLetteredError``), and the worker must neither crash nor stall.

A turn that kills its worker on every delivery (``os._exit(1)``) is dead-lettered after the
configured number of deliveries, and the turns queued around it on the same agent complete.

Soak (more examples): ``.venv/bin/python -m pytest tests/faults --soak -q``
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pygents_dist import Client, DeadLetteredError
from pygents_dist._keys import Keys
from pygents_dist.errors import DeadLetterReason
from pygents_dist.testing import WorkerPool, WorkerProcess
from tests.faults._support import APPS, count_keys, raw_redis, read_effects, report

AGENT = "a0"
U = DeadLetterReason.UNDECODABLE
TOOLS = {"step", "finish", "slow", "die", "echo", "add", "stranger", "locked"}


def envelope(**changes: Any) -> dict[str, Any]:
    """A good version-1 envelope of ``echo`` on ``a0``, with ``changes`` applied
    (a value of ``...`` removes the field)."""
    env: dict[str, Any] = {
        "v": 1,
        "id": "set-by-the-test",
        "agent": AGENT,
        "tool": "echo",
        "args": [],
        "kwargs": {"value": "bad"},
        "timeout": 10.0,
        "tags": [],
        "reply": False,
        "ts": time.time(),
    }
    for key, value in changes.items():
        if value is ...:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def pack(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


@dataclasses.dataclass(frozen=True)
class Bad:
    """A bad stream entry: its envelope bytes (None: no ``m`` field), the dead-letter reason
    it must get, and whether the sender asked for (and must get) an error reply."""

    m: bytes | None
    reason: DeadLetterReason
    reply: bool = False
    with_id: bool = True
    empty_id: bool = False


GOOD = pack(envelope())
INTS = st.integers(-(2**63), 2**64 - 1)
non_str = st.one_of(INTS, st.binary(max_size=8), st.none(), st.lists(INTS, max_size=2))
anything = st.one_of(
    INTS,
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.none(),
    st.booleans(),
    st.lists(INTS, max_size=3),
    st.dictionaries(st.text(max_size=4), INTS, max_size=2),
)
# Optional fields (tags, hooks, ts) with a falsy value count as absent, so only truthy
# wrong values are bad there.
wrong_types: dict[str, st.SearchStrategy[Any]] = {
    "id": non_str,
    "agent": non_str,
    "tool": non_str,
    "args": anything.filter(lambda v: not isinstance(v, list)),
    "kwargs": anything.filter(lambda v: not isinstance(v, dict)),
    "timeout": st.one_of(
        anything.filter(lambda v: not isinstance(v, int | float) or isinstance(v, bool)),
        st.floats(max_value=0),
        st.just(float("inf")),
        st.just(float("nan")),
    ),
    "tags": st.one_of(
        anything.filter(lambda v: not isinstance(v, list) and bool(v)),
        st.lists(non_str, min_size=1, max_size=3),
    ),
    "hooks": st.one_of(
        anything.filter(lambda v: not isinstance(v, dict) and bool(v)),
        st.dictionaries(
            st.text(max_size=4),
            anything.filter(lambda v: not isinstance(v, list)),
            min_size=1,
            max_size=2,
        ),
        st.dictionaries(
            st.text(max_size=4), st.lists(non_str, min_size=1, max_size=2), min_size=1, max_size=2
        ),
    ),
    "ts": anything.filter(lambda v: bool(v) and (not isinstance(v, int | float) or v is True)),
}


def wrong_field(name: str) -> st.SearchStrategy[Bad]:
    """Envelopes whose field ``name`` has a value of the wrong type."""
    return wrong_types[name].map(lambda v: Bad(pack(envelope(**{name: v})), U))


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


bad_messages: st.SearchStrategy[Bad] = st.one_of(
    # not msgpack, or not a map (raw bytes)
    st.binary(max_size=64).map(lambda b: Bad(b, U)),
    # a good envelope cut short
    st.integers(0, len(GOOD) - 1).map(lambda n: Bad(GOOD[:n], U)),
    # another wire version
    st.one_of(INTS, st.text(max_size=3), st.none(), st.floats(allow_nan=False))
    .filter(lambda v: v != 1)
    .map(lambda v: Bad(pack(envelope(v=v)), U)),
    # a field of the wrong type
    st.sampled_from(sorted(wrong_types)).flatmap(lambda f: wrong_field(f)),
    # a required field missing
    st.sampled_from(["v", "id", "agent", "tool", "args", "kwargs", "timeout"]).map(
        lambda f: Bad(pack(envelope(**{f: ...})), U)
    ),
    # oversized (over the 1 MiB default limit) and deeply nested
    st.integers(1 << 20, (1 << 20) + 4096).map(
        lambda n: Bad(pack(envelope(kwargs={"value": b"x" * n})), U)
    ),
    st.integers(40, 400).map(lambda d: Bad(pack(envelope(kwargs={"value": _nested(d)})), U)),
    st.integers(1000, 20_000).map(lambda d: Bad(b"\x91" * d + b"\xc0", U)),
    # entries without an envelope or without a turn id
    st.just(Bad(None, U)),
    st.uuids().map(lambda u: Bad(f"no id {u}".encode(), U, with_id=False)),
    st.uuids().map(lambda u: Bad(f"empty id {u}".encode(), U, with_id=False, empty_id=True)),
    # addressed to another agent, unknown tools, tools of other agents, bad arguments
    st.text(min_size=1, max_size=12)
    .filter(lambda a: a != AGENT)
    .map(lambda a: Bad(pack(envelope(agent=a, reply=True)), DeadLetterReason.UNKNOWN_AGENT, True)),
    st.text(max_size=12)
    .filter(lambda t: t not in TOOLS)
    .map(lambda t: Bad(pack(envelope(tool=t, reply=True)), DeadLetterReason.UNKNOWN_TOOL, True)),
    st.sampled_from(["stranger", "finish"]).map(
        lambda t: Bad(pack(envelope(tool=t, reply=True)), DeadLetterReason.TOOL_NOT_IN_AGENT, True)
    ),
    st.sampled_from([{}, {"a": 1}, {"b": 2}, {"c": 3}]).map(
        lambda kw: Bad(
            pack(envelope(tool="add", kwargs=kw, reply=True)), DeadLetterReason.BAD_ARGUMENTS, True
        )
    ),
    st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=3).map(
        lambda names: Bad(
            pack(envelope(hooks={"before_invoke": names}, reply=True)),
            DeadLetterReason.BAD_ARGUMENTS,
            True,
        )
    ),
)


def read_reply(r: Any, key: str, timeout: float = 15.0) -> dict[bytes, bytes]:
    """The first entry of a reply stream, waiting up to ``timeout`` seconds."""
    got = r.xread({key: "0-0"}, count=1, block=int(timeout * 1000))
    assert got, f"no reply on {key} within {timeout}s"
    fields: dict[bytes, bytes] = got[0][1][0][1]
    return fields


def start_worker(worker_factory: WorkerPool, tmp_path: Path, *args: str) -> WorkerProcess:
    env = {"FAULT_LOG": str(tmp_path / "effects.log"), "FAULT_AGENTS": "2"}
    return worker_factory(
        "faultapp",
        args=("--lease-ms", "1500", "--log-level", "ERROR", *args),
        pythonpath=[APPS],
        env=env,
    )


def run_property(
    worker_factory: WorkerPool,
    redis_url: str,
    key_prefix: str,
    tmp_path: Path,
    examples: int,
) -> None:
    worker = start_worker(worker_factory, tmp_path)
    keys = Keys(key_prefix)
    reasons: Counter[str] = Counter()
    r: Any = redis.Redis.from_url(redis_url, socket_timeout=30)
    last_dead = [b"0-0"]

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(bad_messages, min_size=1, max_size=4))
    def check(bads: list[Bad]) -> None:
        sent: list[tuple[Bad, bytes, bytes]] = []  # (bad, id field, m field)
        pipe = r.pipeline(transaction=False)
        for bad in bads:
            fields: dict[bytes, bytes] = {}
            turn_id = uuid.uuid4().hex.encode() if bad.with_id else b""
            if bad.with_id or bad.empty_id:
                fields[b"id"] = turn_id
            if bad.m is not None:
                fields[b"m"] = bad.m
            else:
                fields[b"x"] = b"no envelope"
            pipe.xadd(keys.turns(AGENT), fields)
            sent.append((bad, turn_id, bad.m or b""))
        good_id = uuid.uuid4().hex
        value = f"good {good_id}"
        good = pack(envelope(id=good_id, kwargs={"value": value}, reply=True))
        pipe.xadd(keys.turns(AGENT), {b"id": good_id.encode(), b"m": good})
        pipe.xadd(keys.ready, {b"a": AGENT})
        pipe.execute()

        end = read_reply(r, keys.reply(AGENT, good_id))
        assert end[b"k"] == b"e" and msgpack.unpackb(end[b"d"]) == value

        dead = r.xrange(keys.dead, min=b"(" + last_dead[0])
        if dead:
            last_dead[0] = dead[-1][0]
        found = {(f[b"id"], f[b"m"]): f for _, f in dead}
        assert len(dead) == len(sent), f"{len(sent)} bad messages, {len(dead)} dead letters"
        for bad, turn_id, m in sent:
            entry = found.get((turn_id, m))
            assert entry is not None, f"not dead-lettered: {bad}"
            assert entry[b"reason"].decode() == bad.reason, (bad, entry[b"detail"])
            reasons[bad.reason.value] += 1
            if bad.reply:
                error = msgpack.unpackb(read_reply(r, keys.reply(AGENT, turn_id.decode()))[b"d"])
                assert error["reason"] == bad.reason, error
        assert worker.is_running(), worker.output_text

    try:
        began = time.monotonic()
        check()
        elapsed = time.monotonic() - began
    finally:
        r.close()
    assert worker.is_running()
    assert "unexpected error" not in worker.output_text, worker.output_text
    report(
        f"poison_property[{examples}]",
        examples=examples,
        dead_lettered=sum(reasons.values()),
        by_reason=dict(sorted(reasons.items())),
        seconds=round(elapsed, 1),
    )


def test_bad_messages_are_dead_lettered_and_good_ones_served(
    worker_factory: WorkerPool, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    run_property(worker_factory, redis_url, key_prefix, tmp_path, examples=80)


@pytest.mark.soak
def test_bad_messages_soak(
    worker_factory: WorkerPool, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    run_property(worker_factory, redis_url, key_prefix, tmp_path, examples=2000)


async def test_garbage_signals_do_not_silence_the_worker(
    worker_factory: WorkerPool, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    # A 60 s lease makes the periodic backlog scan too rare to hide a dead signal loop.
    start_worker(worker_factory, tmp_path, "--lease-ms", "60000")
    keys = Keys(key_prefix)
    async with raw_redis(redis_url) as raw:
        garbage: list[Any] = [{b"a": b"\xff\xfe"}, {b"x": b"1"}, {b"a": b"nobody"}, {b"a": b"{a0}"}]
        for fields in garbage:
            await raw.xadd(keys.ready, fields)
    async with Client(redis_url) as client:
        began = time.monotonic()
        assert await asyncio.wait_for(client.call(AGENT, "echo", kwargs={"value": 1}), 10) == 1
        report("garbage_signals", served_after_s=round(time.monotonic() - began, 3))


async def test_a_turn_that_kills_every_worker_is_dead_lettered(
    worker_factory: WorkerPool, redis_url: str, tmp_path: Path
) -> None:
    max_deliveries = 3
    args = ("--max-deliveries", str(max_deliveries), "--lease-ms", "800")
    workers = [start_worker(worker_factory, tmp_path, *args) for _ in range(2)]
    restarts = 0

    async def keep_two_alive() -> None:
        nonlocal restarts
        while True:
            for i, w in enumerate(workers):
                if not w.is_running():
                    workers[i] = await asyncio.to_thread(
                        start_worker, worker_factory, tmp_path, *args
                    )
                    restarts += 1
            await asyncio.sleep(0.05)  # supervising processes: nothing signals an exit

    keeper = asyncio.create_task(keep_two_alive())
    try:
        async with Client(redis_url) as client:
            # Queue good turns around the poison one, in one batch (the agent is paused).
            await client.pause(AGENT)
            before = [
                await client.send(AGENT, "echo", kwargs={"value": f"b{i}"}, reply=True)
                for i in range(3)
            ]
            poison = await client.send(AGENT, "die", kwargs={"key": "p"}, reply=True)
            after = [
                await client.send(AGENT, "echo", kwargs={"value": f"a{i}"}, reply=True)
                for i in range(3)
            ]
            began = time.monotonic()
            await client.resume(AGENT)
            for turn_id in before + after:
                await asyncio.wait_for(_drain(client.results(AGENT, turn_id)), 60)
            with pytest.raises(DeadLetteredError) as caught:
                await asyncio.wait_for(_drain(client.results(AGENT, poison)), 60)
            elapsed = time.monotonic() - began
            assert caught.value.reason == DeadLetterReason.TOO_MANY_DELIVERIES
            # the agent goes on serving
            later = client.call(AGENT, "echo", kwargs={"value": "later"})
            assert await asyncio.wait_for(later, 30) == "later"
    finally:
        keeper.cancel()
    effects = read_effects(tmp_path / "effects.log")
    runs = count_keys(effects, "die")["p"]
    echoes = count_keys(effects, "echo")
    assert all(echoes[f"{p}{i}"] >= 1 for p in "ba" for i in range(3))
    assert runs == max_deliveries, f"the poison turn ran {runs} times"
    report(
        "poison_turn",
        max_deliveries=max_deliveries,
        poison_runs=runs,
        worker_deaths=restarts,
        dead_lettered_after_s=round(elapsed, 2),
    )


async def _drain(values: Any) -> None:
    async for _ in values:
        pass
