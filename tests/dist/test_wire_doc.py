"""``docs/wire.md`` kept in step with the code: its hex dumps are what ``_wire.py`` encodes and
decodes, its keys what ``Keys`` names, its functions what ``_functions`` installs, its limits
the code's; and a real worker (requiring signatures) answers the documented messages, sent
by ``FCALL`` and by plain commands, with the documented reply entries and dead letters.

A named example in the document is a fenced block ```` ```<kind> <name> ````; a hex dump
has lines ``<offset>  <hex bytes>  |<ascii>|``.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from pygents_dist import Limits, _functions
from pygents_dist._dead_letters import _DEAD_CAP
from pygents_dist._keys import Keys
from pygents_dist._ops import _letter
from pygents_dist._replies import REPLY_STREAM_CAP
from pygents_dist._settings import WorkerSettings
from pygents_dist._streams import SIGNALS_CAP
from pygents_dist._wire import TurnMessage, decode_turn, encode_turn, sign
from pygents_dist.errors import DeadLetterReason
from pygents_dist.testing import RedisEndpoint
from tests.dist.conftest import module_workers

DOC = Path(__file__).parents[2] / "docs" / "wire.md"
TEXT = DOC.read_text()
SECRET = b"s3cret"
TURN_ID = "0123456789abcdef0123456789abcdef"


def blocks() -> dict[str, str]:
    """The document's named examples: name -> the block's text."""
    found = re.finditer(r"^```\w+ ([\w-]+)\n(.*?)^```$", TEXT, re.MULTILINE | re.DOTALL)
    return {m.group(1): m.group(2) for m in found}


def unhex(dump: str) -> bytes:
    """The bytes of a hex dump, each line's offset checked."""
    out = bytearray()
    for line in dump.splitlines():
        offset, *tokens = line.split()
        assert int(offset, 16) == len(out), f"offset {offset} after {len(out)} bytes: {line!r}"
        for token in tokens:
            if not re.fullmatch(r"[0-9a-f]{2}", token):
                assert token.startswith("|"), f"not a hex byte: {token!r} in {line!r}"
                break
            out.append(int(token, 16))
    return bytes(out)


def hexdump(data: bytes) -> str:
    """``data`` as the document shows it (to paste when the code changed on purpose)."""
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        left = " ".join(f"{b:02x}" for b in chunk[:8])
        right = " ".join(f"{b:02x}" for b in chunk[8:])
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:04x}  {f'{left}  {right}':<48}  |{text}|")
    return "\n".join(lines) + "\n"


def documented(name: str, data: bytes) -> None:
    """Assert the hex dump ``name`` of the document shows ``data``."""
    dump = blocks()[name]
    assert unhex(dump) == data, f"docs/wire.md block {name!r} should be:\n{hexdump(data)}"
    assert dump == hexdump(data), f"docs/wire.md block {name!r}: its ascii column or layout"


def add_envelope() -> bytes:
    """The document's example turn: ``add(a=2, b=3)`` on ``alpha``, reply wanted."""
    return encode_turn(
        turn_id=TURN_ID,
        agent="alpha",
        tool="add",
        args=[],
        kwargs={"a": 2, "b": 3},
        timeout=60,
        reply=True,
        ts=1700000000,
    )


# -- the document against the code -----------------------------------------------------------


def test_the_envelope_example_is_what_pygents_sends_and_reads() -> None:
    data = add_envelope()
    documented("envelope", data)
    assert f"sent at 1700000000 ({len(data)} bytes)" in TEXT
    assert decode_turn(data) == TurnMessage(
        TURN_ID, "alpha", "add", [], {"a": 2, "b": 3}, 60.0, [], {}, True, 1700000000.0
    )


def test_the_every_field_example_is_what_pygents_sends_and_reads() -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    data = encode_turn(
        turn_id=TURN_ID,
        agent="alpha",
        tool="count",
        args=[],
        kwargs={"n": 3},
        timeout=60,
        tags=["docs"],
        hooks={"before_run": ["audit"]},
        reply=True,
        trace=trace,
        ts=1700000000,
    )
    documented("envelope-every-field", data)
    message = decode_turn(data)
    assert (message.tags, message.hooks, message.trace) == (
        ["docs"],
        {"before_run": ["audit"]},
        trace,
    )


def test_the_signature_example_signs_the_envelope_bytes() -> None:
    signature = sign(add_envelope(), SECRET).decode()
    assert blocks()["signature"] == f"{signature}\n"
    assert blocks()["fcall-send"].rstrip().endswith(f"{TURN_ID} <envelope bytes> {signature}")


def test_the_keys_are_those_pygents_uses() -> None:
    keys = Keys("staging")
    assert keys.turns("alpha") == "staging:pyg1:{alpha}:turns"  # the separator, the tag
    expected = [
        keys.turns("alpha"),
        keys.owner("alpha"),
        keys.state("alpha"),
        keys.cancel("alpha"),
        keys.done("alpha"),
        keys.reply("alpha", TURN_ID),
        keys.outbox("alpha"),
        keys.ready,
        keys.directory,
        keys.dead,
        keys.owned,
        keys.worker("<worker id>"),
        keys.lock("<name>"),
    ]
    assert blocks()["keys"].splitlines() == expected
    assert Keys().turns("alpha") == "pyg1:{alpha}:turns"
    send_keys = [keys.turns("alpha"), keys.owner("alpha"), keys.ready, keys.directory]
    assert blocks()["fcall-send"].startswith(f"FCALL pyg1_send 4 {' '.join(send_keys)} alpha ")
    xadd = blocks()["xadd-send"].splitlines()
    assert xadd[0].startswith(f"XADD {keys.turns('alpha')} * id {TURN_ID} m ")
    assert xadd[1] == f"EXISTS {keys.owner('alpha')}"
    assert xadd[2].startswith(f"XADD {keys.ready} MAXLEN ~ {SIGNALS_CAP} * as alpha ")


