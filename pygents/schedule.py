"""Schedules: periodic turns. ``Schedule`` says when (every N seconds, or a five-field cron
expression, in UTC), ``Missed`` what to do about ticks missed while nothing ran, and
``ScheduleEntry`` ties a named schedule to the turn it puts on an agent at each tick.

All three are plain data (``to_dict`` / ``from_dict``), so a runtime can store them (as
``pygents_dist`` does in Redis). Attaching a schedule to an agent and firing it in process
are the agent's (``Agent.schedule``) and ``pygents._timers``'s business.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pygents import _cron

if TYPE_CHECKING:
    from pygents.turn import Turn

__all__ = ["Missed", "Schedule", "ScheduleEntry", "ScheduleKind"]


class Missed(enum.StrEnum):
    """What a schedule does about ticks missed while nothing ran.

    A tick is missed when it came due while its agent was not running or was paused (in
    process: no ``agent.run()`` active, or held at the pause gate; in workers: no worker
    ran). Ticks that come due while the agent runs are never missed: each puts one turn,
    even if the agent is busy with a long turn at that moment (the turns wait in order).
    """

    SKIP = "skip"
    """Drop missed ticks: the next turn is the next tick's."""
    RUN_ONCE = "run_once"
    """Put one turn for all missed ticks together (when the agent runs again), then go on."""


