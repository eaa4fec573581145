"""The one layer that talks to Redis: connections, scripts, stream operations, errors.

Worker, client, locks, dead letters and the CLI all go through ``Transport``; nothing else
imports ``redis`` (but ``_connections.py``, the pipelined fast path the hot operations use).
Connection failures surface as ``ConnectionLostError`` (chained to the redis-py error);
commands are retried with exponential backoff first. Scripts are sent by SHA and reloaded
automatically after a Redis restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.resources
import itertools
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis

try:
    import hiredis
except ImportError:  # pragma: no cover - redis[hiredis] is a dependency
    hiredis = None  # type: ignore[assignment]
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pygents_dist._connections import CONNECTION_ERRORS, Connections
from pygents_dist._keys import GROUP, Keys
from pygents_dist._wire import pack_for_lua
from pygents_dist.errors import ConnectionLostError

__all__ = ["Entry", "Transport"]

T = TypeVar("T")
#: A stream entry: (entry id, {field: value}) with bytes throughout.
type Entry = tuple[bytes, dict[bytes, bytes]]
_SCRIPTS = ("renew", "release", "fetch", "commit", "take", "take_many", "send")
_READY_CAP = 100_000
#: Script calls of many agents sent in one pipeline, and such pipelines in flight at once.
_BATCH_MAX = 128
_BATCH_FLIGHTS = 2
_DEAD_CAP = 100_000
_KEYS_CACHED = 100_000


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
#: entries left in its stream, released (0/1)}.
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
    redis.call('DEL', keys[2])
    released = 1
  end
  out[i] = {done, left, released}
  k, a = k + nkeys, a + 4
end
return out
"""


def _hiredis_packing(base: type[Any]) -> type[Any]:
    """``base`` (a redis-py asyncio connection class) packing commands with hiredis's C
    packer, as redis-py's sync client does: its asyncio connections pack in Python, which
    costs more than the rest of a pipelined command. Values hiredis does not take (bool,
    bytearray) go through redis-py's packer and its errors."""

    class HiredisPacking(base):  # type: ignore[misc]
        def pack_command(self, *args: Any) -> list[bytes]:
            first = args[0]
            if isinstance(first, str):
                args = (*first.encode().split(), *args[1:])
            elif b" " in first:
                args = (*first.split(), *args[1:])
            try:
                return [hiredis.pack_command(args)]
            except TypeError:
                packed: list[bytes] = super().pack_command(*args)
                return packed

        def pack_commands(self, commands: Iterable[Sequence[Any]]) -> list[bytes]:
            return [b"".join([chunk for cmd in commands for chunk in self.pack_command(*cmd)])]

    HiredisPacking.__name__ = HiredisPacking.__qualname__ = f"HiredisPacking{base.__name__}"
    return HiredisPacking


def _entries(raw: Any) -> list[Entry]:
    out: list[Entry] = []
    for item in raw or ():
        entry_id, fields = item[0], item[1]
        if isinstance(fields, list):
            fields = dict(zip(fields[::2], fields[1::2], strict=False))
        out.append((entry_id, fields or {}))
    return out


def _taken_many(got: Any) -> list[Taken]:
    """``lua/take_many.lua``'s reply: a ``Taken`` per agent (status 0 with its first batch)."""
    out = []
    for one in got:
        status = int(one[0])
        if status != 0:
            out.append(Taken(status))
            continue
        taken = Taken(0, one[1].decode(), one[2] or None, one[3] or None)
        taken.entries = _entries(one[4])
        taken.flags = list(one[5])
        out.append(taken)
    return out


def _committed_many(got: Any) -> list[tuple[bool, int, bool]]:
    """The commit-many script's reply: ``(committed, entries left, released)`` per batch."""
    return [(bool(done), int(left), bool(released)) for done, left, released in got]


@dataclasses.dataclass(slots=True)
class Taken:
    """What ``Transport.take`` found (see ``lua/take.lua``).

    ``status``: 0 taken, -3 taken but the stream has no group, 1 owned by another worker,
    2 paused, 3 idle (1-3: no lease was taken). When taken: the owner value (fencing token),
    the context blobs, how many sends wait in the outbox, the claimed pending entries'
    delivery counts, and the first batch with its flags (``pending``: it holds claimed
    entries, read from this consumer's pending list).
    """

    status: int
    owner: str = ""
    queue: bytes | None = None
    pool: bytes | None = None
    outbox: int = 0
    counts: dict[bytes, int] = dataclasses.field(default_factory=dict)
    entries: list[Entry] = dataclasses.field(default_factory=list)
    flags: list[bytes] = dataclasses.field(default_factory=list)
    pending: bool = False


