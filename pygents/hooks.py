"""Hooks: the event types, the ``Hook`` wrapper, the ``@hook`` decorator and dispatch.

Dispatch order for one event: the owner's instance hooks of that type, in list order, then
the global hooks of that type that are not already in the owner's list; the same hook object
never fires twice for one event. Hooks run one after another; an exception propagates and
stops the rest. A global hook with tags fires only for owners sharing at least one tag.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pygents import _seams
from pygents._call import CallPlan

__all__ = [
    "AgentHook",
    "ContextPoolHook",
    "ContextQueueHook",
    "Hook",
    "HookMetadata",
    "HookType",
    "ToolHook",
    "TurnHook",
    "hook",
]


# The hook types are plain Enums, not StrEnums: TurnHook.ON_ERROR and ToolHook.ON_ERROR share
# the value "on_error" and must stay distinct events.
class TurnHook(enum.Enum):
    """Events of a turn's run."""

    BEFORE_RUN = "before_run"
    AFTER_RUN = "after_run"
    ON_TIMEOUT = "on_timeout"
    ON_ERROR = "on_error"
    ON_COMPLETE = "on_complete"


class AgentHook(enum.Enum):
    """Events of an agent's queue and loop."""

    BEFORE_TURN = "before_turn"
    AFTER_TURN = "after_turn"
    ON_TURN_VALUE = "on_turn_value"
    BEFORE_PUT = "before_put"
    AFTER_PUT = "after_put"
    ON_PAUSE = "on_pause"
    ON_RESUME = "on_resume"


class ToolHook(enum.Enum):
    """Events of one tool invocation."""

    BEFORE_INVOKE = "before_invoke"
    ON_YIELD = "on_yield"
    AFTER_INVOKE = "after_invoke"
    ON_ERROR = "on_error"


class ContextQueueHook(enum.Enum):
    """Events of a ``ContextQueue``."""

    BEFORE_APPEND = "before_append"
    AFTER_APPEND = "after_append"
    BEFORE_CLEAR = "before_clear"
    AFTER_CLEAR = "after_clear"
    ON_EVICT = "on_evict"


class ContextPoolHook(enum.Enum):
    """Events of a ``ContextPool``."""

    BEFORE_ADD = "before_add"
    AFTER_ADD = "after_add"
    BEFORE_REMOVE = "before_remove"
    AFTER_REMOVE = "after_remove"
    BEFORE_CLEAR = "before_clear"
    AFTER_CLEAR = "after_clear"
    ON_EVICT = "on_evict"


type HookType = TurnHook | AgentHook | ToolHook | ContextQueueHook | ContextPoolHook

HOOK_ENUMS: tuple[type[enum.Enum], ...] = (
    TurnHook,
    AgentHook,
    ToolHook,
    ContextQueueHook,
    ContextPoolHook,
)

#: Global hooks per type. The lists are never replaced, only mutated, so hot paths may hold
#: a reference and test its truthiness.
GLOBAL_HOOKS: dict[HookType, list[Hook]] = {t: [] for e in HOOK_ENUMS for t in e}  # type: ignore[misc]


@dataclass
class HookMetadata:
    """A hook's name (its registry key) and description (its docstring)."""

    name: str
    description: str | None = None

    def dict(self) -> dict[str, Any]:
        """The metadata as a plain dict."""
        return asdict(self)


