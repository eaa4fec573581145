"""Hooks: every piece of hook machinery of the core lives here.

This module owns the event types (``TurnHook``, ``AgentHook``, ...), the ``Hook`` wrapper and
the ``@hook`` decorator, the process-wide state of global hooks (changed only from here), the
``HookRegistry``, dispatch, and the ``@owner.before_x`` instance-hook decorators that the
owner classes declare.

A hook is anything awaitable-callable that says which events it handles through ``.type``:
one event member, or a tuple (or frozenset) of them. ``Hook`` objects are the usual case,
but plain async functions with a ``.type`` attribute work too, in instance hook lists and in
``HookRegistry`` (as in pygents 0.7.0). Matching is by identity with the event's member.

Dispatch order for one event: the owner's instance hooks of that type, in list order, then
the global hooks of that type that are not already in the owner's list; the same hook object
never fires twice for one event. Hooks run one after another; an exception propagates and
stops the rest. A global hook with tags fires only for owners sharing at least one tag.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, overload

from pygents import _seams
from pygents._call import CallPlan
from pygents.errors import UnregisteredHookError, UnserializableHookError, registered_names

__all__ = [
    "AgentHook",
    "ContextPoolHook",
    "ContextQueueHook",
    "Hook",
    "HookMetadata",
    "HookRegistry",
    "HookType",
    "ToolHook",
    "TurnHook",
    "hook",
]


# The hook types are ``str`` enums, as in 0.7.0: ``TurnHook.BEFORE_RUN == "before_run"`` and
# ``ToolHook.ON_ERROR == TurnHook.ON_ERROR`` both hold. (``str, Enum`` rather than StrEnum
# keeps ``str()`` as it was: ``"TurnHook.BEFORE_RUN"``.) Two members of different types can be
# equal (and hash alike), so everything below tells events apart by identity, never by ``==``
# or by a dict or set keyed on the members themselves.
class TurnHook(str, enum.Enum):  # noqa: UP042 (see above)
    """Events of a turn's run."""

    BEFORE_RUN = "before_run"
    AFTER_RUN = "after_run"
    ON_TIMEOUT = "on_timeout"
    ON_ERROR = "on_error"
    ON_COMPLETE = "on_complete"


class AgentHook(str, enum.Enum):  # noqa: UP042 (see above)
    """Events of an agent's queue and loop."""

    BEFORE_TURN = "before_turn"
    AFTER_TURN = "after_turn"
    ON_TURN_VALUE = "on_turn_value"
    BEFORE_PUT = "before_put"
    AFTER_PUT = "after_put"
    ON_PAUSE = "on_pause"
    ON_RESUME = "on_resume"


class ToolHook(str, enum.Enum):  # noqa: UP042 (see above)
    """Events of one tool invocation."""

    BEFORE_INVOKE = "before_invoke"
    ON_YIELD = "on_yield"
    AFTER_INVOKE = "after_invoke"
    ON_ERROR = "on_error"
    #: A failed attempt of a tool with a ``retry`` policy will be retried: fired before the
    #: backoff wait with keywords ``attempt`` (the attempt that failed, from 1), ``exc`` (its
    #: error), ``delay_s`` (the wait before the next attempt) and ``tool``.
    ON_RETRY = "on_retry"


class ContextQueueHook(str, enum.Enum):  # noqa: UP042 (see above)
    """Events of a ``ContextQueue``."""

    BEFORE_APPEND = "before_append"
    AFTER_APPEND = "after_append"
    BEFORE_CLEAR = "before_clear"
    AFTER_CLEAR = "after_clear"
    ON_EVICT = "on_evict"


class ContextPoolHook(str, enum.Enum):  # noqa: UP042 (see above)
    """Events of a ``ContextPool``."""

    BEFORE_ADD = "before_add"
    AFTER_ADD = "after_add"
    BEFORE_REMOVE = "before_remove"
    AFTER_REMOVE = "after_remove"
    BEFORE_CLEAR = "before_clear"
    AFTER_CLEAR = "after_clear"
    ON_EVICT = "on_evict"


