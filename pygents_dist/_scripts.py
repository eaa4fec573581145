"""The Lua scripts: their text, how they are composed, loaded and run.

Scripts live in ``lua/*.lua``. Redis scripts cannot import, so shared Lua is pasted in at its
``-- #include`` marker, and two compositions are built here once: commit-then-fetch (one
agent's batch committed and the next read in one call) and commit-many (many agents' batches
in one call). Scripts go by SHA (``EVALSHA``); a script Redis does not know (it restarted or
flushed its scripts) is loaded and run again, so callers never see ``NOSCRIPT``.

``Scripts.coalesced`` lets many tasks share a round trip: calls made while others are in
flight go out together in the next pipeline. The Redis Functions library other languages call
(``_functions.py``) is composed of the same files, so a script and its function share one
source.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
from collections.abc import Iterable, Sequence
from typing import Any

from pygents_dist._connections import Executor
from pygents_dist._redis_errors import first_error, is_missing_script, translate

__all__ = ["COMMAND", "NODE_WIDE", "ScriptCall", "Scripts", "lua_text"]

#: One script call: (script name, KEYS, ARGV); with the name ``COMMAND``, a plain command
#: (its words in KEYS) sent in its place in the same round trip.
type ScriptCall = tuple[str, list[Any], list[Any]]
COMMAND = ""

_FILES = (
    "renew",
    "release",
    "fetch",
    "commit",
    "take",
    "take_many",
    "send",
    "append",
    "cancel",
    "pause",
    "resume",
    "forget",
    "rate",
    "slots_take",
    "delay",
    "move_due",
    "cancel_delayed",
    "hold",
    "fire",
    "schedule_put",
    "schedule_rm",
    "admit",
)
#: Script calls of many tasks sent in one pipeline, and such pipelines in flight at once.
_COALESCED_CALLS_MAX = 128
_COALESCED_FLIGHTS = 2

#: commit.lua then fetch.lua in one script call: each file's text becomes the body of a
#: function whose KEYS and ARGV parameters shadow the script's. KEYS: commit's keys, then
#: fetch's; ARGV[1] how many keys and ARGV[2] how many arguments are commit's, then commit's
#: arguments, then fetch's. Returns {commit's reply, fetch's reply} (fetch runs only after a
#: commit: a fenced-out batch reads nothing).
_COMMIT_FETCH = """
local nkeys, nargs = tonumber(ARGV[1]), tonumber(ARGV[2])
local commit_keys, fetch_keys, commit_args, fetch_args = {}, {}, {}, {}
for i = 1, #KEYS do
  if i <= nkeys then commit_keys[i] = KEYS[i] else fetch_keys[i - nkeys] = KEYS[i] end
end
for i = 3, #ARGV do
  if i <= 2 + nargs then commit_args[i - 2] = ARGV[i] else fetch_args[i - 2 - nargs] = ARGV[i] end
end
local function commit(KEYS, ARGV)
<commit.lua>
end
local function fetch(KEYS, ARGV)
<fetch.lua>
end
local done = commit(commit_keys, commit_args)
if done ~= 1 then return {done, {-1}} end
return {done, fetch(fetch_keys, fetch_args)}
"""

#: commit.lua for many agents in one script call. ARGV[1] how many agents; then per agent:
#: its number of keys, '1' to give the lease up when its stream is empty, its owner value
#: and its packed ops; KEYS: each agent's commit keys in turn. Returns per agent {committed,
#: entries left in its stream, released (0/1)}; a released agent's empty stream is deleted
#: with its group (``lua/send.lua`` makes both again for its next turn).
_COMMIT_MANY = """
local function commit(KEYS, ARGV)
<commit.lua>
end
local out, k, a = {}, 0, 2
for i = 1, tonumber(ARGV[1]) do
  local nkeys, release = tonumber(ARGV[a]), ARGV[a + 1]
  local keys = {}
  for j = 1, nkeys do keys[j] = KEYS[k + j] end
  local done = commit(keys, {ARGV[a + 2], ARGV[a + 3]})
  local left = redis.call('XLEN', keys[1])
  local released = 0
  if done == 1 and release == '1' and left == 0 then
    redis.call('DEL', keys[2], keys[1])
    released = 1
  end
  out[i] = {done, left, released}
  k, a = k + nkeys, a + 4
end
return out
"""


#: A script for one Redis Cluster primary: its KEYS come in ARGV (after their count), one of
#: them declared as KEYS[1] to route the call; the flag lets it touch keys of other slots
#: of the same primary. First an EXISTS over each run of keys with one hash tag (one slot: a
#: command may not span slots even so): a key that is not on this primary fails the call
#: before anything is written (``_node_groups.py``).
_NODE_WIDE = """#!lua flags=allow-cross-slot-keys
local nkeys = tonumber(ARGV[1])
local KEYS, ARGV = {unpack(ARGV, 2, nkeys + 1)}, {unpack(ARGV, nkeys + 2)}
local i = 1
while i <= #KEYS do
  local tag, j = string.match(KEYS[i], '{(.-)}'), i
  while j < #KEYS and string.match(KEYS[j + 1], '{(.-)}') == tag do j = j + 1 end
  redis.call('EXISTS', unpack(KEYS, i, j))
  i = j + 1