class Hook:
    """An async function that runs on one or more event types.

    Calling a hook (``await h(*args)``) merges its fixed kwargs, drops arguments its function
    does not accept, injects the running agent's context where annotated, and holds its lock
    (if ``lock=True``) around the call.
    """

    __slots__ = ("__dict__", "_plan", "fn", "lock", "metadata", "tags", "type", "types")

    def __init__(
        self,
        fn: Callable[..., Awaitable[Any]],
        type: HookType | Sequence[HookType],
        *,
        lock: bool = False,
        tags: Iterable[str] | None = None,
        fixed_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(
                f"hook {getattr(fn, '__name__', fn)!r} must be an async function (async def)"
            )
        kinds: list[HookType] = list(type) if isinstance(type, (list, tuple)) else [type]  # type: ignore[list-item]
        if not kinds:
            raise ValueError(f"hook {fn.__name__!r} needs at least one hook type, got []")
        for kind in kinds:
            if kind not in GLOBAL_HOOKS:
                raise TypeError(f"hook {fn.__name__!r}: {kind!r} is not a hook type")
        self.fn = fn
        self.type: HookType | list[HookType] = (
            kinds if isinstance(type, (list, tuple)) else kinds[0]
        )
        self.types: frozenset[HookType] = frozenset(kinds)
        self.lock: asyncio.Lock | None = asyncio.Lock() if lock else None
        self.tags: frozenset[str] = frozenset(tags or ())
        self.metadata = HookMetadata(fn.__name__, inspect.getdoc(fn))
        self._plan = CallPlan(fn, fixed_kwargs or {}, fn.__name__, "hook")
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__

    @property
    def name(self) -> str:
        """The registry key: the function's name."""
        return self.metadata.name

    def _add_types(self, kinds: Iterable[HookType]) -> None:
        self.types = self.types | frozenset(kinds)
        self.type = sorted(self.types, key=lambda t: t.value) if len(self.types) > 1 else self.type

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        plan = self._plan
        if not plan.simple or kwargs or len(args) > plan.max_positional:
            args, kwargs = plan.prepare(args, kwargs)
            if plan.injections:
                kwargs = plan.inject(args, kwargs)
        if self.lock is None:
            return await self.fn(*args, **kwargs)
        async with _seams.guard("hook:" + self.metadata.name, self.lock):
            return await self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        kinds = ", ".join(sorted(t.name for t in self.types))
        return f"<Hook {self.metadata.name} [{kinds}]>"


def _matches(h: Hook, tags: frozenset[str]) -> bool:
    return not h.tags or not h.tags.isdisjoint(tags)


async def fire(
    kind: HookType, hooks: Sequence[Hook], tags: frozenset[str], *args: Any, **kwargs: Any
) -> None:
    """Run the hooks of ``kind`` for an owner: its instance hooks, then matching globals."""
    if not hooks:  # the common case: globals only, nothing to de-duplicate against
        for h in GLOBAL_HOOKS[kind]:
            if not h.tags or not h.tags.isdisjoint(tags):
                await h(*args, **kwargs)
        return
    fired: list[Hook] = []
    for h in hooks:
        if kind in h.types and h not in fired:
            fired.append(h)
            await h(*args, **kwargs)
    for h in GLOBAL_HOOKS[kind]:
        if h not in fired and _matches(h, tags):
            await h(*args, **kwargs)


def hook(
    type: HookType | Sequence[HookType],
    *,
    lock: bool = False,
    tags: Iterable[str] | None = None,
    **fixed_kwargs: Any,
) -> Callable[[Callable[..., Awaitable[Any]]], Hook]:
    """Make an async function a global hook for one event type or a list of them.

    A global hook fires for every matching event in the process (only for owners sharing a
    tag, if ``tags`` is given). It is registered in ``HookRegistry`` under its function name.

    Example::

        @hook(TurnHook.AFTER_RUN)
        async def log_output(turn, output):
            print(turn.tool.metadata.name, output)

    Raises:
        ValueError: ``type`` is an empty list, or another hook holds the name.
        TypeError: the function is not ``async def``, or a fixed kwarg is not a parameter.
    """
    from pygents.registry import HookRegistry

    def decorate(fn: Callable[..., Awaitable[Any]]) -> Hook:
        made = Hook(fn, type, lock=lock, tags=tags, fixed_kwargs=fixed_kwargs)
        HookRegistry.register(made)
        HookRegistry.register_global(made)
        return made

    return decorate
