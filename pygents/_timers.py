"""An agent's timers in process: its delayed turns (held until due) and its schedules (with
the next tick of each), and which of them are due at a given time, in due order.

The agent owns one ``Timers`` once it has a delayed turn or a schedule; ``agent.run()`` asks
it for due turns at the top of each iteration and sleeps until ``next_due_s()`` when its
queue is empty. Times are seconds since the Unix epoch (``time.time()``): a delay or an
absolute time (``at=``) and a cron tick all live on the wall clock. A wall-clock jump moves
what is due with it.
"""

from __future__ import annotations

import heapq
import math
import os
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pygents import _seams
from pygents.schedule import Missed, Schedule, ScheduleEntry
from pygents.turn import Turn

if TYPE_CHECKING:
    from pygents.agent import Agent

__all__ = ["Timers", "delayed_router", "due_s", "schedule_entry"]


class _Ticking:
    """A schedule entry and the due time of its next tick."""

    __slots__ = ("entry", "next_due_s")

    def __init__(self, entry: ScheduleEntry, next_due_s: float) -> None:
        self.entry = entry
        self.next_due_s = next_due_s


class Timers:
    """Delayed turns (by id) and schedules (by name) of one agent."""

    __slots__ = ("_delayed", "_heap", "_next_tick_s", "_seq", "entries", "ticking")

    def __init__(self) -> None:
        self._delayed: dict[str, tuple[float, Turn[Any]]] = {}
        # (due_s, seq, id): seq keeps turns due at the same time in put order. Cancelled ids
        # stay in the heap until they reach its top (their entry is gone from _delayed).
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        self.ticking: dict[str, _Ticking] = {}
        # The earliest next tick of all schedules, kept up to date so that run() can check
        # for due work before every turn without looking at each schedule.
        self._next_tick_s = math.inf
        #: name -> entry; the agent hands out a read-only view of it.
        self.entries: dict[str, ScheduleEntry] = {}

    def __bool__(self) -> bool:
        return bool(self._delayed or self.ticking)

    # -- delayed turns -----------------------------------------------------------------

    def add_delayed(self, turn: Turn[Any], due_s: float) -> str:
        """Hold ``turn`` until ``due_s``; returns its id."""
        turn_id = os.urandom(8).hex()
        self._delayed[turn_id] = (due_s, turn)
        self._seq += 1
        heapq.heappush(self._heap, (due_s, self._seq, turn_id))
        return turn_id

    def cancel(self, turn_id: str) -> bool:
        """Drop the delayed turn ``turn_id``; False if unknown (or already due)."""
        return self._delayed.pop(turn_id, None) is not None

    def delayed(self) -> dict[str, tuple[float, Turn[Any]]]:
        """A snapshot: id -> (due_s, turn), in due order."""
        return {i: self._delayed[i] for _, _, i in sorted(self._heap) if i in self._delayed}

    # -- schedules -----------------------------------------------------------------------

    def add_schedule(self, entry: ScheduleEntry, now_s: float) -> None:
        """Start (or replace) ``entry``; its first tick is the first one after ``now_s``."""
        self.entries[entry.name] = entry
        self.ticking[entry.name] = _Ticking(entry, entry.schedule.next_after_s(now_s))
        self._next_tick_s = min((t.next_due_s for t in self.ticking.values()), default=math.inf)

    def remove_schedule(self, name: str) -> bool:
        """Stop the schedule ``name``; False if there is none."""
        self.entries.pop(name, None)
        removed = self.ticking.pop(name, None) is not None
        self._next_tick_s = min((t.next_due_s for t in self.ticking.values()), default=math.inf)
        return removed

    # -- due -------------------------------------------------------------------------------

    def next_due_s(self) -> float:
        """When the next delayed turn or tick is due (``inf``: nothing pending)."""
        heap = self._heap
        while heap and heap[0][2] not in self._delayed:
            heapq.heappop(heap)  # cancelled
        due = heap[0][0] if heap else math.inf
        return min(due, self._next_tick_s)

    def take_due(self, now_s: float, active_since_s: float) -> list[tuple[Turn[Any], bool]]:
        """The turns due at ``now_s``, in due order (ties: delayed turns in put order, then
        schedules by name), removed from the timers; each with True if a schedule's tick.

        A tick due before ``active_since_s`` (when the agent last started running or
        resumed; ``inf`` while paused) is missed: ``Missed.SKIP`` drops it,
        ``Missed.RUN_ONCE`` puts one turn for all the missed ticks of that schedule.
        """
        due: list[tuple[float, int, Turn[Any], bool]] = []
        heap, delayed = self._heap, self._delayed
        while heap and heap[0][0] <= now_s:
            due_s, seq, turn_id = heapq.heappop(heap)
            held = delayed.pop(turn_id, None)
            if held is not None:
                due.append((due_s, seq, held[1], False))
        order = self._seq
        if self._next_tick_s > now_s:
            return [(turn, False) for _, _, turn, _ in due]
        for name in sorted(self.ticking):
            ticking = self.ticking[name]
            if ticking.next_due_s > now_s:
                continue
            schedule = ticking.entry.schedule
            if ticking.next_due_s < active_since_s:
                missed_at = ticking.next_due_s
                # Jump past every missed tick at once: a schedule idle for a day must not
                # step through a day of ticks.
                ticking.next_due_s = schedule.next_after_s(min(active_since_s, now_s))
                if schedule.missed is Missed.RUN_ONCE:
                    order += 1
                    due.append((missed_at, order, ticking.entry.turn.copy(), True))
            while ticking.next_due_s <= now_s:
                order += 1
                due.append((ticking.next_due_s, order, ticking.entry.turn.copy(), True))
                ticking.next_due_s = schedule.next_after_s(ticking.next_due_s)
        self._next_tick_s = min((t.next_due_s for t in self.ticking.values()), default=math.inf)
        due.sort(key=lambda item: (item[0], item[1]))
        return [(turn, ticked) for _, _, turn, ticked in due]


