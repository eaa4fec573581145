"""The ``pygents`` commands of flow control: ``send --delay/--at``, ``delayed list|cancel``
and ``schedules list|add|pause|resume|rm``.

Kept apart from ``_ops.py`` (the other commands) so the flow-control surface is in one place;
``_cli.py`` adds these parsers and hands the commands here.
"""

from __future__ import annotations

import argparse
import datetime
import re
from typing import Any

from pygents_dist import _timers
from pygents_dist._client import Client
from pygents_dist._ops import UsageError, emit, parse_json_arguments
from pygents_dist._schedules import ScheduleInfo

__all__ = ["COMMANDS", "add_parsers", "add_send_options", "parse_duration_s", "run"]

#: The top-level commands this module runs.
COMMANDS = ("delayed", "schedules")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration_s(text: str, option: str) -> float:
    """Seconds in ``text``: a number with an optional unit (``250ms``, ``30s``, ``5m``,
    ``2h``, ``1d``; plain numbers are seconds).

    Raises:
        UsageError: not such a duration (names ``option``).
    """
    found = _DURATION.match(text)
    if found is None:
        raise UsageError(f"{option} takes a duration like 30s, 250ms, 5m, 2h, got {text!r}")
    return float(found.group(1)) * _UNIT_S[found.group(2)]


def parse_time_s(text: str, option: str) -> float:
    """Unix seconds of an ISO 8601 time (``2026-01-02T03:04:05Z``; no zone: UTC).

    Raises:
        UsageError: not an ISO 8601 time (names ``option``).
    """
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{option} takes an ISO 8601 time like 2026-01-02T03:04:05Z, got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def add_send_options(send: argparse.ArgumentParser) -> None:
    """``--delay`` / ``--at`` of ``pygents send``."""
    when = send.add_mutually_exclusive_group()
    when.add_argument(
        "--delay", metavar="DURATION", help="deliver the turn after DURATION (30s, 5m, 250ms)"
    )
    when.add_argument(
        "--at", metavar="TIME", help="deliver the turn at TIME (ISO 8601; no zone: UTC)"
    )


def parse_send_options(ns: argparse.Namespace) -> None:
    """Set ``ns.delay_s`` and ``ns.at_s`` from ``--delay`` / ``--at``.

    Raises:
        UsageError: a bad duration or time.
    """
    ns.delay_s = None if ns.delay is None else parse_duration_s(ns.delay, "--delay")
    ns.at_s = None if ns.at is None else parse_time_s(ns.at, "--at")


def add_parsers(sub: Any, as_json: argparse.ArgumentParser) -> None:
    """The ``delayed`` and ``schedules`` commands."""
    delayed = sub.add_parser("delayed", help="delayed turns: list, cancel")
    delayed_sub = delayed.add_subparsers(dest="action", required=True)
    delayed_sub.add_parser(
        "list", parents=[as_json], help="an agent's delayed turns, earliest first"
    ).add_argument("agent")
    cancel = delayed_sub.add_parser(
        "cancel", parents=[as_json], help="drop a delayed turn before it is due"
    )
    cancel.add_argument("agent")
    cancel.add_argument("turn_id")

    schedules = sub.add_parser(
        "schedules",
        help="schedules: list, add, pause, resume, rm",
        description="Periodic turns stored in Redis: every worker fires them, each tick once "
        "(UTC). SPEC is 'every 30s' (any duration: 250ms, 5m, 2h) or a five-field cron "
        "expression ('*/5 * * * *', '@hourly').",
    )
    sched_sub = schedules.add_subparsers(dest="action", required=True)
    sched_sub.add_parser(
        "list", parents=[as_json], help="every schedule and its next tick"
    ).add_argument("--agent", help="only this agent's")
    add = sched_sub.add_parser("add", parents=[as_json], help="add or replace a schedule")
    add.add_argument("agent")
    add.add_argument("name")
    add.add_argument("tool")
    add.add_argument("spec", metavar="SPEC", help="'every 30s' or a cron expression")
    add.add_argument("--kwargs", default="{}", help="JSON object of arguments")
    add.add_argument("--args", default="[]", help="JSON array of positional arguments")
    add.add_argument("--timeout", type=float, default=60.0, help="turn timeout in seconds")
    add.add_argument(
        "--missed",
        choices=["skip", "run_once"],
        default="skip",
        help="ticks missed while no worker ran: skip them, or run once (skip)",
    )
    add.add_argument("--paused", action="store_true", help="add it paused")
    for name, text in (
        ("pause", "pause a schedule on every worker"),
        ("resume", "resume it from its next tick"),
        ("rm", "remove a schedule"),
    ):
        action = sched_sub.add_parser(name, parents=[as_json], help=text)
        action.add_argument("agent")
        action.add_argument("name")


