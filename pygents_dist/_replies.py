"""Both ends of a turn's reply stream: what workers write, and how callers read it.

A turn sent with ``reply=True`` gets a stream ``Keys.reply(agent, turn_id)`` (capped at
``REPLY_STREAM_CAP`` entries, expiring after the reply TTL). Each entry has three fields:

- ``k``: its kind, a ``ReplyKind`` (``v`` a value, ``e`` the end, ``x`` an error);
- ``q``: the value's sequence number, from 0 (a retried turn repeats values; readers skip
  numbers they have seen); on the end entry, how many values came before it;
- ``d``: msgpack data: the value, the turn's output (end), or the error's map (``type``,
  ``message``, ``traceback``, and ``reason`` when the turn was dead-lettered).

Streamed values are published as they are yielded (``publish_many``); the end or error entry
is written by the batch's commit (``lua/commit.lua``), so a caller sees it only once the
turn's effects are in.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from typing import Any

from pygents_dist import _wire
from pygents_dist._transport import Entry, Transport, entries
from pygents_dist.errors import (
    DeadLetteredError,
    DistError,
    RemoteError,
    RemoteTurnTimeoutError,
    TurnCancelledError,
)

__all__ = ["REPLY_STREAM_CAP", "ReplyKind", "publish_many", "read_reply", "replies"]

#: Entries a reply stream keeps (approximately: Redis trims whole nodes).
REPLY_STREAM_CAP = 10_000
#: How long a reader blocks per read, and entries per read.
_READ_BLOCK_MS = 2_000
_READ_COUNT = 500


class ReplyKind(bytes, enum.Enum):
    """The ``k`` field of a reply entry."""

    VALUE = b"v"
    END = b"e"
    ERROR = b"x"


async def publish_many(
    transport: Transport, key: str, values: Sequence[tuple[int, bytes]], ttl_ms: int
) -> None:
    """Append streamed values ``(seq, data)`` to a reply stream, in one round trip."""
    commands: list[tuple[Any, ...]] = [
        ("XADD", key, "MAXLEN", "~", REPLY_STREAM_CAP, "*", "k", "v", "q", seq, "d", data)
        for seq, data in values
    ]
    commands.append(("PEXPIRE", key, ttl_ms))
    await transport.execute(commands, "publish")


async def read_reply(transport: Transport, key: str, after: bytes, block_ms: int) -> list[Entry]:
    """Reply entries newer than ``after``, waiting up to ``block_ms``."""
    command = ("XREAD", "COUNT", _READ_COUNT, "BLOCK", block_ms, "STREAMS", key, after)
    (raw,) = await transport.execute([command], "reply", block_ms)
    return entries(raw[0][1]) if raw else []


async def replies(
    transport: Transport,
    agent: str,
    turn_id: str,
    after: int = -1,
    first: list[Entry] | None = None,
) -> AsyncIterator[tuple[bytes, int, Any]]:
    """A turn's reply entries ``(kind, seq, decoded data)``, values numbered above
    ``after`` only, until its end entry (included). ``first``: entries already read.

    Raises:
        RemoteError: the turn failed (``RemoteTurnTimeoutError`` when it timed out).
        DeadLetteredError: the turn was dead-lettered.
        TurnCancelledError: the turn was cancelled.
    """
    key = transport.keys.reply(agent, turn_id)
    last = b"0-0"
    seen = after
    while True:
        if first is None:
            got = await read_reply(transport, key, last, _READ_BLOCK_MS)
        else:
            got, first = first, None
        for entry_id, fields in got:
            last = entry_id
            kind = fields.get(b"k", b"")
            seq = int(fields.get(b"q", 0))
            if kind == ReplyKind.ERROR:
                raise remote_error(_wire.unpack(fields[b"d"]), turn_id)
            if kind == ReplyKind.VALUE:
                if seq <= seen:
                    continue  # a value repeated by a retried turn
                seen = seq
            yield kind, seq, _wire.unpack(fields[b"d"])
            if kind == ReplyKind.END:
                return


def remote_error(payload: Any, turn_id: str) -> DistError:
    """The error a caller raises for an error entry's data."""
    if not isinstance(payload, dict):
        return RemoteError("UnknownError", repr(payload), "", turn_id)
    type_name = str(payload.get("type", "Error"))
    message = str(payload.get("message", ""))
    trace = str(payload.get("traceback", ""))
    if payload.get("reason"):
        return DeadLetteredError(str(payload["reason"]), message, turn_id)
    if type_name == "TurnTimeoutError":
        return RemoteTurnTimeoutError(type_name, message, trace, turn_id)
    if type_name == "TurnCancelledError":
        return TurnCancelledError(f"turn {turn_id} was {message}")
    return RemoteError(type_name, message, trace, turn_id)
