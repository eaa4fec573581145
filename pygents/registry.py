"""The three process-wide registries: tools, agents and hooks, each looked up by name.

Registration is automatic: tools and hooks at decoration, agents at construction. Names are
unique per registry; a second, different object under a used name raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, overload

from pygents.errors import (
    UnregisteredAgentError,
    UnregisteredHookError,
    UnregisteredToolError,
    UnserializableHookError,
)
from pygents.hooks import GLOBAL_HOOKS, Hook, HookType, fire

if TYPE_CHECKING:
    from pygents.agent import Agent
    from pygents.tool import BaseTool

__all__ = ["AgentRegistry", "HookRegistry", "ToolRegistry"]


class ToolRegistry:
    """Every tool in the process, by registered name (``"parent.child"`` for subtools)."""

    _tools: ClassVar[dict[str, BaseTool]] = {}

    @classmethod
    def register(cls, tool: BaseTool) -> None:
        """Add ``tool`` under its ``__name__``.

        Raises:
            ValueError: another tool is registered under that name.
        """
        name = tool.__name__
        held = cls._tools.get(name)
        if held is not None and held is not tool:
            raise ValueError(
                f"a tool named {name!r} is already registered; rename the function or "
                f"unregister the old one with ToolRegistry.unregister({name!r})"
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
                f"no tool named {name!r} is registered (known: {sorted(cls._tools)})"
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
        """Add ``agent`` under its name (``ValueError`` if another agent holds it)."""
        held = cls._agents.get(agent.name)
        if held is not None and held is not agent:
            raise ValueError(
                f"an agent named {agent.name!r} is already registered; pick another name or "
                f"AgentRegistry.unregister({agent.name!r}) first"
            )
        cls._agents[agent.name] = agent

    @classmethod
    def get(cls, name: str) -> Agent:
        """The agent called ``name`` (``UnregisteredAgentError`` if unknown)."""
        try:
            return cls._agents[name]
        except KeyError:
            raise UnregisteredAgentError(
                f"no agent named {name!r} is registered (known: {sorted(cls._agents)})"
            ) from None

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


class HookRegistry:
    """Every named hook, plus the global hooks that fire for all matching events."""

    _hooks: ClassVar[dict[str, Hook]] = {}

    @classmethod
    def register(cls, hook: Hook) -> None:
        """Add ``hook`` under its function name; re-registering the same hook is allowed.

        Raises:
            ValueError: a different hook holds the name.
        """
        held = cls._hooks.get(hook.name)
        if held is not None and held is not hook:
            raise ValueError(
                f"a hook named {hook.name!r} is already registered; rename the function or "
                f"HookRegistry.unregister({hook.name!r}) first"
            )
        cls._hooks[hook.name] = hook

    @classmethod
    def get(cls, name: str) -> Hook:
        """The hook registered as ``name`` (``UnregisteredHookError`` if unknown)."""
        try:
            return cls._hooks[name]
        except KeyError:
            raise UnregisteredHookError(
                f"no hook named {name!r} is registered (known: {sorted(cls._hooks)})"
            ) from None

    @classmethod
    def unregister(cls, name: str) -> None:
        """Remove the hook ``name``, from the global hooks too (unknown: error)."""
        hook = cls.get(name)
        del cls._hooks[name]
        for hooks in GLOBAL_HOOKS.values():
            if hook in hooks:
                hooks.remove(hook)

    @classmethod
    def clear(cls) -> None:
        """Forget every hook, global hooks included."""
        cls._hooks.clear()
        for hooks in GLOBAL_HOOKS.values():
            hooks.clear()

    @classmethod
    def register_global(cls, hook: Hook) -> None:
        """Make ``hook`` fire for every event of its types in the process."""
        for kind in hook.types:
            if hook not in GLOBAL_HOOKS[kind]:
                GLOBAL_HOOKS[kind].append(hook)

    @classmethod
    def get_global_by_type(cls, kind: HookType) -> list[Hook]:
        """The global hooks of one type, in registration order."""
        return list(GLOBAL_HOOKS[kind])

    @classmethod
    def get_by_type(cls, kind: HookType, hooks: Sequence[Hook]) -> list[Hook]:
        """The hooks of ``hooks`` that handle ``kind``, in list order."""
        return [h for h in hooks if kind in h.types]

    @classmethod
    async def fire(cls, kind: HookType, hooks: Sequence[Hook], *args: Any, **kwargs: Any) -> None:
        """Fire ``kind``: the instance hooks in ``hooks``, then the matching global hooks.

        Global hooks with tags are matched against the ``tags`` of the first argument (the
        owner, for most hook types); an argument without tags matches only untagged hooks.
        """
        tags: frozenset[str] = getattr(args[0], "tags", frozenset()) if args else frozenset()
        await fire(kind, hooks, frozenset(tags), *args, **kwargs)

    @classmethod
    def wrap(
        cls,
        fn: Callable[..., Awaitable[Any]] | Hook,
        kind: HookType,
        *,
        lock: bool = False,
        **fixed_kwargs: Any,
    ) -> Hook:
        """Turn ``fn`` into an instance hook of ``kind`` (used by ``@turn.before_run`` etc.).

        The hook already registered for the same function is reused (gaining ``kind``). If the
        name is held by a different function, the new hook still works but is not registered,
        so saving its owner raises ``UnserializableHookError``.
        """
        if isinstance(fn, Hook):
            fn._add_types([kind])
            return fn
        held = cls._hooks.get(fn.__name__)
        if held is not None and held.fn is fn and not fixed_kwargs and bool(held.lock) == lock:
            held._add_types([kind])
            return held
        made = Hook(fn, kind, lock=lock, fixed_kwargs=fixed_kwargs)
        if held is None:
            cls._hooks[made.name] = made
        return made

    @classmethod
    def names_by_type(cls, hooks: Sequence[Hook]) -> dict[str, list[str]]:
        """``{type value: [hook names]}`` for saving ``hooks``.

        Raises:
            UnserializableHookError: a hook is not the one registered under its name.
        """
        out: dict[str, list[str]] = {}
        for h in hooks:
            if cls._hooks.get(h.name) is not h:
                raise UnserializableHookError(
                    f"hook {h.name!r} cannot be saved: it is not the hook registered under that "
                    "name (two hooks made from one function or factory share a name); give each "
                    "hook function a unique name"
                )
            for kind in sorted(h.types, key=lambda t: t.value):
                names = out.setdefault(kind.value, [])
                if h.name not in names:
                    names.append(h.name)
        return out

    @classmethod
    def from_names(cls, by_type: dict[str, list[str]]) -> list[Hook]:
        """The hooks named in a ``names_by_type`` dict, each once, in order."""
        out: list[Hook] = []
        for names in by_type.values():
            for name in names:
                h = cls.get(name)
                if h not in out:
                    out.append(h)
        return out


type HookFn = Callable[..., Awaitable[Any]]


class HookDecorator:
    """The decorator behind ``@owner.before_x``: bare, with options, or given a function.

    ``@tool_.before_invoke``, ``@tool_.before_invoke(lock=True, key=value)`` and
    ``tool_.before_invoke(fn)`` all return the ``Hook`` (so one function can be stacked on
    several owners); it is appended to the owner's hook list once.
    """

    __slots__ = ("_hooks", "_kind")

    def __init__(self, hooks: list[Hook], kind: HookType) -> None:
        self._hooks = hooks
        self._kind = kind

    @overload
    def __call__(self, fn: HookFn | Hook, /) -> Hook: ...
    @overload
    def __call__(
        self, fn: None = None, /, *, lock: bool = False, **fixed_kwargs: Any
    ) -> Callable[[HookFn | Hook], Hook]: ...
    def __call__(
        self, fn: HookFn | Hook | None = None, /, *, lock: bool = False, **fixed_kwargs: Any
    ) -> Hook | Callable[[HookFn | Hook], Hook]:
        hooks, kind = self._hooks, self._kind

        def decorate(target: HookFn | Hook) -> Hook:
            made = HookRegistry.wrap(target, kind, lock=lock, **fixed_kwargs)
            if made not in hooks:
                hooks.append(made)
            return made

        return decorate if fn is None else decorate(fn)


class InstanceHook:
    """Declares an instance-hook decorator on an owner class (a descriptor).

    Example::

        class Turn:
            before_run = InstanceHook(TurnHook.BEFORE_RUN, "(turn) before the tool runs")
    """

    def __init__(
        self,
        kind: HookType,
        doc: str,
        attr: str = "hooks",
        check: Callable[[Any], None] | None = None,
    ) -> None:
        self.kind = kind
        self.attr = attr
        self.check = check
        self.__doc__ = f"Instance hook {doc}."

    @overload
    def __get__(self, owner: None, cls: type[Any] | None = None) -> InstanceHook: ...
    @overload
    def __get__(self, owner: object, cls: type[Any] | None = None) -> HookDecorator: ...
    def __get__(
        self, owner: object | None, cls: type[Any] | None = None
    ) -> HookDecorator | InstanceHook:
        if owner is None:
            return self
        if self.check is not None:
            self.check(owner)
        hooks: list[Hook] = getattr(owner, self.attr)
        return HookDecorator(hooks, self.kind)