class Transport:
    """Redis access for one process: a connection pool, the scripts, typed operations.

    Example::

        transport = Transport.from_url("redis://localhost:6379/0", namespace="demo")
        await transport.ping()
        await transport.aclose()

    ``from_url`` accepts ``redis://``, ``rediss://`` (TLS) and ``unix://`` URLs with user and
    password; ``ssl_ca_certs`` and friends pass through to redis-py.
    """

    def __init__(self, client: aioredis.Redis, keys: Keys, retries: int = 5) -> None:
        # redis-py's annotations cannot express decode_responses=False (bytes everywhere),
        # so the client is untyped here and results are narrowed where they are read.
        self.redis: Any = client
        self.keys = keys
        pool = client.connection_pool
        self._fast = Connections(pool, retries=retries, limit=pool.max_connections)
        self._keys_of: dict[str, tuple[str, str, str, str, str, str]] = {}
        source = importlib.resources.files("pygents_dist") / "lua"
        flags = (source / "flags.lua").read_text()

        def text(name: str) -> str:
            # Redis scripts cannot import: shared Lua is pasted in at its marker. Comment
            # lines are dropped: some scripts travel with every call (EVAL).
            body = (source / f"{name}.lua").read_text().replace("-- #include flags.lua", flags)
            return "\n".join(x for x in body.splitlines() if not x.lstrip().startswith("--"))

        self._scripts = {name: client.register_script(text(name)) for name in _SCRIPTS}
        composed = _COMMIT_FETCH.replace("<commit.lua>", text("commit"))
        composed = composed.replace("<fetch.lua>", text("fetch"))
        self._scripts["commit_fetch"] = client.register_script(composed)
        many = _COMMIT_MANY.replace("<commit.lua>", text("commit"))
        self._scripts["commit_many"] = client.register_script(many)
        self._batch: list[tuple[Sequence[tuple[str, list[Any], list[Any]]], asyncio.Future[Any]]]
        self._batch = []
        self._flushers: set[asyncio.Task[None]] = set()
        self._direct = 0

    @classmethod
    def from_url(
        cls, url: str, *, namespace: str = "", retries: int = 5, **options: Any
    ) -> Transport:
        """A transport for ``url`` (commands retried ``retries`` times with backoff)."""
        retry = Retry(ExponentialBackoff(cap=1.0, base=0.02), retries)
        client = aioredis.Redis.from_url(
            url,
            retry=retry,
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
            health_check_interval=15,
            socket_keepalive=True,
            max_connections=options.pop("max_connections", 256),
            **options,
        )
        pool = client.connection_pool
        if hiredis is not None:
            pool.connection_class = _hiredis_packing(pool.connection_class)
        return cls(client, Keys(namespace), retries)

    async def aclose(self) -> None:
        """Close every connection."""
        await self._fast.aclose()
        await self.redis.aclose()

    async def _call(self, operation: Awaitable[T], what: str) -> T:
        try:
            return await operation
        except CONNECTION_ERRORS as exc:
            raise ConnectionLostError(f"Redis unreachable during {what}: {exc}") from exc

    async def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        (got,) = await self._run_scripts([(name, list(keys), list(args))], name)
        return got

    def _evalsha(self, name: str, keys: Sequence[Any], args: Sequence[Any]) -> tuple[Any, ...]:
        return ("EVALSHA", self._scripts[name].sha, len(keys), *keys, *args)

    async def _run_scripts(
        self,
        calls: Sequence[tuple[str, list[Any], list[Any]]],
        what: str,
        raise_errors: bool = True,
    ) -> list[Any]:
        """Run scripts ``(name, keys, args)`` in order, pipelined in one round trip.

        A script Redis does not know (it restarted) did not run: it is loaded and run again on
        its own, after the others. A script's error is raised, or returned in its place.
        """
        commands = [self._evalsha(name, keys, args) for name, keys, args in calls]
        results = await self._fast.execute(commands, what)
        missing = [i for i, got in enumerate(results) if isinstance(got, NoScriptError)]
        if missing:  # Redis restarted since the scripts were loaded: load them, run those again
            await self._load_scripts({calls[i][0] for i in missing})
            again = await self._fast.execute([commands[i] for i in missing], what)
            for i, got in zip(missing, again, strict=True):
                results[i] = got
        if raise_errors:
            for got in results:
                if isinstance(got, Exception):
                    raise got
        return results

    async def _checked(
        self, commands: Sequence[Sequence[Any]], what: str, wait_ms: int = 0
    ) -> list[Any]:
        """``Connections.execute``, raising the first error reply."""
        results = await self._fast.execute(commands, what, wait_ms)
        for got in results:
            if isinstance(got, Exception):
                raise got
        return results

    async def _load_scripts(self, names: Iterable[str]) -> None:
        loads = [("SCRIPT", "LOAD", self._scripts[name].script) for name in names]
        for got in await self._fast.execute(loads, "script load"):
            if isinstance(got, Exception):
                raise got

    async def _batched(self, calls: Sequence[tuple[str, list[Any], list[Any]]]) -> list[Any]:
        """``_run_scripts(calls)``, sent together with the script calls other tasks make at the
        same moment: calls made while pipelines are in flight share the next one, so many
        agents share one round trip and its client-side cost. Alone, a call goes at once.
        """
        if not self._flushers and not self._direct:  # nothing in flight: go at once
            self._direct += 1
            try:
                if len(calls) == 1:
                    name, keys, args = calls[0]
                    return [await self._script(name, keys, args)]
                return await self._run_scripts(calls, "scripts")
            finally:
                self._direct -= 1
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._batch.append((calls, future))
        if len(self._flushers) < _BATCH_FLIGHTS:
            task = asyncio.create_task(self._flush_batches())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        return await future

    async def _flush_batches(self) -> None:
        try:
            await self._flush_batches_loop()
        finally:
            # Leave the in-flight set as soon as the queue is seen empty, with no await in
            # between: a call queued after that must start a flusher of its own (waiting for
            # the done callback left such a call waiting forever when both flights ended).
            task = asyncio.current_task()
            if task is not None:
                self._flushers.discard(task)

    async def _flush_batches_loop(self) -> None:
        while self._batch:
            batch = self._batch[:_BATCH_MAX]
            del self._batch[:_BATCH_MAX]
            calls = [call for group, _future in batch for call in group]
            try:
                results = await self._run_scripts(calls, "scripts", raise_errors=False)
            except asyncio.CancelledError:
                for _group, future in batch:
                    future.cancel()
                raise
            except Exception as exc:  # the connection: every caller learns it
                for _group, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for group, future in batch:
                got = results[start : start + len(group)]
                start += len(group)
                if future.done():
                    continue
                error = next((r for r in got if isinstance(r, Exception)), None)
                if error is None:
                    future.set_result(got)
                else:
                    future.set_exception(error)

    async def ping(self) -> None:
        """Check that Redis answers."""
        await self._call(self.redis.ping(), "ping")

    # -- directory and groups ------------------------------------------------------------

    async def declare(self, agents: dict[str, bytes]) -> None:
        """Record served agents in the directory and make sure each stream has its group.

        Groups are created at id 0 with MKSTREAM, so turns sent before any worker existed
        are delivered.
        """
        names = list(agents)
        for start in range(0, len(names), 1000):
            chunk = names[start : start + 1000]
            pipe = self.redis.pipeline(transaction=False)
            pipe.hset(self.keys.directory, mapping={n: agents[n] for n in chunk})
            for name in chunk:
                pipe.xgroup_create(self.keys.turns(name), GROUP, id="0", mkstream=True)
            results = await self._call(pipe.execute(raise_on_error=False), "declare")
            for result in results:
                if isinstance(result, Exception) and "BUSYGROUP" not in str(result):
                    raise result

    async def ensure_group(self, agent: str) -> None:
        """Recreate the agent's stream group (after Redis lost its data)."""
        try:
            await self._call(
                self.redis.xgroup_create(self.keys.turns(agent), GROUP, id="0", mkstream=True),
                "group create",
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def directory(self) -> dict[str, bytes]:
        """Every declared agent -> its msgpack description."""
        raw = await self._call(self.redis.hgetall(self.keys.directory), "directory")
        return {k.decode(): v for k, v in raw.items()}

    async def is_declared(self, agent: str) -> bool:
        """Whether some worker has declared ``agent``."""
        (found,) = await self._checked([("HEXISTS", self.keys.directory, agent)], "lookup")
        return bool(found)

    # -- sending -------------------------------------------------------------------------

    async def send_turns(
        self, turns: Sequence[tuple[str, str, bytes, bytes]], wait: str | None = None
    ) -> list[Entry]:
        """Append turns ``(agent, turn_id, envelope, signature)`` and signal their agents.

        One round trip for the whole batch. When this returns the turns are in Redis. With
        ``wait`` (a reply stream), the same round trip then waits up to 2 s for its first
        entries and returns them. Agents that have an owner are not signalled: their owner
        reads new turns before it gives the agent up (``lua/send.lua``).
        """
        keys, args = self._send_call(turns)
        if wait is None:
            await self._run_scripts([("send", keys, args)], "send")
            return []
        commands = [
            self._evalsha("send", keys, args),
            ("XREAD", "COUNT", 500, "BLOCK", 2_000, "STREAMS", wait, "0-0"),
        ]
        # A send that finds its script missing (Redis restarted) must not leave the wait
        # behind it blocking: the round trip ends at the error, and goes again once loaded.
        results = await self._fast.execute(commands, "send", 2_000, until_error=True)
        if isinstance(results[0], NoScriptError):
            await self._load_scripts(["send"])
            results = await self._fast.execute(commands, "send", 2_000, until_error=True)
        for got in results:
            if isinstance(got, Exception):
                raise got
        return _entries(results[1][0][1]) if results[1] else []

    def _send_command(
        self, turns: Sequence[tuple[str, str | bytes, bytes, bytes]]
    ) -> tuple[Any, ...]:
        """The ``lua/send.lua`` call appending ``turns``, as an EVAL: for rare paths that
        pipeline it behind other commands, where a missing script must not cost a retry."""
        keys, args = self._send_call(turns)
        return ("EVAL", self._scripts["send"].script, len(keys), *keys, *args)

    def _send_call(
        self, turns: Sequence[tuple[str, str | bytes, bytes, bytes]]
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of ``lua/send.lua`` appending ``turns`` and signalling their
        unowned agents."""
        by_agent: dict[str, list[Any]] = {}
        for agent, turn_id, data, signature in turns:
            by_agent.setdefault(agent, []).extend((turn_id, data, signature))
        keys: list[str] = [self.keys.ready]
        args: list[Any] = [_READY_CAP]
        for agent, parts in by_agent.items():
            keys += self._agent_keys(agent)[:2]  # turns, owner
            args += (agent, len(parts) // 3, *parts)
        return keys, args

    async def signal(self, agents: Iterable[str]) -> None:
        """Announce that ``agents`` have work, owned or not (resume and shutdown: an owner
        may be about to let go without looking at the stream again)."""
        ready = self.keys.ready
        names = list(agents)
        commands = [
            ("XADD", ready, "MAXLEN", "~", _READY_CAP, "*", "as", " ".join(names[i : i + 1000]))
            for i in range(0, len(names), 1000)
        ]
        if commands:
            await self._checked(commands, "signal")

    async def last_signal_id(self) -> bytes:
        """The id of the newest signal (read from there to see only new ones)."""
        info = await self._call(self.redis.xrevrange(self.keys.ready, count=1), "signals")
        return info[0][0] if info else b"0-0"

    async def read_signals(self, after: bytes, block_ms: int) -> list[Entry]:
        """Signals newer than ``after``, waiting up to ``block_ms`` for the first."""
        command = ("XREAD", "COUNT", 1000, "BLOCK", block_ms, "STREAMS", self.keys.ready, after)
        (raw,) = await self._checked([command], "signals", block_ms)
        return _entries(raw[0][1]) if raw else []

    async def backlog(self, agents: Sequence[str]) -> list[int]:
        """Entries (unprocessed or in flight) in each agent's stream."""
        out: list[int] = []
        for start in range(0, len(agents), 2000):
            chunk = agents[start : start + 2000]
            lengths = await self._checked([("XLEN", self.keys.turns(a)) for a in chunk], "backlog")
            out.extend(int(length) for length in lengths)
        return out

    # -- ownership -----------------------------------------------------------------------

    async def renew(self, leases: dict[str, str], lease_ms: int) -> dict[str, bool]:
        """Extend owned agents' leases; ``{agent: still ours}``."""
        if not leases:
            return {}
        calls = [("renew", [self.keys.owner(a)], [value, lease_ms]) for a, value in leases.items()]
        results = await self._run_scripts(calls, "renew")
        expiry = time.time() * 1000 + lease_ms
        await self.mark_owned(dict.fromkeys(leases, expiry), ())
        return {agent: bool(r) for agent, r in zip(leases, results, strict=True)}

    async def release(self, agent: str, value: str) -> None:
        """Give up ``agent`` if still ours."""
        await self._script("release", [self.keys.owner(agent)], [value])
        await self.mark_owned({}, [agent])

    async def expired_owners(self) -> list[str]:
        """Agents whose owner stopped renewing (dead or stalled).

        They stay in the set until a worker serving them takes them over (which rewrites the
        expiry) or releases them, so a worker that does not serve an agent cannot hide it
        from the ones that do.
        """
        now = time.time() * 1000
        raw = await self._call(
            self.redis.zrangebyscore(self.keys.owned, "-inf", now, start=0, num=1000), "owned"
        )
        return [a.decode() for a in raw]

    # -- reading and committing ----------------------------------------------------------

    async def fetch(
        self, agent: str, owner: str, consumer: str, count: int, pending: bool
    ) -> tuple[int, list[Entry], list[bytes]]:
        """``(status, entries, flags)`` of the next batch; see ``lua/fetch.lua``."""
        got = await self._script(
            "fetch",
            self._fetch_keys(agent),
            [owner, GROUP, consumer, count, "0" if pending else ">"],
        )
        if got[0] != 0:
            return int(got[0]), [], []
        return 0, _entries(got[1]), list(got[2])

    def prepare(self, agents: Iterable[str]) -> None:
        """Build the keys of ``agents`` now rather than on their first turn (a worker
        learns every agent it serves at start)."""
        for agent in itertools.islice(agents, _KEYS_CACHED):
            self._agent_keys(agent)

    def _agent_keys(self, agent: str) -> tuple[str, str, str, str, str, str]:
        """The agent's turns, owner, state, outbox, done and cancel keys (the KEYS of
        ``lua/take.lua``), built once per agent: a worker serving thousands of agents
        would otherwise format a dozen keys per batch."""
        keys = self._keys_of.get(agent)
        if keys is None:
            if len(self._keys_of) >= _KEYS_CACHED:
                self._keys_of.clear()
            k = self.keys
            keys = self._keys_of[agent] = (
                k.turns(agent),
                k.owner(agent),
                k.state(agent),
                k.outbox(agent),
                k.done(agent),
                k.cancel(agent),
            )
        return keys

    def _fetch_keys(self, agent: str) -> list[str]:
        """KEYS of ``lua/fetch.lua``: turns, owner, state, done, cancel."""
        turns, owner, state, _outbox, done, cancel = self._agent_keys(agent)
        return [turns, owner, state, done, cancel]

    def _commit_call(
        self, agent: str, owner: str, ops: dict[str, Any], replies: list[str]
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of ``lua/commit.lua``: the agent's keys, then its reply streams;
        the owner value and the packed ops."""
        ops["g"] = GROUP
        return [*self._agent_keys(agent), *replies], [owner, pack_for_lua(ops)]

    async def commit(self, agent: str, owner: str, ops: dict[str, Any], replies: list[str]) -> bool:
        """Apply a batch's effects atomically (``lua/commit.lua``); False if fenced out."""
        return bool(await self._script("commit", *self._commit_call(agent, owner, ops, replies)))

    async def take(
        self,
        agent: str,
        worker_id: str,
        lease_ms: int,
        count: int,
        claimed_count: int = 1,
        claim: int = 1000,
    ) -> Taken:
        """Own ``agent`` if it has work, with its first batch, in one round trip
        (``lua/take.lua``); see ``Taken``. The caller records the lease in the ``owned`` set
        (``mark_owned``)."""
        keys = list(self._agent_keys(agent))
        args = [worker_id, lease_ms, GROUP, count, claim, claimed_count]
        (got,) = await self._batched([("take", keys, args)])
        status = int(got[0])
        if status > 0:
            return Taken(status)
        taken = Taken(status, got[1].decode(), got[2] or None, got[3] or None, int(got[4]))
        if status == 0:
            taken.counts = {e: int(c) for e, c in zip(got[5], got[6], strict=False)}
            taken.entries = _entries(got[7])
            taken.flags = list(got[8])
            taken.pending = bool(got[9])
        return taken

    async def take_many(
        self, agents: Sequence[str], worker_id: str, lease_ms: int, count: int
    ) -> list[Taken]:
        """``take`` for many agents in one round trip (``lua/take_many.lua``), for the plain
        case only: an agent with pending entries, waiting sends or no group comes back with
        status 4 and no lease, for ``take``. Taken ones (status 0) carry their first batch."""
        keys, args = self._take_many_call(agents, worker_id, lease_ms, count)
        return _taken_many(await self._script("take_many", keys, args))

    def _take_many_call(
        self, agents: Sequence[str], worker_id: str, lease_ms: int, count: int
    ) -> tuple[list[str], list[Any]]:
        keys = [key for a in agents for key in self._agent_keys(a)]
        return keys, [worker_id, lease_ms, GROUP, count]

    async def commit_many(
        self, commits: Sequence[tuple[str, str, dict[str, Any], list[str], bool]]
    ) -> list[tuple[bool, int, bool]]:
        """``commit`` the batches ``(agent, owner, ops, replies, release)`` of many agents
        in one script call; each is fenced by its own lease, and with ``release`` its lease
        is given up when its stream is empty. Per batch: ``(committed, entries left in the
        stream, released)``."""
        keys, args = self._commit_many_call(commits)
        return _committed_many(await self._script("commit_many", keys, args))

    def _commit_many_call(
        self, commits: Sequence[tuple[str, str, dict[str, Any], list[str], bool]]
    ) -> tuple[list[str], list[Any]]:
        keys: list[str] = []
        args: list[Any] = [len(commits)]
        for agent, owner, ops, replies, release in commits:
            commit_keys, (_owner, packed) = self._commit_call(agent, owner, ops, replies)
            keys.extend(commit_keys)
            args.extend((len(commit_keys), int(release), owner, packed))
        return keys, args

    async def commit_take_many(
        self,
        commits: Sequence[tuple[str, str, dict[str, Any], list[str], bool]],
        agents: Sequence[str],
        worker_id: str,
        lease_ms: int,
        count: int,
    ) -> tuple[list[tuple[bool, int, bool]], list[Taken]]:
        """``commit_many(commits)`` then ``take_many(agents)``, in one round trip: a worker
        serving many agents takes its next group as it commits the last one, so the next
        group's turns are there by the time it is free to run them.

        Raises the first script error, if any (after both ran: the take may have leased
        agents the caller then does not run; their leases expire)."""
        commit_keys, commit_args = self._commit_many_call(commits)
        take_keys, take_args = self._take_many_call(agents, worker_id, lease_ms, count)
        committed, taken = await self._run_scripts(
            [("commit_many", commit_keys, commit_args), ("take_many", take_keys, take_args)],
            "commit_many",
        )
        return _committed_many(committed), _taken_many(taken)

    async def commit_fetch(
        self,
        agent: str,
        owner: str,
        ops: dict[str, Any],
        replies: list[str],
        consumer: str,
        count: int,
        pending: bool,
        release: bool,
    ) -> tuple[bool, int, list[Entry], list[bytes], bool]:
        """``commit`` a batch and, in the same round trip, ``fetch`` the next one.

        With ``release``, the lease is given up when nothing is left to read. Returns
        ``(committed, status, entries, flags, released)`` (status as ``fetch``; a batch that
        was not committed reads nothing: the lease is not ours).
        """
        commit_keys, commit_args = self._commit_call(agent, owner, ops, replies)
        fetch_args = [owner, GROUP, consumer, count, "0" if pending else ">", int(release)]
        keys = [*commit_keys, *self._fetch_keys(agent)]
        args = [len(commit_keys), len(commit_args), *commit_args, *fetch_args]
        ((done, got),) = await self._batched([("commit_fetch", keys, args)])
        if got[0] != 0:
            return bool(done), int(got[0]), [], [], False
        return bool(done), 0, _entries(got[1]), list(got[2]), len(got) > 3 and bool(got[3])

    async def commit_wait_fetch(
        self,
        agent: str,
        owner: str,
        ops: dict[str, Any],
        replies: list[str],
        consumer: str,
        after: bytes,
        block_ms: int,
        count: int,
        release: bool,
    ) -> tuple[bool, int, list[Entry], list[bytes], bool, bytes]:
        """``commit`` a batch, then ``wait_fetch`` for the next one, in one round trip (the
        caller learns the commit's outcome when the wait ends; the turns' callers learn it
        from their reply streams at once). Returns ``(committed, status, entries, flags,
        released, newest id seen)``; a batch that was not committed reads nothing."""
        commit_keys, commit_args = self._commit_call(agent, owner, ops, replies)
        keys = self._fetch_keys(agent)
        args = [owner, GROUP, consumer, count, ">", int(release)]
        done, woke, got = await self._fast.execute(
            [
                self._evalsha("commit", commit_keys, commit_args),
                _wait_newer(keys[0], after, block_ms),
                self._evalsha("fetch", keys, args),
            ],
            "commit",
            block_ms,
        )
        if isinstance(done, NoScriptError):
            # Redis restarted: the commit did not run, but the fetch behind it may have, and
            # before it: its batch would hold this one's turns again. Commit now and read
            # nothing here; what that fetch handed over comes back first at the next fetch.
            done = await self._script("commit", commit_keys, commit_args)
            return bool(done), 0, [], [], False, after
        if isinstance(done, Exception):
            raise done
        return (bool(done), *await self._after_wait(woke, got, keys, args, after))

    async def wait_fetch(
        self,
        agent: str,
        owner: str,
        consumer: str,
        after: bytes,
        block_ms: int,
        count: int,
        release: bool,
    ) -> tuple[int, list[Entry], list[bytes], bool, bytes]:
        """Wait up to ``block_ms`` for an entry newer than ``after`` in the agent's stream
        (``XREAD``, which delivers nothing), then ``fetch`` in the same round trip: Redis runs
        the fetch as soon as the wait ends. Returns fetch's ``(status, entries, flags,
        released)`` and the newest id the wait saw (``after`` if none)."""
        keys = self._fetch_keys(agent)
        args = [owner, GROUP, consumer, count, ">", int(release)]
        woke, got = await self._fast.execute(
            [_wait_newer(keys[0], after, block_ms), self._evalsha("fetch", keys, args)],
            "linger",
            block_ms,
        )
        return await self._after_wait(woke, got, keys, args, after)

    async def _after_wait(
        self, woke: Any, got: Any, keys: list[str], args: list[Any], after: bytes
    ) -> tuple[int, list[Entry], list[bytes], bool, bytes]:
        """Read a pipelined ``XREAD`` wait + fetch: ``(status, entries, flags, released,
        newest id the wait saw)``; a fetch that missed its script (Redis restarted) reruns."""
        if isinstance(woke, Exception):
            raise woke
        if isinstance(got, NoScriptError):
            got = await self._script("fetch", keys, args)
        elif isinstance(got, Exception):
            raise got
        newest = woke[0][1][-1][0] if woke else after
        if got[0] != 0:
            return int(got[0]), [], [], False, newest
        return 0, _entries(got[1]), list(got[2]), len(got) > 3 and bool(got[3]), newest

    async def mark_owned(self, add: dict[str, float], remove: Iterable[str]) -> None:
        """Record lease expiries (ms) of agents taken, and forget agents given up, in the
        ``owned`` set that ``expired_owners`` sweeps."""
        commands: list[tuple[Any, ...]] = []
        if add:
            scored = [part for agent, expiry in add.items() for part in (expiry, agent)]
            commands.append(("ZADD", self.keys.owned, *scored))
        gone = list(remove)
        if gone:
            commands.append(("ZREM", self.keys.owned, *gone))
        if commands:
            await self._checked(commands, "owned")

    async def publish_many(
        self, key: str, values: Sequence[tuple[int, bytes]], ttl_ms: int
    ) -> None:
        """Append streamed values ``(seq, data)`` to a reply stream, in one round trip."""
        commands: list[tuple[Any, ...]] = [
            ("XADD", key, "MAXLEN", "~", 10_000, "*", "k", "v", "q", seq, "d", data)
            for seq, data in values
        ]
        commands.append(("PEXPIRE", key, ttl_ms))
        await self._checked(commands, "publish")

    async def relay(self, agent: str) -> list[str]:
        """Deliver the agent's committed sends to their targets; returns the targets.

        At-least-once: a crash between delivery and deletion delivers again, and the
        receiving worker drops the duplicate by turn id.
        """
        outbox = self.keys.outbox(agent)
        raw = await self._call(self.redis.xrange(outbox, count=500), "relay")
        if not raw:
            return []
        sends = [(f[b"a"].decode(), f[b"id"], f[b"m"], f.get(b"s", b"")) for _id, f in raw]
        await self._checked([self._send_command(sends)], "relay")
        await self._call(self.redis.xdel(outbox, *[e[0] for e in raw]), "relay")
        return [target for target, *_rest in sends]

    async def dead_letter(self, fields: dict[bytes, bytes | str | int | float]) -> None:
        """Append one entry to the dead-letter stream."""
        await self._call(
            self.redis.xadd(self.keys.dead, fields, maxlen=_DEAD_CAP, approximate=True), "dlq"
        )

    async def drop(self, agent: str, entry_ids: Sequence[bytes]) -> None:
        """Acknowledge and delete entries that will not run (dead-lettered, foreign)."""
        if entry_ids:
            pipe = self.redis.pipeline(transaction=False)
            pipe.xack(self.keys.turns(agent), GROUP, *entry_ids)
            pipe.xdel(self.keys.turns(agent), *entry_ids)
            await self._call(pipe.execute(), "drop")

    # -- replies -------------------------------------------------------------------------

    async def read_reply(self, key: str, after: bytes, block_ms: int) -> list[Entry]:
        """Reply entries newer than ``after``, waiting up to ``block_ms``."""
        (raw,) = await self._checked(
            [("XREAD", "COUNT", 500, "BLOCK", block_ms, "STREAMS", key, after)], "reply", block_ms
        )
        return _entries(raw[0][1]) if raw else []

    # -- control -------------------------------------------------------------------------

    async def set_paused(self, agent: str, paused: bool) -> None:
        """Pause or resume an agent for every worker."""
        if paused:
            await self._call(self.redis.hset(self.keys.state(agent), "paused", 1), "pause")
        else:
            await self._call(self.redis.hdel(self.keys.state(agent), "paused"), "resume")
            await self.signal([agent])

    async def request_cancel(self, agent: str, turn_id: str) -> None:
        """Ask workers to cancel one turn (before it starts, or while it runs)."""
        await self._call(self.redis.hset(self.keys.cancel(agent), turn_id, 1), "cancel")

    async def cancelled(self, agent: str, turn_ids: Sequence[str]) -> list[bool]:
        """Which of ``turn_ids`` have a cancellation request."""
        if not turn_ids:
            return []
        (raw,) = await self._checked([("HMGET", self.keys.cancel(agent), *turn_ids)], "cancel")
        return [v is not None for v in raw]

    # -- workers -------------------------------------------------------------------------

    async def heartbeat(self, worker_id: str, info: bytes, ttl_ms: int, create: bool) -> bool:
        """Refresh a worker's liveness key; False if it vanished (Redis lost its data)."""
        key = self.keys.worker(worker_id)
        if create:
            await self._call(self.redis.set(key, info, px=ttl_ms), "heartbeat")
            return True
        return bool(await self._call(self.redis.set(key, info, px=ttl_ms, xx=True), "heartbeat"))

    async def forget_worker(self, worker_id: str) -> None:
        """Remove a stopping worker's liveness key."""
        await self._call(self.redis.delete(self.keys.worker(worker_id)), "heartbeat")

    async def workers(self) -> dict[str, bytes]:
        """Live workers -> their msgpack info."""
        keys = [k async for k in self.redis.scan_iter(match=self.keys.worker_pattern, count=500)]
        if not keys:
            return {}
        values = await self._call(self.redis.mget(keys), "workers")
        return {k.decode().rsplit(":", 1)[1]: v for k, v in zip(keys, values, strict=False) if v}

    # -- locks ---------------------------------------------------------------------------

    async def try_lock(self, name: str, token: str, lease_ms: int) -> bool:
        """Take the lock ``name`` if free."""
        command = ("SET", self.keys.lock(name), token, "NX", "PX", lease_ms)
        (got,) = await self._checked([command], "lock")
        return got is not None

    async def renew_lock(self, name: str, token: str, lease_ms: int) -> bool:
        """Extend our hold on ``name``; False if it is no longer ours."""
        return bool(await self._script("renew", [self.keys.lock(name)], [token, lease_ms]))

    async def unlock(self, name: str, token: str) -> bool:
        """Release ``name`` only if we hold it (never frees another holder's lock)."""
        return bool(await self._script("release", [self.keys.lock(name)], [token]))

    # -- inspection (CLI) ----------------------------------------------------------------

    async def agent_status(self, agents: Sequence[str]) -> list[dict[str, Any]]:
        """Per agent: queue depth, pending count, oldest pending entry, owner, paused."""
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        for agent in agents:
            pipe.xlen(k.turns(agent))
            pipe.xpending(k.turns(agent), GROUP)
            pipe.get(k.owner(agent))
            pipe.hget(k.state(agent), "paused")
        raw = await self._call(pipe.execute(raise_on_error=False), "status")
        out = []
        for i, agent in enumerate(agents):
            length, pending, owner, paused = raw[4 * i : 4 * i + 4]
            pend = pending if isinstance(pending, dict) else {}
            out.append(
                {
                    "agent": agent,
                    "depth": length if isinstance(length, int) else 0,
                    "in_flight": pend.get("pending", 0),
                    "oldest_pending": _decode(pend.get("min")),
                    "owner": _decode(owner),
                    "paused": bool(paused),
                }
            )
        return out

    async def dead_letters(self, count: int, after: str = "-") -> list[Entry]:
        """Dead-lettered entries, oldest first."""
        raw = await self._call(self.redis.xrange(self.keys.dead, min=after, count=count), "dlq")
        return _entries(raw)

    async def dead_count(self) -> int:
        """How many dead letters are kept."""
        return int(await self._call(self.redis.xlen(self.keys.dead), "dlq"))

    async def delete_dead(self, entry_ids: Sequence[bytes | str]) -> int:
        """Remove dead letters by entry id."""
        if not entry_ids:
            return 0
        return int(await self._call(self.redis.xdel(self.keys.dead, *entry_ids), "dlq"))

    async def requeue_dead(self, letters: Sequence[tuple[bytes, str, str, bytes, bytes]]) -> None:
        """Send dead letters ``(entry id, agent, turn id, envelope, signature)`` to their
        agents again, then delete them.

        The turn ids leave the agents' dedup sets first (a dead-lettered turn is recorded as
        done), so the replayed turns run. Not atomic across agents: a crash in between leaves
        a letter that was already requeued, and replaying it again runs it again.
        """
        commands: list[tuple[Any, ...]] = [
            ("ZREM", self.keys.done(agent), turn_id)
            for _entry_id, agent, turn_id, _data, _signature in letters
            if turn_id
        ]
        sends = [(agent, turn_id, data, sig) for _id, agent, turn_id, data, sig in letters]
        commands.append(self._send_command(sends))
        await self._checked(commands, "replay")
        await self.delete_dead([letter[0] for letter in letters])

    async def run(self, fn: Callable[[Any], Awaitable[T]], what: str) -> T:
        """Run an ad-hoc operation on the client with this layer's error mapping."""
        return await self._call(fn(self.redis), what)


def _decode(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _wait_newer(stream: str, after: bytes, block_ms: int) -> tuple[Any, ...]:
    """An ``XREAD`` that waits up to ``block_ms`` for an entry newer than ``after`` (it
    delivers nothing: a fetch after it reads through the group)."""
    return ("XREAD", "COUNT", 1, "BLOCK", block_ms, "STREAMS", stream, after)
