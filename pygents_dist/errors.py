"""Every exception pygents_dist raises, under one base, ``DistError``.

The tree::

    DistError
    ├── ConnectionLostError        Redis unreachable after retries (also a ConnectionError)
    │   └── NotReplicatedError     durability "replicated": no replica confirmed a write
    ├── RedisCommandError          Redis refused a command (an error reply); carries its code
    │   └── RedisPermissionError   an ACL refused it (NOPERM; also a PermissionError)
    ├── PayloadError               a turn, value or message cannot be sent (also a ValueError)
    ├── RemoteError                a turn failed in a worker; carries type, message, traceback
    │   └── RemoteTurnTimeoutError the remote turn timed out (also a pygents TurnTimeoutError)
    ├── DeadLetteredError          the turn was set aside in the dead-letter stream, with why
    ├── TurnCancelledError         the turn was cancelled before or while it ran
    └── UnknownAgentError          no worker declared that agent (also UnregisteredAgentError)

``DeadLetterReason`` lists why a message can be dead-lettered.
"""

from __future__ import annotations

import enum

from pygents.errors import TurnTimeoutError, UnregisteredAgentError

__all__ = [
    "ConnectionLostError",
    "DeadLetterReason",
    "DeadLetteredError",
    "DistError",
    "NotReplicatedError",
    "PayloadError",
    "RedisCommandError",
    "RedisPermissionError",
    "RemoteError",
    "RemoteTurnTimeoutError",
    "TurnCancelledError",
    "UnknownAgentError",
]


class DistError(Exception):
    """Base of every pygents_dist error."""


class ConnectionLostError(DistError, ConnectionError):
    """Redis could not be reached (after the configured retries)."""


class NotReplicatedError(ConnectionLostError):
    """With ``durability="replicated"``: no replica confirmed a write in time (or the Redis
    has no replica to confirm it). The write may have happened on the primary, and may be
    lost if it fails over now; like a lost connection, the operation is safe to retry."""


class RedisCommandError(DistError):
    """Redis answered a command with an error reply.

    Attributes:
        code: the reply's code, its first word (``WRONGTYPE``, ``READONLY``, ``OOM``,
            ``NOPERM``...; ``ERR`` when Redis gave none).
        operation: what pygents_dist was doing (``send``, ``status``, ``dlq``...).
    """

    def __init__(self, message: str, *, code: str = "ERR", operation: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.operation = operation


class RedisPermissionError(RedisCommandError, PermissionError):
    """Redis refused a command for the connection's user (``NOPERM`` and kin): the ACL user
    lacks a command or key pattern pygents_dist needs (see the README's ACL section)."""


class PayloadError(DistError, ValueError):
    """Something cannot travel on the wire: unsupported type, too large or too deep.

    The message names where in the payload the problem is (``kwargs['f']``).
    """


class RemoteError(DistError):
    """A turn raised in the worker that ran it.

    Attributes:
        type_name: the remote exception's class name (``"ValueError"``).
        remote_message: its ``str()``.
        remote_traceback: the formatted traceback, from the worker.
        turn_id: the failed turn.
    """

    def __init__(
        self, type_name: str, message: str, traceback: str = "", turn_id: str = ""
    ) -> None:
        super().__init__(f"{type_name}: {message} (turn {turn_id})")
        self.type_name = type_name
        self.remote_message = message
        self.remote_traceback = traceback
        self.turn_id = turn_id


class RemoteTurnTimeoutError(RemoteError, TurnTimeoutError):
    """The remote turn ran past its timeout (catch it as ``TurnTimeoutError``)."""


class DeadLetteredError(DistError):
    """The turn was refused and set aside in the dead-letter stream.

    Attributes:
        reason: a ``DeadLetterReason`` value.
        detail: what exactly was wrong.
    """

    def __init__(self, reason: str, detail: str, turn_id: str = "") -> None:
        super().__init__(f"turn {turn_id} dead-lettered ({reason}): {detail}")
        self.reason = reason
        self.detail = detail
        self.turn_id = turn_id


class TurnCancelledError(DistError):
    """The turn was cancelled (``Client.cancel``) before it finished."""


class UnknownAgentError(DistError, UnregisteredAgentError):
    """No worker has declared an agent with that name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DeadLetterReason(enum.StrEnum):
    """Why a message went to the dead-letter stream."""

    UNDECODABLE = "undecodable"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_AGENT = "unknown_agent"
    UNKNOWN_TOOL = "unknown_tool"
    TOOL_NOT_IN_AGENT = "tool_not_in_agent"
    BAD_ARGUMENTS = "bad_arguments"
    TOO_MANY_DELIVERIES = "too_many_deliveries"
    RETRIES_EXHAUSTED = "retries_exhausted"
    INSTANCE_LIMIT = "instance_limit"