type HookType = TurnHook | AgentHook | ToolHook | ContextQueueHook | ContextPoolHook
type HookFn = Callable[..., Awaitable[Any]]
"""What an instance hook list holds: a ``Hook``, or any async callable with ``.type``."""
type ToolHookEntry = tuple[ToolHook, HookFn]
"""What ``Tool.hooks`` holds: the event, then the hook that handles it."""

HOOK_ENUMS: tuple[type[enum.Enum], ...] = (
    TurnHook,
    AgentHook,
    ToolHook,
    ContextQueueHook,
    ContextPoolHook,
)

# Global hooks per event, keyed by the member's id (members of two types can be equal). The
# lists are never replaced, only mutated, so hot paths may hold one (``global_hooks``) and
# test its truthiness. Only this module changes them.
_GLOBAL_HOOKS: dict[int, list[HookFn]] = {id(t): [] for e in HOOK_ENUMS for t in e}


def global_hooks(kind: HookType) -> list[HookFn]:
    """The live list of global hooks of ``kind``, for reading (only this module changes it)."""
    return _GLOBAL_HOOKS[id(kind)]


def _is_hook_type(kind: object) -> bool:
    return id(kind) in _GLOBAL_HOOKS


def declared_types(obj: object) -> tuple[HookType, ...]:
    """The events ``obj`` handles, from its ``.type``: one member, or a tuple or frozenset.

    Anything else (no ``.type``, None, a list, a string, a foreign value) declares nothing,
    so such an object never fires: lists skip it silently, as 0.7.0 does.
    """
    if isinstance(obj, Hook):
        return obj.types
    declared = getattr(obj, "type", None)
    if _is_hook_type(declared):
        return (declared,)  # type: ignore[return-value]  # checked by _is_hook_type
    if isinstance(declared, (tuple, frozenset)):
        return tuple(t for t in declared if _is_hook_type(t))
    return ()


def handles(obj: object, kind: HookType) -> bool:
    """Whether ``obj`` (a ``Hook`` or a duck-typed hook) fires for ``kind`` (by identity)."""
    if isinstance(obj, Hook):
        return id(kind) in obj._type_ids
    declared = getattr(obj, "type", None)
    if declared is kind:
        return True
    if isinstance(declared, (tuple, frozenset)):
        return any(t is kind for t in declared)
    return False


def _hook_name(obj: object) -> str | None:
    name = getattr(obj, "__name__", None)
    return name if isinstance(name, str) else None


@dataclass
class HookMetadata:
    """A hook's name (its registry key) and description (its docstring)."""

    name: str
    description: str | None = None

    def dict(self) -> dict[str, Any]:
        """The metadata as a plain dict."""
        return asdict(self)


def _kinds(type_: object, owner: str) -> tuple[HookType, ...]:
    """The hook types given to ``@hook`` or ``Hook``: a member, or a list or tuple of them."""
    kinds: tuple[object, ...] = tuple(type_) if isinstance(type_, (list, tuple)) else (type_,)
    if not kinds:
        raise ValueError(f"hook {owner!r} needs at least one type, got {type_!r}")
    for kind in kinds:
        if not _is_hook_type(kind):
            raise TypeError(
                f"hook {owner!r}: {kind!r} is not a hook type (use a member of TurnHook, "
                "AgentHook, ToolHook, ContextQueueHook or ContextPoolHook)"
            )
    unique: list[HookType] = []
    for kind in kinds:
        if not any(k is kind for k in unique):
            unique.append(kind)  # type: ignore[arg-type]  # checked above
    return tuple(unique)


