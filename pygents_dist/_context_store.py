"""The served agents' context (``ContextQueue`` and ``ContextPool``) as Redis holds it.

An agent's context lives in its state hash (fields ``queue`` and ``pool``, msgpack blobs).
Taking the agent restores it from the blobs the take read; a batch's commit writes back only
the blobs that changed (``Commit.context``), so this store remembers what Redis holds.
"""

from __future__ import annotations

import logging

from pygents.context import ContextItem
from pygents_dist import _wire
from pygents_dist._served_agents import ServedAgents
from pygents_dist._settings import WorkerSettings
from pygents_dist.errors import PayloadError

__all__ = ["ContextStore"]

_log = logging.getLogger("pygents_dist.worker")


class ContextStore:
    """The context blobs Redis holds for each served agent, and the context each agent's
    module gave it (what it starts from while Redis holds none)."""

    def __init__(self, agents: ServedAgents, settings: WorkerSettings) -> None:
        self._agents = agents
        self._settings = settings
        self._saved: dict[str, dict[str, bytes]] = {}  # agent: field: blob
        agents.on_forget.append(self.forget)

    def forget(self, agent: str) -> None:
        """Drop what is kept of an agent this worker let go of."""
        self._saved.pop(agent, None)

    def restore(self, agent: str, queue_blob: bytes | None, pool_blob: bytes | None) -> None:
        """Give the agent the context Redis holds (read when it was taken)."""
        # With nothing committed in Redis the agent starts from the context its module gave
        # it, never from what this process last held (uncommitted, or another deployment's).
        served = self._agents[agent]
        queue, pool = self._agents.template(agent)
        if queue_blob is None and pool_blob is None:
            self._saved.pop(agent, None)
            empty = not served.context_queue and not served.context_pool
            if empty and not queue and not pool:
                return  # most agents: no context, nothing to rebuild
        saved: dict[str, bytes] = {}
        if queue_blob is not None:
            queue = [ContextItem.from_dict(d) for d in _wire.unpack(queue_blob)]
            saved["queue"] = queue_blob
        if pool_blob is not None:
            pool = [ContextItem.from_dict(d) for d in _wire.unpack(pool_blob)]
            saved["pool"] = pool_blob
        if saved:
            self._saved[agent] = saved
        served.context_queue.items = queue
        served.context_pool._restore(pool)

    def changes(self, agent: str) -> dict[str, bytes]:
        """The context blobs that differ from what Redis holds (by field)."""
        served = self._agents[agent]
        saved = self._saved.get(agent)
        if saved is None:
            if not served.context_queue and not served.context_pool:
                return {}  # never had any: nothing to write
            saved = self._saved[agent] = {}
        changes: dict[str, bytes] = {}
        for field, items in (
            ("queue", served.context_queue.items),
            ("pool", served.context_pool.items),
        ):
            if not items and field not in saved:
                continue
            try:
                blob = _wire.encode_value([i.to_dict() for i in items], self._settings.limits)
            except PayloadError as exc:
                _log.error("agent %s: context %s not saved: %s", agent, field, exc)
                continue
            if saved.get(field) != blob:
                changes[field] = blob
                saved[field] = blob
        return changes
