"""The worker: serves agents from their Redis streams, one owner per agent at a time.

How a worker serves an agent:

1. A signal ("agent X has work") arrives on the shared ready stream, or a periodic scan or
   sweep finds work or a dead owner.
2. In one round trip (``lua/take.lua``) the worker takes the agent's lease with a new fencing
   token (only if the agent has work and is not paused), loads its context, claims entries
   the previous owner left pending (counting deliveries to catch poison turns) and reads the
   first batch. It relays any sends a crashed owner committed.
3. It runs each turn of the batch through the core (hooks fire here) and commits the batch's
   effects atomically (``lua/commit.lua``): acks and deletes, follow-up turns, sends (to the
   outbox), context, replies, dedup ids. A worker that lost its lease commits nothing. The
   same round trip reads the next batch (``lua/fetch.lua``), and gives the lease up when
   nothing is left; with ``linger_ms`` it first waits that long for a next turn.
4. Signals that arrived meanwhile bring the agent back to step 2. A turn sent to an agent
   that has an owner writes no signal: the owner reads it before it lets go.

When many agents have work at once (a burst of signals, or a scan at start), steps 2 and 3
go in groups: one round trip (``lua/take_many.lua``) takes up to 32 agents in the plain case
(no pending entries, no waiting sends) with their first batches; their turns run inline, one
agent after another, and one more round trip commits them all, each fenced by its own lease
and given up when its stream is empty. A batch whose turns really wait (I/O, a slow tool)
moves to a task of its own the moment it waits, so it holds up no other agent; so does an
agent with more to do after the group commit. Two groups are in flight at once, so the
worker runs one group's turns while Redis serves the other. A lone agent, or one that needs
claims or relays, goes the one-agent way above.

Script calls of many agents made at the same moment share one pipeline (``Transport``).

Guarantees and their limits: turns of one agent run one at a time in stream order; a turn
runs again only if its worker dies (lease expiry) or loses its lease before committing, so
tool side effects are at-least-once while runtime effects are exactly-once; values streamed
while a turn runs may repeat after such a retry (readers skip them by sequence number).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import inspect
import itertools
import logging
import os
import socket
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any, NamedTuple

from pygents import _seams
from pygents._resume import Resumed
from pygents.agent import Agent
from pygents.context import ContextItem
from pygents.errors import TurnTimeoutError, UnregisteredHookError, UnregisteredToolError
from pygents.registry import AgentRegistry, HookRegistry, ToolRegistry
from pygents.tool import BaseTool
from pygents.turn import Turn
from pygents_dist import (
    _batches,
    _control,
    _dead_letters,
    _directory,
    _leases,
    _metrics,
    _replies,
    _streams,
    _trace,
    _wire,
)
from pygents_dist._keys import check_agent_name
from pygents_dist._leases import Taken
from pygents_dist._lock import RedisLocks
from pygents_dist._log import current_worker
from pygents_dist._transport import Entry, Transport
from pygents_dist.errors import (
    ConnectionLostError,
    DeadLetterReason,
    PayloadError,
    UnknownAgentError,
)

__all__ = ["Worker", "WorkerSettings"]

_log = logging.getLogger("pygents_dist.worker")
#: Seconds an agent is held before its lease is written to the ``owned`` set.
_OWNED_DELAY = 0.05
#: Most agents a second the periodic backlog scan checks (its cost is ~25 us of CPU each).
_SCAN_RATE = 200
#: Seconds of turns in a batch after which the pause flag is looked at before the next turn.
_PAUSE_CHECK_S = 0.05
#: Seconds the signal loop waits before reading on after signals of busy agents only.
_SIGNAL_COALESCE = 0.002
#: Longest single wait of a lingering agent (it checks for shutdown in between).
_LINGER_SLICE_MS = 25
#: Most agents lingering at once.
_LINGER_MAX = 64
#: Streamed values a turn may produce ahead of its reply stream writes before it waits.
_PUBLISH_AHEAD = 1000
#: Most agents taken (and committed) together in one round trip, and chains of such groups
#: at once. Each agent of a group holds one of the ``concurrency`` slots, and a chain holds
#: two groups while it commits one and takes the next: a group is at most a quarter of them.
_GROUP_MAX = 128
_GROUP_FLIGHTS = 2
VERSION = "0.8.0"


@dataclasses.dataclass
class WorkerSettings:
    """How a worker connects and behaves. Times in ms unless the name says seconds.

    Attributes:
        redis_url: ``redis://`` / ``rediss://`` URL, with user and password if needed.
        namespace: key namespace shared by the workers and clients of one deployment.
        agents: names to serve (None: every agent the module defines).
        concurrency: agents served at once by this worker.
        batch: turns read and committed per round trip.
        lease_ms: agent ownership and liveness lease; a dead worker's agents move on after it.
        max_deliveries: a turn delivered more often than this (its workers keep dying) is
            dead-lettered.
        grace_seconds: on SIGTERM, how long in-flight turns may take to finish.
        dedup_window_ms: how long committed turn ids are remembered to drop duplicates.
        reply_ttl_ms: how long a turn's reply stream is kept after its last entry.
        secrets: HMAC keys; when set, unsigned or forged turns are dead-lettered.
        parallel: agent name -> turns run at once. Only for agents whose tools are
            stateless: their turns no longer run in stream order (default 1: an actor).
        limits: size and nesting limits for messages.
        redis_options: extra redis-py options (``ssl_ca_certs`` ...).
        metrics_port: serve Prometheus metrics on this port (None: off).
        metrics_host: the address the metrics server binds.
        linger_ms: after an agent's last turn, keep its lease this long for the next one,
            read straight from the agent's stream in the commit's round trip (no signal,
            no new lease: less latency and CPU for an agent called back to back). Only
            while a slot is free; 0 gives the lease up at once. A worker stopping may still
            take a turn that arrives within the current wait (at most 25 ms).
    """

    redis_url: str = "redis://localhost:6379/0"
    namespace: str = ""
    agents: list[str] | None = None
    concurrency: int = 128
    batch: int = 100
    lease_ms: int = 15_000
    max_deliveries: int = 5
    grace_seconds: float = 30.0
    dedup_window_ms: int = 600_000
    reply_ttl_ms: int = 3_600_000
    secrets: list[bytes] = dataclasses.field(default_factory=list)
    parallel: dict[str, int] = dataclasses.field(default_factory=dict)
    limits: _wire.Limits = dataclasses.field(default_factory=_wire.Limits)
    redis_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"
    linger_ms: int = 20


@dataclasses.dataclass(slots=True)
class _Effects:
    """What the running turns of one batch produced, committed together."""

    agent: str
    followups: list[list[bytes | str]] = dataclasses.field(default_factory=list)
    outbox: list[list[bytes | str]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(slots=True)
class _Batch:
    """A batch whose turns ran: what its commit writes, and how it ended."""

    ops: dict[str, Any]
    replies: list[str]
    effects: _Effects
    held: bool  # a pause stopped it before its last turn
    last_id: bytes  # the newest entry id it read
    pending: bool  # its entries were claimed from a previous owner
    rest: _Next | None = None  # entries read but not run (the batch ran long): run next


class _Next(NamedTuple):
    """The batch read after a commit (in the same round trip), or ``read=False``."""

    status: int = 0
    entries: list[Entry] = []
    flags: list[bytes] = []
    released: bool = False
    read: bool = True
    newest: bytes = b""  # the newest entry id a lingering wait saw
    lingered_ms: int = 0


def _signalled(fields: dict[bytes, bytes]) -> list[str]:
    """The agents a ready signal names: one (``a``), or several, space-separated (``as``)."""
    one = fields.get(b"a")
    if one is not None:
        return [one.decode(errors="replace")]
    return fields.get(b"as", b"").decode(errors="replace").split()


class _Publisher:
    """Appends a streaming turn's values to its reply stream in order, without waiting a
    round trip per value: values produced while one write is in flight go in the next one.
    """

    def __init__(self, transport: Transport, key: str, ttl_ms: int) -> None:
        self.transport = transport
        self.key = key
        self.ttl_ms = ttl_ms
        self.waiting: list[tuple[int, bytes]] = []
        self.writer: asyncio.Task[None] | None = None

    async def add(self, seq: int, data: bytes) -> None:
        self.waiting.append((seq, data))
        writer = self.writer
        if writer is None or writer.done():
            if writer is not None:
                writer.result()  # a failed write fails the turn
            self.writer = asyncio.create_task(self._write())
        elif len(self.waiting) >= _PUBLISH_AHEAD:
            await writer

    async def _write(self) -> None:
        while self.waiting:
            values, self.waiting = self.waiting, []
            await _replies.publish_many(self.transport, self.key, values, self.ttl_ms)

    async def finish(self) -> None:
        """Wait until every value is written (raising a failed write)."""
        if self.writer is not None:
            await self.writer

    def abandon(self) -> None:
        if self.writer is not None and not self.writer.done():
            self.writer.cancel()


_effects: contextvars.ContextVar[_Effects | None] = contextvars.ContextVar(
    "pygents_dist_effects", default=None
)


class _Router:
    """``pygents._seams.Router`` for a worker process: puts and sends go to Redis."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.known: set[str] = set()

    async def put(self, agent_name: str, turn: Turn[Any]) -> None:
        worker = self.worker
        if agent_name not in self.known:
            if not await _directory.is_declared(worker.transport, agent_name):
                raise UnknownAgentError(
                    f"no worker has declared an agent named {agent_name!r}; start a worker "
                    "serving it first"
                )
            self.known.add(agent_name)
        turn_id = _wire.new_turn_id()
        data = _wire.encode_turn(
            turn_id=turn_id,
            agent=agent_name,
            tool=turn.tool.__name__,
            args=turn.args,
            kwargs=turn.kwargs,
            timeout=turn.timeout,
            tags=sorted(turn.tags),
            hooks=HookRegistry.names_by_type(turn.hooks),
            trace=_trace.child(_trace.current.get()),
            limits=worker.settings.limits,
        )
        signature = worker.sign(data)
        effects = _effects.get()
        if effects is None:
            await _streams.send_turns(worker.transport, [(agent_name, turn_id, data, signature)])
        elif agent_name == effects.agent:
            effects.followups.append([turn_id, data, signature])
        else:
            effects.outbox.append([agent_name, turn_id, data, signature])


