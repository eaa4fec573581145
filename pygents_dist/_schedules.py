"""Schedules in Redis: periodic turns fired exactly once per tick, whatever the workers do.

A schedule lives under its agent's hash tag: its spec in the agent's ``schedules`` hash
(name -> msgpack: the ``Schedule`` as ``to_dict`` gives it, the tool, arguments, timeout,
tags, hooks and where it was declared) and its next tick in the agent's ``ticks`` hash (name
-> Unix ms; absent while paused). The shared ``schedules`` index (``"<agent> <name>"`` ->
next tick, ``+inf`` while paused) lets workers find due ticks without scanning.

Every worker runs a ``ScheduleLoop``. A due tick is fired by ``lua/fire.lua``: compare-and-
set on the tick the worker read, the next tick stored and the turn appended in one call, so
one tick fires once however many workers race for it, and a worker dying at any point fires
nothing twice and loses nothing (the tick stays due for the others). The next tick is
computed in Python (cron in Lua would be a second implementation): ``Schedule.next_after_s``.
The turn's id is ``sched.<name>.<tick ms>``, so even a copy sent twice would be dropped by id.

Missed ticks: a tick found more than ``MISSED_AFTER_MS`` late (no worker ran, or all were
stopped) follows the schedule's ``Missed`` policy: ``SKIP`` fires none of the missed ticks,
``RUN_ONCE`` fires one turn for them all; either way the next tick is the first after now.
A tick less late than that fires (late ticks of a busy Redis are caught up one by one).

Schedules declared in the agents' module (``agent.schedule(...)``) are written by every
worker at start, keeping the stored tick (and a pause) when the spec did not change.
Schedules added with ``Client.add_schedule`` or ``pygents schedules add`` stay until removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pygents.agent import Agent
from pygents.registry import HookRegistry, split_instance
from pygents.schedule import Missed, Schedule
from pygents_dist import _directory, _timers, _trace, _wire
from pygents_dist._streams import SIGNALS_CAP
from pygents_dist._transport import Transport

__all__ = [
    "MISSED_AFTER_MS",
    "ScheduleInfo",
    "ScheduleLoop",
    "check_schedule_name",
    "declare",
    "listing",
    "pause",
    "put",
    "remove",
    "resume",
]

_log = logging.getLogger("pygents_dist.schedules")
#: A tick found later than this is a missed tick (its schedule's ``Missed`` policy applies).
MISSED_AFTER_MS = 5_000
#: Due ticks a worker reads per look at the index.
_TICKS_PER_LOOK = 200
_NAME = re.compile(r"^[^{}\s]{1,200}$")


def check_schedule_name(name: str) -> str:
    """``name`` if a schedule may have it (1-200 characters, no braces or whitespace).

    Raises:
        ValueError: it may not.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"schedule name {name!r}: use 1-200 characters without braces or whitespace"
        )
    return name


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A stored schedule, as ``Client.schedules()`` and ``pygents schedules list`` show it.

    Attributes:
        agent: the agent its turns go to.
        name: its name (unique per agent).
        schedule: its spec (``"every 30s"`` or a cron expression), UTC.
        missed: its policy for missed ticks (``skip`` / ``run_once``).
        tool: the tool of its turns, with ``args`` and ``kwargs``.
        next_due: the next tick (UTC), or None while paused.
        source: ``module`` (declared in the agents' module) or ``client``.
    """

    agent: str
    name: str
    schedule: str
    missed: str
    tool: str
    args: list[Any]
    kwargs: dict[str, Any]
    next_due: datetime.datetime | None
    source: str

    @property
    def paused(self) -> bool:
        """Whether it is paused (no tick fires until it is resumed)."""
        return self.next_due is None

    def as_dict(self) -> dict[str, Any]:
        """Plain data (``next_due`` as ISO 8601, or None)."""
        out = dataclasses.asdict(self)
        out["next_due"] = None if self.next_due is None else self.next_due.isoformat()
        out["paused"] = self.paused
        return out


def spec(
    schedule: Schedule,
    tool: str,
    *,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    timeout: float = 60.0,
    tags: Sequence[str] = (),
    hooks: Mapping[str, list[str]] | None = None,
    source: str = "client",
) -> dict[str, Any]:
    """A schedule's stored spec (see the module docstring)."""
    return {
        "schedule": schedule.to_dict(),
        "tool": tool,
        "args": list(args),
        "kwargs": dict(kwargs or {}),
        "timeout": float(timeout),
        "tags": sorted(tags),
        "hooks": dict(hooks or {}),
        "source": source,
    }


async def tools_of(transport: Transport, agent: str) -> list[str] | None:
    """The tool names ``agent`` (or its kind, for an instance) was declared with; None when
    its description cannot say."""
    parts = split_instance(agent)
    blob = await _directory.description(transport, agent if parts is None else parts[0])
    if blob is None:
        return None
    try:
        return [str(t) for t in _wire.unpack(blob).get("tools") or []]
    except Exception:  # an unreadable description: let the worker judge
        return None


def _member(agent: str, name: str) -> str:
    return f"{agent} {name}"


def _keys(transport: Transport, agent: str) -> list[str]:
    keys = transport.keys
    return [keys.schedules(agent), keys.ticks(agent), keys.schedule_index]


async def _redis_now_ms(transport: Transport) -> int:
    ((seconds, micros),) = await transport.execute([("TIME",)], "time")
    return int(seconds) * 1000 + int(micros) // 1000


def _next_ms(schedule: Schedule, after_ms: int) -> int:
    return round(schedule.next_after_s(after_ms / 1000) * 1000)


async def put(
    transport: Transport,
    agent: str,
    name: str,
    stored: dict[str, Any],
    *,
    paused: bool = False,
    keep_same: bool = False,
) -> bool:
    """Store a schedule with its first tick after now (or paused); with ``keep_same`` an
    unchanged spec keeps its stored tick and pause. True when written."""
    check_schedule_name(name)
    await _timers.refuse_on_cluster(transport, "schedules")
    schedule = Schedule.from_dict(stored["schedule"])
    data = _wire.pack(stored)
    next_tick = "" if paused else str(_next_ms(schedule, await _redis_now_ms(transport)))
    args = [name, data, next_tick, _member(agent, name), "1" if keep_same else "0", SIGNALS_CAP]
    keys = [*_keys(transport, agent), transport.keys.ready]
    return bool(await transport.scripts.run_one("schedule_put", keys, args))


async def declare(transport: Transport, agents: Iterable[Agent]) -> int:
    """Write the schedules the agents' module declares (``agent.schedules``), keeping the
    tick and pause of those that did not change; how many were written. (On a Redis
    Cluster, where schedules are not supported yet, a module's schedules are logged and
    left out.)"""
    written = 0
    if await transport.is_cluster():
        named = [f"{a.name}:{n}" for a in agents for n in a.schedules]
        if named:
            _log.error("schedules need a single Redis node; not firing %s", ", ".join(named))
        return 0
    for agent in agents:
        for name, entry in agent.schedules.items():
            turn = entry.turn
            stored = spec(
                entry.schedule,
                turn.tool.__name__,
                args=turn.args,
                kwargs=turn.kwargs,
                timeout=turn.timeout,
                tags=sorted(turn.tags),
                hooks=HookRegistry.names_by_type(turn.hooks),
                source="module",
            )
            written += await put(transport, agent.name, name, stored, keep_same=True)
    return written


async def _stored(transport: Transport, agent: str, name: str) -> dict[str, Any] | None:
    (raw,) = await transport.execute([("HGET", transport.keys.schedules(agent), name)], "sched")
    if raw is None:
        return None
    stored: dict[str, Any] = _wire.unpack(raw)
    return stored


async def pause(transport: Transport, agent: str, name: str) -> bool:
    """Pause a schedule (no tick fires until ``resume``); False if there is none."""
    stored = await _stored(transport, agent, name)
    if stored is None:
        return False
    await put(transport, agent, name, stored, paused=True)
    return True


async def resume(transport: Transport, agent: str, name: str) -> bool:
    """Resume a paused schedule from the first tick after now (ticks missed while paused
    do not fire); False if there is none."""
    stored = await _stored(transport, agent, name)
    if stored is None:
        return False
    await put(transport, agent, name, stored)
    return True


async def remove(transport: Transport, agent: str, name: str) -> bool:
    """Remove a schedule; False if there was none. (A module's schedule comes back at the
    next worker start unless it is removed from the module too.)"""
    args = [name, _member(agent, name)]
    return bool(await transport.scripts.run_one("schedule_rm", _keys(transport, agent), args))


async def listing(transport: Transport, agent: str | None = None) -> list[ScheduleInfo]:
    """Every stored schedule (of ``agent``), by next tick (paused ones last)."""
    (raw,) = await transport.execute(
        [("ZRANGE", transport.keys.schedule_index, 0, -1, "WITHSCORES")], "sched"
    )
    members = [(bytes(raw[i]).decode(), float(raw[i + 1])) for i in range(0, len(raw), 2)]
    pairs = [tuple(m.split(" ", 1)) for m, _score in members]
    if agent is not None:
        pairs = [p for p in pairs if p[0] == agent]
    keys = transport.keys
    out: list[ScheduleInfo] = []
    for start in range(0, len(pairs), 1000):
        chunk = pairs[start : start + 1000]
        commands: list[tuple[Any, ...]] = []
        for who, name in chunk:
            commands += [("HGET", keys.schedules(who), name), ("HGET", keys.ticks(who), name)]
        got = await transport.execute(commands, "sched")
        for i, (who, name) in enumerate(chunk):
            raw_spec, tick = got[2 * i], got[2 * i + 1]
            if raw_spec is None:
                continue
            stored = _wire.unpack(raw_spec)
            out.append(
                ScheduleInfo(
                    agent=who,
                    name=name,
                    schedule=str(stored["schedule"]["spec"]),
                    missed=str(stored["schedule"].get("missed", "skip")),
                    tool=str(stored["tool"]),
                    args=list(stored.get("args") or []),
                    kwargs=dict(stored.get("kwargs") or {}),
                    next_due=None
                    if tick is None
                    else datetime.datetime.fromtimestamp(int(tick) / 1000, datetime.UTC),
                    source=str(stored.get("source", "client")),
                )
            )
    return out


class ScheduleLoop:
    """A worker's loop firing every due schedule tick (any agent's: ``lua/fire.lua`` makes
    racing workers fire each tick once).

    Args:
        secret: the key turns are signed with (None: unsigned).
        poll_s: the longest sleep between looks at the index (a schedule added with a tick
            before every other wakes the loop at once: ``wake``).
    """

    def __init__(
        self,
        transport: Transport,
        limits: _wire.Limits,
        secret: bytes | None,
        poll_s: float = 1.0,
    ) -> None:
        self._transport = transport
        self._woken = asyncio.Event()
        self._limits = limits
        self._secret = secret
        self._poll_s = poll_s
        self._offset_ms = 0  # Redis's clock minus ours
        self._schedules: dict[bytes, Schedule] = {}  # parsed specs, by stored bytes
        #: Ticks this worker fired (turns appended) and skipped (missed, policy SKIP).
        self.fired = 0
        self.skipped = 0

    def _now_ms(self) -> int:
        return int(time.time() * 1000) + self._offset_ms

    async def run(self) -> None:
        """Fire due ticks until cancelled."""
        backoff_s = 0.05
        with contextlib.suppress(Exception):  # our own clock until Redis answers
            self._offset_ms = await _redis_now_ms(self._transport) - int(time.time() * 1000)
        while True:
            try:
                wait_s = await self.once()
                backoff_s = 0.05
            except Exception as exc:  # never let the loop die: schedules would stop
                _log.warning("schedules: %s; retrying in %.2fs", exc, backoff_s)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 2.0)
                continue
            if wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self._woken.wait()
            self._woken.clear()

    def wake(self) -> None:
        """Look at the index now (a ready signal said a tick is due sooner)."""
        self._woken.set()

    async def once(self) -> float:
        """Fire what is due now; the seconds until the next look."""
        transport, keys = self._transport, self._transport.keys
        now_ms = self._now_ms()
        (raw,) = await transport.execute(
            [
                (
                    "ZRANGEBYSCORE",
                    keys.schedule_index,
                    "-inf",
                    now_ms,
                    "LIMIT",
                    0,
                    _TICKS_PER_LOOK,
                )
            ],
            "sched",
        )
        due = [bytes(m).decode().split(" ", 1) for m in raw]
        if due:
            commands: list[tuple[Any, ...]] = []
            for agent, name in due:
                commands += [
                    ("HGET", keys.schedules(agent), name),
                    ("HGET", keys.ticks(agent), name),
                ]
            got = await transport.execute(commands, "sched")
            calls = []
            for i, (agent, name) in enumerate(due):
                call = self._fire_call(agent, name, got[2 * i], got[2 * i + 1], now_ms)
                if call is not None:
                    calls.append(call)
            if calls:
                results = await transport.scripts.run(calls, "fire")
                for (_name, _keys, args), result in zip(calls, results, strict=True):
                    if result == 1:
                        if args[3] == "1":
                            self.fired += 1
                        else:
                            self.skipped += 1
            if not calls:  # fired by another worker meanwhile, or an unreadable spec
                return min(self._poll_s, 0.1)  # (not a busy loop)
            if len(due) == _TICKS_PER_LOOK:
                return 0.0
        (first,) = await transport.execute(
            [("ZRANGE", keys.schedule_index, 0, 0, "WITHSCORES")], "sched"
        )
        if not first or first[1] in (b"inf", b"+inf"):
            return self._poll_s
        until_s = (float(first[1]) - self._now_ms()) / 1000
        return min(self._poll_s, max(until_s, 0.002))

    def _fire_call(
        self, agent: str, name: str, raw_spec: bytes | None, tick: bytes | None, now_ms: int
    ) -> tuple[str, list[Any], list[Any]] | None:
        """The ``lua/fire.lua`` call firing (or skipping) the tick ``tick`` of a schedule;
        None when it is not due (paused, removed: the script drops a removed one's entry)."""
        keys = self._transport.keys
        record = keys.for_agent(agent)
        script_keys = [
            keys.ticks(agent),
            keys.schedules(agent),
            record.turns,
            record.owner,
            keys.ready,
            keys.schedule_index,
        ]
        member = _member(agent, name)
        if raw_spec is None:  # removed: the script drops its index entry
            return (
                "fire",
                script_keys,
                [name, "", "0", "0", agent, SIGNALS_CAP, "", "", "", member],
            )
        if tick is None:
            return None  # paused meanwhile
        tick_ms = int(tick)
        if tick_ms > now_ms:
            return None
        try:
            stored = _wire.unpack(raw_spec)
            schedule = self._schedules.get(raw_spec)
            if schedule is None:
                schedule = Schedule.from_dict(stored["schedule"])
                if len(self._schedules) > 100_000:
                    self._schedules.clear()
                self._schedules[raw_spec] = schedule
        except Exception as exc:  # a spec no worker can read: leave it, say so
            _log.error("schedule %s of %s cannot be read: %s", name, agent, exc)
            return None
        fire = True
        if now_ms - tick_ms > MISSED_AFTER_MS:  # missed: no worker ran at its time
            fire = schedule.missed is Missed.RUN_ONCE
            next_ms = _next_ms(schedule, now_ms)
        else:
            next_ms = _next_ms(schedule, tick_ms)
        turn_id, data, signature = f"sched.{name}.{tick_ms}", b"", b""
        if fire:
            turn_id, data, signature = _wire.seal_turn(
                agent=agent,
                tool=stored["tool"],
                args=stored.get("args") or [],
                kwargs=stored.get("kwargs") or {},
                timeout=float(stored.get("timeout", 60.0)),
                tags=stored.get("tags") or [],
                hooks=stored.get("hooks") or {},
                trace=_trace.new_traceparent(),
                limits=self._limits,
                secret=self._secret,
                turn_id=turn_id,
            )
        args = [
            name,
            tick.decode(),
            str(next_ms),
            "1" if fire else "0",
            agent,
            SIGNALS_CAP,
            turn_id,
            data,
            signature,
            member,
        ]
        return ("fire", script_keys, args)