end
<body>
"""
#: The group scripts that have a ``<name>_node`` variant.
NODE_WIDE = ("take_many", "commit_many", "append")


def lua_text(name: str) -> str:
    """The text of ``lua/<name>.lua``, includes pasted in and comment lines dropped (some
    scripts travel with every call, as ``EVAL``). The Redis Functions library
    (``_functions.py``) is composed of these texts too."""
    folder = importlib.resources.files("pygents_dist") / "lua"
    body = (folder / f"{name}.lua").read_text()
    body = body.replace("-- #include flags.lua", (folder / "flags.lua").read_text())
    return "\n".join(x for x in body.splitlines() if not x.lstrip().startswith("--"))


def _sources() -> dict[str, str]:
    """Every script's text by name (see ``lua_text``), and the compositions."""
    sources = {name: lua_text(name) for name in _FILES}
    sources["commit_fetch"] = _COMMIT_FETCH.replace("<commit.lua>", sources["commit"]).replace(
        "<fetch.lua>", sources["fetch"]
    )
    sources["commit_many"] = _COMMIT_MANY.replace("<commit.lua>", sources["commit"])
    for name in NODE_WIDE:  # the body's own flags line, if any, is the composition's
        body = "\n".join(x for x in sources[name].splitlines() if not x.startswith("#!"))
        sources[f"{name}_node"] = _NODE_WIDE.replace("<body>", body)
    return sources


class Scripts:
    """The scripts of one transport, run over its connections.

    Guarantees: the calls of one ``run`` go out in order in one round trip; a script Redis
    lost is loaded and that call alone runs again after the others (so a script that must
    not run out of order behind others is sent on its own). Error replies are raised as
    ``pygents_dist.errors`` types.
    """

    def __init__(self, connections: Executor) -> None:
        self._connections = connections
        self.sources = _sources()
        self.shas = {
            name: hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
            for name, text in self.sources.items()
        }
        self._queued: list[tuple[Sequence[ScriptCall], asyncio.Future[list[Any]]]] = []
        self._flushers: set[asyncio.Task[None]] = set()
        self._direct = 0

    def evalsha(self, name: str, keys: Sequence[Any], args: Sequence[Any]) -> tuple[Any, ...]:
        """The command running script ``name`` by SHA."""
        return ("EVALSHA", self.shas[name], len(keys), *keys, *args)

    def eval(self, name: str, keys: Sequence[Any], args: Sequence[Any]) -> tuple[Any, ...]:
        """The command running script ``name`` with its text (for rare paths that pipeline it
        behind other commands, where a missing script must not cost a retry)."""
        return ("EVAL", self.sources[name], len(keys), *keys, *args)

    async def run_one(self, name: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run one script; its reply."""
        (got,) = await self.run([(name, list(keys), list(args))], name)
        return got

    async def run(
        self, calls: Sequence[ScriptCall], what: str, raise_errors: bool = True
    ) -> list[Any]:
        """Run scripts ``(name, keys, args)`` in order, pipelined in one round trip.

        A script Redis does not know (it restarted) did not run: it is loaded and run again
        on its own, after the others. A script's error is raised (translated), or with
        ``raise_errors=False`` returned in its place as redis-py's exception.
        """
        commands = [
            self.evalsha(name, keys, args) if name else tuple(keys) for name, keys, args in calls
        ]
        results = await self._connections.execute(commands, what)
        missing = [i for i, got in enumerate(results) if is_missing_script(got)]
        if missing:  # Redis restarted since the scripts were loaded: load them, run those again
            await self.load({calls[i][0] for i in missing})
            again = await self._connections.execute([commands[i] for i in missing], what)
            for i, got in zip(missing, again, strict=True):
                results[i] = got
        if raise_errors:
            first_error(results, what)
        return results

    async def load(self, names: Iterable[str]) -> None:
        """Load scripts into Redis (``SCRIPT LOAD``)."""
        loads = [("SCRIPT", "LOAD", self.sources[name]) for name in names]
        first_error(await self._connections.execute(loads, "script load"), "script load")

    async def coalesced(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """``run(calls)``, sent together with the script calls other tasks make at the same
        moment: calls made while pipelines are in flight share the next one, so many agents
        share one round trip and its client-side cost. Alone, a call goes at once.
        """
        if not self._flushers and not self._direct:  # nothing in flight: go at once
            self._direct += 1
            try:
                if len(calls) == 1:
                    name, keys, args = calls[0]
                    return [await self.run_one(name, keys, args)]
                return await self.run(calls, "scripts")
            finally:
                self._direct -= 1
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queued.append((calls, future))
        if len(self._flushers) < _COALESCED_FLIGHTS:
            task = asyncio.create_task(self._flush())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        return await future

    async def _flush(self) -> None:
        try:
            await self._flush_loop()
        finally:
            # Leave the in-flight set as soon as the queue is seen empty, with no await in
            # between: a call queued after that must start a flusher of its own (waiting for
            # the done callback left such a call waiting forever when both flights ended).
            task = asyncio.current_task()
            if task is not None:
                self._flushers.discard(task)

    async def _flush_loop(self) -> None:
        while self._queued:
            queued = self._queued[:_COALESCED_CALLS_MAX]
            del self._queued[:_COALESCED_CALLS_MAX]
            calls = [call for group, _future in queued for call in group]
            try:
                results = await self.run(calls, "scripts", raise_errors=False)
            except asyncio.CancelledError:
                for _group, future in queued:
                    future.cancel()
                raise
            except Exception as exc:  # the connection: every caller learns it
                for _group, future in queued:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for group, future in queued:
                got = results[start : start + len(group)]
                start += len(group)
                if future.done():
                    continue
                error = next((r for r in got if isinstance(r, Exception)), None)
                if error is None:
                    future.set_result(got)
                else:
                    future.set_exception(translate(error, "scripts"))
