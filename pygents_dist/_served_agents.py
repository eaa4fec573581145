"""The agents a worker can serve: those its module declares, instances of them, and agents
made at runtime anywhere in the deployment; only the active set kept in memory.

Three sources, looked up in this order:

- **declared**: the agents the worker's module builds at import (``WorkerSettings.agents``
  picks some). They stay in memory and in the directory for the worker's life.
- **instances**: ``"<kind>/<key>"`` where ``<kind>`` is declared here. Made on the first turn
  this worker takes for it (``Agent.instance``); it starts from the kind's context as the
  module declared it (Redis holds its context from its first commit on).
- **runtime agents**: agents a tool made while running (``Agent(...)``, ``branch``) on any
  worker. Their creator records their definition in the directory (``define``); a worker that
  has every tool and hook they name builds them from it (``activate``).

Instances and runtime agents are kept in a bounded most-recently-used set: past
``max_active`` the least recently used one that is not being served is let go (dropped from
this process and from ``AgentRegistry``); Redis keeps its turns and context, so it is simply
built again when next needed. Building one costs microseconds and no round trip (an instance)
or one directory read (a runtime agent, batched).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pygents.agent import Agent
from pygents.context import ContextItem, ContextPool, ContextQueue
from pygents.errors import UnregisteredHookError, UnregisteredToolError
from pygents.hooks import HookRegistry
from pygents.registry import AgentRegistry, ToolRegistry, split_instance
from pygents_dist import _directory, _wire
from pygents_dist._keys import check_agent_name
from pygents_dist._transport import Transport

__all__ = ["ServedAgents", "describe", "observe"]

_log = logging.getLogger("pygents_dist.worker")
#: How long a name found in no directory entry this worker can serve is not looked up again.
_UNSERVABLE_TTL_S = 5.0

#: An agent's context as a module or a definition gives it: (queue items, pool items).
type Template = tuple[list[ContextItem[Any]], list[ContextItem[Any]]]


def describe(agent: Agent, *, runtime: bool = False) -> bytes:
    """The directory entry of ``agent``: what a client checks, and (for an agent made at
    runtime) what another worker builds it from."""
    entry: dict[str, Any] = {
        "description": agent.description,
        "tools": [t.__name__ for t in agent.tools],
        "declared": time.time(),
    }
    if runtime:
        entry["runtime"] = True
        entry["hooks"] = HookRegistry.names_by_type(agent.hooks)
        entry["turn_hooks"] = HookRegistry.names_by_type(agent.turn_hooks)
        entry["tags"] = sorted(agent.tags)
        entry["queue_limit"] = agent.context_queue.limit
        entry["pool_limit"] = agent.context_pool.limit
    return _wire.pack(entry)


class ServedAgents(Mapping[str, Agent]):
    """The agents this worker serves now, by name (a read-only mapping over the declared and
    the active ones); see the module docstring.

    Args:
        declared: the module's agents, by name.
        max_active: most instances and runtime agents kept in memory at once.
    """

    def __init__(self, declared: dict[str, Agent], max_active: int) -> None:
        self.declared = declared
        self.max_active = max_active
        self._templates: dict[str, Template] = {
            name: (list(a.context_queue.items), list(a.context_pool.items))
            for name, a in declared.items()
        }
        self._active: OrderedDict[str, Agent] = OrderedDict()
        self._unservable: dict[str, float] = {}
        self._building = False
        #: The kinds this worker has built instances of.
        self.kinds_built: set[str] = set()
        #: Called with each agent let go (parts holding per-agent state drop it).
        self.on_forget: list[Callable[[str], None]] = []

    # -- the mapping ---------------------------------------------------------------------

    def __getitem__(self, name: str) -> Agent:
        agent = self.declared.get(name)
        return agent if agent is not None else self._active[name]

    def __contains__(self, name: object) -> bool:
        return name in self.declared or name in self._active

    def __iter__(self) -> Iterator[str]:
        yield from self.declared
        yield from list(self._active)

    def __len__(self) -> int:
        return len(self.declared) + len(self._active)

    @property
    def active_count(self) -> int:
        """Instances and runtime agents in memory now."""
        return len(self._active)

    def template(self, name: str) -> Template:
        """The context ``name`` starts from while Redis holds none: its module's (declared),
        its kind's as the module declared it (an instance), or none (a runtime agent: its
        creator wrote its first context to Redis)."""
        template = self._templates.get(name)
        if template is not None:
            return template
        parts = split_instance(name)
        if parts is not None and parts[0] in self._templates:
            return self._templates[parts[0]]
        return [], []

    def metric_name(self, name: str) -> str:
        """The name ``name``'s metrics are kept under: an instance's kind (one series per
        kind, however many instances)."""
        parts = split_instance(name)
        return parts[0] if parts is not None and parts[0] in self.declared else name

    # -- activation ----------------------------------------------------------------------

    def addressable(self, name: str) -> bool:
        """Whether ``name`` is known here without a round trip: declared, active, or an
        instance of a declared kind (not built by asking)."""
        if name in self.declared or name in self._active:
            return True
        parts = split_instance(name)
        return parts is not None and parts[0] in self.declared

    def activate_now(self, name: str) -> bool:
        """Make ``name`` servable without a round trip if it can be: declared, active, or an
        instance of a declared kind (built now). False: it needs ``activate`` (a runtime
        agent), or cannot be served here."""
        if name in self.declared:
            return True
        agent = self._active.get(name)
        if agent is not None:
            self._active.move_to_end(name)
            return True
        parts = split_instance(name)
        if parts is None or parts[0] not in self.declared:
            return False
        try:
            check_agent_name(name)
        except ValueError:
            return False
        self._keep(name, self._build(lambda: self.declared[parts[0]].instance(parts[1])))
        self.kinds_built.add(parts[0])
        return True

    async def activate(self, transport: Transport, names: list[str]) -> list[str]:
        """Of ``names``, those this worker can serve, made servable (runtime agents built
        from their directory entries, read in one round trip)."""
        servable: list[str] = []
        lookup: list[str] = []
        now = time.monotonic()
        for name in names:
            if self.activate_now(name):
                servable.append(name)
            elif self._unservable.get(name, 0.0) < now:
                lookup.append(name)
        if not lookup:
            return servable
        entries = await _directory.descriptions(transport, lookup)
        for name, entry in zip(lookup, entries, strict=True):
            agent = self._from_entry(name, entry) if entry is not None else None
            if agent is None:
                self._unservable[name] = now + _UNSERVABLE_TTL_S
                continue
            self._keep(name, agent)
            servable.append(name)
        if len(self._unservable) > 10 * self.max_active:
            self._unservable = {n: t for n, t in self._unservable.items() if t >= now}
        return servable

    def adopt(self, agent: Agent) -> None:
        """Keep ``agent``, made here at runtime, among the active ones."""
        if agent.name not in self.declared:
            self._keep(agent.name, agent)

    @property
    def building(self) -> bool:
        """True while this worker itself builds an agent (not one a tool made)."""
        return self._building

    def let_go_idle(self, busy: Callable[[str], bool]) -> None:
        """Drop the least recently used instances and runtime agents past ``max_active``,
        skipping those ``busy`` says are being served or waiting to be."""
        excess = len(self._active) - self.max_active
        if excess <= 0:
            return
        for name in list(self._active):
            if excess <= 0:
                break
            if busy(name):
                continue
            self.forget(name)
            excess -= 1

    def forget(self, name: str) -> None:
        """Drop an instance or runtime agent from this process (Redis keeps it)."""
        if self._active.pop(name, None) is None:
            return
        if name in AgentRegistry._agents:
            AgentRegistry.unregister(name)
        for drop in self.on_forget:
            drop(name)

    # -- building ------------------------------------------------------------------------

    def _keep(self, name: str, agent: Agent) -> None:
        self._active[name] = agent
        self._active.move_to_end(name)
        self._unservable.pop(name, None)

    def _build(self, make: Callable[[], Agent]) -> Agent:
        self._building = True
        try:
            return make()
        finally:
            self._building = False

    def _from_entry(self, name: str, blob: bytes) -> Agent | None:
        """The runtime agent a directory entry defines, or None if this worker cannot build
        it (not a runtime entry, or a tool or hook it names is not registered here)."""
        try:
            entry = _wire.unpack(blob)
            if not isinstance(entry, dict) or not entry.get("runtime"):
                return None
            check_agent_name(name)
            existing = AgentRegistry._agents.get(name)
            if existing is not None:
                return existing
            tools = [ToolRegistry.get(t) for t in entry.get("tools") or []]
            hooks = HookRegistry.from_names(entry.get("hooks") or {})
            turn_hooks = HookRegistry.from_names(entry.get("turn_hooks") or {})
        except (UnregisteredToolError, UnregisteredHookError) as exc:
            _log.debug("agent %s: not servable here (%s)", name, exc)
            return None
        except Exception as exc:  # a malformed entry: say so, serve nothing from it
            _log.warning("agent %s: unreadable directory entry (%s)", name, exc)
            return None

        def make() -> Agent:
            agent = Agent(
                name,
                str(entry.get("description", "")),
                tools,
                context_pool=ContextPool(entry.get("pool_limit")),
                context_queue=ContextQueue(entry.get("queue_limit") or 10),
                tags=entry.get("tags") or (),
            )
            object.__setattr__(agent, "hooks", hooks)
            object.__setattr__(agent, "turn_hooks", turn_hooks)
            return agent

        return self._build(make)


def observe(served: ServedAgents, made: Callable[[Agent], None]) -> Callable[[Agent], None]:
    """The ``pygents._seams.agent_observer`` of a worker: agents a tool makes are adopted and passed
    to ``made`` (to be defined in the directory); agents the worker builds are not."""

    def observer(agent: Agent) -> None:
        if served.building or agent.name in served.declared:
            return
        parts = split_instance(agent.name)
        if parts is not None and parts[0] in served.declared:
            served.adopt(agent)  # an instance of a declared kind: addressable by name alone
            return
        served.adopt(agent)
        made(agent)

    return observer
