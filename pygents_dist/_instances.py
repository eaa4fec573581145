"""Instances of agent kinds as Redis knows them: the per-kind index, the cap on a kind's
instances, and the expiry of idle ones.

Each kind has an index (``Keys.instances``: a sorted set, instance name -> when a worker last
took it, in ms), on the kind's own hash tag, so ``pygents status`` counts and pages a kind's
instances without scanning millions of keys. A worker that takes an instance for the first
time (its lease fence is 1: Redis held nothing of it) adds it (``NewInstances``, a few
milliseconds later, batched; or ``admit`` first, under a cap); every take re-scores the
instances already there in its own round trip (``touch_calls``; a take that finds nothing to
do adds nothing). The index costs Redis about 60 B per instance. A worker killed in the
milliseconds between taking a new instance and adding it leaves it out of the index until
its next take.

- **Cap** (``WorkerSettings.max_instances``): a new instance of a capped kind is admitted
  (``admit``: counted, atomically, if the kind has room) before its first batch runs; past
  the cap its turns are dead-lettered (``instance_limit``) and it is forgotten again. The
  cap is never exceeded.
- **Idle expiry** (``WorkerSettings.instance_expiry_s``): ``expire_idle`` forgets the
  instances not taken for that long (up to 10,000 per kind per maintenance round), unless a
  worker holds one or turns wait in its stream (it is then looked at again one expiry
  later). Forgetting deletes every key of the instance; its next turn starts it from its
  kind's context again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from pygents.registry import split_instance
from pygents_dist import _control
from pygents_dist._scripts import COMMAND, ScriptCall
from pygents_dist._transport import Transport
from pygents_dist.errors import ConnectionLostError

__all__ = [
    "KindSummary",
    "NewInstances",
    "admit",
    "expire_idle",
    "kinds",
    "page",
    "summaries",
    "touch_calls",
]

_log = logging.getLogger("pygents_dist.worker")
#: Seconds a new instance waits at most before it is added to its kind's index.
_FLUSH_S = 0.005
#: Candidates ``expire_idle`` looks at per round trip, and most round trips per call.
_EXPIRY_BATCH = 1000
_EXPIRY_BATCHES = 10
_SCAN_COUNT = 500


def touch_calls(transport: Transport, agents: Iterable[str]) -> list[ScriptCall]:
    """The calls re-scoring the instances among ``agents`` that are in their kind's index as
    taken now (none without any): one ``ZADD XX`` per kind, in the take's round trip."""
    by_kind: dict[str, list[Any]] = {}
    now_ms = int(time.time() * 1000)
    for agent in agents:
        parts = split_instance(agent)
        if parts is not None:
            by_kind.setdefault(parts[0], []).extend((now_ms, agent))
    index = transport.keys.instances
    return [(COMMAND, ["ZADD", index(kind), "XX", *scored], []) for kind, scored in by_kind.items()]


class NewInstances:
    """Adds the instances a worker took for the first time to their kinds' indexes, batched:
    one ``ZADD NX`` per kind every ``_FLUSH_S`` while there are any (a new instance's first
    turn does not wait for it)."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._waiting: dict[str, list[Any]] = {}
        self._flusher: asyncio.Task[None] | None = None

    def add(self, instance: str) -> None:
        """Add ``instance`` (``"<kind>/<key>"``) to its kind's index soon."""
        kind = instance.partition("/")[0]
        self._waiting.setdefault(kind, []).extend((int(time.time() * 1000), instance))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush(), name="index")

    async def _flush(self) -> None:
        try:
            while self._waiting:
                await asyncio.sleep(_FLUSH_S)
                waiting, self._waiting = self._waiting, {}
                index = self._transport.keys.instances
                commands = [
                    ("ZADD", index(kind), "NX", *scored) for kind, scored in waiting.items()
                ]
                try:
                    await self._transport.execute(commands, "instances")
                except ConnectionLostError as exc:  # their next take adds them
                    _log.warning("instance index not updated: %s", exc)
        finally:
            self._flusher = None


