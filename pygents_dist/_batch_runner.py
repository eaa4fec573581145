"""Running one batch of an agent's turns: each entry admitted (or dead-lettered), run through
the core, and what it produced gathered in the batch's ``Commit``.

A turn's result or error becomes a reply entry of the commit, its streamed values go to its
reply stream as they come (``Publisher``), and the turns it puts or sends become the commit's
follow-ups and sends (``Router``). The batch runner commits nothing itself: the agent server
or the scheduler commits the ``TurnBatch`` it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from pygents import _seams
from pygents.agent import Agent
from pygents.errors import TurnTimeoutError
from pygents.registry import split_instance
from pygents.turn import Turn
from pygents_dist import _control, _dead_letters, _instances, _metrics, _retries, _trace, _wire
from pygents_dist._admission import FORGED, Admission
from pygents_dist._commit import NO_REPLY, Commit
from pygents_dist._context_store import ContextStore
from pygents_dist._routing import Publisher, running_commit
from pygents_dist._settings import WorkerSettings
from pygents_dist._statuses import FetchStatus
from pygents_dist._transport import Entry, Transport
from pygents_dist.errors import DeadLetterReason

__all__ = ["BatchRunner", "NextTurns", "TurnBatch"]

_log = logging.getLogger("pygents_dist.worker")
#: Seconds of turns in a batch after which the pause flag is looked at before the next turn.
_PAUSE_CHECK_S = 0.05


class NextTurns(NamedTuple):
    """The batch read after a commit (in the same round trip), or ``read=False``."""

    status: int = FetchStatus.OK
    entries: list[Entry] = []
    flags: list[bytes] = []
    released: bool = False
    read: bool = True
    newest: bytes = b""  # the newest entry id a lingering wait saw
    lingered_ms: int = 0


@dataclasses.dataclass(slots=True)
class TurnBatch:
    """A batch whose turns ran: what its commit writes, and how it ended."""

    commit: Commit
    held: bool  # a pause stopped it before its last turn
    last_id: bytes  # the newest entry id it read
    pending: bool  # its entries were claimed from a previous owner
    rest: NextTurns | None = None  # entries read but not run (the batch ran long): run next


def _seen(entries: list[Entry], flags: list[bytes], start: int, seen: set[str]) -> list[bytes]:
    """The flags of ``entries[start:]``, marking as committed ('d') the copies of turns the
    part before ``start`` ran: their flags were read before that part committed."""
    return [
        b"d" if fields.get(b"id", b"").decode(errors="replace") in seen else flag
        for (_entry_id, fields), flag in zip(entries[start:], flags[start:], strict=True)
    ]


def _releasing(slots: asyncio.Semaphore) -> Callable[[asyncio.Task[None]], None]:
    return lambda _task: slots.release()


class BatchRunner:
    """Runs batches of the served agents' turns; tracks the turn each agent is running, for
    the worker's cancel loop."""

    def __init__(
        self,
        transport: Transport,
        settings: WorkerSettings,
        agents: Mapping[str, Agent],
        worker_id: str,
        stats: dict[str, int],
        metrics: _metrics.Metrics,
        contexts: ContextStore,
    ) -> None:
        self._transport = transport
        self._settings = settings
        self._agents = agents
        self._worker_id = worker_id
        self._stats = stats
        self._metrics = metrics
        self._contexts = contexts
        self._admission = Admission(agents, settings)
        #: agent: the id of the turn it is running (not parallel agents: see ``_execute``).
        self.running_turn: dict[str, str] = {}
        #: Turns the cancel loop cancelled while they ran.
        self.cancel_requested: set[str] = set()
        #: On a Redis Cluster retry backoffs are slept in the worker (``lua/hold.lua`` writes
        #: the shared due index beside the agent's keys): set by the worker at start.
        self.on_cluster = False
        #: agent: (turn id, attempt) of the turn whose retry its pending entries hold.
        self._resuming: dict[str, tuple[str, int]] = {}
        #: agent: the retry its running turn deferred (``_retries``).
        self._deferred: dict[str, _seams.RetryDeferred] = {}
        #: agent: why its running turn's last attempt failed, when it exhausted its retries.
        self._exhausted: dict[str, str] = {}
        #: Instances of capped kinds taken for the first time: admitted before they run.
        self._unadmitted: set[str] = set()
        #: Instances refused by their kind's cap, to forget once let go (``forget_refused``).
        self.refused: set[str] = set()
        self._new_instances = _instances.NewInstances(transport)

    def taken(self, agent: str, owner: str) -> None:
        """``agent`` was just taken with lease value ``owner``. An instance taken for the
        first time (fence 1: Redis held nothing of it) joins its kind's index: at once if
        the kind is uncapped, else once admitted, before its first batch runs."""
        if not owner.endswith(":1"):
            return
        parts = split_instance(agent)
        if parts is None:
            return
        if parts[0] in self._settings.max_instances:
            self._unadmitted.add(agent)
        else:
            self._new_instances.add(agent)

    async def _refusal(self, agent: str) -> str | None:
        """Why ``agent``'s turns are refused (its kind is at its cap), or None."""
        if agent in self._unadmitted:
            self._unadmitted.discard(agent)
            kind = agent.partition("/")[0]
            cap = self._settings.max_instances[kind]
            if not await _instances.admit(self._transport, agent, cap):
                _log.warning("instance %s refused: kind %s holds its cap of %d", agent, kind, cap)
                self.refused.add(agent)
        if agent in self.refused:
            kind = agent.partition("/")[0]
            cap = self._settings.max_instances.get(kind, 0)
            return f"kind {kind!r} already holds its cap of {cap:,} instances"
        return None

    async def forget_refused(self) -> None:
        """Forget the refused instances no worker holds any more (their turns were all
        dead-lettered); the others are tried again at the next call."""
        names = list(self.refused)
        outcomes = await _control.forget_many(self._transport, names)
        for name, outcome in zip(names, outcomes, strict=True):
            if outcome == _control.ForgetOutcome.FORGOTTEN:
                self.refused.discard(name)

    async def run_turns(
        self,
        agent: str,
        entries: list[Entry],
        flags: list[bytes],
        counts: dict[bytes, int],
        pending: bool = False,
    ) -> TurnBatch:
        """Run the turns of one batch, gathering what its commit will write. Waits on
        nothing of its own unless a turn does (or a pause check, or a dead letter)."""
        settings = self._settings
        commit = Commit(agent, settings.dedup_window_ms, settings.reply_ttl_ms)
        token = running_commit.set(commit)
        parallel = settings.parallel.get(agent, 1)
        running: set[asyncio.Task[None]] = set()
        slots = asyncio.Semaphore(parallel) if parallel > 1 else None
        batch_ids: set[str] = set()
        held, checked, rest = False, time.monotonic(), None
        refusal = await self._refusal(agent) if self._unadmitted or self.refused else None
        if pending:  # a retry's entry comes back pending: which attempt is it?
            resumed = await _retries.attempts(self._transport, agent)
            if resumed is not None:
                self._resuming[agent] = resumed
        # Only turns run one at a time defer a retry's backoff to Redis (their order is kept
        # by holding the agent); a parallel agent's turns (tasks copying this) sleep it.
        defer_token = _retries.deferring.set(slots is None and not self.on_cluster)
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
                mark = commit.mark()
                commit.acked.append(entry_id)
                turn_id = fields.get(b"id", b"").decode(errors="replace")
                if flag == b"d" or turn_id in batch_ids:
                    continue  # committed before, or a second copy in this batch: drop it
                if turn_id:  # an entry without an id must not mark later ones as duplicates
                    commit.turn_ids.append(turn_id)
                    batch_ids.add(turn_id)
                if refusal is not None:
                    reason = DeadLetterReason.INSTANCE_LIMIT
                    await self._dead(agent, fields, reason, refusal)
                    if turn_id:
                        commit.refuse(self._reply_key(agent, turn_id), refusal, reason)
                    continue
                if counts.get(entry_id, 0) > settings.max_deliveries:
                    detail = f"delivered {counts[entry_id]} times without completing"
                    reason = DeadLetterReason.TOO_MANY_DELIVERIES
                    await self._dead(agent, fields, reason, detail)
                    if turn_id:
                        commit.refuse(self._reply_key(agent, turn_id), detail, reason)
                    continue
                entry = self._run_entry(agent, turn_id, fields, flag == b"c", commit)
                if slots is None:
                    await entry
                    deferred = self._deferred.pop(agent, None)
                    if deferred is not None:
                        # The attempt failed and its retry waits: it commits nothing, its
                        # entry (and those read after it) stay pending, the agent is held.
                        commit.undo(mark)
                        commit.hold = _retries.RetryHold(
                            turn_id,
                            entry_id,
                            deferred.attempt + 1,
                            max(0, round(deferred.delay_s * 1000)),
                        )
                        held = True
                        break
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
            running_commit.reset(token)
            _retries.deferring.reset(defer_token)
            self._resuming.pop(agent, None)
        commit.now_ms = int(time.time() * 1000)
        commit.context = self._contexts.changes(agent)
        left = (
            None
            if rest is None
            else NextTurns(FetchStatus.OK, entries[rest:], _seen(entries, flags, rest, batch_ids))
        )
        return TurnBatch(commit, held, entries[-1][0], pending, left)

    async def _is_paused(self, agent: str) -> bool:
        return await _control.is_paused(self._transport, agent)

    def _reply_key(self, agent: str, turn_id: str) -> str:
        return self._transport.keys.reply(agent, turn_id)

    async def _run_entry(
        self,
        agent: str,
        turn_id: str,
        fields: dict[bytes, bytes],
        cancelled: bool,
        commit: Commit,
    ) -> None:
        admission = self._admission
        data = fields.get(b"m", b"")
        if not admission.signed(data, fields.get(b"s")):
            reason = DeadLetterReason.BAD_SIGNATURE
            await self._dead(agent, fields, reason, FORGED)
            if turn_id:
                commit.refuse(self._reply_key(agent, turn_id), FORGED, reason)
            return
        try:
            message = admission.decode(data)
            turn = admission.build_turn(agent, turn_id, message)
        except _wire.WireError as exc:
            await self._dead(agent, fields, exc.reason, exc.detail)
            if turn_id:  # even an oversized or mangled turn's sender learns why
                commit.refuse(self._reply_key(agent, turn_id), exc.detail, exc.reason)
            return
        except Exception as exc:  # a message no check foresaw must not stall its agent
            reason, detail = DeadLetterReason.UNDECODABLE, f"{type(exc).__name__}: {exc}"
            await self._dead(agent, fields, reason, detail)
            if turn_id:
                commit.refuse(self._reply_key(agent, turn_id), detail, reason)
            return
        reply_index = NO_REPLY
        if message.reply:
            reply_index = commit.reply_to(self._transport.keys.reply(agent, turn_id))
        if cancelled:
            commit.add_error(reply_index, "TurnCancelledError", "cancelled before it ran")
            return
        trace_token = _trace.current.set(
            message.trace if _trace.ids(message.trace) else _trace.new_traceparent()
        )
        try:
            await self._execute(agent, turn_id, turn, reply_index, commit)
        finally:
            _trace.current.reset(trace_token)
        exhausted = self._exhausted.pop(agent, None)
        if exhausted is not None:  # kept for `pygents dlq replay`; the caller got the error
            await self._dead(agent, fields, DeadLetterReason.RETRIES_EXHAUSTED, exhausted)

    async def _execute(
        self, agent: str, turn_id: str, turn: Turn[Any], reply_index: int, commit: Commit
    ) -> None:
        served = self._agents[agent]
        settings = self._settings
        key = self._transport.keys.reply(agent, turn_id) if reply_index > 0 else ""
        streaming = turn.tool.is_generator
        publisher = None
        if streaming and reply_index > 0:
            publisher = Publisher(self._transport, key, settings.reply_ttl_ms)
        result: Any = None
        seq = 0
        cancellable = settings.parallel.get(agent, 1) == 1
        if cancellable:  # parallel turns are cancellable only before they start
            self.running_turn[agent] = turn_id
        resumed = self._resuming.get(agent)
        attempt_token = None
        if resumed is not None and resumed[0] == turn_id:
            attempt_token = _seams.retry_attempt.set(resumed[1])
        metrics, started, ok = self._metrics, time.perf_counter(), False
        counters = metrics.agent_index(agent)
        metrics.started_at(counters)
        try:
            async for _turn, value in served.run_turn(turn):
                if reply_index < 0:
                    continue
                if publisher is not None:
                    await publisher.add(seq, _wire.encode_value(value, settings.limits))
                    seq += 1
                else:
                    result = value
            if publisher is not None:
                await publisher.finish()
            self._stats["turns"] += 1
            ok = True
            if reply_index > 0:
                data = _wire.encode_value(None if streaming else result, settings.limits)
                commit.add_end(reply_index, seq, data)
        except _seams.RetryDeferred as deferred:
            self._deferred[agent] = deferred
            _log.info(
                "turn retry deferred: %s",
                deferred,
                extra={"agent": agent, "turn": turn_id, "tool": turn.tool.__name__},
            )
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if turn_id not in self.cancel_requested or task is None:
                raise
            self.cancel_requested.discard(turn_id)
            task.uncancel()
            await self._flush_values(publisher)
            commit.add_error(reply_index, "TurnCancelledError", "cancelled while running")
        except Exception as exc:
            self._stats["failed"] += 1
            await self._flush_values(publisher)
            timed_out = isinstance(exc, TurnTimeoutError)
            message = _timed_out(turn) if timed_out else str(exc)
            _log.log(
                logging.INFO if timed_out else logging.WARNING,
                "turn failed: %s: %s",
                type(exc).__name__,
                message,
                extra={"agent": agent, "turn": turn_id, "tool": turn.tool.__name__},
            )
            commit.add_error(
                reply_index,
                "TurnTimeoutError" if timed_out else type(exc).__name__,
                message,
                "".join(traceback.format_exception(exc)),
            )
            retry = getattr(turn.tool, "retry", None)
            if retry is not None and retry.attempts > 1 and retry.retries(exc):
                self._exhausted[agent] = (
                    f"{retry.attempts} attempts failed; the last with "
                    f"{type(exc).__name__}: {message}"
                )
        finally:
            if attempt_token is not None:
                _seams.retry_attempt.reset(attempt_token)
            if publisher is not None:
                publisher.abandon()
            if cancellable:
                self.running_turn.pop(agent, None)
            elapsed = time.perf_counter() - started
            metrics.finished_at(counters, elapsed, ok)
            if _log.isEnabledFor(logging.DEBUG):
                _log.debug(
                    "turn %s in %.3fs",
                    "done" if ok else "failed",
                    elapsed,
                    extra={"agent": agent, "turn": turn_id, "tool": turn.tool.__name__},
                )

    @staticmethod
    async def _flush_values(publisher: Publisher | None) -> None:
        """Write the values a failed streaming turn produced before its error entry."""
        if publisher is not None:
            with contextlib.suppress(Exception):
                await publisher.finish()

    async def _dead(
        self, agent: str, fields: dict[bytes, bytes], reason: DeadLetterReason, detail: str
    ) -> None:
        self._stats["dead_lettered"] += 1
        self._metrics.dead_lettered(agent, reason.value)
        turn_id = fields.get(b"id", b"")
        _log.warning(
            "dead-lettered: %s",
            detail,
            extra={"agent": agent, "turn": turn_id.decode(errors="replace"), "reason": reason},
        )
        await _dead_letters.dead_letter(
            self._transport,
            {
                b"agent": agent,
                b"reason": reason.value,
                b"detail": detail,
                b"id": turn_id,
                b"m": fields.get(b"m", b""),
                b"s": fields.get(b"s", b""),
                b"worker": self._worker_id,
                b"ts": time.time(),
            },
        )


def _timed_out(turn: Turn[Any]) -> str:
    """What a timed-out turn's log line and error say: the core's message tells a tool author
    to pass a larger ``Turn(timeout=...)``, but here the timeout came from the sender."""
    return (
        f"turn {turn.tool.__name__!r} timed out after {turn.timeout}s (its sender sets the "
        "timeout: call(..., timeout=...) or send(..., timeout=...) from a Client, "
        "Turn(timeout=...) for a Turn sent from a tool, the envelope's 'timeout' field from "
        "another language)"
    )
