"""The process-wide registries of tools and agents, each looked up by name.

Registration is automatic: tools at decoration, agents at construction. A name is taken once:
registering under a taken name raises ``ValueError`` (``'<name>' already registered``), even
for the object already there, as in pygents 0.7.0.

An agent can serve as a kind: ``AgentRegistry.get("assistant/user-42")`` makes (once) the
instance of the registered agent ``assistant`` for the key ``user-42`` (see
``Agent.instance``), so turns can be sent to an instance by name without declaring it.

``HookRegistry`` lives with the rest of the hook machinery in ``pygents.hooks``; it is
re-exported here so that 0.7.0's ``from pygents.registry import HookRegistry`` keeps working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pygents import _seams
from pygents.errors import UnregisteredAgentError, UnregisteredToolError, registered_names
from pygents.hooks import HookRegistry

if TYPE_CHECKING:
    from pygents.agent import Agent
    from pygents.tool import BaseTool

__all__ = ["INSTANCE_SEPARATOR", "AgentRegistry", "HookRegistry", "ToolRegistry", "split_instance"]

#: Between a kind's name and an instance key in an instance's name: ``"assistant/user-42"``.
INSTANCE_SEPARATOR = "/"


def split_instance(name: str) -> tuple[str, str] | None:
    """``(kind, key)`` of an instance name (split at the first ``/``), or None when ``name``
    names no instance (no separator, or an empty kind or key)."""
    kind, separator, key = name.partition(INSTANCE_SEPARATOR)
    return (kind, key) if separator and kind and key else None


class ToolRegistry:
    """Every tool in the process, by registered name (``"parent.child"`` for subtools)."""

    _tools: ClassVar[dict[str, BaseTool]] = {}

    @classmethod
    def register(cls, tool: BaseTool) -> None:
        """Add ``tool`` under its ``__name__``.

        Raises:
            ValueError: the name is taken (by another tool, or by this one already).
        """
        name = tool.__name__
        if name in cls._tools:
            raise ValueError(
                f"tool {name!r} already registered; rename the function or "
                f"ToolRegistry.unregister({name!r}) first"
            )
        cls._tools[name] = tool

    @classmethod
    def get(cls, name: str) -> BaseTool:
        """The tool registered as ``name``.

        Raises:
            UnregisteredToolError: no tool has that name.
        """
        try:
            return cls._tools[name]
        except KeyError:
            raise UnregisteredToolError(
                f"tool {name!r} not found in ToolRegistry{registered_names(cls._tools)}"
            ) from None

    @classmethod
    def unregister(cls, name: str) -> None:
        """Remove the tool registered as ``name`` (``UnregisteredToolError`` if unknown)."""
        cls.get(name)
        del cls._tools[name]

    @classmethod
    def clear(cls) -> None:
        """Forget every tool."""
        cls._tools.clear()

    @classmethod
    def all(cls) -> list[BaseTool]:
        """Every registered tool, subtools included, in registration order."""
        return list(cls._tools.values())

    @classmethod
    def definitions(cls) -> list[dict[str, Any]]:
        """The ``doc_tree()`` of every root-level tool (subtools appear inside their parent)."""
        return [t.doc_tree() for t in cls._tools.values() if t.parent is None]


class AgentRegistry:
    """Every agent in the process, by name."""

    _agents: ClassVar[dict[str, Agent]] = {}

    @classmethod
    def register(cls, agent: Agent) -> None:
        """Add ``agent`` under its name.

        Raises:
            ValueError: the name is taken (by another agent, or by this one already).
        """
        name = agent.name
        if name in cls._agents:
            raise ValueError(
                f"agent {name!r} already registered; pick another name or "
                f"AgentRegistry.unregister({name!r}) first"
            )
        cls._agents[name] = agent
        observer = _seams.agent_observer
        if observer is not None:
            observer(agent)

    @classmethod
    def get(cls, name: str) -> Agent:
        """The agent called ``name``; for ``"<kind>/<key>"`` with ``<kind>`` registered, that
        kind's instance for ``key``, made on first use (``Agent.instance``).

        Raises:
            UnregisteredAgentError: no agent (and no kind) of that name.
        """
        agent = cls._agents.get(name)
        if agent is not None:
            return agent
        parts = split_instance(name)
        if parts is not None and parts[0] in cls._agents:
            return cls._agents[parts[0]].instance(parts[1])
        raise UnregisteredAgentError(
            f"agent {name!r} not found in AgentRegistry{registered_names(cls._agents)}"
        )

    @classmethod
    def unregister(cls, name: str) -> None:
        """Remove the agent called ``name`` (``UnregisteredAgentError`` if unknown)."""
        cls.get(name)
        del cls._agents[name]

    @classmethod
    def clear(cls) -> None:
        """Forget every agent."""
        cls._agents.clear()

    @classmethod
    def all(cls) -> list[Agent]:
        """Every registered agent, in registration order."""
        return list(cls._agents.values())
