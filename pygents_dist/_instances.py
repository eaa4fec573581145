"""Instances of agent kinds as Redis knows them: the per-kind index, the cap on a kind's
instances, and the expiry of idle ones.

Each kind has an index (``Keys.instances``: a sorted set, instance name -> when a worker last
took it, in ms), on the kind's own hash tag. A take of instances adds or re-scores them in the
same round trip (``touch_calls``), so the index is how ``pygents status`` counts and pages a
kind's instances without scanning millions of keys. The index costs Redis about 60 B per
instance.

- **Cap** (``WorkerSettings.max_instances``): a worker that takes a kind's instance for the
  first time (its lease fence is 1: Redis had nothing of it) checks the kind's count with
  ``admit``; past the cap the instance's turns are dead-lettered (``instance_limit``) and the
  instance is forgotten again. The cap is never exceeded; close to it, instances activated at
  the same moment may be refused a little early (each counts while it is checked).
- **Idle expiry** (``WorkerSettings.instance_expiry_s``): ``expire_idle`` forgets the
  instances not taken for that long (up to 10,000 per kind per maintenance round), unless a
  worker holds one or turns wait in its stream (it is then looked at again one expiry
  later). Forgetting deletes every key of the instance; its next turn starts it from its
  kind's context again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from pygents.registry import split_instance
from pygents_dist import _control
from pygents_dist._scripts import COMMAND, ScriptCall
from pygents_dist._transport import Transport

__all__ = ["KindSummary", "admit", "expire_idle", "kinds", "page", "summaries", "touch_calls"]

#: Candidates ``expire_idle`` looks at per round trip, and most round trips per call.
_EXPIRY_BATCH = 1000
_EXPIRY_BATCHES = 10
_SCAN_COUNT = 500


def touch_calls(transport: Transport, agents: Iterable[str]) -> list[ScriptCall]:
    """The calls recording the instances among ``agents`` as taken now (none without any):
    one ``ZADD`` per kind, in the take's round trip."""
    by_kind: dict[str, list[Any]] = {}
    now_ms = int(time.time() * 1000)
    for agent in agents:
        parts = split_instance(agent)
        if parts is not None:
            by_kind.setdefault(parts[0], []).extend((now_ms, agent))
    index = transport.keys.instances
    return [(COMMAND, ["ZADD", index(kind), *scored], []) for kind, scored in by_kind.items()]


async def admit(transport: Transport, instance: str, cap: int) -> bool:
    """Whether the newly taken ``instance`` fits under its kind's ``cap`` (it is then
    counted); when it does not, it leaves the index again."""
    kind = instance.partition("/")[0]
    return bool(
        await transport.scripts.run_one("admit", [transport.keys.instances(kind)], [cap, instance])
    )


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