def due_s(delay_s: object, at: object) -> float:
    """When a delayed turn is due, in seconds since the epoch (validating the options)."""
    if delay_s is not None and at is not None:
        raise ValueError("pass delay_s or at, not both")
    if delay_s is not None:
        if (
            not isinstance(delay_s, int | float)
            or isinstance(delay_s, bool)
            or not math.isfinite(delay_s)
            or delay_s < 0
        ):
            raise ValueError(f"delay_s must be a number of seconds >= 0, got {delay_s!r}")
        return time.time() + delay_s
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ValueError(
                f"at must be a timezone-aware datetime (naive datetimes are ambiguous between "
                f"machines), got {at!r}; use datetime.now(UTC) + timedelta(...)"
            )
        return at.timestamp()
    if isinstance(at, int | float) and not isinstance(at, bool) and math.isfinite(at):
        return float(at)
    raise ValueError(f"at must be an aware datetime or epoch seconds, got {at!r}")


def delayed_router(router: _seams.Router) -> _seams.DelayedRouter:
    """``router`` as a router that holds delayed turns (``NotImplementedError`` if it can't)."""
    if not (hasattr(router, "put_at") and hasattr(router, "cancel_delayed")):
        raise NotImplementedError(
            f"this runtime's router ({type(router).__name__}) does not take delayed turns "
            "(no put_at / cancel_delayed)"
        )
    return router  # type: ignore[return-value]  # checked just above


def schedule_entry(agent: Agent, name: str, turn: object, schedule: object) -> ScheduleEntry:
    """The entry ``agent.schedule(name, turn, schedule)`` adds, its arguments checked."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"agent {agent.name!r}: a schedule name is a non-empty str, got {name!r}")
    if not isinstance(turn, Turn):
        raise TypeError(f"agent {agent.name!r}: schedule {name!r} needs a Turn, got {turn!r}")
    if not isinstance(schedule, Schedule):
        raise TypeError(
            f"agent {agent.name!r}: schedule {name!r} needs a Schedule (Schedule.every(...) "
            f"or Schedule.cron(...)), got {schedule!r}"
        )
    if turn.tool not in agent._tool_set:
        raise ValueError(
            f"agent {agent.name!r}: schedule {name!r}: agent cannot run tool "
            f"{turn.tool.__name__!r}; its tools: {sorted(t.__name__ for t in agent.tools)}"
        )
    return ScheduleEntry(name, schedule, turn)
