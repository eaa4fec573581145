"""Every Redis key name pygents_dist uses, in one place.

Keys start with a versioned prefix (``pyg1``, optionally behind a user namespace and a colon:
``staging:pyg1:...``) so two deployments, or two test runs, can share one Redis. Every key of
one agent carries the hash tag ``{agent}``, so an agent's stream, state, lease, outbox and
replies live on one Redis Cluster slot and one script can touch them all atomically. The
layout is part of the wire contract, ``docs/wire.md``.

On a Redis Cluster the "has work" signals go to ``READY_SHARDS`` ready streams instead of one
(``ready_shard``), whose hash tags (``{0}`` to ``{15}``) spread them over the cluster's slots.
Workers read every shard; a sender signals on a shard of the agent's own primary when it can
(``_streams.py``), else on the agent's own shard (``shard_of``).
"""

from __future__ import annotations

import binascii
import re
from typing import NamedTuple

__all__ = [
    "GROUP",
    "KEY_PREFIX",
    "READY_SHARDS",
    "AgentKeys",
    "Keys",
    "check_agent_name",
    "glob_escape",
]

#: The consumer group every worker reads agent streams through.
GROUP = "workers"
#: The versioned prefix of every key (behind the namespace, if any, and a colon).
KEY_PREFIX = "pyg1"
_NAME = re.compile(r"^[^{}\s]{1,200}$")
#: Ready streams of a Redis Cluster (one per hash tag ``{0}``..``{15}``).
READY_SHARDS = 16
#: Agents whose key records ``Keys.for_agent`` keeps (a worker serving more rebuilds some).
_AGENTS_CACHED = 20_000


class AgentKeys(NamedTuple):
    """One agent's keys, in the order ``lua/take.lua`` takes them as KEYS."""

    turns: str
    owner: str
    state: str
    outbox: str
    done: str
    cancel: str


