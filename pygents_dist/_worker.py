"""The worker: serves agents from their Redis streams, one owner per agent at a time.

How a worker serves an agent:

0. At start the worker makes sure Redis has the Functions library other languages send with
   (``_functions.py``), declares its agents and starts heartbeating.
1. A signal ("agent X has work") arrives on the shared ready stream, or a periodic scan of
   the declared agents or the keyspace sweep (``_backlog_sweep.py``: instances and agents
   made at runtime too) finds queued turns, or a maintenance round a dead owner.
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

Where each part lives, in the order a turn meets them: ``Worker`` (this module: the process's
lifecycle and loops: signals, maintenance, cancels), ``_scheduler.py`` (slots, groups and
chains), ``_agent_server.py`` (serving one owned agent: take, linger, let go), ``_held_leases.py``
(the leases held, their renewal and the ``owned`` set), ``_context_store.py`` (the agents'
context as Redis holds it), ``_batch_runner.py`` (running one batch of turns),
``_admission.py`` (checking a turn entry and building its Turn), ``_routing.py`` (where a
turn's values and the turns it sends go), ``_commit.py`` (what a batch's commit writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

from pygents import _seams
from pygents.agent import Agent
from pygents.registry import AgentRegistry
from pygents_dist import (
    _control,
    _directory,
    _functions,
    _instances,
    _leases,
    _metrics,
    _retries,
    _schedules,
    _streams,
    _wire,
)
from pygents_dist._agent_server import AgentServer
from pygents_dist._backlog_sweep import BacklogSweep
from pygents_dist._batch_runner import BatchRunner
from pygents_dist._concurrency import RedisSlots
from pygents_dist._context_store import ContextStore
from pygents_dist._held_leases import HeldLeases
from pygents_dist._keys import check_agent_name
from pygents_dist._lock import RedisLocks
from pygents_dist._log import current_worker
from pygents_dist._rate_limit import RedisRateGate
from pygents_dist._routing import Router
from pygents_dist._scheduler import Scheduler
from pygents_dist._schedules import ScheduleLoop
from pygents_dist._served_agents import ServedAgents, describe, observe
from pygents_dist._settings import WorkerSettings
from pygents_dist._signals import Signals
from pygents_dist._timers import TimerLoop
from pygents_dist._transport import Transport
from pygents_dist.errors import ConnectionLostError, RedisCommandError

__all__ = ["Worker", "WorkerSettings"]

_log = logging.getLogger("pygents_dist.worker")
#: Most declared agents a second the periodic backlog scan checks (~25 us of CPU each).
_SCAN_RATE_PER_S = 200
#: Seconds the signal loop waits before reading on after signals of busy agents only.
_SIGNAL_COALESCE_S = 0.002
#: Seconds the kinds with instances in Redis are not looked up again (for idle expiry).
_KINDS_TTL_S = 60.0
#: Agents whose key names are built at start (Keys.for_agent keeps as many).
_KEYS_PREPARED = 20_000
VERSION = "0.8.0"


def _signalled(fields: dict[bytes, bytes]) -> list[str]:
    """The agents a ready signal names: one (``a``), or several, space-separated (``as``)."""
    one = fields.get(b"a")
    if one is not None:
        return [one.decode(errors="replace")]
    return fields.get(b"as", b"").decode(errors="replace").split()


class Worker:
    """Serves a set of agents from Redis until stopped.

    Example::

        worker = Worker(WorkerSettings(redis_url="redis://localhost:6379/0"))
        await worker.run()   # returns after stop() (SIGTERM in the CLI) and a clean drain

    Args:
        settings: connection and behaviour.
        agents: the agents to serve; default: every registered agent (or ``settings.agents``).
        transport: a ``Transport`` to use instead of making one from the settings'
            ``redis_url``, ``namespace`` and ``redis_options`` (which are then not used);
            shared with clients of the same event loop, it stays open when the worker stops:
            whoever made it closes it.
    """

    def __init__(
        self,
        settings: WorkerSettings,
        agents: list[Agent] | None = None,
        *,
        transport: Transport | None = None,
    ) -> None:
        self.settings = settings
        if agents is None:
            wanted = settings.agents
            agents = [AgentRegistry.get(n) for n in wanted] if wanted else AgentRegistry.all()
        if not agents:
            raise ValueError("nothing to serve: the module defines no agents")
        declared = {check_agent_name(a.name): a for a in agents}
        #: The agents this worker serves: declared, and the active instances and runtime agents.
        self.agents = ServedAgents(declared, settings.max_active_agents)
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._owns_transport = transport is None
        self.transport = transport or Transport.from_url(
            settings.redis_url, namespace=settings.namespace, **settings.redis_options
        )
        self._stopping = asyncio.Event()
        self._signals = Signals(self.transport)
        self.stats = {
            "turns": 0,
            "batches": 0,
            "dead_lettered": 0,
            "failed": 0,
            "grouped": 0,
            "chained": 0,  # agents of groups taken in the round trip of a commit
        }
        self.metrics = _metrics.Metrics(self.id, VERSION)
        # The parts, each given what it shares with the others: besides the transport, the
        # settings, the stats and the stop flag, the slots (one per agent served at once) and
        # the agents to look at again once their serve ends.
        common = (self.transport, settings, self.id, self.stats, self._stopping)
        slots = asyncio.Semaphore(settings.concurrency)
        again: set[str] = set()
        contexts = ContextStore(self.agents, settings)
        self._leases = HeldLeases(self.transport, settings, declared)
        self._runner = BatchRunner(
            self.transport, settings, self.agents, self.id, self.stats, self.metrics, contexts
        )
        self._server = AgentServer(
            *common,
            slots=slots,
            again=again,
            leases=self._leases,
            contexts=contexts,
            runner=self._runner,
        )
        self._scheduler = Scheduler(
            *common,
            slots=slots,
            again=again,
            leases=self._leases,
            contexts=contexts,
            runner=self._runner,
            server=self._server,
            served=self.agents,
        )
        self.metrics.active = lambda: len(self._scheduler.active)
        #: Moves due delayed turns (any agent's) into their streams.
        self.timers = TimerLoop(self.transport)
        #: Fires due schedule ticks (any agent's).
        self.schedules = ScheduleLoop(
            self.transport, settings.limits, settings.secrets[0] if settings.secrets else None
        )
        self._sweep = BacklogSweep(
            self.transport, self._found, settings.lease_ms / 1000, self._idle
        )
        self._kinds_found: set[str] = set()
        self._kinds_until = 0.0

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
        router = Router(self.transport, self.settings, self.agents)
        _seams.set_router(router)
        _seams.set_agent_observer(observe(self.agents, router.made))
        _seams.set_lock_provider(
            RedisLocks(self.transport, self.settings.lease_ms, self.metrics.lock_waited)
        )
        # Flow control across workers: limits in Redis, retry backoffs held in Redis.
        _seams.set_slot_provider(RedisSlots(self.transport, self.settings.lease_ms))
        _seams.set_rate_gate(RedisRateGate(self.transport))
        _seams.set_retry_wait(_retries.retry_wait)
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
                asyncio.create_task(self.timers.run(), name="timers"),
                asyncio.create_task(self.schedules.run(), name="schedules"),
                asyncio.create_task(self._sweep.run(), name="sweep"),
            ]
            await self._stopping.wait()
            # Take no new turns, but keep heartbeats, lease renewal and cancels going while
            # in-flight turns finish: a turn longer than the lease would lose its commit.
            loops[0].cancel()
            await self._signals.aclose()
            try:
                await self._drain()
            finally:
                for loop in loops:
                    loop.cancel()
                await asyncio.gather(*loops, return_exceptions=True)
        finally:
            await self._signals.aclose()
            if metrics_server is not None:
                metrics_server.close()
            _seams.set_router(None)
            _seams.set_agent_observer(None)
            _seams.set_lock_provider(None)
            _seams.set_slot_provider(None)
            _seams.set_rate_gate(None)
            _seams.set_retry_wait(None)
            self._leases.stop()
            self._scheduler.stop()
            with contextlib.suppress(Exception):
                await self._leases.sync(time.monotonic())
            with contextlib.suppress(Exception):
                await _control.forget_worker(self.transport, self.id)
            if self._owns_transport:
                await self.transport.aclose()

    async def _start(self) -> None:
        for agent in itertools.islice(self.agents, _KEYS_PREPARED):  # not on their first turn
            self.transport.keys.for_agent(agent)
        await self.transport.ping()
        self._runner.on_cluster = await self.transport.is_cluster()
        await self._install_functions()
        await self._declare()
        await self._signals.start()
        await self._scan()

    async def _install_functions(self) -> None:
        """Install the Redis Functions library other languages send with (``_functions``),
        or a newer revision of it. A Redis that refuses (before Redis 7, or an ACL without
        ``FUNCTION``) costs those senders the function, not this worker its start. Not on a
        Redis Cluster: its functions span slots (the agent's, the ready stream's and the
        directory's), so other languages send there with plain XADD."""
        if await self.transport.is_cluster():
            _log.info(
                "Redis Cluster: the Functions library %s is not installed (services in other "
                "languages send with plain XADD, docs/wire.md)",
                _functions.LIBRARY,
            )
            return
        try:
            installed = await _functions.install(self.transport)
        except RedisCommandError as exc:
            _log.warning(
                "could not install the Redis Functions library %s (%s): services in other "
                "languages can still send with plain XADD (docs/wire.md)",
                _functions.LIBRARY,
                exc,
            )
            return
        if installed.changed:
            _log.info(
                "Redis Functions library %s: revision %s installed (found %s)",
                _functions.LIBRARY,
                installed.revision,
                "none" if installed.found is None else installed.found,
            )
        elif installed.revision != _functions.REVISION:
            _log.info(
                "Redis Functions library %s: left the newer revision %s in place (ours is %d)",
                _functions.LIBRARY,
                installed.revision,
                _functions.REVISION,
            )

    async def _declare(self) -> None:
        declared = self.agents.declared
        await _directory.declare(self.transport, {n: describe(a) for n, a in declared.items()})
        await _schedules.declare(self.transport, declared.values())
        await _control.heartbeat(
            self.transport, self.id, self._info(), self._heartbeat_ttl(), create=True
        )

    def _info(self) -> bytes:
        return _wire.pack(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "agents": len(self.agents.declared),
                "active_agents": self.agents.active_count,
                "active": len(self._scheduler.active),
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
                self._scheduler.schedule(name)

    async def _drain(self) -> None:
        active, wanted = self._scheduler.active, self._scheduler.wanted
        if not active and not wanted:
            return
        served = {*active, *wanted}
        grace_s = self.settings.grace_seconds
        _log.info("draining %d agent(s), grace %.1fs", len(active), grace_s)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        # A batch that finishes may hand its agent to a new task: wait for those too.
        while active and loop.time() < deadline:
            served.update(active)
            await asyncio.wait(set(active.values()), timeout=deadline - loop.time())
        pending = set(active.values())
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
        lingering = self._server.lingering
        backoff_s = 0.05
        while True:
            try:
                entries = await self._signals.read(1000)
                backoff_s = 0.05
            except Exception as exc:  # never let the loop die: the worker would go silent
                _log.warning("signals: %s; retrying in %.2fs", exc, backoff_s)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 2.0)
                continue
            news = False
            unknown: list[str] = []
            addressable = self.agents.addressable  # instances are built when taken
            for _entry_id, fields in entries:
                if b"t" in fields:  # a delayed turn or tick due sooner than any other
                    self.timers.wake()
                    self.schedules.wake()
                for name in _signalled(fields):
                    if addressable(name):
                        # A lingering agent reads new turns itself (the signal only marks it
                        # to be looked at again once its serve ends, in case it just gave up).
                        news = news or name not in lingering
                        self._scheduler.schedule(name)
                    else:
                        unknown.append(name)
            if unknown:  # agents made at runtime (on any worker), if this one can serve them
                for name in await self._activate(unknown):
                    news = True
                    self._scheduler.schedule(name)
            if self.agents.active_count > self.settings.max_active_agents:
                self.agents.let_go_idle(self._busy)
            if news:
                await asyncio.sleep(0)  # let the agents just scheduled start before reading on
            elif entries:
                # Signals of lingering agents only: gather the next ones a moment instead of
                # a read for each (an agent called back to back signals every turn).
                await asyncio.sleep(_SIGNAL_COALESCE_S)

    async def _maintenance_loop(self) -> None:
        interval_s = self.settings.lease_ms / 3000
        scans = 0
        while True:
            await asyncio.sleep(interval_s)
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
            await self._install_functions()
            await self._declare()
            self._signals.rewind()
            await self._scan()
        await self._leases.renew()
        for agent in await self._activate(await _leases.expired_owners(transport)):
            # Its stale entry is in the set: remove it once we have served the agent.
            self._leases.stale(agent)
            self._scheduler.schedule(agent)
        self._leases.sync_soon()
        await self._scan(self._scan_slice(round_no))
        if self._runner.refused:
            await self._runner.forget_refused()
        expiry_s = self.settings.instance_expiry_s
        if expiry_s is not None:
            for kind in await self._kinds():
                await _instances.expire_idle(transport, kind, int(expiry_s * 1000))
        if self.settings.metrics_port is not None:
            await self._refresh_depths()

    async def _kinds(self) -> list[str]:
        """The kinds served here that have instances in Redis: those this worker built
        instances of, and those a keyspace scan finds (once a minute)."""
        now = time.monotonic()
        if now >= self._kinds_until:
            found = await _instances.kinds(self.transport)
            self._kinds_found = {kind for kind in found if kind in self.agents.declared}
            self._kinds_until = now + _KINDS_TTL_S
        return sorted(self._kinds_found | self.agents.kinds_built)

    async def _found(self, names: list[str]) -> None:
        """Schedule the agents of ``names`` (found with a stream) this worker serves, but
        not declared ones: their streams stay, empty, while they are declared, and the
        periodic backlog scan looks at their length instead."""
        addressable, declared = self.agents.addressable, self.agents.declared
        active, wanted = self._scheduler.active, self._scheduler.wanted
        names = [n for n in names if n not in declared and n not in active and n not in wanted]
        servable = [name for name in names if addressable(name)]
        unknown = [name for name in names if not addressable(name)]
        if unknown:
            servable += await self._activate(unknown)
        for name in servable:
            self._scheduler.schedule(name)

    async def _activate(self, names: list[str]) -> list[str]:
        """Of ``names``, those this worker serves, made ready to serve (instances built,
        runtime agents built from their definitions); none when Redis cannot say."""
        try:
            return await self.agents.activate(self.transport, names)
        except ConnectionLostError as exc:
            _log.warning("looking up %d agent(s): %s", len(names), exc)
            return []

    def _idle(self) -> bool:
        """Whether this worker serves nothing and has nothing waiting to be taken."""
        scheduler = self._scheduler
        return not scheduler.active and not scheduler.wanted

    def _busy(self, agent: str) -> bool:
        """Whether ``agent`` is being served, lingered on or waiting to be taken here."""
        scheduler = self._scheduler
        return (
            agent in scheduler.active
            or agent in scheduler.wanted
            or (agent in self._server.lingering)
        )

    def _scan_slice(self, round_no: int) -> list[str]:
        """The agents whose backlog this maintenance round checks again, a safety net behind
        the ready signals: every agent once a lease (three rounds), but no more than
        ``_SCAN_RATE_PER_S`` agents a second, so thousands of idle agents cost almost no CPU."""
        names = list(self.agents)
        per_round = max(1, int(_SCAN_RATE_PER_S * self.settings.lease_ms / 3000))
        if len(names) <= 3 * per_round:
            return names if round_no % 3 == 2 else []
        start = round_no * per_round % len(names)
        return (names[start:] + names[:start])[:per_round]

    async def _refresh_depths(self) -> None:
        names = list(self.agents)
        depths = await _streams.backlog(self.transport, names)
        self.metrics.set_depths(dict(zip(names, depths, strict=True)))

    async def _cancel_loop(self) -> None:
        runner, active = self._runner, self._scheduler.active
        while True:
            await asyncio.sleep(0.25)
            running = dict(runner.running_turn)
            for agent, turn_id in running.items():
                try:
                    flagged = await _control.cancelled(self.transport, agent, [turn_id])
                except ConnectionLostError:
                    break
                task = active.get(agent)
                still_running = runner.running_turn.get(agent) == turn_id
                if flagged and flagged[0] and task is not None and still_running:
                    runner.cancel_requested.add(turn_id)
                    task.cancel()
