"""What the ``pygents`` ops commands do: status, send, dead letters. Output is text or JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from pygents_dist import _wire
from pygents_dist._client import Client

__all__ = ["dead_letters", "emit", "send", "status"]


def emit(as_json: bool, data: Any, text: str | None = None) -> None:
    """Print ``data`` as JSON, or ``text`` (default: ``data`` as JSON too)."""
    if as_json or text is None:
        print(json.dumps(data, default=str))
    else:
        print(text)


def _progress(done: int, total: int, what: str) -> None:
    if not sys.stderr.isatty() and done not in (total,) and done % 1000:
        return
    width = 30
    filled = int(width * done / total) if total else width
    sys.stderr.write(f"\r{what} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


async def _snapshot(client: Client) -> dict[str, Any]:
    transport = client.transport
    agents = sorted(await transport.directory())
    rows = await transport.agent_status(agents)
    now_ms = time.time() * 1000
    for row in rows:
        oldest = row.pop("oldest_pending")
        row["oldest_pending_age_s"] = (
            round((now_ms - int(str(oldest).split("-")[0])) / 1000, 1) if oldest else None
        )
    workers = []
    for worker_id, blob in sorted((await transport.workers()).items()):
        info = _wire.unpack(blob)
        info["id"] = worker_id
        info["heartbeat_age_s"] = round(time.time() - float(info.get("ts", 0)), 1)
        workers.append(info)
    return {"agents": rows, "workers": workers, "dead_letters": await transport.dead_count()}


def _render(snapshot: dict[str, Any]) -> str:
    lines = [f"{'AGENT':<24} {'DEPTH':>6} {'IN-FLIGHT':>9} {'OLDEST':>8} {'PAUSED':>6}  OWNER"]
    for row in snapshot["agents"]:
        age = row["oldest_pending_age_s"]
        lines.append(
            f"{row['agent']:<24} {row['depth']:>6} {row['in_flight']:>9} "
            f"{'-' if age is None else f'{age}s':>8} {'yes' if row['paused'] else 'no':>6}  "
            f"{row['owner'] or '-'}"
        )
    lines.append("")
    lines.append(f"{'WORKER':<40} {'AGENTS':>6} {'TURNS':>8} {'BEAT':>6}  VERSION")
    for w in snapshot["workers"]:
        lines.append(
            f"{w['id']:<40} {w.get('agents', 0):>6} {w.get('turns', 0):>8} "
            f"{w['heartbeat_age_s']:>5}s  {w.get('version', '?')}"
        )
    lines.append("")
    lines.append(f"dead letters: {snapshot['dead_letters']}")
    return "\n".join(lines)


async def status(client: Client, as_json: bool, watch: float | None) -> int:
    """Print agents, workers and dead-letter count, once or every ``watch`` seconds."""
    while True:
        snapshot = await _snapshot(client)
        if watch and not as_json:
            sys.stdout.write("\x1b[2J\x1b[H")
        emit(as_json, snapshot, _render(snapshot))
        if not watch:
            return 0
        await asyncio.sleep(watch)


async def send(client: Client, ns: argparse.Namespace, kwargs: dict[str, Any]) -> int:
    """Send one turn; with ``--wait``/``--stream`` print its result or values."""
    if ns.stream:
        async for value in client.stream(ns.agent, ns.tool, kwargs=kwargs, timeout=ns.timeout):
            emit(ns.json, value, str(value))
        return 0
    if ns.wait:
        result = await client.call(ns.agent, ns.tool, kwargs=kwargs, timeout=ns.timeout)
        emit(ns.json, result, str(result))
        return 0
    turn_id = await client.send(ns.agent, ns.tool, kwargs=kwargs, timeout=ns.timeout)
    emit(ns.json, {"turn_id": turn_id}, turn_id)
    return 0


def _letter(entry_id: bytes, fields: dict[bytes, bytes]) -> dict[str, Any]:
    out: dict[str, Any] = {"entry": entry_id.decode()}
    for key in (b"agent", b"reason", b"detail", b"id", b"worker", b"ts"):
        out[key.decode()] = fields.get(key, b"").decode(errors="replace")
    return out


async def dead_letters(client: Client, ns: argparse.Namespace) -> int:
    """``dlq list|show|replay|purge``."""
    transport = client.transport
    if ns.action == "list":
        letters = [_letter(i, f) for i, f in await transport.dead_letters(ns.count)]
        text = "\n".join(
            f"{d['entry']}  {d['agent']:<16} {d['reason']:<20} {d['detail']}" for d in letters
        )
        emit(ns.json, letters, text or "no dead letters")
        return 0
    if ns.action == "show":
        found = await transport.dead_letters(1, ns.entry_id)
        if not found or found[0][0].decode() != ns.entry_id:
            print(f"error: no dead letter {ns.entry_id}", file=sys.stderr)
            return 1
        entry_id, fields = found[0]
        letter = _letter(entry_id, fields)
        try:
            letter["message"] = _wire.unpack(fields.get(b"m", b""))
        except Exception:
            letter["message_raw"] = fields.get(b"m", b"")[:2000].hex()
        emit(ns.json, letter, json.dumps(letter, indent=2, default=str))
        return 0
    entries = await transport.dead_letters(1_000_000)
    if ns.entry_ids:
        wanted = set(ns.entry_ids)
        entries = [e for e in entries if e[0].decode() in wanted]
    if ns.action == "purge":
        removed = await transport.delete_dead([e[0] for e in entries])
        emit(ns.json, {"purged": removed}, f"purged {removed} dead letter(s)")
        return 0
    replayed = 0
    for start in range(0, len(entries), 500):
        chunk = entries[start : start + 500]
        turns = [
            (f[b"agent"].decode(), f.get(b"id", b"").decode(), f[b"m"], f.get(b"s", b""))
            for _i, f in chunk
        ]
        await transport.send_turns(turns)
        await transport.delete_dead([i for i, _f in chunk])
        replayed += len(chunk)
        _progress(replayed, len(entries), "replaying")
    emit(ns.json, {"replayed": replayed}, f"replayed {replayed} dead letter(s)")
    return 0
