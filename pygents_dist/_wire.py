"""The versioned msgpack wire format: turns, reply entries and their limits.

The contract for other languages, with examples, is ``docs/wire.md`` (its hex dumps are
checked against this module by ``tests/dist/test_wire_doc.py``).

A turn is one stream entry with fields ``id`` (the turn id, so scripts can read it without
decoding; it must equal the envelope's ``id``, which the signature covers), ``m`` (the
msgpack envelope below) and, when signing is on, ``s`` (lowercase hex HMAC-SHA256 of ``m``).
Envelope, version 1 (a msgpack map with string keys)::

    v        1                      wire version; other versions are dead-lettered
    id       str                    turn id (unique; used for dedup and replies)
    agent    str                    target agent
    tool     str                    registered tool name ("parent.child" for subtools)
    args     array                  positional arguments
    kwargs   map[str, any]          keyword arguments
    timeout  float                  seconds
    tags     array[str]
    hooks    map[str, array[str]]   turn hooks by type value -> hook names (optional)
    reply    bool                   publish values / result / error to the reply stream
    ts       float                  send time, Unix seconds
    trace    str | nil              W3C traceparent of the sender (optional)

Argument and value types: nil, bool, int, float, str, bytes, array, map with str keys. Nothing
is ever decoded into code (no pickle; extension types are refused, but for the timestamp
(-1), which msgpack decodes itself into a ``msgpack.Timestamp``).

Reply stream entries have fields ``k`` (``v`` value, ``e`` end, ``x`` error), ``q`` (sequence
number of a value, from 0; for ``e`` the number of values before it) and ``d`` (msgpack: the
value; for ``e`` the result of a coroutine tool or nil; for ``x`` a map ``{type, message,
traceback, reason?}``).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import msgpack

from pygents_dist.errors import DeadLetterReason, PayloadError

__all__ = [
    "WIRE_VERSION",
    "Limits",
    "TurnMessage",
    "WireError",
    "decode_turn",
    "encode_turn",
    "encode_value",
    "new_turn_id",
    "pack",
    "seal_turn",
    "sign",
    "unpack",
]

WIRE_VERSION = 1
_packer = msgpack.Packer(use_bin_type=True)
_lua_packer = msgpack.Packer(use_bin_type=False)
_PLAIN = (str, int, float, bool, bytes, type(None))


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """Refuse payloads bigger than ``max_bytes`` or nested deeper than ``max_depth``."""

    max_bytes: int = 1 << 20
    max_depth: int = 32


DEFAULT_LIMITS = Limits()


class WireError(Exception):
    """A message that cannot be accepted, with the dead-letter reason."""

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(slots=True)
class TurnMessage:
    """A decoded turn envelope."""

    id: str
    agent: str
    tool: str
    args: list[Any]
    kwargs: dict[str, Any]
    timeout: float
    tags: list[str]
    hooks: dict[str, list[str]]
    reply: bool
    ts: float
    trace: str | None = None


def new_turn_id() -> str:
    """A fresh, unique turn id (32 hex characters: 128 random bits, as a uuid4 has 122)."""
    return os.urandom(16).hex()


def pack(value: Any) -> bytes:
    """msgpack bytes of plain data (no checks; see ``check_plain``)."""
    data: bytes = _packer.pack(value)
    return data


def pack_for_lua(value: Any) -> bytes:
    """msgpack bytes a Redis script can read: Redis's cmsgpack knows no bin type, so bytes
    travel as (binary-safe) raw strings."""
    data: bytes = _lua_packer.pack(value)
    return data


def unpack(data: bytes) -> Any:
    """Plain data from msgpack bytes (strings as ``str``, binary as ``bytes``)."""
    return msgpack.unpackb(data, raw=False, strict_map_key=True)


def check_plain(value: Any, where: str, limits: Limits = DEFAULT_LIMITS, depth: int = 0) -> None:
    """Raise ``PayloadError`` naming the place where ``value`` is not wire data."""
    if isinstance(value, _PLAIN):
        return
    if depth >= limits.max_depth:
        raise PayloadError(f"{where} is nested deeper than {limits.max_depth} levels")
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]", limits, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise PayloadError(f"{where} has a non-string key {key!r}")
            check_plain(item, f"{where}[{key!r}]", limits, depth + 1)
        return
    what = "a function" if callable(value) else f"a {type(value).__name__}"
    raise PayloadError(
        f"{where} is {what}, which cannot be sent to a worker; send plain data "
        "(None, bool, int, float, str, bytes, list, dict with str keys)"
    )


def encode_turn(
    *,
    turn_id: str,
    agent: str,
    tool: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    timeout: float,
    tags: Sequence[str] = (),
    hooks: Mapping[str, list[str]] | None = None,
    reply: bool = False,
    trace: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    ts: float | None = None,
) -> bytes:
    """The envelope bytes of one turn, checked against ``limits``; ``ts`` is the send time
    (default: now).

    Raises:
        PayloadError: an argument is not wire data, or the turn is too large or too deep.
    """
    for i, arg in enumerate(args):
        check_plain(arg, f"args[{i}]", limits, 1)
    for key, arg in kwargs.items():
        check_plain(arg, f"kwargs[{key!r}]", limits, 1)
    envelope: dict[str, Any] = {
        "v": WIRE_VERSION,
        "id": turn_id,
        "agent": agent,
        "tool": tool,
        "args": list(args),
        "kwargs": dict(kwargs),
        "timeout": float(timeout),
        "tags": list(tags),
        "reply": reply,
        "ts": time.time() if ts is None else float(ts),
    }
    if hooks:
        envelope["hooks"] = dict(hooks)
    if trace:
        envelope["trace"] = trace
    data: bytes = _packer.pack(envelope)
    if len(data) > limits.max_bytes:
        raise PayloadError(
            f"turn {tool!r} for agent {agent!r} is {len(data)} bytes, over the "
            f"{limits.max_bytes}-byte limit; pass a reference (a key or URL) instead"
        )
    return data


def seal_turn(
    *,
    agent: str,
    tool: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    timeout: float,
    tags: Sequence[str],
    hooks: Mapping[str, list[str]],
    trace: str | None,
    limits: Limits,
    secret: bytes | None,
    reply: bool = False,
    turn_id: str | None = None,
) -> tuple[str, bytes, bytes]:
    """A turn ready to send, as a client or a running turn sends one: ``(turn id, envelope,
    signature)``, the envelope checked against ``limits`` (see ``encode_turn``) and signed
    with ``secret`` (None: an empty signature). A new turn id unless ``turn_id``.

    Raises:
        PayloadError: an argument is not wire data, or the turn is too large or too deep.
    """
    turn_id = turn_id or new_turn_id()
    data = encode_turn(
        turn_id=turn_id,
        agent=agent,
        tool=tool,
        args=args,
        kwargs=kwargs,
        timeout=timeout,
        tags=tags,
        hooks=hooks,
        reply=reply,
        trace=trace,
        limits=limits,
    )
    return turn_id, data, b"" if secret is None else sign(data, secret)


_NUMBERS = (int, float)


def _depth_ok(value: Any, limit: int) -> bool:
    """Whether no list or map in ``value`` is nested ``limit`` levels deep (only containers
    are visited: the walk costs nothing per scalar)."""
    if not isinstance(value, (list, dict)):
        return True
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth >= limit:
            return False
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, (list, dict)):
                stack.append((child, depth + 1))
    return True


def _field(envelope: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = envelope.get(name)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise WireError(
            DeadLetterReason.UNDECODABLE, f"field {name!r} is missing or not {kind!r}: {value!r}"
        )
    return value


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def decode_turn(data: bytes, limits: Limits = DEFAULT_LIMITS) -> TurnMessage:
    """The turn in an envelope.

    Raises:
        WireError: not msgpack, not a version-1 turn map, a field of the wrong type, too
            large or too deeply nested (reason ``UNDECODABLE``).
    """
    if len(data) > limits.max_bytes:
        raise WireError(DeadLetterReason.UNDECODABLE, f"message of {len(data)} bytes is too large")
    try:
        envelope = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_bin_len=limits.max_bytes,
            ext_hook=_refuse_extension,
        )
    except Exception as exc:
        raise WireError(DeadLetterReason.UNDECODABLE, _not_msgpack(exc, data)) from None
    if type(envelope) is not dict:
        raise WireError(DeadLetterReason.UNDECODABLE, "the message is not a msgpack map")
    get: Any = envelope.get  # values are checked below, by type
    if get("v") != WIRE_VERSION:
        raise WireError(
            DeadLetterReason.UNDECODABLE,
            f"unsupported wire version {get('v')!r} (this worker reads {WIRE_VERSION})",
        )
    turn_id, agent, tool = get("id"), get("agent"), get("tool")
    args, kwargs, timeout = get("args"), get("kwargs"), get("timeout")
    hooks, tags, ts, trace = get("hooks") or {}, get("tags") or [], get("ts") or 0.0, get("trace")
    # One test of the common shape; a message that fails it is looked at field by field,
    # for an error that names the field.
    if not (
        type(turn_id) is str
        and type(agent) is str
        and type(tool) is str
        and type(args) is list
        and type(kwargs) is dict
        and type(timeout) in _NUMBERS
        and type(ts) in _NUMBERS
        and type(tags) is list
        and type(hooks) is dict
        and 0 < timeout < 1e9
    ):
        _explain(envelope)
    # Only the arguments can nest: tags and hooks are checked flat below.
    depth = limits.max_depth + 1
    if (args and not _depth_ok(args, depth)) or (kwargs and not _depth_ok(kwargs, depth)):
        raise WireError(DeadLetterReason.UNDECODABLE, f"nested deeper than {limits.max_depth}")
    if (tags and not _strings(tags)) or (hooks and not all(map(_strings, hooks.values()))):
        _explain(envelope)
    return TurnMessage(
        turn_id,
        agent,
        tool,
        args,
        kwargs,
        float(timeout),
        tags,
        hooks,
        bool(get("reply", False)),
        float(ts),
        trace if type(trace) is str else None,
    )


def _refuse_extension(code: int, data: bytes) -> NoReturn:
    raise ValueError(f"msgpack extension type {code} is not part of the wire format")


def _not_msgpack(exc: Exception, data: bytes) -> str:
    """The detail of a dead letter whose bytes msgpack could not read: what was wrong, and
    how the bytes start (some of msgpack's errors have no message at all)."""
    if isinstance(exc, msgpack.FormatError):
        what = "a byte msgpack never uses (such as 0xc1) where a value should start"
    elif isinstance(exc, msgpack.ExtraData):
        what = "bytes left over after the first msgpack value (send one value, the envelope)"
    elif isinstance(exc, UnicodeDecodeError):
        what = f"a str that is not UTF-8 ({exc.reason}); send binary data as msgpack bin"
    else:
        what = str(exc) or type(exc).__name__
    return f"not valid msgpack: {what}; the message starts {data[:16].hex(' ') or '(empty)'}"


def _explain(envelope: dict[str, Any]) -> NoReturn:
    """Raise the ``WireError`` that names what is wrong in a turn envelope."""
    hooks = envelope.get("hooks") or {}
    if not isinstance(hooks, dict) or not all(_strings(names) for names in hooks.values()):
        raise WireError(DeadLetterReason.UNDECODABLE, "field 'hooks' is not a map of name arrays")
    tags = envelope.get("tags") or []
    if not _strings(tags):
        raise WireError(DeadLetterReason.UNDECODABLE, "field 'tags' is not an array of strings")
    ts = envelope.get("ts") or 0.0
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        raise WireError(DeadLetterReason.UNDECODABLE, f"field 'ts' is not a number: {ts!r}")
    timeout = _field(envelope, "timeout", (int, float))
    if not 0 < timeout < 1e9:
        raise WireError(DeadLetterReason.UNDECODABLE, f"timeout {timeout!r} is not positive")
    for name, kind in (("id", str), ("agent", str), ("tool", str), ("args", list)):
        _field(envelope, name, kind)
    _field(envelope, "kwargs", dict)
    raise WireError(DeadLetterReason.UNDECODABLE, "the message is not a turn envelope")


def _to_plain(value: Any) -> Any:
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    to_dict = getattr(value, "to_dict", None) or getattr(value, "model_dump", None)
    if callable(to_dict):
        return to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"a {type(value).__name__} cannot be sent")


def encode_value(value: Any, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """msgpack bytes of a tool's value: plain data, or converted (datetime, dataclass, ...).

    Raises:
        PayloadError: the value cannot be converted, or is too large.
    """
    try:
        data: bytes = msgpack.packb(value, use_bin_type=True, default=_to_plain)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PayloadError(f"a tool value of type {type(value).__name__}: {exc}") from None
    if len(data) > limits.max_bytes:
        raise PayloadError(f"a tool value of {len(data)} bytes is over {limits.max_bytes}")
    return data


def sign(data: bytes, secret: bytes) -> bytes:
    """Hex HMAC-SHA256 of ``data``."""
    return hmac.new(secret, data, hashlib.sha256).hexdigest().encode()


def verify(data: bytes, signature: bytes | None, secrets: Sequence[bytes]) -> bool:
    """Whether ``signature`` is the HMAC of ``data`` under any of ``secrets``."""
    if signature is None:
        return False
    return any(hmac.compare_digest(sign(data, s), signature) for s in secrets)