class Hook:
    """An async function that runs on one or more event types.

    ``type`` is the single event member, or a tuple of members (in declaration order) for a
    hook of several types. ``tags`` is a frozenset, or None when untagged. The function's
    ``__name__``, ``__qualname__``, ``__doc__``, ``__module__`` and ``__wrapped__`` are
    copied onto the hook.

    Calling a hook (``await h(*args)``) merges its fixed kwargs, drops arguments its function
    does not accept, injects the running agent's context where annotated, and holds its lock
    (if ``lock=True``) around the call.
    """

    __slots__ = ("__dict__", "_plan", "_type_ids", "fn", "lock", "metadata", "tags", "type")

    type: HookType | tuple[HookType, ...]
    # Copied from the function by functools.update_wrapper (kept in __dict__).
    __name__: str
    __qualname__: str
    __wrapped__: Callable[..., Awaitable[Any]]

    def __init__(
        self,
        fn: Callable[..., Awaitable[Any]],
        type: HookType | Sequence[HookType],
        *,
        lock: bool = False,
        tags: Iterable[str] | None = None,
        fixed_kwargs: dict[str, Any] | None = None,
    ) -> None:
        name = getattr(fn, "__name__", repr(fn))
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"hook {name!r} must be an async function (async def)")
        self._set_types(_kinds(type, name))
        self.fn = fn
        self.lock: asyncio.Lock | None = asyncio.Lock() if lock else None
        self.tags: frozenset[str] | None = frozenset(tags) if tags else None
        self.metadata = HookMetadata(fn.__name__, inspect.getdoc(fn))
        self._plan = CallPlan(fn, fixed_kwargs or {}, fn.__name__, "hook")
        # Only the names; a function's own __dict__ (a duck-typed ``.type``) is not copied.
        functools.update_wrapper(self, fn, updated=())

    def _set_types(self, kinds: tuple[HookType, ...]) -> None:
        self.type = kinds[0] if len(kinds) == 1 else kinds
        self._type_ids = frozenset(id(k) for k in kinds)

    @property
    def types(self) -> tuple[HookType, ...]:
        """Every event this hook handles, in declaration order (``type`` as a tuple)."""
        kind = self.type
        return kind if isinstance(kind, tuple) else (kind,)

    @property
    def name(self) -> str:
        """The registry key: the function's name."""
        return self.metadata.name

    def _add_types(self, kinds: Iterable[HookType]) -> None:
        """Handle ``kinds`` too; new ones go at the end, so ``type`` becomes a tuple."""
        added = [k for k in kinds if id(k) not in self._type_ids]
        if added:
            self._set_types((*self.types, *added))

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
        return f"Hook(type={self.type!r}, metadata={self.metadata!r})"


# -- dispatch ------------------------------------------------------------------------------


def _wants(hook_: HookFn, tags: frozenset[str]) -> bool:
    """Whether a global hook fires for an owner with ``tags`` (untagged hooks fire always)."""
    own = getattr(hook_, "tags", None)
    if not own:
        return True
    own_tags = own if isinstance(own, frozenset) else frozenset(own)
    return not own_tags.isdisjoint(tags)


async def fire(
    kind: HookType, hooks: Sequence[HookFn], tags: frozenset[str], *args: Any, **kwargs: Any
) -> None:
    """Run the hooks of ``kind`` for an owner: its instance hooks, then matching globals."""
    globals_ = _GLOBAL_HOOKS[id(kind)]
    if not hooks:  # the common case: globals only, nothing to de-duplicate against
        for h in globals_:
            if _wants(h, tags):
                await h(*args, **kwargs)
        return
    fired: list[HookFn] = []
    for h in hooks:
        if handles(h, kind) and not any(f is h for f in fired):
            fired.append(h)
            await h(*args, **kwargs)
    for h in globals_:
        if not any(f is h for f in fired) and _wants(h, tags):
            await h(*args, **kwargs)


async def fire_tool(
    kind: ToolHook,
    entries: Sequence[ToolHookEntry],
    tags: frozenset[str],
    *args: Any,
    **kwargs: Any,
) -> None:
    """``fire`` for a tool, whose hooks are ``(event, hook)`` pairs: a pair fires when its
    event equals ``kind``, whatever the hook's own ``type``."""
    fired: list[HookFn] = []
    for event, h in entries:
        if (event is kind or event == kind) and not any(f is h for f in fired):
            fired.append(h)
            await h(*args, **kwargs)
    for h in _GLOBAL_HOOKS[id(kind)]:
        if not any(f is h for f in fired) and _wants(h, tags):
            await h(*args, **kwargs)


