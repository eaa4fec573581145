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
from pygents_dist._ops import UsageError, emit

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


async def run(client: Client, ns: argparse.Namespace) -> int:
    """Run a ``delayed`` or ``schedules`` command; the exit code."""
    if ns.command == "delayed":
        return await _delayed(client, ns)
    raise UsageError(f"unknown command {ns.command!r}")


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