def test_the_functions_and_the_revision_are_those_installed() -> None:
    table = re.findall(r"^\| `(pyg1_\w+)` \|", TEXT, re.MULTILINE)
    assert table == list(_functions.FUNCTIONS)
    mentioned = set(re.findall(r"\bpyg1_\w+", TEXT))
    assert mentioned == set(_functions.FUNCTIONS)
    header = f"Functions library\n`{_functions.LIBRARY}`, revision {_functions.REVISION}."
    assert header in TEXT
    assert f"the library's revision: `{_functions.REVISION}`" in TEXT
    assert f"library revision {_functions.REVISION};" in TEXT


def test_the_limits_and_reasons_are_the_codes() -> None:
    settings, limits = WorkerSettings(), Limits()
    assert f"| envelope size | {limits.max_bytes:,} bytes" in TEXT
    assert f"nest lists and maps {limits.max_depth} deep" in TEXT
    assert f"| a value or result | {limits.max_bytes:,} bytes" in TEXT
    assert f"about the newest {REPLY_STREAM_CAP:,} entries, kept an hour" in TEXT
    assert settings.reply_ttl_ms == 3_600_000
    assert settings.dedup_window_ms == 600_000 and "| dedup window | 10 minutes" in TEXT
    assert f"about the newest {SIGNALS_CAP:,} signals" in TEXT
    assert f"(capped at about {_DEAD_CAP:,} entries)" in TEXT
    assert settings.lease_ms == 15_000 and "up to a lease (15 s by default)" in TEXT
    assert settings.max_deliveries == 5 and "`--max-deliveries` (5)" in TEXT
    reasons = re.findall(r"^\| `([a-z_]+)` \| (?!.*\| )", TEXT, re.MULTILINE)
    assert set(DeadLetterReason) <= set(reasons)


def test_the_dlq_list_example_has_the_fields_the_cli_prints() -> None:
    [example] = json.loads(blocks()["dlq-list"])
    assert list(example) == list(_letter(b"1-0", {}))
    assert all(isinstance(value, str) for value in example.values())


# -- the document against a real worker ------------------------------------------------------


@pytest.fixture(scope="module")
def namespace(redis_server: RedisEndpoint) -> Iterator[str]:
    """The namespace of the module's worker, which requires turns signed with ``s3cret``."""
    with module_workers(redis_server, env={"PYGENTS_SECRETS": SECRET.decode()}) as shared:
        yield shared.namespace


async def reply_lines(redis: Any, keys: Keys, turn_id: str) -> list[str]:
    """The turn's reply entries as the document writes them, up to the end or error."""
    key, last, lines = keys.reply("alpha", turn_id), "0-0", []
    while True:
        got = await redis.xread({key: last}, block=10_000)
        assert got, f"no reply on {key}"
        for entry_id, fields in got[0][1]:
            last = entry_id
            kind, seq, data = fields[b"k"].decode(), fields[b"q"].decode(), fields[b"d"]
            lines.append(f"k {kind}  q {seq}  d {data.hex(' ') if kind != 'x' else '(below)'}")
            if kind in ("e", "x"):
                return lines


@pytest.mark.integration
@pytest.mark.slow
async def test_a_worker_answers_the_documented_messages(
    raw_redis: aioredis.Redis, redis_url: str, namespace: str
) -> None:
    r: Any = raw_redis
    keys = Keys(namespace)
    send = [keys.turns("alpha"), keys.owner("alpha"), keys.ready, keys.directory]

    async def fcall(turn_id: str, data: bytes) -> None:
        await r.execute_command(
            "FCALL", "pyg1_send", 4, *send, "alpha", turn_id, data, sign(data, SECRET)
        )

    documented_lines = blocks()["replies"].splitlines()
    await fcall(TURN_ID, add_envelope())  # the document's envelope and signature
    assert await reply_lines(r, keys, TURN_ID) == documented_lines[:1]

    count = encode_turn(
        turn_id="count-1",
        agent="alpha",
        tool="count",
        args=[],
        kwargs={"n": 3},
        timeout=60,
        reply=True,
    )
    await fcall("count-1", count)
    assert await reply_lines(r, keys, "count-1") == documented_lines[1:]

    # The plain route, exactly as documented (and the signal, though it need not be).
    nope = encode_turn(turn_id="nope-1", agent="alpha", tool="nope", args=[], kwargs={}, timeout=60)
    await r.xadd(keys.turns("alpha"), {"id": "nope-1", "m": nope, "s": sign(nope, SECRET)})
    if not await r.exists(keys.owner("alpha")):
        await r.xadd(keys.ready, {"as": "alpha"}, maxlen=SIGNALS_CAP, approximate=True)
    assert await reply_lines(r, keys, "nope-1") == blocks()["replies-refused"].splitlines()
    [(_id, error)] = await r.xrange(keys.reply("alpha", "nope-1"))
    documented("refused-error", error[b"d"])

    cli = [sys.executable, "-m", "pygents_dist", "--redis-url", redis_url]
    listed = await asyncio.to_thread(
        subprocess.run,
        [*cli, "--namespace", namespace, "--json", "dlq", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    [letter] = json.loads(listed.stdout)
    [example] = json.loads(blocks()["dlq-list"])
    assert list(letter) == list(example)
    stable = ("agent", "reason", "detail")
    assert {k: letter[k] for k in stable} == {k: example[k] for k in stable}
    assert re.fullmatch(r"\d+-\d+", letter["entry"]) and letter["id"] == "nope-1"
    assert re.fullmatch(r"\d+\.\d+", letter["ts"])
