"""The msgpack wire format: envelopes, validation, limits, values and signatures (no Redis)."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path
from typing import Any

import msgpack
import pytest

from pygents_dist import Limits, PayloadError
from pygents_dist._wire import (
    WIRE_VERSION,
    WireError,
    decode_turn,
    encode_turn,
    encode_value,
    new_turn_id,
    pack,
    seal_turn,
    sign,
    unpack,
    verify,
)
from pygents_dist.errors import DeadLetterReason


def envelope(**overrides: Any) -> dict[str, Any]:
    """A valid version-1 envelope as plain data, with some fields replaced or removed."""
    data: dict[str, Any] = {
        "v": WIRE_VERSION,
        "id": "t1",
        "agent": "alice",
        "tool": "add",
        "args": [1],
        "kwargs": {"b": 2},
        "timeout": 5.0,
        "tags": [],
        "reply": True,
        "ts": 0.0,
    }
    for key, value in overrides.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return data


def raw(data: Any) -> bytes:
    packed: bytes = msgpack.packb(data, use_bin_type=True)
    return packed


def undecodable(data: bytes, limits: Limits | None = None) -> str:
    """The detail of the ``UNDECODABLE`` WireError that decoding ``data`` raises."""
    with pytest.raises(WireError) as info:
        decode_turn(data, limits or Limits())
    assert info.value.reason is DeadLetterReason.UNDECODABLE
    return info.value.detail


# -- round trip ------------------------------------------------------------------------------


def test_turn_envelope_round_trips_every_field() -> None:
    args = [None, True, 3, 2.5, "s", b"\x00\xff", [1, [2]], {"k": {"n": None}}]
    data = encode_turn(
        turn_id="id1",
        agent="alice",
        tool="parent.child",
        args=args,
        kwargs={"blob": b"\x01", "when": "2024-01-01"},
        timeout=7,
        tags=["x", "y"],
        hooks={"before_run": ["log_it"]},
        reply=True,
        trace="00-abc-def-01",
    )
    turn = decode_turn(data)
    assert (turn.id, turn.agent, turn.tool) == ("id1", "alice", "parent.child")
    assert turn.args == args
    assert turn.kwargs == {"blob": b"\x01", "when": "2024-01-01"}
    assert turn.timeout == 7.0 and isinstance(turn.timeout, float)
    assert turn.tags == ["x", "y"]
    assert turn.hooks == {"before_run": ["log_it"]}
    assert turn.reply is True
    assert turn.trace == "00-abc-def-01"
    assert turn.ts > 0


def test_tuples_travel_as_lists_and_optional_fields_default() -> None:
    data = encode_turn(turn_id="i", agent="a", tool="t", args=[(1, 2)], kwargs={}, timeout=1)
    turn = decode_turn(data)
    assert turn.args == [[1, 2]]
    assert (turn.hooks, turn.reply, turn.trace, turn.tags) == ({}, False, None, [])


def test_envelope_is_a_plain_msgpack_map_other_languages_can_write() -> None:
    data = encode_turn(turn_id="i", agent="a", tool="t", args=[], kwargs={"n": 1}, timeout=1)
    plain = msgpack.unpackb(data, raw=False)
    assert plain["v"] == WIRE_VERSION
    assert {"id", "agent", "tool", "args", "kwargs", "timeout", "tags", "reply", "ts"} <= set(plain)
    assert decode_turn(raw(envelope())).kwargs == {"b": 2}


def test_turn_ids_are_unique_hex() -> None:
    ids = {new_turn_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


# -- validation ------------------------------------------------------------------------------


def test_other_wire_versions_are_refused() -> None:
    assert "unsupported wire version 2" in undecodable(raw(envelope(v=2)))
    assert "unsupported wire version None" in undecodable(raw(envelope(v=...)))


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"\xc1\xc1 definitely not msgpack", "a byte msgpack never uses (such as 0xc1)"),
        (b"\x92\x01", "incomplete input"),
        (b"\x01\x02", "bytes left over after the first msgpack value"),
        (b"\xa2\xff\xfe", "a str that is not UTF-8"),
        (b"\xd4\x05\x01", "msgpack extension type 5 is not part of the wire format"),
        (b"", "incomplete input"),
    ],
)
def test_bytes_that_are_not_msgpack_are_refused_saying_what_is_wrong(
    data: bytes, what: str
) -> None:
    detail = undecodable(data)
    assert detail.startswith("not valid msgpack: ")
    assert what in detail
    assert detail.endswith(f"the message starts {data[:16].hex(' ') or '(empty)'}")


def test_a_message_that_is_not_a_map_is_refused() -> None:
    assert "not a msgpack map" in undecodable(raw([1, 2, 3]))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", ...),
        ("id", 7),
        ("agent", None),
        ("tool", ["add"]),
        ("args", {"a": 1}),
        ("kwargs", [1]),
        ("timeout", "5"),
        ("timeout", True),
    ],
)
def test_missing_or_mistyped_fields_are_refused_naming_the_field(field: str, value: Any) -> None:
    assert f"field {field!r}" in undecodable(raw(envelope(**{field: value})))


@pytest.mark.parametrize("timeout", [0, -1.0, 1e12])
def test_timeouts_must_be_positive_and_finite(timeout: float) -> None:
    assert "timeout" in undecodable(raw(envelope(timeout=timeout)))


def test_hooks_must_be_a_map() -> None:
    assert "hooks" in undecodable(raw(envelope(hooks=["h"])))


def test_non_string_map_keys_are_refused() -> None:
    assert "not valid msgpack" in undecodable(raw(envelope(kwargs={1: "x"})))


# -- limits ----------------------------------------------------------------------------------


def test_oversized_turn_is_refused_before_sending() -> None:
    with pytest.raises(PayloadError, match=r"over the 1000-byte limit") as info:
        encode_turn(
            turn_id="i",
            agent="alice",
            tool="add",
            args=[],
            kwargs={"text": "x" * 2000},
            timeout=1,
            limits=Limits(max_bytes=1000),
        )
    assert "'add'" in str(info.value) and "'alice'" in str(info.value)


def test_oversized_message_is_refused_when_read() -> None:
    data = raw(envelope(kwargs={"text": "x" * 2000}))
    assert "too large" in undecodable(data, Limits(max_bytes=1000))


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_deeply_nested_arguments_are_refused_naming_the_place() -> None:
    with pytest.raises(PayloadError, match=r"kwargs\['deep'\](\[0\])* is nested deeper than 8"):
        encode_turn(
            turn_id="i",
            agent="a",
            tool="t",
            args=[],
            kwargs={"deep": nested(50)},
            timeout=1,
            limits=Limits(max_depth=8),
        )


def test_arguments_within_the_depth_limit_pass() -> None:
    data = encode_turn(
        turn_id="i",
        agent="a",
        tool="t",
        args=[nested(6)],
        kwargs={},
        timeout=1,
        limits=Limits(max_depth=8),
    )
    assert decode_turn(data, Limits(max_depth=8)).args == [nested(6)]


def test_deeply_nested_message_is_refused_when_read() -> None:
    data = raw(envelope(args=[nested(50)]))
    assert "nested deeper than 8" in undecodable(data, Limits(max_depth=8))


def test_default_limits_refuse_a_pathological_nesting_without_crashing() -> None:
    data = raw(envelope(args=[nested(500)]))
    assert undecodable(data)


# -- what cannot be sent ---------------------------------------------------------------------


def test_payload_error_names_a_lambda_argument() -> None:
    with pytest.raises(PayloadError, match=r"kwargs\['callback'\] is a function"):
        encode_turn(
            turn_id="i", agent="a", tool="t", args=[], kwargs={"callback": lambda: 1}, timeout=1
        )


def test_payload_error_names_an_open_file_argument(tmp_path: Path) -> None:
    with (
        (tmp_path / "f.txt").open("w") as handle,
        pytest.raises(PayloadError, match=r"args\[1\] is a TextIOWrapper"),
    ):
        encode_turn(turn_id="i", agent="a", tool="t", args=[1, handle], kwargs={}, timeout=1)


def test_payload_error_names_a_nested_bad_value() -> None:
    with pytest.raises(PayloadError, match=r"kwargs\['opts'\]\['when'\] is a datetime"):
        encode_turn(
            turn_id="i",
            agent="a",
            tool="t",
            args=[],
            kwargs={"opts": {"when": datetime.datetime.now()}},
            timeout=1,
        )


def test_payload_error_names_a_non_string_key() -> None:
    with pytest.raises(PayloadError, match=r"args\[0\] has a non-string key 3"):
        encode_turn(turn_id="i", agent="a", tool="t", args=[{3: "x"}], kwargs={}, timeout=1)


def test_payload_error_is_a_value_error() -> None:
    assert issubclass(PayloadError, ValueError)


# -- values ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_tool_values_are_converted_to_plain_data() -> None:
    when = datetime.datetime(2024, 5, 6, 7, 8, 9)
    value = {"p": Point(1, 2), "when": when, "tags": frozenset({"a"}), "pair": (1, 2)}
    assert unpack(encode_value(value)) == {
        "p": {"x": 1, "y": 2},
        "when": "2024-05-06T07:08:09",
        "tags": ["a"],
        "pair": [1, 2],
    }


def test_tool_values_with_to_dict_use_it() -> None:
    class Thing:
        def to_dict(self) -> dict[str, int]:
            return {"n": 1}

    assert unpack(encode_value([Thing()])) == [{"n": 1}]


def test_unconvertible_or_oversized_values_raise_payload_error() -> None:
    with pytest.raises(PayloadError, match="object"):
        encode_value(object())
    with pytest.raises(PayloadError, match="over 100"):
        encode_value("x" * 500, Limits(max_bytes=100))


def test_pack_and_unpack_round_trip_bytes_and_text() -> None:
    value = {"s": "text", "b": b"\x00bin", "n": [1, 2.5, None, True]}
    assert unpack(pack(value)) == value


# -- signatures ------------------------------------------------------------------------------


def test_signature_verifies_under_any_current_secret() -> None:
    data = encode_turn(turn_id="i", agent="a", tool="t", args=[], kwargs={}, timeout=1)
    signature = sign(data, b"old")
    assert verify(data, signature, [b"new", b"old"])
    assert not verify(data, signature, [b"new"])
    assert not verify(data + b"x", signature, [b"old"])
    assert not verify(data, None, [b"old"])
    assert not verify(data, b"", [b"old"])


def test_a_sealed_turn_is_its_checked_envelope_and_signature() -> None:
    parts: dict[str, Any] = {
        "agent": "a",
        "tool": "t",
        "args": [1],
        "kwargs": {"b": 2},
        "timeout": 1.0,
        "tags": ["x"],
        "hooks": {},
        "trace": None,
        "limits": Limits(),
    }
    turn_id, data, signature = seal_turn(**parts, secret=b"k", reply=True, turn_id="given")
    assert turn_id == "given"
    message = decode_turn(data)
    assert (message.id, message.agent, message.tool, message.reply) == ("given", "a", "t", True)
    assert (message.args, message.kwargs, message.tags) == ([1], {"b": 2}, ["x"])
    assert signature == sign(data, b"k")
    fresh, data, unsigned = seal_turn(**parts, secret=None)
    assert len(fresh) == 32
    assert unsigned == b""
    assert not decode_turn(data).reply
    with pytest.raises(PayloadError, match="over the 64-byte limit"):
        seal_turn(**{**parts, "limits": Limits(max_bytes=64)}, secret=None)