def check_agent_name(name: str) -> str:
    """``name`` if it can be part of a key (no braces or whitespace, 1-200 chars)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"agent name {name!r} cannot be served: use 1-200 characters without braces "
            "or whitespace"
        )
    return name


def glob_escape(text: str) -> str:
    """``text`` matched literally by a Redis glob pattern (``SCAN MATCH``)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class Keys:
    """Key names under one namespace.

    Example::

        keys = Keys("staging")
        keys.turns("alice")  # 'staging:pyg1:{alice}:turns'
    """

    __slots__ = ("_records", "base")

    def __init__(self, namespace: str = "") -> None:
        self.base = f"{namespace}:{KEY_PREFIX}" if namespace else KEY_PREFIX
        self._records: dict[str, AgentKeys] = {}

    def for_agent(self, name: str) -> AgentKeys:
        """Every key of the agent ``name`` in one record, built once: a worker serving
        thousands of agents would otherwise format a dozen keys per batch. (The most recent
        20,000 agents are kept; past that the record is built again.)"""
        record = self._records.get(name)
        if record is None:
            if len(self._records) >= _AGENTS_CACHED:
                self._records.clear()
            record = self._records[name] = AgentKeys(
                self.turns(name),
                self.owner(name),
                self.state(name),
                self.outbox(name),
                self.done(name),
                self.cancel(name),
            )
        return record

    # -- one agent (hash tag {agent}) ----------------------------------------------------
    def turns(self, agent: str) -> str:
        """Stream of the agent's pending turns (consumer group ``GROUP``)."""
        return f"{self.base}:{{{agent}}}:turns"

    def state(self, agent: str) -> str:
        """Hash: ``queue``/``pool`` (msgpack contexts), ``paused``, ``fence`` counter."""
        return f"{self.base}:{{{agent}}}:state"

    def owner(self, agent: str) -> str:
        """String ``<worker>:<fence>`` with a TTL: the worker that owns the agent now."""
        return f"{self.base}:{{{agent}}}:owner"

    def outbox(self, agent: str) -> str:
        """Stream of committed sends to other agents, waiting to be relayed."""
        return f"{self.base}:{{{agent}}}:outbox"

    def done(self, agent: str) -> str:
        """Sorted set of recently committed turn ids (score: commit time, ms)."""
        return f"{self.base}:{{{agent}}}:done"

    def cancel(self, agent: str) -> str:
        """Hash of turn ids whose cancellation was requested."""
        return f"{self.base}:{{{agent}}}:cancel"

    def timers(self, agent: str) -> str:
        """Sorted set of the agent's delayed turns: turn id -> due time (Unix ms); the member
        ``!hold`` is a retry's backoff holding the agent (``_timers.py``)."""
        return f"{self.base}:{{{agent}}}:timers"

    def timed(self, agent: str) -> str:
        """Hash of the agent's delayed turns: turn id -> msgpack ``[envelope, signature]``
        (deleted when the turn is moved to the agent's stream)."""
        return f"{self.base}:{{{agent}}}:timed"

    def schedules(self, agent: str) -> str:
        """Hash of the agent's schedules: name -> msgpack spec (``_schedules.py``)."""
        return f"{self.base}:{{{agent}}}:schedules"

    def ticks(self, agent: str) -> str:
        """Hash of the agent's schedules' next ticks: name -> Unix ms (absent: paused)."""
        return f"{self.base}:{{{agent}}}:ticks"

    def reply(self, agent: str, turn_id: str) -> str:
        """Stream of one turn's values, end marker or error (expiring)."""
        return f"{self.base}:{{{agent}}}:reply:{turn_id}"

    # -- one kind (hash tag {kind}) ------------------------------------------------------
    def instances(self, kind: str) -> str:
        """Sorted set of the kind's instances: name -> when a worker last took it (ms)."""
        return f"{self.base}:{{{kind}}}:instances"

    @property
    def instances_pattern(self) -> str:
        """SCAN pattern matching every kind's instance index."""
        return f"{glob_escape(self.base)}:{{*}}:instances"

    def instance_turns_pattern(self, kind: str) -> str:
        """SCAN pattern matching the streams of every instance of ``kind``."""
        return f"{glob_escape(self.base)}:{{{glob_escape(kind)}/*}}:turns"

    # -- shared --------------------------------------------------------------------------
    @property
    def directory(self) -> str:
        """Hash of served agents: name -> msgpack description."""
        return f"{self.base}:agents"

    @property
    def ready(self) -> str:
        """Stream of "agent X has work" signals every worker blocks on (capped)."""
        return f"{self.base}:ready"

    @property
    def owned(self) -> str:
        """Sorted set: agent -> lease expiry (ms); a stale score means a dead owner."""
        return f"{self.base}:owned"

    @property
    def dead(self) -> str:
        """Stream of dead-lettered messages with their reasons."""
        return f"{self.base}:dead"

    def ready_shard(self, index: int) -> str:
        """On a Redis Cluster: ready stream ``index`` (of ``READY_SHARDS``)."""
        return f"{self.base}:ready:{{{index}}}"

    @staticmethod
    def shard_of(agent: str) -> int:
        """On a Redis Cluster: the ready shard that takes ``agent``'s signals (CRC16 of its
        name, the hash tag of its keys, modulo ``READY_SHARDS``)."""
        return binascii.crc_hqx(agent.encode(), 0) % 16384 % READY_SHARDS

    def worker(self, worker_id: str) -> str:
        """Heartbeat of one worker (msgpack info, TTL)."""
        return f"{self.base}:worker:{worker_id}"

    @property
    def worker_pattern(self) -> str:
        """SCAN pattern matching every worker heartbeat."""
        return f"{self.base}:worker:*"

    @property
    def due(self) -> str:
        """Sorted set: agent -> its earliest delayed turn's due time (Unix ms), so workers
        find due agents without scanning them all (``_timers.py``)."""
        return f"{self.base}:due"

    @property
    def schedule_index(self) -> str:
        """Sorted set: ``"<agent> <schedule>"`` -> next tick (Unix ms; ``+inf`` paused)."""
        return f"{self.base}:schedules"

    # -- one tool (hash tag {tool:<name>}) ------------------------------------------------
    def rate(self, tool: str) -> str:
        """String: a rate-limited tool's theoretical arrival time (GCRA, Unix ms; TTL)."""
        return f"{self.base}:{{tool:{tool}}}:rate"

    def slots(self, tool: str) -> str:
        """Sorted set of a concurrency-limited tool's holders: token -> lease expiry (ms)."""
        return f"{self.base}:{{tool:{tool}}}:slots"

    def lock(self, name: str) -> str:
        """A tool or hook lock (``tool:<name>`` / ``hook:<name>``)."""
        return f"{self.base}:lock:{name}"