class ScheduleKind(enum.StrEnum):
    """How a schedule's ticks are defined."""

    EVERY = "every"
    CRON = "cron"


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a periodic turn fires, in UTC. Make one with ``Schedule.every`` or ``Schedule.cron``.

    ``every(s)`` ticks at the multiples of ``s`` seconds since the Unix epoch (so every
    process computes the same ticks, whenever it started); ``cron(expr)`` ticks at the start
    of each matching minute. UTC only: there is no time zone option.

    ``str(schedule)`` is its spec: ``"every 30s"`` or the cron expression;
    ``Schedule.parse`` reads it back.

    Attributes:
        kind: ``ScheduleKind.EVERY`` or ``ScheduleKind.CRON``.
        every_s: the period of an ``every`` schedule (seconds), else None.
        expr: the expression of a ``cron`` schedule, else None.
        missed: the policy for missed ticks.
    """

    kind: ScheduleKind
    every_s: float | None = None
    expr: str | None = None
    missed: Missed = Missed.SKIP
    _compiled: _cron.CronSpec | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "missed", _missed(self.missed))
        if self.kind is ScheduleKind.CRON:
            if self.expr is None or self.every_s is not None:
                raise ValueError("a cron Schedule has an expr and no every_s")
            if self._compiled is None:
                object.__setattr__(self, "_compiled", _cron.parse(self.expr))
        elif self.kind is ScheduleKind.EVERY:
            seconds = self.every_s
            if (
                not isinstance(seconds, int | float)
                or isinstance(seconds, bool)
                or not math.isfinite(seconds)
                or seconds <= 0
            ):
                raise ValueError(f"Schedule.every: seconds must be a number > 0, got {seconds!r}")
            if self.expr is not None:
                raise ValueError("an every Schedule has every_s and no expr")
        else:
            raise ValueError(f"Schedule.kind must be a ScheduleKind, got {self.kind!r}")

    @classmethod
    def every(cls, seconds: float, *, missed: Missed = Missed.SKIP) -> Schedule:
        """A tick every ``seconds`` (> 0), at the multiples of it since the epoch.

        Raises:
            ValueError: ``seconds`` is not a finite number > 0, or ``missed`` is unknown.
        """
        return cls(ScheduleKind.EVERY, every_s=seconds, missed=missed)

    @classmethod
    def cron(cls, expr: str, *, missed: Missed = Missed.SKIP) -> Schedule:
        """A tick at each minute matching the five-field cron ``expr`` (UTC).

        Fields: minute, hour, day-of-month, month, day-of-week; each ``*``, a value, ``a-b``,
        ``*/n``, ``a-b/n``, ``a/n`` or a comma list; month and day names (``jan``, ``mon``)
        and the ``@hourly``-style macros accepted. Day-of-month and day-of-week combine as in
        Vixie cron (either starts with ``*``: both must match; else either may).

        Raises:
            ValueError: the expression is malformed or never fires (the message names the
                field), or ``missed`` is unknown.
        """
        return cls(ScheduleKind.CRON, expr=expr, missed=missed)

    @classmethod
    def parse(cls, spec: str, *, missed: Missed = Missed.SKIP) -> Schedule:
        """The schedule of ``str(schedule)``: ``"every <seconds>s"`` or a cron expression.

        Raises:
            ValueError: as ``every`` or ``cron``.
        """
        text = spec.strip()
        if text.startswith("every "):
            number = text.removeprefix("every ").strip().removesuffix("s")
            try:
                seconds = float(number)
            except ValueError:
                raise ValueError(f"schedule {spec!r}: expected 'every <seconds>s'") from None
            return cls.every(seconds, missed=missed)
        return cls.cron(text, missed=missed)

    def __str__(self) -> str:
        if self.kind is ScheduleKind.EVERY:
            return f"every {self.every_s:g}s"
        return str(self.expr)

    def next_after_s(self, t_s: float) -> float:
        """The first tick strictly after ``t_s`` (seconds since the epoch), as epoch seconds."""
        every_s = self.every_s
        if every_s is not None:
            # Ticks are k * every_s. A t_s that is (within float rounding) a tick itself, as
            # the previous tick is, must give the next k: floor() alone may land on k - 1 or
            # give a tick a hair after t_s, which would fire one tick twice.
            k = round(t_s / every_s)
            if abs(k * every_s - t_s) > min(1e-6, every_s / 1000):
                k = math.floor(t_s / every_s)
            return (k + 1) * every_s
        return self.next_after(datetime.fromtimestamp(t_s, UTC)).timestamp()

    def next_after(self, t: datetime) -> datetime:
        """The first tick strictly after ``t`` (a naive datetime is taken as UTC), in UTC."""
        if self._compiled is not None:
            return self._compiled.next_after(t)
        aware = t.replace(tzinfo=UTC) if t.tzinfo is None else t
        return datetime.fromtimestamp(self.next_after_s(aware.timestamp()), UTC)

    def to_dict(self) -> dict[str, Any]:
        """Plain data: ``{"spec": str(self), "missed": ...}``."""
        return {"spec": str(self), "missed": self.missed.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schedule:
        """The schedule saved by ``to_dict``."""
        return cls.parse(data["spec"], missed=_missed(data.get("missed", Missed.SKIP)))


def _missed(value: object) -> Missed:
    if isinstance(value, Missed):
        return value
    if isinstance(value, str) and value in Missed._value2member_map_:
        return Missed(value)
    raise ValueError(f"missed must be Missed.SKIP or Missed.RUN_ONCE, got {value!r}")


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    """A named schedule of an agent and the turn it puts at each tick.

    Each tick puts ``turn.copy()`` (same tool, arguments, timeout, tags and hooks).

    Attributes:
        name: unique among the agent's schedules.
        schedule: when it ticks.
        turn: the template turn (never run itself).
    """

    name: str
    schedule: Schedule
    turn: Turn[Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain data: ``name``, ``schedule`` (``Schedule.to_dict``), ``turn`` (the template's
        ``tool_name, args, kwargs, timeout, tags, hooks``; callable arguments evaluated).

        Raises:
            UnserializableHookError: a hook of the template is not the registered one.
        """
        turn = self.turn.to_dict()
        keep = ("tool_name", "args", "kwargs", "timeout", "tags", "hooks")
        return {
            "name": self.name,
            "schedule": self.schedule.to_dict(),
            "turn": {k: turn[k] for k in keep},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScheduleEntry:
        """The entry saved by ``to_dict`` (tool and hooks from the registries)."""
        from pygents.turn import Turn

        return cls(data["name"], Schedule.from_dict(data["schedule"]), Turn.from_dict(data["turn"]))