def _seen(entries: list[Entry], flags: list[bytes], start: int, seen: set[str]) -> list[bytes]:
    """The flags of ``entries[start:]``, marking as committed ('d') the copies of turns the
    part before ``start`` ran: their flags were read before that part committed."""
    return [
        b"d" if fields.get(b"id", b"").decode(errors="replace") in seen else flag
        for (_entry_id, fields), flag in zip(entries[start:], flags[start:], strict=True)
    ]


def _releasing(slots: asyncio.Semaphore) -> Callable[[asyncio.Task[None]], None]:
    return lambda _task: slots.release()


def _describe(agent: Agent) -> bytes:
    return _wire.pack(
        {
            "description": agent.description,
            "tools": [t.__name__ for t in agent.tools],
            "declared": time.time(),
        }
    )


class Worker:
    """Serves a set of agents from Redis until stopped.

    Example::

        worker = Worker(WorkerSettings(redis_url="redis://localhost:6379/0"))
        await worker.run()   # returns after stop() (SIGTERM in the CLI) and a clean drain

    Args:
        settings: connection and behaviour.
        agents: the agents to serve; default: every registered agent (or ``settings.agents``).
    """

    def __init__(self, settings: WorkerSettings, agents: list[Agent] | None = None) -> None:
        self.settings = settings
        if agents is None:
            wanted = settings.agents
            agents = [AgentRegistry.get(n) for n in wanted] if wanted else AgentRegistry.all()
        if not agents:
            raise ValueError("nothing to serve: the module defines no agents")
        self.agents = {check_agent_name(a.name): a for a in agents}
        self._initial_context = {
            name: (a.context_queue.items, a.context_pool.items) for name, a in self.agents.items()
        }
        self._starts_empty = {name for name, (q, p) in self._initial_context.items() if not q + p}
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.transport = Transport.from_url(
            settings.redis_url, namespace=settings.namespace, **settings.redis_options
        )
        self._stopping = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._active: dict[str, asyncio.Task[None]] = {}
        # Agents to take, in order (see _take_loop). An OrderedDict, as taking from the
        # front of a plain dict rescans the deleted slots: quadratic for a burst of 10,000.
        self._wanted: OrderedDict[str, None] = OrderedDict()
        self._taker: asyncio.Task[None] | None = None
        self._flights = asyncio.Semaphore(_GROUP_FLIGHTS)
        self._again: set[str] = set()
        self._leases: dict[str, str] = {}
        # agent: monotonic time until which its lease surely holds (the send time of the
        # round trip that took or last renewed it, plus the lease: Redis set it later).
        self._lease_until: dict[str, float] = {}
        self._running_turn: dict[str, str] = {}
        self._cancel_requested: set[str] = set()
        self._saved_context: dict[str, dict[str, bytes]] = {}  # agent: field: blob
        self._signals_from = b"$"
        self._signatures: dict[str, inspect.Signature] = {}
        self._argument_checks: dict[tuple[BaseTool, int, frozenset[str]], str | None] = {}
        self._taken_at: dict[str, float] = {}
        self._lingering: set[str] = set()
        self._owned_recorded: set[str] = set()
        self._owned_loop: asyncio.Task[None] | None = None
        self.stats = {
            "turns": 0,
            "batches": 0,
            "dead_lettered": 0,
            "failed": 0,
            "grouped": 0,
            "chained": 0,  # agents of groups taken in the round trip of a commit
        }
        self.metrics = _metrics.Metrics(self.id, VERSION)
        self.metrics.active = lambda: len(self._active)

    @property
    def _batch(self) -> int:
        """Turns read at once. A turn read in the same batch as one that kills its worker is
        charged that delivery too, which ``max_deliveries=1`` cannot tell from a poison turn:
        then turns are read one at a time."""
        return self.settings.batch if self.settings.max_deliveries > 1 else 1

    def sign(self, data: bytes) -> bytes:
        """The signature follow-ups and sends carry (empty when signing is off)."""
        secrets = self.settings.secrets
        return _wire.sign(data, secrets[0]) if secrets else b""

    def stop(self) -> None:
        """Stop taking new turns; ``run()`` returns once in-flight ones are committed."""
        self._stopping.set()

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Serve until ``stop()``; then drain in-flight turns within the grace period."""
        current_worker.set(self.id)
        _seams.set_router(_Router(self))
        _seams.set_lock_provider(
            RedisLocks(self.transport, self.settings.lease_ms, self.metrics.lock_waited)
        )
        metrics_server: asyncio.Server | None = None
        try:
            await self._start()
            if self.settings.metrics_port is not None:
                await self._refresh_depths()
                metrics_server = await _metrics.serve(
                    self.metrics, self.settings.metrics_host, self.settings.metrics_port
                )
            if on_ready is not None:
                on_ready(self.id)
            loops = [
                asyncio.create_task(self._signal_loop(), name="signals"),
                asyncio.create_task(self._maintenance_loop(), name="maintenance"),
                asyncio.create_task(self._cancel_loop(), name="cancel"),
            ]
            await self._stopping.wait()
            # Take no new turns, but keep heartbeats, lease renewal and cancels going while
            # in-flight turns finish: a turn longer than the lease would lose its commit.
            loops[0].cancel()
            try:
                await self._drain()
            finally:
                for loop in loops:
                    loop.cancel()
                await asyncio.gather(*loops, return_exceptions=True)
        finally:
            if metrics_server is not None:
                metrics_server.close()
            _seams.set_router(None)
            _seams.set_lock_provider(None)
            if self._owned_loop is not None:
                self._owned_loop.cancel()
            if self._taker is not None:
                self._taker.cancel()
            with contextlib.suppress(Exception):
                await self._sync_owned(time.monotonic())
            with contextlib.suppress(Exception):
                await _control.forget_worker(self.transport, self.id)
            await self.transport.aclose()

    async def _start(self) -> None:
        for agent in itertools.islice(self.agents, 100_000):  # their keys now, not per turn
            self.transport.keys.for_agent(agent)
        await self.transport.ping()
        await self._declare()
        self._signals_from = await _streams.last_signal_id(self.transport)
        await self._scan()

    async def _declare(self) -> None:
        await _directory.declare(self.transport, {n: _describe(a) for n, a in self.agents.items()})
        await _control.heartbeat(
            self.transport, self.id, self._info(), self._heartbeat_ttl(), create=True
        )

    def _info(self) -> bytes:
        return _wire.pack(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "agents": len(self.agents),
                "active": len(self._active),
                "version": VERSION,
                "turns": self.stats["turns"],
                "grouped": self.stats["grouped"],
                "chained": self.stats["chained"],
                "ts": time.time(),
            }
        )

    def _heartbeat_ttl(self) -> int:
        return self.settings.lease_ms

    async def _scan(self, names: list[str] | None = None) -> None:
        """Schedule every served agent (of ``names``) with entries in its stream."""
        names = list(self.agents) if names is None else names
        for name, depth in zip(names, await _streams.backlog(self.transport, names), strict=True):
            if depth:
                self._schedule(name)

    async def _drain(self) -> None:
        if not self._active and not self._wanted:
            return
        served = {*self._active, *self._wanted}
        grace = self.settings.grace_seconds
        _log.info("draining %d agent(s), grace %.1fs", len(self._active), grace)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        # A batch that finishes may hand its agent to a new task: wait for those too.
        while self._active and loop.time() < deadline:
            served.update(self._active)
            await asyncio.wait(set(self._active.values()), timeout=deadline - loop.time())
        pending = set(self._active.values())
        for task in pending:
            task.cancel()
        if pending:
            _log.warning("grace period over: %d turn batch(es) handed back", len(pending))
            await asyncio.wait(pending)
        # Turns handed back or left queued: let another worker take them now, not at a scan.
        with contextlib.suppress(ConnectionLostError):
            await _streams.signal(self.transport, served)

    # -- loops ---------------------------------------------------------------------------

    async def _signal_loop(self) -> None:
        backoff = 0.05
        while True:
            try:
                entries = await _streams.read_signals(self.transport, self._signals_from, 1000)
                backoff = 0.05
            except Exception as exc:  # never let the loop die: the worker would go silent
                _log.warning("signals: %s; retrying in %.2fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            news = False
            for entry_id, fields in entries:
                self._signals_from = entry_id
                for name in _signalled(fields):
                    if name in self.agents:
                        # A lingering agent reads new turns itself (the signal only marks it
                        # to be looked at again once its serve ends, in case it just gave up).
                        news = news or name not in self._lingering
                        self._schedule(name)
            if news:
                await asyncio.sleep(0)  # let the agents just scheduled start before reading on
            elif entries:
                # Signals of lingering agents only: gather the next ones a moment instead of
                # a read for each (an agent called back to back signals every turn).
                await asyncio.sleep(_SIGNAL_COALESCE)

    async def _maintenance_loop(self) -> None:
        interval = self.settings.lease_ms / 3000
        scans = 0
        while True:
            await asyncio.sleep(interval)
            try:
                await self._maintain(scans)
                scans += 1
            except ConnectionLostError as exc:
                _log.warning("maintenance: %s", exc)
            except Exception:  # keep heartbeating and sweeping whatever went wrong
                _log.exception("maintenance round failed")

    async def _maintain(self, round_no: int) -> None:
        transport = self.transport
        alive = await _control.heartbeat(
            transport, self.id, self._info(), self._heartbeat_ttl(), False
        )
        if not alive:
            _log.warning("heartbeat key vanished (Redis lost its data?): declaring again")
            await self._declare()
            self._signals_from = b"0-0"
            await self._scan()
        leases = dict(self._leases)
        sent = time.monotonic()
        renewed = await _leases.renew(transport, leases, self.settings.lease_ms)
        for agent, ok in renewed.items():
            if self._leases.get(agent) != leases[agent]:
                continue  # given up (or taken again) meanwhile
            if ok:
                self._lease_until[agent] = sent + self.settings.lease_ms / 1000
            else:
                _log.error("lost the lease of agent %s", agent, extra={"agent": agent})
        # Renew wrote every one of them, also those given up during its round trip: the
        # owned loop removes whatever is no longer held.
        self._owned_recorded.update(leases)
        for agent in await _leases.expired_owners(transport):
            if agent in self.agents:
                # Its stale entry is in the set: remove it once we have served the agent.
                self._owned_recorded.add(agent)
                self._schedule(agent)
        if self._owned_recorded:
            self._watch_owned()
        await self._scan(self._scan_slice(round_no))
        if self.settings.metrics_port is not None:
            await self._refresh_depths()

    def _scan_slice(self, round_no: int) -> list[str]:
        """The agents whose backlog this maintenance round checks again, a safety net behind
        the ready signals: every agent once a lease (three rounds), but no more than
        ``_SCAN_RATE`` agents a second, so thousands of idle agents cost almost no CPU."""
        names = list(self.agents)
        per_round = max(1, int(_SCAN_RATE * self.settings.lease_ms / 3000))
        if len(names) <= 3 * per_round:
            return names if round_no % 3 == 2 else []
        start = round_no * per_round % len(names)
        return (names[start:] + names[:start])[:per_round]

    async def _refresh_depths(self) -> None:
        names = list(self.agents)
        depths = await _streams.backlog(self.transport, names)
        self.metrics.set_depths(dict(zip(names, depths, strict=True)))

    async def _cancel_loop(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            running = dict(self._running_turn)
            for agent, turn_id in running.items():
                try:
                    flagged = await _control.cancelled(self.transport, agent, [turn_id])
                except ConnectionLostError:
                    break
                task = self._active.get(agent)
                still_running = self._running_turn.get(agent) == turn_id
                if flagged and flagged[0] and task is not None and still_running:
                    self._cancel_requested.add(turn_id)
                    task.cancel()

    # -- serving one agent ---------------------------------------------------------------

    def _schedule(self, agent: str) -> None:
        """Queue ``agent`` to be taken (by ``_take_loop``), or to be looked at again once its
        current serve ends."""
        if self._stopping.is_set():
            return
        if agent in self._active:
            self._again.add(agent)
            return
        self._wanted[agent] = None
        if self._taker is None:
            self._taker = asyncio.create_task(self._take_loop(), name="taker")

    def _served(self, agent: str, _task: asyncio.Task[None] | None = None) -> None:
        self._active.pop(agent, None)
        if agent in self._again:
            self._again.discard(agent)
            self._schedule(agent)

    async def _take_loop(self) -> None:
        """Take the wanted agents, a group at a time, as slots free up. A group of several
        is taken in one round trip and its plain batches run inline (``_serve_group``); a
        lone agent, or one that needs more care, gets a task of its own (``_own``)."""
        try:
            while self._wanted and not self._stopping.is_set():
                # Two groups at once: one runs its turns while Redis serves the other.
                await self._flights.acquire()
                await self._slots.acquire()
                if self._stopping.is_set():
                    self._slots.release()
                    self._flights.release()
                    break
                names = await self._next_group()
                if len(names) > 1:
                    group = asyncio.create_task(self._serve_group(names), name="group")
                    group.add_done_callback(lambda _task: self._flights.release())
                    for agent in names:
                        self._active[agent] = group
                    continue
                self._flights.release()
                if names:
                    self._spawn(names[0], self._own(names[0]))
                else:
                    self._slots.release()
        finally:
            self._taker = None

    async def _next_group(self, slot: bool = True) -> list[str]:
        """Up to ``_GROUP_MAX`` wanted agents, one per slot held. ``slot``: the caller holds
        the first slot already (the take loop; if nothing is found it keeps it); otherwise
        only free slots are taken (a chain). Parallel agents are spawned on their own."""
        held = slot
        names: list[str] = []
        most = max(2, min(_GROUP_MAX, self.settings.concurrency // (2 * _GROUP_FLIGHTS)))
        while self._wanted and len(names) < most:
            if not slot:
                if self._slots.locked():
                    break
                await self._slots.acquire()  # free: does not wait
                slot = True
            agent = self._wanted.popitem(last=False)[0]
            if agent in self._active:
                self._again.add(agent)
            elif self.settings.parallel.get(agent, 1) > 1:
                self._spawn(agent, self._own(agent))
                slot = False
            else:
                names.append(agent)
                slot = False
        if slot and (names or not held):
            self._slots.release()
        return names

    async def _next_in_chain(self) -> list[str]:
        """The group a chain takes next (see ``_serve_group``): wanted agents while slots
        are free; a lone one is served on its own instead, as the take loop does."""
        if self._stopping.is_set():
            return []
        names = await self._next_group(slot=False)
        if len(names) == 1:
            self._spawn(names[0], self._own(names[0]))
            return []
        task = asyncio.current_task()
        if task is not None:
            for agent in names:
                self._active[agent] = task
        self.stats["chained"] += len(names)
        return names

    def _spawn(
        self,
        agent: str,
        work: Coroutine[Any, Any, None],
        context: contextvars.Context | None = None,
    ) -> None:
        """Serve ``agent`` in a task of its own (in ``context``, for work begun inline);
        ``work`` owns one slot and frees it."""
        task = asyncio.create_task(self._serve(agent, work), name=f"agent {agent}", context=context)
        self._active[agent] = task
        task.add_done_callback(functools.partial(self._served, agent))

    async def _serve(self, agent: str, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except ConnectionLostError as exc:
            _log.warning("agent %s: %s", agent, exc, extra={"agent": agent})
            await asyncio.sleep(0.2)
            self._again.add(agent)
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("agent %s: unexpected error while serving", agent)
            await asyncio.sleep(0.5)
            self._again.add(agent)
        finally:
            self._slots.release()

    async def _own(self, agent: str) -> None:
        # Entries taken over from a dead owner run one per commit: the delivery count
        # (lua/take.lua) then blames only the turn that was running when a worker died.
        transport = self.transport
        sent = time.monotonic()
        taken = await _leases.take(
            transport, agent, self.id, self.settings.lease_ms, self._batch, 1
        )
        if taken.status > 0:
            return  # owned by another worker, paused, or nothing to do: no lease was taken
        owner = taken.owner
        self._hold(agent, owner, sent)
        outcome, released = 0, False
        try:
            self._restore(agent, taken.queue, taken.pool)
            if taken.outbox:
                await _streams.relay(transport, agent)
            first = _Next(taken.status, taken.entries, taken.flags)
            outcome, released = await self._drain_agent(
                agent, owner, first, taken.counts, taken.pending
            )
        finally:
            await self._let_go(agent, owner, outcome, released)

    async def _go_on(self, agent: str, owner: str, first: _Next | Resumed, relay: bool) -> None:
        """Serve an agent a group took on from where the group left it: finish the batch
        that waited, or relay its sends, then drain it as ``_own`` does."""
        outcome, released, last_id = 0, False, b""
        try:
            if isinstance(first, Resumed):
                batch: _Batch = await first
                nxt = await self._commit_batch(agent, owner, batch)
                if nxt is None:
                    outcome, first = -1, _Next(status=-1)
                else:
                    first, last_id = nxt, batch.last_id
            if relay:
                await _streams.relay(self.transport, agent)
            if outcome == 0:
                outcome, released = await self._drain_agent(agent, owner, first, {}, False, last_id)
        finally:
            await self._let_go(agent, owner, outcome, released)

    def _hold(self, agent: str, owner: str, sent: float) -> None:
        """Record a lease taken by a round trip sent at ``sent`` (monotonic)."""
        self._leases[agent] = owner
        self._lease_until[agent] = sent + self.settings.lease_ms / 1000
        self._note_owned(agent, True)

    def _unhold(self, agent: str) -> None:
        self._lingering.discard(agent)
        self._leases.pop(agent, None)
        self._lease_until.pop(agent, None)
        self._note_owned(agent, False)

    def _lease_holds(self, agent: str) -> bool:
        """Whether the agent's lease surely still holds, so a batch just read may start.

        A round trip held up longer than the lease (a stalled network, a paused process)
        may bring turns read while the lease held, after it expired and another worker took
        the agent and its pending turns over: such a batch is not run (the commit would be
        fenced out anyway); the agent is let go and its turns run where it is taken next.
        """
        return time.monotonic() < self._lease_until.get(agent, 0.0)

    @staticmethod
    def _lapsed(agent: str, turns: int) -> None:
        _log.warning(
            "agent %s: %d turn(s) arrived after its lease may have lapsed (a stall longer "
            "than the lease?); not run here, the agent is let go",
            agent,
            turns,
            extra={"agent": agent},
        )

    async def _let_go(self, agent: str, owner: str, outcome: int, released: bool) -> None:
        """Give the lease up (unless the last commit did) and, as that is not atomic with
        the last read, look at the stream once more."""
        self._unhold(agent)
        if not released:
            with contextlib.suppress(ConnectionLostError):
                await _leases.release(self.transport, agent, owner)
        if outcome == 0 and not released and not self._stopping.is_set():
            depth = (await _streams.backlog(self.transport, [agent]))[0]
            if depth:
                self._again.add(agent)

    # -- serving many agents at once -----------------------------------------------------

    async def _serve_group(self, names: list[str]) -> None:
        """Serve ``names`` and the groups after them, a chain of round trips.

        The group is taken in one round trip and each agent's first batch runs inline; then
        one more round trip commits them all and takes the next group of wanted agents, whose
        turns are thus in by the time this worker is free to run them (it runs the other
        chain's group meanwhile). A batch whose turns wait on something (I/O, a slow tool)
        moves to a task of its own at that point and is committed there; so does an agent
        with more to do after its commit. Each name holds a slot.
        """
        sent = time.monotonic()
        try:
            taken = await _leases.take_many(
                self.transport, names, self.id, self.settings.lease_ms, self._batch
            )
        except Exception as exc:
            await self._group_failed("taking", exc)
            self._give_back(names)
            return
        while True:
            done = self._run_group(names, taken, sent)
            names = await self._next_in_chain()
            if not done and not names:
                return
            sent = time.monotonic()
            got = await self._commit_group(done, names)
            if got is None or not names:
                return
            taken = got

    def _run_group(
        self, names: list[str], taken: list[Taken], sent: float
    ) -> list[tuple[str, str, _Batch]]:
        """Run the first batch of each taken agent of a group, inline; the batches that ran
        to the end, to commit (the others went on in tasks of their own)."""
        done: list[tuple[str, str, _Batch]] = []
        for agent, one in zip(names, taken, strict=True):
            if one.status == 4:  # needs take.lua: claims, sends to relay or a lost group
                self._spawn(agent, self._own(agent))
            elif one.status != 0:
                self._group_done(agent)
            else:
                self.stats["grouped"] += 1
                batch = self._run_inline(agent, one, sent)
                if batch is not None:
                    done.append((agent, one.owner, batch))
        return done

    def _give_back(self, names: list[str]) -> None:
        """A group that was not taken: its agents are looked at again, their slots freed."""
        for agent in names:
            self._again.add(agent)
            self._group_done(agent)

    def _run_inline(self, agent: str, taken: Taken, sent: float) -> _Batch | None:
        """Run the first batch of an agent taken by a round trip sent at ``sent``; the
        batch if it ran without waiting, else None (it goes on in a task of its own, which
        commits it, or it was not run: see ``_lease_holds``)."""
        self._hold(agent, taken.owner, sent)
        if not self._lease_holds(agent):
            self._lapsed(agent, len(taken.entries))
            self._spawn(agent, self._let_go(agent, taken.owner, 0, False))
            return None
        context = contextvars.copy_context()
        try:
            self._restore(agent, taken.queue, taken.pool)
            work = self._run_turns(agent, taken.entries, taken.flags, {})
            waiting = context.run(work.send, None)
        except StopIteration as stop:
            batch: _Batch = stop.value
            return batch
        except Exception:
            _log.exception("agent %s: unexpected error while serving", agent)
            self._again.add(agent)
            self._spawn(agent, self._let_go(agent, taken.owner, -1, False))
            return None
        self._spawn(agent, self._go_on(agent, taken.owner, Resumed(work, waiting), False), context)
        return None

    async def _commit_group(
        self, done: list[tuple[str, str, _Batch]], following: list[str]
    ) -> list[Taken] | None:
        """Commit a group's batches and take the ``following`` group, in one round trip;
        what the take found, or None if the round trip failed (then every agent of both
        groups is looked at again)."""
        commits = []
        for agent, owner, batch in done:
            release = not batch.effects.outbox and not batch.held and batch.rest is None
            commits.append((agent, owner, batch.ops, batch.replies, release))
        transport = self.transport
        taken: list[Taken] = []
        try:
            if following:
                lease_ms = self.settings.lease_ms
                results, taken = await _batches.commit_take_many(
                    transport, commits, following, self.id, lease_ms, self._batch
                )
            else:
                results = await _batches.commit_many(transport, commits)
        except Exception as exc:
            # Nothing was committed (or, if only the take failed, the commit was and these
            # turns are gone from their streams): the agents are looked at again either way.
            await self._group_failed("committing", exc)
            for agent, owner, _batch in done:
                self._again.add(agent)
                self._spawn(agent, self._let_go(agent, owner, -1, False))
            self._give_back(following)
            return None
        for (agent, owner, batch), (committed, _left, released) in zip(done, results, strict=True):
            if not committed:
                _log.warning("agent %s: lease lost before commit; batch discarded", agent)
                self._unhold(agent)
                self._group_done(agent)
                continue
            self.stats["batches"] += 1
            if released:
                self._unhold(agent)
                self._group_done(agent)
            else:  # more turns came, it has sends to relay, or it is paused: go on
                nxt = _Next(status=-2) if batch.held else batch.rest or _Next(read=False)
                relay = bool(batch.effects.outbox)
                self._spawn(agent, self._go_on(agent, owner, nxt, relay))
        return taken

    @staticmethod
    async def _group_failed(doing: str, exc: Exception) -> None:
        """Log why a group's round trip failed and back off (as ``_serve`` does) before its
        agents are tried again."""
        if isinstance(exc, ConnectionLostError):
            _log.warning("%s a group of agents: %s", doing, exc)
            await asyncio.sleep(0.2)
        else:
            _log.error("%s a group of agents failed", doing, exc_info=exc)
            await asyncio.sleep(0.5)

    def _group_done(self, agent: str) -> None:
        """An agent of a group needs nothing more: free its slot and let it be scheduled."""
        self._slots.release()
        self._served(agent)

    async def _drain_agent(
        self,
        agent: str,
        owner: str,
        first: _Next,
        counts: dict[bytes, int],
        pending: bool,
        last_id: bytes = b"",
    ) -> tuple[int, bool]:
        """Run batches until none is left: ``(outcome, released)``, outcome as the fetch
        status (0, -1 lease lost, -2 paused); released: the last commit gave the lease up."""
        size = self._batch
        nxt = first
        while True:
            if not nxt.read:
                if self._stopping.is_set():
                    return 0, False
                got = await _batches.fetch(
                    self.transport, agent, owner, self.id, 1 if pending else size, pending
                )
                nxt = _Next(got.status, got.entries, got.flags)
            if nxt.released:
                return 0, True
            if nxt.status == -3:
                await _directory.ensure_group(self.transport, agent)
                nxt = _Next(read=False)
                continue
            if nxt.status != 0:
                return nxt.status, False
            if not nxt.entries:
                if pending:
                    pending = False
                    nxt = _Next(read=False)
                    continue
                if last_id and self._lingers():
                    waited = await self._linger(agent, owner, last_id, nxt.lingered_ms)
                    if waited is not None:
                        nxt = waited
                        continue
                return 0, False
            if not self._lease_holds(agent):
                self._lapsed(agent, len(nxt.entries))
                return 0, False  # let go, and look at the stream again
            last_id = nxt.entries[-1][0]
            after = await self._run_batch(agent, owner, nxt.entries, nxt.flags, counts, pending)
            if after is None:
                return -1, False
            nxt = after
            last_id = nxt.newest or last_id

    def _lingers(self) -> bool:
        """Whether an agent out of turns keeps its lease a while (``linger_ms``): not while
        stopping, nor while every slot is taken (other agents may be waiting)."""
        return (
            self.settings.linger_ms > 0
            and not self._stopping.is_set()
            and not self._slots.locked()
            and len(self._lingering) < _LINGER_MAX  # each wait holds a connection
        )

    async def _linger(
        self, agent: str, owner: str, after: bytes, lingered_ms: int = 0
    ) -> _Next | None:
        """Wait up to ``linger_ms`` (less ``lingered_ms`` already waited) for a turn newer
        than entry ``after``, fetched in the round trip that sees it. The last wait gives
        the lease up if nothing came; None: lingering stopped early (the lease is held)."""
        deadline = time.monotonic() + (self.settings.linger_ms - lingered_ms) / 1000
        while self._lingers():
            left_ms = int((deadline - time.monotonic()) * 1000)
            block = max(1, min(_LINGER_SLICE_MS, left_ms))
            got = await _batches.wait_fetch(
                self.transport, agent, owner, self.id, after, block, self._batch, block >= left_ms
            )
            after = got.newest
            if got.released or got.status != 0 or got.entries:
                return _Next(got.status, got.entries, got.flags, got.released)
            if block >= left_ms:
                return None
        return None

    def _note_owned(self, agent: str, owned: bool) -> None:
        """Track leases for the ``owned`` set that ``expired_owners`` sweeps.

        A lease is written there only once held for ``_OWNED_DELAY`` (most serves end sooner
        and cost no write) and removed when given up. A worker that dies before its lease was
        written leaves the agent to the periodic backlog scan, one lease period later.
        """
        if owned:
            self._taken_at[agent] = time.monotonic()
        else:
            self._taken_at.pop(agent, None)
        self._watch_owned()

    def _watch_owned(self) -> None:
        """Run the loop that writes held leases to the ``owned`` set and removes the rest."""
        if self._owned_loop is None:
            self._owned_loop = asyncio.create_task(self._record_owned(), name="owned")

    async def _record_owned(self) -> None:
        period = min(_OWNED_DELAY, self.settings.lease_ms / 10_000)
        try:
            while self._taken_at or self._owned_recorded:
                await asyncio.sleep(period)
                await self._sync_owned(time.monotonic() - period)
        finally:
            self._owned_loop = None

    async def _sync_owned(self, taken_before: float) -> None:
        expiry = time.time() * 1000 + self.settings.lease_ms
        recorded = self._owned_recorded
        add = {
            agent: expiry
            for agent, at in self._taken_at.items()
            if at <= taken_before and agent not in recorded
        }
        gone = recorded - self._taken_at.keys()
        if not add and not gone:
            return
        try:
            await _leases.mark_owned(self.transport, add, gone)
        except ConnectionLostError as exc:
            _log.warning("owned set not updated: %s", exc)
            return
        recorded.difference_update(gone)
        recorded.update(add)

    # -- one batch -----------------------------------------------------------------------

    async def _run_batch(
        self,
        agent: str,
        owner: str,
        entries: list[Entry],
        flags: list[bytes],
        counts: dict[bytes, int],
        pending: bool = False,
    ) -> _Next | None:
        """Run one batch and commit it; the next batch (read in the same round trip), or
        None when the lease was lost and nothing was committed."""
        batch = await self._run_turns(agent, entries, flags, counts, pending)
        return await self._commit_batch(agent, owner, batch)

    async def _run_turns(
        self,
        agent: str,
        entries: list[Entry],
        flags: list[bytes],
        counts: dict[bytes, int],
        pending: bool = False,
    ) -> _Batch:
        """Run the turns of one batch, gathering what its commit will write. Waits on
        nothing of its own unless a turn does (or a pause check, or a dead letter)."""
        effects = _Effects(agent)
        ops: dict[str, Any] = {"ack": [], "tid": [], "rp": []}
        replies: list[str] = []
        token = _effects.set(effects)
        parallel = self.settings.parallel.get(agent, 1)
        running: set[asyncio.Task[None]] = set()
        slots = asyncio.Semaphore(parallel) if parallel > 1 else None
        batch_ids: set[str] = set()
        held, checked, rest = False, time.monotonic(), None
        try:
            for index, ((entry_id, fields), flag) in enumerate(zip(entries, flags, strict=True)):
                if slots is None and time.monotonic() - checked > _PAUSE_CHECK_S:
                    # As in the core, a pause lets the running turn complete and starts no
                    # other: after slow turns, look at the flag between two turns of a batch
                    # (the rest stay pending, for the next owner). Fast turns need no look.
                    # Otherwise commit what ran, so that callers of slow turns do not wait
                    # for a whole batch, and run the rest as the next batch.
                    if await self._is_paused(agent):
                        held = True
                        break
                    if not pending:
                        rest = index
                        break
                    checked = time.monotonic()
                ops["ack"].append(entry_id)
                turn_id = fields.get(b"id", b"").decode(errors="replace")
                if flag == b"d" or turn_id in batch_ids:
                    continue  # committed before, or a second copy in this batch: drop it
                if turn_id:  # an entry without an id must not mark later ones as duplicates
                    ops["tid"].append(turn_id)
                    batch_ids.add(turn_id)
                if counts.get(entry_id, 0) > self.settings.max_deliveries:
                    detail = f"delivered {counts[entry_id]} times without completing"
                    reason = DeadLetterReason.TOO_MANY_DELIVERIES
                    await self._dead(agent, fields, reason, detail)
                    if turn_id:
                        self._reply_error(agent, turn_id, ops, replies, detail, reason=reason)
                    continue
                entry = self._run_entry(agent, turn_id, fields, flag == b"c", ops, replies)
                if slots is None:
                    await entry
                else:  # an opted-in stateless agent: up to `parallel` turns at once
                    await slots.acquire()
                    task = asyncio.create_task(entry)
                    task.add_done_callback(_releasing(slots))
                    running.add(task)
            if running:
                await asyncio.gather(*running)
        finally:
            for task in running:
                task.cancel()
            _effects.reset(token)
        ops.update(self._commit_ops(agent, effects))
        left = (
            None
            if rest is None
            else _Next(0, entries[rest:], _seen(entries, flags, rest, batch_ids))
        )
        return _Batch(ops, replies, effects, held, entries[-1][0], pending, left)

    async def _commit_batch(self, agent: str, owner: str, batch: _Batch) -> _Next | None:
        """Commit a batch; the next batch (read in the same round trip), or None when the
        lease was lost and nothing was committed."""
        ops, replies, effects, held, pending = (
            batch.ops,
            batch.replies,
            batch.effects,
            batch.held,
            batch.pending,
        )
        if self._stopping.is_set() or held or batch.rest:  # commit only
            committed = await _batches.commit(self.transport, agent, owner, ops, replies)
            after = _Next(status=-2) if held else batch.rest or _Next(read=False)
        elif not effects.outbox and not pending and self._lingers():
            # keep the lease and wait for the next turn in the commit's round trip
            self._lingering.add(agent)
            block = min(_LINGER_SLICE_MS, self.settings.linger_ms)
            got = await _batches.commit_wait_fetch(
                self.transport,
                agent,
                owner,
                ops,
                replies,
                self.id,
                batch.last_id,
                block,
                self._batch,
                block >= self.settings.linger_ms,
            )
            committed = got.committed
            after = _Next(got.status, got.entries, got.flags, got.released, True, got.newest, block)
        else:  # sends wait in the outbox: relay them before the lease may go
            size = 1 if pending else self._batch
            release = not effects.outbox and not self._lingers()
            got = await _batches.commit_fetch(
                self.transport, agent, owner, ops, replies, self.id, size, pending, release
            )
            committed = got.committed
            after = _Next(got.status, got.entries, got.flags, got.released)
        if not committed:
            _log.warning("agent %s: lease lost before commit; batch discarded", agent)
            return None
        self.stats["batches"] += 1
        if effects.outbox:
            await _streams.relay(self.transport, agent)
        return after

    async def _is_paused(self, agent: str) -> bool:
        return await _control.is_paused(self.transport, agent)

    def _commit_ops(self, agent: str, effects: _Effects) -> dict[str, Any]:
        settings = self.settings
        return {
            "now": int(time.time() * 1000),
            "win": settings.dedup_window_ms,
            "fu": effects.followups,
            "ob": effects.outbox,
            "st": self._context_changes(agent),
            "rttl": settings.reply_ttl_ms,
            "rmax": 10_000,
        }

    async def _run_entry(
        self,
        agent: str,
        turn_id: str,
        fields: dict[bytes, bytes],
        cancelled: bool,
        ops: dict[str, Any],
        replies: list[str],
    ) -> None:
        data = fields.get(b"m", b"")
        secrets = self.settings.secrets
        if secrets and not _wire.verify(data, fields.get(b"s"), secrets):
            detail = "unsigned or forged (signature does not match any PYGENTS_SECRETS key)"
            await self._dead(agent, fields, DeadLetterReason.BAD_SIGNATURE, detail)
            if turn_id:
                reason = DeadLetterReason.BAD_SIGNATURE
                self._reply_error(agent, turn_id, ops, replies, detail, reason=reason)
            return
        try:
            message = _wire.decode_turn(data, self.settings.limits)
            turn = self._build_turn(agent, message)
        except _wire.WireError as exc:
            await self._dead(agent, fields, exc.reason, exc.detail)
            if turn_id:  # even an oversized or mangled turn's sender learns why
                self._reply_error(agent, turn_id, ops, replies, exc.detail, reason=exc.reason)
            return
        except Exception as exc:  # a message no check foresaw must not stall its agent
            reason, detail = DeadLetterReason.UNDECODABLE, f"{type(exc).__name__}: {exc}"
            await self._dead(agent, fields, reason, detail)
            if turn_id:
                self._reply_error(agent, turn_id, ops, replies, detail, reason=reason)
            return
        reply_index = -1
        if message.reply:
            replies.append(self.transport.keys.reply(agent, turn_id))
            reply_index = len(replies)
        if cancelled:
            self._error_entry(ops, reply_index, "TurnCancelledError", "cancelled before it ran")
            return
        trace_token = _trace.current.set(
            message.trace if _trace.ids(message.trace) else _trace.new_traceparent()
        )
        try:
            await self._execute(agent, turn_id, turn, reply_index, ops)
        finally:
            _trace.current.reset(trace_token)

    def _build_turn(self, agent: str, message: _wire.TurnMessage) -> Turn[Any]:
        served = self.agents[agent]
        if message.agent != agent:
            raise _wire.WireError(
                DeadLetterReason.UNKNOWN_AGENT,
                f"turn addressed to {message.agent!r} arrived on agent {agent!r}'s stream",
            )
        try:
            tool = ToolRegistry.get(message.tool)
        except UnregisteredToolError:
            raise _wire.WireError(
                DeadLetterReason.UNKNOWN_TOOL, f"no tool named {message.tool!r} in this worker"
            ) from None
        if tool not in served._tool_set:
            raise _wire.WireError(
                DeadLetterReason.TOOL_NOT_IN_AGENT,
                f"agent {agent!r} does not have tool {message.tool!r}",
            )
        problem = self._argument_problem(tool, message.args, message.kwargs)
        if problem:
            raise _wire.WireError(DeadLetterReason.BAD_ARGUMENTS, problem)
        turn: Turn[Any] = Turn(tool, message.timeout, message.args, message.kwargs, message.tags)
        if message.hooks:
            try:
                turn.hooks = HookRegistry.from_names(message.hooks)
            except UnregisteredHookError as exc:
                raise _wire.WireError(DeadLetterReason.BAD_ARGUMENTS, str(exc)) from None
        return turn

    def _argument_problem(
        self, tool: BaseTool, args: list[Any], kwargs: dict[str, Any]
    ) -> str | None:
        key = (tool, len(args), frozenset(kwargs))
        try:
            return self._argument_checks[key]
        except KeyError:
            pass
        problem = self._check_arguments(tool, args, kwargs)
        if len(self._argument_checks) >= 4096:
            self._argument_checks.clear()
        self._argument_checks[key] = problem
        return problem

    def _check_arguments(
        self, tool: BaseTool, args: list[Any], kwargs: dict[str, Any]
    ) -> str | None:
        signature = self._signatures.get(tool.__name__)
        if signature is None:
            signature = self._signatures[tool.__name__] = inspect.signature(tool.fn)
        plan = tool._plan
        given_by_plan = plan.injected_names | plan.fixed.keys()
        missing = []
        position = 0
        for param in signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            positional = param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD)
            index = position
            position += positional
            if param.default is not param.empty or param.name in given_by_plan:
                continue
            if (positional and index < len(args)) or (
                param.kind is not param.POSITIONAL_ONLY and param.name in kwargs
            ):
                continue
            missing.append(param.name)
        if missing:
            return f"tool {tool.__name__!r} is missing required argument(s): {', '.join(missing)}"
        return None

    async def _execute(
        self, agent: str, turn_id: str, turn: Turn[Any], reply_index: int, ops: dict[str, Any]
    ) -> None:
        served = self.agents[agent]
        key = self.transport.keys.reply(agent, turn_id) if reply_index > 0 else ""
        streaming = turn.tool.is_generator
        publisher = None
        if streaming and reply_index > 0:
            publisher = _Publisher(self.transport, key, self.settings.reply_ttl_ms)
        result: Any = None
        seq = 0
        cancellable = self.settings.parallel.get(agent, 1) == 1
        if cancellable:  # parallel turns are cancellable only before they start
            self._running_turn[agent] = turn_id
        metrics, started, ok = self.metrics, time.perf_counter(), False
        counters = metrics.agent_index(agent)
        metrics.started_at(counters)
        try:
            async for _turn, value in served.run_turn(turn):
                if reply_index < 0:
                    continue
                if publisher is not None:
                    await publisher.add(seq, _wire.encode_value(value, self.settings.limits))
                    seq += 1
                else:
                    result = value
            if publisher is not None:
                await publisher.finish()
            self.stats["turns"] += 1
            ok = True
            if reply_index > 0:
                data = _wire.encode_value(None if streaming else result, self.settings.limits)
                ops["rp"].append([reply_index, b"e", seq, data])
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if turn_id not in self._cancel_requested or task is None:
                raise
            self._cancel_requested.discard(turn_id)
            task.uncancel()
            await self._flush_values(publisher)
            self._error_entry(ops, reply_index, "TurnCancelledError", "cancelled while running")
        except Exception as exc:
            self.stats["failed"] += 1
            await self._flush_values(publisher)
            level = logging.INFO if isinstance(exc, TurnTimeoutError) else logging.WARNING
            _log.log(
                level,
                "turn failed: %s: %s",
                type(exc).__name__,
                exc,
                extra={"agent": agent, "turn": turn_id, "tool": turn.tool.__name__},
            )
            type_name = "TurnTimeoutError" if isinstance(exc, TurnTimeoutError) else None
            self._error_entry(
                ops,
                reply_index,
                type_name or type(exc).__name__,
                str(exc),
                "".join(traceback.format_exception(exc)),
            )
        finally:
            if publisher is not None:
                publisher.abandon()
            if cancellable:
                self._running_turn.pop(agent, None)
            elapsed = time.perf_counter() - started
            metrics.finished_at(counters, elapsed, ok)
            if _log.isEnabledFor(logging.DEBUG):
                _log.debug(
                    "turn %s in %.3fs",
                    "done" if ok else "failed",
                    elapsed,
                    extra={"agent": agent, "turn": turn_id, "tool": turn.tool.__name__},
                )

    async def _flush_values(self, publisher: _Publisher | None) -> None:
        """Write the values a failed streaming turn produced before its error entry."""
        if publisher is not None:
            with contextlib.suppress(Exception):
                await publisher.finish()

    def _error_entry(
        self,
        ops: dict[str, Any],
        reply_index: int,
        type_name: str,
        message: str,
        trace: str = "",
        reason: str = "",
    ) -> None:
        if reply_index < 0:
            return
        payload = {"type": type_name, "message": message, "traceback": trace}
        if reason:
            payload["reason"] = reason
        ops["rp"].append([reply_index, b"x", 0, _wire.pack(payload)])

    def _reply_error(
        self,
        agent: str,
        turn_id: str,
        ops: dict[str, Any],
        replies: list[str],
        detail: str,
        reason: str,
    ) -> None:
        replies.append(self.transport.keys.reply(agent, turn_id))
        self._error_entry(ops, len(replies), "DeadLetteredError", detail, reason=reason)

    async def _dead(
        self, agent: str, fields: dict[bytes, bytes], reason: DeadLetterReason, detail: str
    ) -> None:
        self.stats["dead_lettered"] += 1
        self.metrics.dead_lettered(agent, reason.value)
        turn_id = fields.get(b"id", b"")
        _log.warning(
            "dead-lettered: %s",
            detail,
            extra={"agent": agent, "turn": turn_id.decode(errors="replace"), "reason": reason},
        )
        await _dead_letters.dead_letter(
            self.transport,
            {
                b"agent": agent,
                b"reason": reason.value,
                b"detail": detail,
                b"id": turn_id,
                b"m": fields.get(b"m", b""),
                b"s": fields.get(b"s", b""),
                b"worker": self.id,
                b"ts": time.time(),
            },
        )

    # -- context -------------------------------------------------------------------------

    def _restore(self, agent: str, queue_blob: bytes | None, pool_blob: bytes | None) -> None:
        # With nothing committed in Redis the agent starts from the context its module gave
        # it, never from what this process last held (uncommitted, or another deployment's).
        served = self.agents[agent]
        if queue_blob is None and pool_blob is None:
            self._saved_context.pop(agent, None)
            empty = not served.context_queue and not served.context_pool
            if empty and agent in self._starts_empty:
                return  # most agents: no context, nothing to rebuild
        saved: dict[str, bytes] = {}
        queue, pool = self._initial_context[agent]
        if queue_blob is not None:
            queue = [ContextItem.from_dict(d) for d in _wire.unpack(queue_blob)]
            saved["queue"] = queue_blob
        if pool_blob is not None:
            pool = [ContextItem.from_dict(d) for d in _wire.unpack(pool_blob)]
            saved["pool"] = pool_blob
        if saved:
            self._saved_context[agent] = saved
        served.context_queue.items = queue
        served.context_pool._restore(pool)

    def _context_changes(self, agent: str) -> dict[str, bytes]:
        """The context blobs that differ from what Redis holds (by field)."""
        served = self.agents[agent]
        saved = self._saved_context.get(agent)
        if saved is None:
            if not served.context_queue and not served.context_pool:
                return {}  # never had any: nothing to write
            saved = self._saved_context[agent] = {}
        changes: dict[str, bytes] = {}
        for field, items in (
            ("queue", served.context_queue.items),
            ("pool", served.context_pool.items),
        ):
            if not items and field not in saved:
                continue
            try:
                blob = _wire.encode_value([i.to_dict() for i in items], self.settings.limits)
            except PayloadError as exc:
                _log.error("agent %s: context %s not saved: %s", agent, field, exc)
                continue
            if saved.get(field) != blob:
                changes[field] = blob
                saved[field] = blob
        return changes