async def admit(transport: Transport, instance: str, cap: int) -> bool:
    """Whether the newly taken ``instance`` fits under its kind's ``cap`` (it is then
    counted in the kind's index, atomically)."""
    kind = instance.partition("/")[0]
    now_ms = int(time.time() * 1000)
    args = [cap, now_ms, instance]
    return bool(await transport.scripts.run_one("admit", [transport.keys.instances(kind)], args))


async def kinds(transport: Transport) -> list[str]:
    """Every kind with an instance index, sorted."""
    keys = transport.keys
    start, end = len(keys.base) + 2, -len("}:instances")
    raw = await transport.scan(keys.instances_pattern, _SCAN_COUNT)  # every primary's
    return sorted({bytes(key)[start:end].decode(errors="replace") for key in raw})


class KindSummary(NamedTuple):
    """A kind's instances as ``pygents status`` shows them."""

    kind: str
    #: Instances Redis holds (in the kind's index).
    instances: int
    #: Instances a worker holds a lease on now.
    active: int
    #: Instances with turns queued or in flight.
    queued: int
    #: When the least recently taken instance was last taken (ms since the epoch), or None.
    oldest_taken_ms: int | None


async def summaries(transport: Transport, kinds: Sequence[str]) -> list[KindSummary]:
    """A summary per kind. Counting the queued instances scans the keyspace (a second or
    two per million keys): an operator's command, not a worker's."""
    keys = transport.keys
    commands: list[tuple[Any, ...]] = [
        ("ZRANGE", keys.owned, int(time.time() * 1000), "+inf", "BYSCORE")
    ]
    for kind in kinds:
        commands += [
            ("ZCARD", keys.instances(kind)),
            ("ZRANGE", keys.instances(kind), 0, 0, "WITHSCORES"),
        ]
    raw = await transport.execute(commands, "instances")
    held = [bytes(name).decode(errors="replace").partition("/")[0] for name in raw[0]]
    out = []
    for i, kind in enumerate(kinds):
        count, oldest = raw[1 + 2 * i], raw[2 + 2 * i]
        out.append(
            KindSummary(
                kind,
                int(count),
                held.count(kind),
                await _queued(transport, kind),
                int(float(oldest[1])) if oldest else None,  # [name, score]
            )
        )
    return out


async def _queued(transport: Transport, kind: str) -> int:
    """Instances of ``kind`` whose stream exists (turns queued or in flight)."""
    pattern = transport.keys.instance_turns_pattern(kind)
    raw = await transport.scan(pattern, 1000, kind="stream")  # every primary's
    return len({bytes(key) for key in raw})


async def page(transport: Transport, kind: str, offset: int, count: int) -> list[tuple[str, int]]:
    """``count`` of the kind's instances from ``offset``, least recently taken first:
    ``(name, when it was last taken, in ms)``."""
    command = ("ZRANGE", transport.keys.instances(kind), offset, offset + count - 1, "WITHSCORES")
    (raw,) = await transport.execute([command], "instances")
    return [
        (bytes(raw[i]).decode(errors="replace"), int(float(raw[i + 1])))
        for i in range(0, len(raw), 2)
    ]


async def expire_idle(transport: Transport, kind: str, idle_ms: int) -> int:
    """Forget the kind's instances not taken for ``idle_ms``, up to ``_EXPIRY_BATCHES``
    batches of ``_EXPIRY_BATCH`` (about 20 ms of Redis each); how many were forgotten."""
    index = transport.keys.instances(kind)
    forgotten = 0
    for _batch in range(_EXPIRY_BATCHES):
        now_ms = int(time.time() * 1000)
        command = ("ZRANGE", index, "-inf", now_ms - idle_ms, "BYSCORE", "LIMIT", 0, _EXPIRY_BATCH)
        (raw,) = await transport.execute([command], "instances")
        names = [bytes(n).decode(errors="replace") for n in raw]
        outcomes = await _control.forget_many(transport, names)
        busy: list[Any] = []
        for name, outcome in zip(names, outcomes, strict=True):
            if outcome == _control.ForgetOutcome.FORGOTTEN:
                forgotten += 1
            else:  # held or with turns waiting: look again one expiry from now
                busy += (now_ms, name)
        if busy:
            await transport.execute([("ZADD", index, "XX", *busy)], "instances")
        if len(names) < _EXPIRY_BATCH:
            break
    return forgotten
