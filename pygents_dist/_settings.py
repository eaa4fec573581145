"""How a worker connects and behaves: ``WorkerSettings``, and what follows from them."""

from __future__ import annotations

import dataclasses
from typing import Any

from pygents_dist import _wire

__all__ = ["WorkerSettings", "turns_per_fetch"]


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
        redis_options: extra redis-py options (``ssl_ca_certs`` ...), and ``durability``
            (``"replicated"``: a commit counts once a replica has it; see ``Transport``).
        metrics_port: serve Prometheus metrics on this port (None: off).
        metrics_host: the address the metrics server binds.
        linger_ms: after an agent's last turn, keep its lease this long for the next one,
            read straight from the agent's stream in the commit's round trip (no signal,
            no new lease: less latency and CPU for an agent called back to back). Only
            while a slot is free; 0 gives the lease up at once. A worker stopping may still
            take a turn that arrives within the current wait (at most 25 ms).
        max_active_agents: most instances (``"<kind>/<key>"``) and agents made at runtime
            kept in this worker's memory at once; past it the least recently used idle one
            is let go (Redis keeps its turns and context; it is built again when needed).
            Declared agents are always kept.
        max_instances: kind -> most instances Redis may hold of it; a turn to a new
            instance past that is dead-lettered (``instance_limit``). Give every worker the
            same caps: the worker that activates an instance checks its own.
        instance_expiry_s: forget instances not taken for this long (None: keep them until
            ``Client.forget``). Checked every maintenance round; an instance with an owner
            or waiting turns is kept.
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
    max_active_agents: int = 10_000
    max_instances: dict[str, int] = dataclasses.field(default_factory=dict)
    instance_expiry_s: float | None = None


def turns_per_fetch(settings: WorkerSettings) -> int:
    """Turns read at once. A turn read in the same batch as one that kills its worker is
    charged that delivery too, which ``max_deliveries=1`` cannot tell from a poison turn:
    then turns are read one at a time."""
    return settings.batch if settings.max_deliveries > 1 else 1
