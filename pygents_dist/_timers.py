"""Delayed turns: stored per agent until due, then moved into the agent's stream, once.

A delayed turn (``Client.send(..., delay_s=...)`` / ``at=...``, a retry's backoff) waits in
its agent's ``timers`` sorted set (turn id -> due time, Unix ms) with its envelope in the
agent's ``timed`` hash, both under the agent's hash tag; the shared ``due`` index holds each
agent's earliest due time, so a worker finds due agents with one ``ZRANGEBYSCORE`` however
many agents wait. ``lua/move_due.lua`` moves an agent's due turns into its stream in due order
and deletes their timers and payloads in the same call: any number of workers may run it at
once and each turn is appended exactly once; a worker killed at any point loses nothing.

Every worker runs a ``TimerLoop``. It sleeps until the earliest due time it knows (at most a
second) and moves what is due, 100 agents and 1,000 turns per agent per script call. A turn
delayed ahead of every other waiting one writes a ready signal with field ``t``
(``lua/delay.lua``), on which workers wake their loop at once, so an idle worker looks at the
index once a second and a turn is moved within a round trip or so of its due time (see
README "Flow control in workers" for measured figures; a signal lost to the ready stream's
trim costs at most a second).

Times are Redis's clock (``TIME`` in the scripts; ``delay_s`` is counted from Redis's now),
so workers and clients with skewed clocks agree. A due turn whose agent no worker serves
waits in that agent's stream, as a sent turn would; a due turn of an unknown tool is
dead-lettered when it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

from pygents_dist._streams import SIGNALS_CAP
from pygents_dist._transport import Transport

__all__ = [
    "TimerLoop",
    "cancel_delayed",
    "delay_turns",
    "due_agents",
    "due_of",
    "move_due",
    "pending",
    "refuse_on_cluster",
]

_log = logging.getLogger("pygents_dist.timers")
#: Agents per move script call, and due turns moved per agent per call.
_AGENTS_PER_MOVE = 100
_TURNS_PER_AGENT = 1_000
#: A delayed turn: (turn id, due: Unix ms as int, or "+<ms>" from Redis's now, envelope,
#: signature or b"").
type Delayed = tuple[str, int | str, bytes, bytes]


def due_of(delay_s: float | None, at: datetime.datetime | float | None) -> int | str | None:
    """When a turn sent with ``delay_s`` (seconds from now, Redis's clock) or ``at`` (an
    aware datetime, or Unix seconds) is due, as ``delay_turns`` takes it; None for neither.

    Raises:
        ValueError: both given, a negative or non-finite delay, or a naive datetime.
    """
    if delay_s is not None and at is not None:
        raise ValueError("give delay_s or at, not both")
    if delay_s is not None:
        if isinstance(delay_s, bool) or not isinstance(delay_s, int | float):
            raise ValueError(f"delay_s must be a number of seconds, got {delay_s!r}")
        if not math.isfinite(delay_s) or delay_s < 0:
            raise ValueError(f"delay_s must be a finite number of seconds >= 0, got {delay_s!r}")
        return f"+{round(delay_s * 1000)}"
    if at is None:
        return None
    if isinstance(at, datetime.datetime):
        if at.tzinfo is None:
            raise ValueError(
                f"at={at.isoformat()} has no time zone: give an aware datetime "
                "(datetime.now(UTC) + ...) or Unix seconds"
            )
        return round(at.timestamp() * 1000)
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        raise ValueError(f"at must be an aware datetime or Unix seconds, got {at!r}")
    return round(at * 1000)


async def delay_turns(transport: Transport, agent: str, turns: Sequence[Delayed]) -> list[int]:
    """Store ``turns`` of ``agent`` until due (``lua/delay.lua``); their due times (Unix ms).

    When this returns the turns are in Redis. Storing a turn id again replaces it.

    Raises:
        NotImplementedError: Redis is a cluster (not yet: the script writes the shared due
            index beside the agent's keys).
    """
    await refuse_on_cluster(transport, "delayed turns")
    keys = transport.keys
    args: list[Any] = [agent, SIGNALS_CAP]
    for turn_id, due, data, signature in turns:
        args += (turn_id, due if isinstance(due, str) else str(int(due)), data, signature)
    got = await transport.scripts.run_one(
        "delay", [keys.timers(agent), keys.timed(agent), keys.due, keys.ready], args
    )
    return [int(x) for x in got]


async def refuse_on_cluster(transport: Transport, what: str) -> None:
    """Raise ``NotImplementedError`` naming ``what`` when Redis is a cluster: the delayed
    turn, hold and schedule scripts write shared keys (the due and schedule indexes, the
    ready stream) beside an agent's, which a cluster refuses (CROSSSLOT)."""
    if await transport.is_cluster():
        raise NotImplementedError(
            f"{what} are not supported on a Redis Cluster yet (they need a single Redis "
            "node); rate and concurrency limits are"
        )


async def cancel_delayed(transport: Transport, agent: str, turn_id: str) -> bool:
    """Drop a delayed turn before it is due; False when it was not waiting (already moved
    to the agent's stream: cancel it as a turn, with ``Client.cancel``)."""
    keys = transport.keys
    got = await transport.scripts.run_one(
        "cancel_delayed", [keys.timers(agent), keys.timed(agent), keys.due], [agent, turn_id]
    )
    return bool(got)


async def due_agents(transport: Transport, now_ms: int, count: int) -> list[str]:
    """Up to ``count`` agents with a delayed turn due by ``now_ms`` (Unix ms)."""
    command = ("ZRANGEBYSCORE", transport.keys.due, "-inf", now_ms, "LIMIT", 0, count)
    (raw,) = await transport.execute([command], "timers")
    return [bytes(name).decode() for name in raw]


async def move_due(transport: Transport, agents: Sequence[str]) -> int:
    """Move the due turns of ``agents`` into their streams (``lua/move_due.lua``); how many
    were moved (by this call: another worker's may have moved some first)."""
    keys = transport.keys
    script_keys = [keys.ready, keys.due]
    for agent in agents:
        record = keys.for_agent(agent)
        script_keys += (
            keys.timers(agent),
            keys.timed(agent),
            record.turns,
            record.owner,
            record.state,
        )
    args: list[Any] = [SIGNALS_CAP, _TURNS_PER_AGENT, *agents]
    got = await transport.scripts.run_one("move_due", script_keys, args)
    return sum(int(n) for n in got)


async def pending(transport: Transport, agent: str) -> list[tuple[str, int]]:
    """The agent's delayed turns not yet moved: ``(turn id, due Unix ms)``, earliest first
    (a retry's backoff shows as ``!hold``)."""
    command = ("ZRANGE", transport.keys.timers(agent), 0, -1, "WITHSCORES")
    (raw,) = await transport.execute([command], "timers")
    return [(bytes(raw[i]).decode(), int(float(raw[i + 1]))) for i in range(0, len(raw), 2)]


async def redis_now_ms(transport: Transport) -> int:
    """Redis's clock, Unix ms."""
    ((seconds, micros),) = await transport.execute([("TIME",)], "time")
    return int(seconds) * 1000 + int(micros) // 1000


class TimerLoop:
    """A worker's loop moving due turns of every agent (any worker moves any agent's:
    the script makes it idempotent).

    Args:
        poll_s: the longest sleep between looks at the due index (a turn delayed ahead of
            every other wakes the loop at once: ``wake``).
    """

    def __init__(self, transport: Transport, poll_s: float = 1.0) -> None:
        self._transport = transport
        self._poll_s = poll_s
        self._woken = asyncio.Event()
        #: Turns this worker moved.
        self.moved = 0
        self._offset_ms = 0  # Redis's clock minus ours

    def _now_ms(self) -> int:
        return int(time.time() * 1000) + self._offset_ms

    async def run(self) -> None:
        """Move due turns until cancelled."""
        backoff_s = 0.05
        with contextlib.suppress(Exception):  # our own clock until Redis answers
            self._offset_ms = await redis_now_ms(self._transport) - int(time.time() * 1000)
        while True:
            try:
                wait_s = await self.once()
                backoff_s = 0.05
            except Exception as exc:  # never let the loop die: due turns would wait forever
                _log.warning("timers: %s; retrying in %.2fs", exc, backoff_s)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 2.0)
                continue
            if wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self._woken.wait()
            self._woken.clear()

    def wake(self) -> None:
        """Look at the due index now (a ready signal said a turn is due sooner)."""
        self._woken.set()

    async def once(self) -> float:
        """Move what is due now; the seconds until the next look."""
        transport = self._transport
        now_ms = self._now_ms()
        agents = await due_agents(transport, now_ms, _AGENTS_PER_MOVE)
        if agents:
            self.moved += await move_due(transport, agents)
            if len(agents) == _AGENTS_PER_MOVE:
                return 0.0  # more are due: go on at once
        (first,) = await transport.execute(
            [("ZRANGE", transport.keys.due, 0, 0, "WITHSCORES")], "timers"
        )
        if not first:
            return self._poll_s
        until_s = (float(first[1]) - self._now_ms()) / 1000
        # A due time already past (another worker is moving it, or our clock estimate is
        # behind Redis's) is looked at again after a short pause, not in a busy loop.
        return min(self._poll_s, max(until_s, 0.002))