# -- the @hook decorator -------------------------------------------------------------------


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
        ValueError: ``type`` is an empty list (at once), or another hook holds the name.
        TypeError: the function is not ``async def``, or a fixed kwarg is not a parameter.
    """
    if isinstance(type, (list, tuple)) and not type:
        empty = "list" if isinstance(type, list) else "tuple"
        raise ValueError(f"@hook needs at least one type, got an empty {empty}")

    def decorate(fn: Callable[..., Awaitable[Any]]) -> Hook:
        made = Hook(fn, type, lock=lock, tags=tags, fixed_kwargs=fixed_kwargs)
        HookRegistry.register(made)
        HookRegistry.register_global(made)
        return made

    return decorate


# -- the registry --------------------------------------------------------------------------


class HookRegistry:
    """Every named hook, plus the global hooks that fire for all matching events.

    Any object with a ``__name__`` can be registered (a ``Hook`` or a plain async function
    with ``.type``); it is looked up by that name and given back as the same object.
    """

    _hooks: ClassVar[dict[str, HookFn]] = {}

    @classmethod
    def register(cls, hook: HookFn) -> None:
        """Add ``hook`` under its ``__name__``; re-registering the same object does nothing.

        Registering does not make the hook global (see ``register_global``).

        Raises:
            ValueError: a different object holds the name.
            TypeError: ``hook`` has no ``__name__``.
        """
        name = _hook_name(hook)
        if name is None:
            raise TypeError(
                f"HookRegistry.register needs a hook or function with a __name__, got {hook!r}"
            )
        held = cls._hooks.get(name)
        if held is not None and held is not hook:
            raise ValueError(
                f"hook {name!r} already registered; rename the function or "
                f"HookRegistry.unregister({name!r}) first"
            )
        cls._hooks[name] = hook

    @classmethod
    def get(cls, name: str) -> Any:
        """The object registered as ``name`` (``UnregisteredHookError`` if unknown)."""
        try:
            return cls._hooks[name]
        except KeyError:
            raise UnregisteredHookError(
                f"hook {name!r} not found in HookRegistry{registered_names(cls._hooks)}"
            ) from None

    @classmethod
    def unregister(cls, name: str) -> None:
        """Remove the hook ``name``, from the global hooks too (unknown: error)."""
        held = cls.get(name)
        del cls._hooks[name]
        for hooks in _GLOBAL_HOOKS.values():
            hooks[:] = [h for h in hooks if h is not held]

    @classmethod
    def clear(cls) -> None:
        """Forget every hook, global hooks included."""
        cls._hooks.clear()
        for hooks in _GLOBAL_HOOKS.values():
            hooks.clear()

    @classmethod
    def register_global(cls, hook: HookFn) -> None:
        """Make ``hook`` fire for every event of its types in the process.

        Raises:
            TypeError: ``hook`` declares no hook type (no usable ``.type``).
        """
        kinds = declared_types(hook)
        if not kinds:
            raise TypeError(
                f"{_hook_name(hook) or hook!r} has no hook type: give it a .type (a TurnHook, "
                "AgentHook, ToolHook, ContextQueueHook or ContextPoolHook member, or a tuple)"
            )
        for kind in kinds:
            hooks = _GLOBAL_HOOKS[id(kind)]
            if not any(h is hook for h in hooks):
                hooks.append(hook)

    @classmethod
    def get_global_by_type(cls, kind: HookType) -> list[HookFn]:
        """The global hooks of one type, in registration order."""
        return list(_GLOBAL_HOOKS[id(kind)])

    @classmethod
    def get_by_type(cls, kind: HookType, hooks: Sequence[Any]) -> list[Any]:
        """The entries of ``hooks`` that handle ``kind``, in list order, as the same objects."""
        return [h for h in hooks if handles(h, kind)]

    @classmethod
    async def fire(cls, kind: HookType, hooks: Sequence[HookFn], *args: Any, **kwargs: Any) -> None:
        """Fire ``kind``: the instance hooks in ``hooks``, then the matching global hooks.

        Global hooks with tags are matched against the ``tags`` of the first argument (the
        owner, for most hook types); an argument without tags matches only untagged hooks.
        """
        tags: Iterable[str] = (getattr(args[0], "tags", None) or ()) if args else ()
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
        held = cls._hooks.get(getattr(fn, "__name__", ""))
        if (
            isinstance(held, Hook)
            and held.fn is fn
            and not fixed_kwargs
            and bool(held.lock) == lock
        ):
            held._add_types([kind])
            return held
        made = Hook(fn, kind, lock=lock, fixed_kwargs=fixed_kwargs)
        if held is None:
            cls._hooks[made.name] = made
        return made

    @classmethod
    def names_by_type(cls, hooks: Sequence[HookFn]) -> dict[str, list[str]]:
        """``{type value: [hook names]}`` for saving ``hooks``.

        Raises:
            UnserializableHookError: a hook is not the one registered under its name, or
                declares no hook type.
        """
        out: dict[str, list[str]] = {}
        for h in hooks:
            name = _hook_name(h)
            if name is None or cls._hooks.get(name) is not h:
                raise UnserializableHookError(
                    f"hook {name or h!r} cannot be saved: it is not the hook registered under "
                    "that name (two hooks made from one function or factory share a name, or "
                    "it was never registered); give each hook function a unique name and "
                    "register it"
                )
            kinds = declared_types(h)
            if not kinds:
                raise UnserializableHookError(
                    f"hook {name!r} cannot be saved: it declares no hook type (.type)"
                )
            for kind in sorted(kinds, key=lambda t: t.value):
                names = out.setdefault(kind.value, [])
                if name not in names:
                    names.append(name)
        return out

    @classmethod
    def from_names(cls, by_type: dict[str, list[str]]) -> list[HookFn]:
        """The hooks named in a ``names_by_type`` dict, each once, in order."""
        out: list[HookFn] = []
        for names in by_type.values():
            for name in names:
                h = cls.get(name)
                if not any(o is h for o in out):
                    out.append(h)
        return out


# -- instance-hook decorators --------------------------------------------------------------


class HookDecorator:
    """The decorator behind ``@owner.before_x``: bare, with options, or given a function.

    ``@tool_.before_invoke``, ``@tool_.before_invoke(lock=True, key=value)`` and
    ``tool_.before_invoke(fn)`` all return the ``Hook`` (so one function can be stacked on
    several owners). It is appended to the owner's hook list once: as itself, or for a tool
    as the pair ``(event, hook)``.
    """

    __slots__ = ("_hooks", "_kind", "_paired")

    def __init__(self, hooks: list[Any], kind: HookType, paired: bool) -> None:
        self._hooks = hooks
        self._kind = kind
        self._paired = paired

    @overload
    def __call__(self, fn: HookFn | Hook, /) -> Hook: ...
    @overload
    def __call__(
        self, fn: None = None, /, *, lock: bool = False, **fixed_kwargs: Any
    ) -> Callable[[HookFn | Hook], Hook]: ...
    def __call__(
        self, fn: HookFn | Hook | None = None, /, *, lock: bool = False, **fixed_kwargs: Any
    ) -> Hook | Callable[[HookFn | Hook], Hook]:
        hooks, kind, paired = self._hooks, self._kind, self._paired

        def decorate(target: HookFn | Hook) -> Hook:
            made = HookRegistry.wrap(target, kind, lock=lock, **fixed_kwargs)
            if paired:
                if not any(e[0] is kind and e[1] is made for e in hooks):
                    hooks.append((kind, made))
            elif not any(h is made for h in hooks):
                hooks.append(made)
            return made

        return decorate if fn is None else decorate(fn)


class InstanceHook:
    """Declares an instance-hook decorator on an owner class (a descriptor).

    Example::

        class Turn:
            before_run = InstanceHook(TurnHook.BEFORE_RUN, "(turn) before the tool runs")

    Args:
        kind: the event.
        doc: what the hook receives and when, for the decorator's docstring.
        attr: the owner's list the hook goes to.
        check: called with the owner first; raises if the owner cannot have this hook.
        paired: append ``(kind, hook)`` pairs instead of hooks (tools).
    """

    def __init__(
        self,
        kind: HookType,
        doc: str,
        attr: str = "hooks",
        check: Callable[[Any], None] | None = None,
        paired: bool = False,
    ) -> None:
        self.kind = kind
        self.attr = attr
        self.check = check
        self.paired = paired
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
        return HookDecorator(getattr(owner, self.attr), self.kind, self.paired)
