"""The commit of a batch (``Commit``): the ops map ``lua/commit.lua`` reads, pinned to what
the worker built before ``Commit`` existed (recorded from that code), and a batch of turns
filling it (no Redis: a stand-in transport records what the runner writes on its own).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from pygents import Agent, AgentRegistry, ContextItem, ContextQueue, Turn, _seams, tool
from pygents_dist import _metrics, _trace, _wire
from pygents_dist._batch_runner import BatchRunner
from pygents_dist._commit import NO_REPLY, Commit
from pygents_dist._context_store import ContextStore
from pygents_dist._keys import Keys
from pygents_dist._routing import Router
from pygents_dist._served_agents import ServedAgents
from pygents_dist._settings import WorkerSettings
from pygents_dist._transport import Entry
from pygents_dist.errors import DeadLetterReason

NOW_S = 1_700_000_000.123
TRACE = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
CHILD_TRACE = "00-" + "c" * 32 + "-" + "d" * 16 + "-01"
SECRETS = [b"k1", b"k0"]
UNKNOWN_TOOL = DeadLetterReason.UNKNOWN_TOOL


def reply_key(turn_id: str) -> str:
    return f"ns:pyg1:{{alpha}}:reply:{turn_id}"


def test_ops_is_the_map_commit_lua_reads() -> None:
    commit = Commit("alpha", dedup_window_ms=600_000, reply_ttl_ms=3_600_000)
    commit.acked += [b"1-0", b"1-1", b"1-2", b"1-3", b"1-4"]
    commit.turn_ids += ["t0", "t1", "t2", "t3", "t4"]
    commit.add_end(commit.reply_to(reply_key("t0")), 0, b"\x03")
    commit.add_end(commit.reply_to(reply_key("t1")), 2, b"\xc0")
    commit.add_error(NO_REPLY, "ValueError", "nobody asked")  # writes nothing
    commit.refuse(reply_key("t2"), "no tool named 'nope' in this worker", UNKNOWN_TOOL)
    cancelled = commit.reply_to(reply_key("t3"))
    commit.add_error(cancelled, "TurnCancelledError", "cancelled before it ran")
    commit.followups.append(["f1", b"<envelope f1>", b""])
    commit.outbox.append(["beta", "s1", b"<envelope s1>", b"<signature s1>"])
    commit.now_ms = 1_700_000_000_123
    commit.context = {"queue": b"\x91\x83\xa7content\xa5noted\xabdescription\xc0\xa2id\xc0"}

    # Recorded from the worker before Commit (keys in its order; entries as lists).
    assert list(commit.ops().items()) == [
        ("ack", [b"1-0", b"1-1", b"1-2", b"1-3", b"1-4"]),
        ("tid", ["t0", "t1", "t2", "t3", "t4"]),
        (
            "rp",
            [
                [1, b"e", 0, b"\x03"],
                [2, b"e", 2, b"\xc0"],
                [
                    3,
                    b"x",
                    0,
                    b"\x84\xa4type\xb1DeadLetteredError\xa7message\xd9#no tool named 'nope' in"
                    b" this worker\xa9traceback\xa0\xa6reason\xacunknown_tool",
                ],
                [
                    4,
                    b"x",
                    0,
                    b"\x83\xa4type\xb2TurnCancelledError\xa7message\xb7cancelled before it ran"
                    b"\xa9traceback\xa0",
                ],
            ],
        ),
        ("now", 1_700_000_000_123),
        ("win", 600_000),
        ("fu", [["f1", b"<envelope f1>", b""]]),
        ("ob", [["beta", "s1", b"<envelope s1>", b"<signature s1>"]]),
        ("st", {"queue": b"\x91\x83\xa7content\xa5noted\xabdescription\xc0\xa2id\xc0"}),
        ("rttl", 3_600_000),
        ("rmax", 10_000),
    ]
    # commit.lua writes reply entry r to KEYS[6 + r[1]]: its six agent keys come first.
    keys = ["turns", "owner", "state", "outbox", "done", "cancel", *commit.reply_streams]
    assert [keys[5 + r[0]] for r in commit.ops()["rp"]] == [
        reply_key("t0"),
        reply_key("t1"),
        reply_key("t2"),
        reply_key("t3"),
    ]


def test_an_empty_commit_still_names_every_field() -> None:
    ops = Commit("alpha", 1, 2).ops()
    assert ops == {
        "ack": [],
        "tid": [],
        "rp": [],
        "now": 0,
        "win": 1,
        "fu": [],
        "ob": [],
        "st": {},
        "rttl": 2,
        "rmax": 10_000,
    }


# -- a batch filling its commit ----------------------------------------------------------------


class StandIn:
    """A transport that answers the commands a batch sends on its own (the commit is the
    caller's), and records what they wrote: streamed values and dead letters."""

    def __init__(self) -> None:
        self.keys = Keys("ns")
        self.published: list[tuple[str, list[tuple[int, bytes]], int]] = []
        self.dead: list[dict[bytes, Any]] = []

    async def execute(self, commands: list[tuple[Any, ...]], what: str) -> list[Any]:
        replies: list[Any] = []
        values: list[tuple[int, bytes]] = []
        for command in commands:
            name, key = command[0], command[1]
            if name == "XADD" and key == self.keys.dead:
                flat = command[6:]
                self.dead.append(dict(zip(flat[::2], flat[1::2], strict=True)))
            elif name == "XADD":  # a streamed value: ... "*", "k", "v", "q", seq, "d", data
                values.append((command[9], command[11]))
            elif name == "PEXPIRE":
                self.published.append((key, values, command[2]))
            elif name == "HMGET":  # the directory: every agent asked for is declared
                replies.append([b"entry"] * len(command[2:]))
                continue
            else:
                raise AssertionError(f"a batch sent {command!r} during {what}")
            replies.append(b"OK")
        return replies


@pytest.fixture
def agents() -> dict[str, Agent]:
    @tool
    async def add(a: int, b: int) -> int:
        return a + b

    @tool
    async def stream(n: int) -> AsyncIterator[Any]:
        yield ContextItem("noted")
        yield Turn("add", kwargs={"a": 1, "b": 2})
        for i in range(n):
            yield i

    @tool
    async def fail() -> None:
        raise ValueError("nope")

    @tool
    async def forward() -> str:
        await AgentRegistry.get("alpha").send("beta", Turn("add", kwargs={"a": 3, "b": 4}))
        return "sent"

    alpha = Agent("alpha", "a", [add, stream, fail, forward], context_queue=ContextQueue(10))
    beta = Agent("beta", "b", [add])
    return {"alpha": alpha, "beta": beta}


@pytest.fixture
def pinned(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fixed time, trace and turn ids (hex 100, 101, ...)."""
    ids = (f"{i:032x}" for i in itertools.count(100))
    monkeypatch.setattr(_wire, "new_turn_id", lambda: next(ids))
    monkeypatch.setattr(_trace, "child", lambda _parent: CHILD_TRACE)
    monkeypatch.setattr("time.time", lambda: NOW_S)
    yield
    _seams.set_router(None)


def every_kind_of_entry(signed: bool) -> tuple[list[Entry], list[bytes], dict[bytes, int]]:
    """A batch of every kind of entry; with ``signed``, all but t3 signed with a secret."""
    entries: list[Entry] = []

    def add(n: int, turn_id: str, tool_name: str, kwargs: dict[str, int], reply: bool) -> None:
        data = _wire.encode_turn(
            turn_id=turn_id,
            agent="alpha",
            tool=tool_name,
            args=[],
            kwargs=kwargs,
            timeout=5.0,
            reply=reply,
            trace=TRACE,
        )
        fields = {b"id": turn_id.encode(), b"m": data}
        if signed and turn_id != "t3":
            fields[b"s"] = _wire.sign(data, SECRETS[1])
        entries.append((f"1-{n}".encode(), fields))

    add(0, "t0", "add", {"a": 1, "b": 2}, True)  # a result
    add(1, "t1", "stream", {"n": 2}, True)  # values, context and a follow-up
    add(2, "t2", "fail", {}, True)  # an error
    add(3, "t3", "forward", {}, False)  # a send to another agent, no reply wanted
    add(4, "t4", "nope", {}, True)  # dead-lettered
    add(5, "t0", "add", {"a": 1, "b": 2}, True)  # a second copy in the batch
    add(6, "t6", "add", {"a": 5, "b": 5}, True)  # committed before ('d')
    add(7, "t7", "add", {"a": 5, "b": 5}, True)  # cancelled before it ran ('c')
    add(8, "t8", "add", {"a": 5, "b": 5}, True)  # delivered too often
    flags = [b"", b"", b"", b"", b"", b"", b"d", b"c", b""]
    return entries, flags, {b"1-8": 9}


def readable(ops: dict[str, Any]) -> list[tuple[str, Any]]:
    """``ops`` with blobs unpacked and only the last line of a traceback (paths vary)."""

    def blob(data: bytes) -> Any:
        value = _wire.unpack(data)
        if isinstance(value, dict) and value.get("traceback"):
            value["traceback"] = value["traceback"].splitlines()[-1]
        return value

    out = dict(ops)
    out["rp"] = [[i, kind, seq, blob(d)] for i, kind, seq, d in ops["rp"]]
    out["fu"] = [[t, _wire.unpack(m), s] for t, m, s in ops["fu"]]
    out["ob"] = [[a, t, _wire.unpack(m), s] for a, t, m, s in ops["ob"]]
    return list(out.items())


def envelope(turn_id: str, agent: str, kwargs: dict[str, int]) -> dict[str, Any]:
    return {
        "v": 1,
        "id": turn_id,
        "agent": agent,
        "tool": "add",
        "args": [],
        "kwargs": kwargs,
        "timeout": 60.0,
        "tags": [],
        "reply": False,
        "ts": NOW_S,
        "trace": CHILD_TRACE,
    }


def refused(index: int, message: str, reason: str) -> list[Any]:
    payload = {"type": "DeadLetteredError", "message": message, "traceback": ""}
    return [index, b"x", 0, {**payload, "reason": reason}]


async def run(agents: dict[str, Agent], signed: bool) -> tuple[Commit, StandIn]:
    settings = WorkerSettings(namespace="ns", secrets=SECRETS if signed else [])
    stand_in = StandIn()
    transport: Any = stand_in
    contexts = ContextStore(ServedAgents(agents, max_active=10), settings)
    metrics = _metrics.Metrics("w1", "test")
    stats = dict.fromkeys(("turns", "batches", "dead_lettered", "failed"), 0)
    runner = BatchRunner(transport, settings, agents, "w1", stats, metrics, contexts)
    _seams.set_router(Router(transport, settings))
    done = await runner.run_turns("alpha", *every_kind_of_entry(signed))
    return done.commit, stand_in


@pytest.mark.usefixtures("pinned")
async def test_a_batch_fills_its_commit_as_the_worker_did(agents: dict[str, Agent]) -> None:
    commit, stand_in = await run(agents, signed=False)

    # Recorded from the worker before Commit, on this batch.
    assert readable(commit.ops()) == [
        ("ack", [b"1-0", b"1-1", b"1-2", b"1-3", b"1-4", b"1-5", b"1-6", b"1-7", b"1-8"]),
        ("tid", ["t0", "t1", "t2", "t3", "t4", "t7", "t8"]),
        (
            "rp",
            [
                [1, b"e", 0, 3],
                [2, b"e", 2, None],
                [
                    3,
                    b"x",
                    0,
                    {"type": "ValueError", "message": "nope", "traceback": "ValueError: nope"},
                ],
                refused(4, "no tool named 'nope' in this worker", "unknown_tool"),
                [
                    5,
                    b"x",
                    0,
                    {
                        "type": "TurnCancelledError",
                        "message": "cancelled before it ran",
                        "traceback": "",
                    },
                ],
                refused(6, "delivered 9 times without completing", "too_many_deliveries"),
            ],
        ),
        ("now", 1_700_000_000_123),
        ("win", 600_000),
        (
            "fu",
            [
                [
                    "00000000000000000000000000000064",
                    envelope("00000000000000000000000000000064", "alpha", {"a": 1, "b": 2}),
                    b"",
                ]
            ],
        ),
        (
            "ob",
            [
                [
                    "beta",
                    "00000000000000000000000000000065",
                    envelope("00000000000000000000000000000065", "beta", {"a": 3, "b": 4}),
                    b"",
                ]
            ],
        ),
        ("st", {"queue": b"\x91\x83\xa7content\xa5noted\xabdescription\xc0\xa2id\xc0"}),
        ("rttl", 3_600_000),
        ("rmax", 10_000),
    ]
    assert commit.reply_streams == [reply_key(t) for t in ("t0", "t1", "t2", "t4", "t7", "t8")]
    assert stand_in.published == [(reply_key("t1"), [(0, b"\x00"), (1, b"\x01")], 3_600_000)]
    assert [(d[b"id"], d[b"reason"]) for d in stand_in.dead] == [
        (b"t4", "unknown_tool"),
        (b"t8", "too_many_deliveries"),
    ]


@pytest.mark.usefixtures("pinned")
async def test_a_signed_batch_signs_its_follow_ups_and_refuses_forged_turns(
    agents: dict[str, Agent],
) -> None:
    commit, stand_in = await run(agents, signed=True)

    ops = readable(commit.ops())
    # Recorded from the worker before Commit, on this batch (turn t3 unsigned).
    assert ops[2] == (
        "rp",
        [
            [1, b"e", 0, 3],
            [2, b"e", 2, None],
            [
                3,
                b"x",
                0,
                {"type": "ValueError", "message": "nope", "traceback": "ValueError: nope"},
            ],
            refused(
                4,
                "unsigned or forged (signature does not match any PYGENTS_SECRETS key)",
                "bad_signature",
            ),
            refused(5, "no tool named 'nope' in this worker", "unknown_tool"),
            [
                6,
                b"x",
                0,
                {
                    "type": "TurnCancelledError",
                    "message": "cancelled before it ran",
                    "traceback": "",
                },
            ],
            refused(7, "delivered 9 times without completing", "too_many_deliveries"),
        ],
    )
    follow_up = "00000000000000000000000000000064"
    assert ops[5] == (
        "fu",
        [
            [
                follow_up,
                envelope(follow_up, "alpha", {"a": 1, "b": 2}),
                b"66db4d10651901e20aeb7af57380782f0c47068e6c990d5d620bff96cc88eae2",
            ]
        ],
    )
    assert ops[6] == ("ob", [])
    assert commit.reply_streams == [
        reply_key(t) for t in ("t0", "t1", "t2", "t3", "t4", "t7", "t8")
    ]
    assert [d[b"reason"] for d in stand_in.dead] == [
        "bad_signature",
        "unknown_tool",
        "too_many_deliveries",
    ]