async def run(client: Client, ns: argparse.Namespace) -> int:
    """Run a ``delayed`` or ``schedules`` command; the exit code."""
    if ns.command == "delayed":
        return await _delayed(client, ns)
    return await _schedules_command(client, ns)


def _every_spec(text: str) -> str:
    """``every <duration>`` with the duration in seconds, as ``Schedule.parse`` reads it."""
    if text.strip().startswith("every "):
        seconds = parse_duration_s(text.strip().removeprefix("every "), "SPEC")
        return f"every {seconds:g}s"
    return text


def schedule_rows(infos: list[ScheduleInfo]) -> str:
    """Schedules as a table (``schedules list``, ``status``)."""
    lines = [f"{'AGENT':<20} {'NAME':<20} {'SCHEDULE':<18} {'NEXT (UTC)':<24} TOOL"]
    for info in infos:
        due = "paused" if info.next_due is None else info.next_due.isoformat(timespec="seconds")
        lines.append(f"{info.agent:<20} {info.name:<20} {info.schedule:<18} {due:<24} {info.tool}")
    return "\n".join(lines) if infos else "(no schedules)"


async def _schedules_command(client: Client, ns: argparse.Namespace) -> int:
    if ns.action == "list":
        infos = await client.schedules(ns.agent)
        emit(ns.json, [i.as_dict() for i in infos], schedule_rows(infos))
        return 0
    if ns.action == "add":
        args, kwargs = parse_json_arguments(ns)
        try:
            info = await client.add_schedule(
                ns.agent,
                ns.name,
                ns.tool,
                _every_spec(ns.spec),
                args=args,
                kwargs=kwargs,
                timeout=ns.timeout,
                missed=ns.missed,
                paused=ns.paused,
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        emit(ns.json, info.as_dict(), schedule_rows([info]))
        return 0
    act = {
        "pause": client.pause_schedule,
        "resume": client.resume_schedule,
        "rm": client.remove_schedule,
    }[ns.action]
    if not await act(ns.agent, ns.name):
        raise UsageError(f"{ns.agent} has no schedule {ns.name!r}")
    done = {"pause": "paused", "resume": "resumed", "rm": "removed"}[ns.action]
    emit(ns.json, {"agent": ns.agent, "name": ns.name, done: True}, f"{ns.name}: {done}")
    return 0


async def _delayed(client: Client, ns: argparse.Namespace) -> int:
    if ns.action == "cancel":
        done = await client.cancel_delayed(ns.agent, ns.turn_id)
        text = "cancelled" if done else "not waiting (already due, cancelled, or unknown)"
        emit(ns.json, {"agent": ns.agent, "turn_id": ns.turn_id, "cancelled": done}, text)
        return 0 if done else 1
    rows = [
        {"turn_id": turn_id, "due": _iso(due_ms)}
        for turn_id, due_ms in await _timers.pending(client.transport, ns.agent)
    ]
    text = "\n".join(f"{r['due']}  {r['turn_id']}" for r in rows) or "(no delayed turns)"
    emit(ns.json, rows, text)
    return 0


def _iso(ms: float) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat(
        timespec="milliseconds"
    )
