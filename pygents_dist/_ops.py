"""What the ``pygents`` ops commands do: status, send, pause/resume, dead letters, and the
Functions library.

Output is text for people or, with ``--json``, one JSON document a line. Problems print one
``error: ...`` line on stderr (``_cli`` maps them to exit codes); input is checked before
anything is sent, so a refused command leaves Redis as it was. Long operations (replaying or
purging thousands of dead letters) report progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from pygents.registry import split_instance
from pygents_dist import (
    _control,
    _dead_letters,
    _directory,
    _functions,
    _replies,
    _schedules,
    _wire,
)
from pygents_dist._client import Client
from pygents_dist._replies import ReplyKind
from pygents_dist._transport import Entry
from pygents_dist.errors import DistError, UnknownAgentError

__all__ = [
    "UsageError",
    "dead_letters",
    "emit",
    "functions",
    "parse_json_arguments",
    "send",
    "status",
]

_PAGE = 500


class UsageError(DistError):
    """Bad command-line input, found before anything was sent."""


def emit(as_json: bool, data: Any, text: str | None = None) -> None:
    """Print ``data`` as JSON, or ``text`` (default: ``data`` as JSON too)."""
    if as_json or text is None:
        print(json.dumps(data, default=_jsonable), flush=True)
    else:
        print(text, flush=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=_jsonable)


def parse_json_arguments(ns: argparse.Namespace) -> tuple[list[Any], dict[str, Any]]:
    """``(args, kwargs)`` from ``--args`` / ``--kwargs``.

    Raises:
        UsageError: not valid JSON, or not a list / an object.
    """
    try:
        kwargs = json.loads(ns.kwargs)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--kwargs is not valid JSON ({exc}): {ns.kwargs!r}") from None
    if not isinstance(kwargs, dict):
        raise UsageError(f'--kwargs must be a JSON object like {{"n": 3}}, got {ns.kwargs!r}')
    try:
        args = json.loads(ns.args)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--args is not valid JSON ({exc}): {ns.args!r}") from None
    if not isinstance(args, list):
        raise UsageError(f"--args must be a JSON array like [1, 2], got {ns.args!r}")
    return args, kwargs


class _Progress:
    """``what [####....] done/total`` on a terminal; a line every 1000 (and at the end)
    otherwise, so logs of a CI job or a pipe stay short."""

    def __init__(self, what: str, total: int) -> None:
        self.what = what
        self.total = total
        self.tty = sys.stderr.isatty()
        self.shown = 0

    def update(self, done: int) -> None:
        total = max(self.total, done)
        if self.tty:
            width = 30
            filled = int(width * done / total) if total else width
            bar = "#" * filled + "." * (width - filled)
            sys.stderr.write(f"\r{self.what} [{bar}] {done}/{total}")
        elif done - self.shown >= 1000:
            sys.stderr.write(f"{self.what}: {done}/{total}\n")
            self.shown = done
        sys.stderr.flush()

    def finish(self, done: int) -> None:
        if self.tty:
            self.update(done)
            sys.stderr.write("\n")
        elif done != self.shown and done >= 1000:
            sys.stderr.write(f"{self.what}: {done}/{max(self.total, done)}\n")
        sys.stderr.flush()


# -- status ------------------------------------------------------------------------------


async def _snapshot(client: Client) -> dict[str, Any]:
    transport = client.transport
    agents = sorted(await _directory.directory(transport))
    rows = await _control.agent_status(transport, agents)
    now_ms = time.time() * 1000
    for row in rows:
        oldest = row.pop("oldest_pending")
        row["oldest_pending_age_s"] = (
            round((now_ms - int(str(oldest).split("-")[0])) / 1000, 1) if oldest else None
        )
    workers = []
    for worker_id, blob in sorted((await _control.workers(transport)).items()):
        try:
            info = _wire.unpack(blob)
        except Exception:
            info = {}
        if not isinstance(info, dict):
            info = {}
        info["id"] = worker_id
        info["heartbeat_age_s"] = round(time.time() - float(info.get("ts", 0)), 1)
        workers.append(info)
    kinds = [summary._asdict() for summary in await client.kinds()]
    for row in kinds:
        taken_ms = row.pop("oldest_taken_ms")
        row["oldest_taken_age_s"] = (
            None if taken_ms is None else round(now_ms / 1000 - taken_ms / 1000, 1)
        )
    snapshot = {
        "ts": round(time.time(), 3),
        "agents": rows,
        "kinds": kinds,
        "workers": workers,
        "dead_letters": await _dead_letters.dead_count(transport),
        "schedules": [i.as_dict() for i in await _schedules.listing(transport)],
    }
    if transport.cluster is not None:
        snapshot["cluster"] = await transport.cluster.health()
    return snapshot


def _render(snapshot: dict[str, Any]) -> str:
    cluster = snapshot.get("cluster")
    node = f" {'NODE':<21}" if cluster else ""
    lines = [
        f"{'AGENT':<24} {'DEPTH':>6} {'IN-FLIGHT':>9} {'OLDEST':>8} {'PAUSED':>6}{node}  OWNER"
    ]
    for row in snapshot["agents"]:
        age = row["oldest_pending_age_s"]
        where = f" {row.get('node', '-'):<21}" if cluster else ""
        lines.append(
            f"{row['agent']:<24} {row['depth']:>6} {row['in_flight']:>9} "
            f"{'-' if age is None else f'{age}s':>8} {'yes' if row['paused'] else 'no':>6}"
            f"{where}  {row['owner'] or '-'}"
        )
    if not snapshot["agents"]:
        lines.append("(no agents declared: is a worker running with this namespace?)")
    if snapshot["kinds"]:
        lines.append("")
        lines.append(f"{'KIND':<24} {'INSTANCES':>10} {'ACTIVE':>7} {'QUEUED':>7} {'OLDEST':>10}")
        for row in snapshot["kinds"]:
            age = row["oldest_taken_age_s"]
            lines.append(
                f"{row['kind']:<24} {row['instances']:>10,} {row['active']:>7,} "
                f"{row['queued']:>7,} {'-' if age is None else f'{age}s':>10}"
            )
        lines.append(
            "(OLDEST: since the least recently taken instance was taken; list them "
            "with `pygents instances KIND`)"
        )
    lines.append("")
    lines.append(f"{'WORKER':<40} {'AGENTS':>6} {'TURNS':>8} {'BEAT':>6}  VERSION")
    for w in snapshot["workers"]:
        lines.append(
            f"{w['id']:<40} {w.get('agents', 0):>6} {w.get('turns', 0):>8} "
            f"{w['heartbeat_age_s']:>5}s  {w.get('version', '?')}"
        )
    if not snapshot["workers"]:
        lines.append("(no live workers)")
    if cluster:
        lines.append("")
        lines.append(f"cluster: {cluster['state']}")
        lines.append(f"{'NODE':<22} {'ROLE':<8} {'SLOTS':>6} {'REPLICAS':>8}  STATE")
        for n in cluster["nodes"]:
            replicas = n.get("replicas", "")
            lines.append(
                f"{n['node']:<22} {n['role']:<8} {n['slots']:>6} {replicas!s:>8}  "
                f"{'FAILED' if n['failed'] else 'ok'}"
            )
    lines.append("")
    lines.append(f"dead letters: {snapshot['dead_letters']}")
    if snapshot["schedules"]:
        lines.append("")
        lines.append(f"{'SCHEDULE':<41} {'EVERY/CRON':<18} NEXT (UTC)")
        for row in snapshot["schedules"]:
            lines.append(
                f"{row['agent'] + ' ' + row['name']:<41} {row['schedule']:<18} "
                f"{row['next_due'] or 'paused'}"
            )
    return "\n".join(lines)


async def status(client: Client, as_json: bool, watch: float | None) -> int:
    """Print agents, workers and the dead-letter count, once or every ``watch`` seconds.

    With ``watch``, runs until SIGINT/SIGTERM and then exits 0; with ``--json`` each refresh
    is one JSON line.
    """
    stop = asyncio.Event()
    if watch:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    while True:
        snapshot = await _snapshot(client)
        if watch and not as_json and sys.stdout.isatty():
            sys.stdout.write("\x1b[2J\x1b[H")
        emit(as_json, snapshot, _render(snapshot))
        if not watch:
            return 0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), watch)
        if stop.is_set():
            return 0


async def instances(client: Client, kind: str, offset: int, count: int, as_json: bool) -> int:
    """Print a page of ``kind``'s instances, least recently taken first, with their status."""
    page = await client.instances(kind, offset=offset, count=count)
    rows = await _control.agent_status(client.transport, [name for name, _taken in page])
    now = time.time()
    for row, (_name, taken_s) in zip(rows, page, strict=True):
        row.pop("oldest_pending")
        row["taken_age_s"] = round(now - taken_s, 1)
    lines = [f"{'INSTANCE':<40} {'TAKEN':>10} {'DEPTH':>6} {'IN-FLIGHT':>9} {'PAUSED':>6}  OWNER"]
    for row in rows:
        lines.append(
            f"{row['agent']:<40} {row['taken_age_s']:>9}s {row['depth']:>6} "
            f"{row['in_flight']:>9} {'yes' if row['paused'] else 'no':>6}  {row['owner'] or '-'}"
        )
    if not rows:
        lines.append(f"(no instances of {kind!r} from offset {offset})")
    elif len(rows) == count:
        lines.append(f"(more: --offset {offset + count})")
    emit(as_json, {"kind": kind, "offset": offset, "instances": rows}, "\n".join(lines))
    return 0


# -- send --------------------------------------------------------------------------------


async def _check_tool(client: Client, agent: str, tool: str) -> None:
    transport = client.transport
    parts = split_instance(agent)
    blob = await _directory.description(transport, agent if parts is None else parts[0])
    if blob is None:
        known = sorted(await _directory.directory(transport))
        hint = f"; declared agents: {', '.join(known[:20])}" if known else ""
        raise UnknownAgentError(f"no worker has declared an agent named {agent!r}{hint}")
    try:
        tools = _wire.unpack(blob).get("tools") or []
    except Exception:
        return  # an unreadable description: let the worker judge
    if tool not in tools:
        raise DistError(f"agent {agent!r} has no tool {tool!r}; its tools: {', '.join(tools)}")


async def send(
    client: Client, ns: argparse.Namespace, args: list[Any], kwargs: dict[str, Any]
) -> int:
    """Send one turn; with ``--wait`` print its result, with ``--stream`` each value as it
    arrives. Without either, print the turn id (the turn is stored in Redis by then)."""
    await _check_tool(client, ns.agent, ns.tool)
    waiting = ns.wait or ns.stream
    turn_id = await client.send(
        ns.agent,
        ns.tool,
        args=args,
        kwargs=kwargs,
        timeout=ns.timeout,
        reply=waiting,
        trace=ns.trace,
        delay_s=ns.delay_s,
        at=ns.at_s,
    )
    if not waiting:
        emit(ns.json, {"turn_id": turn_id}, turn_id)
        return 0
    limit = ns.wait_timeout if ns.wait_timeout is not None else ns.timeout + 60
    values = 0
    try:
        async with asyncio.timeout(limit):
            async for kind, _seq, value in _replies.replies(client.transport, ns.agent, turn_id):
                if kind == ReplyKind.VALUE:
                    values += 1
                    emit(ns.json, value, _show(value))
                elif kind == ReplyKind.END and ns.wait and not (values and value is None):
                    emit(ns.json, value, _show(value))
    except TimeoutError:
        raise DistError(
            f"no result for turn {turn_id} within {limit:g}s; it stays queued "
            "(see `pygents status`)"
        ) from None
    return 0


# -- the Functions library -----------------------------------------------------------------


async def functions(client: Client, as_json: bool, install: bool) -> int:
    """``functions [--install]``: the revision of the Functions library Redis has (after
    installing this version's, with ``install``)."""
    transport = client.transport
    found = await _functions.loaded_revision(transport)
    if install:
        found = (await _functions.install(transport)).revision
    library, ours = _functions.LIBRARY, _functions.REVISION
    data = {"library": library, "loaded": found, "revision": ours}
    loaded = "not loaded" if found is None else f"revision {found} loaded"
    text = f"{library}: {loaded} (this pygents has revision {ours})"
    emit(as_json, data, text)
    return 0


# -- dead letters ------------------------------------------------------------------------


def _letter(entry_id: bytes, fields: dict[bytes, bytes]) -> dict[str, Any]:
    out: dict[str, Any] = {"entry": entry_id.decode()}
    for key in (b"agent", b"reason", b"detail", b"id", b"worker", b"ts"):
        out[key.decode()] = fields.get(key, b"").decode(errors="replace")
    return out


def _id_key(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _matches(ns: argparse.Namespace) -> Callable[[dict[bytes, bytes]], bool]:
    agent = getattr(ns, "agent", None)
    reason = getattr(ns, "reason", None)

    def check(fields: dict[bytes, bytes]) -> bool:
        if agent and fields.get(b"agent", b"").decode(errors="replace") != agent:
            return False
        return not (reason and fields.get(b"reason", b"").decode(errors="replace") != reason)

    return check


async def _scan(client: Client, ns: argparse.Namespace) -> AsyncIterator[tuple[int, list[Entry]]]:
    """``(letters scanned, those matching the filters)`` a page at a time, oldest first, up
    to the newest letter that existed when the scan began (later ones are left alone).

    Raises:
        UsageError: an entry id given on the command line is not a dead letter.
    """
    transport = client.transport
    matches = _matches(ns)
    if ns.entry_ids:
        found: list[Entry] = []
        for entry_id in ns.entry_ids:
            try:
                _id_key(entry_id)
            except ValueError:
                raise UsageError(
                    f"{entry_id!r} is not a stream entry id like 1700000000000-0"
                ) from None
            got = await _dead_letters.dead_letters(transport, 1, entry_id)
            if not got or got[0][0].decode() != entry_id:
                raise UsageError(f"no dead letter {entry_id} (nothing was changed)")
            found.append(got[0])
        yield len(found), [e for e in found if matches(e[1])]
        return
    newest = await _dead_letters.newest_dead_letter(transport)
    if newest is None:
        return
    last = _id_key(newest)
    after = "-"
    while True:
        page = await _dead_letters.dead_letters(transport, _PAGE, after)
        page = [e for e in page if _id_key(e[0]) <= last]
        if not page:
            return
        after = "(" + page[-1][0].decode()
        yield len(page), [e for e in page if matches(e[1])]


async def dead_letters(client: Client, ns: argparse.Namespace) -> int:
    """``dlq list|show|replay|purge``."""
    transport = client.transport
    if ns.action == "show":
        return await _show_letter(client, ns)
    if ns.action == "list":
        ns.entry_ids = []
        letters: list[dict[str, Any]] = []
        async for _scanned, page in _scan(client, ns):
            letters.extend(_letter(i, f) for i, f in page)
            if len(letters) >= ns.count:
                break
        letters = letters[: ns.count]
        text = "\n".join(
            f"{d['entry']}  {d['agent']:<16} {d['reason']:<20} {d['id'] or '-':<32} {d['detail']}"
            for d in letters
        )
        emit(ns.json, letters, text or "no dead letters")
        return 0
    total = len(ns.entry_ids) if ns.entry_ids else await _dead_letters.dead_count(transport)
    declared = set(await _directory.directory(transport))
    verb = "replaying" if ns.action == "replay" else "purging"
    progress = _Progress(verb, total)
    done = skipped = scanned = 0
    async for count, page in _scan(client, ns):
        scanned += count
        if ns.action == "purge":
            done += await _dead_letters.delete_dead(transport, [i for i, _f in page])
        else:
            batch = []
            for entry_id, f in page:
                agent = f.get(b"agent", b"").decode(errors="replace")
                parts = split_instance(agent)
                addressed = agent if parts is None else parts[0]
                if addressed not in declared or b"m" not in f:
                    skipped += 1
                    continue
                turn_id = f.get(b"id", b"").decode(errors="replace")
                batch.append((entry_id, agent, turn_id, f[b"m"], f.get(b"s", b"")))
            if batch:
                await _dead_letters.requeue_dead(transport, batch)
            done += len(batch)
        progress.update(scanned)
    progress.finish(scanned)
    if ns.action == "purge":
        emit(ns.json, {"purged": done}, f"purged {done} dead letter(s)")
        return 0
    text = f"replayed {done} dead letter(s)"
    if skipped:
        text += f"; skipped {skipped} for agents no worker declares (or with no message)"
    emit(ns.json, {"replayed": done, "skipped": skipped}, text)
    return 0


async def _show_letter(client: Client, ns: argparse.Namespace) -> int:
    try:
        _id_key(ns.entry_id)
    except ValueError:
        raise UsageError(f"{ns.entry_id!r} is not a stream entry id like 1700000000000-0") from None
    found = await _dead_letters.dead_letters(client.transport, 1, ns.entry_id)
    if not found or found[0][0].decode() != ns.entry_id:
        raise UsageError(f"no dead letter {ns.entry_id}")
    entry_id, fields = found[0]
    letter = _letter(entry_id, fields)
    try:
        letter["message"] = _wire.unpack(fields.get(b"m", b""))
    except Exception:
        letter["message_raw"] = fields.get(b"m", b"")[:2000].hex()
    letter["signed"] = bool(fields.get(b"s"))
    emit(ns.json, letter, json.dumps(letter, indent=2, default=_jsonable))
    return 0
