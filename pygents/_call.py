"""Call plans: how a tool or hook function is called, worked out once at decoration.

A plan knows which arguments the function accepts (extras are dropped), which fixed keyword
arguments are merged in (callables evaluated per call), and which parameters receive the
running agent's ``ContextQueue`` / ``ContextPool``. ``prepare`` is on the hot path of every
turn, so the common case (nothing to merge, drop or inject) returns its inputs untouched.
"""

from __future__ import annotations

import inspect
import logging
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pygents import _seams

# 0.7.0 logs overridden fixed kwargs on "pygents"; programs read them with caplog.
_log = logging.getLogger("pygents")

_QUEUE, _POOL = 0, 1


class _Injection(typing.NamedTuple):
    name: str
    position: int  # position among positional parameters, or -1 for keyword-only
    kind: int  # _QUEUE or _POOL
    optional: bool  # annotated ``X | None``: gets None outside an agent
    has_default: bool


def _context_kind(annotation: object) -> tuple[int, bool] | None:
    """(kind, optional) when ``annotation`` names ContextQueue or ContextPool."""
    from pygents.context import ContextPool, ContextQueue

    if isinstance(annotation, str):
        text = annotation.replace(" ", "")
        optional = "None" in text or text.startswith("Optional[")
        if "ContextQueue" in text:
            return _QUEUE, optional
        if "ContextPool" in text:
            return _POOL, optional
        return None
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        members = typing.get_args(annotation)
        optional = type(None) in members
        for member in members:
            found = _context_kind(member)
            if found is not None:
                return found[0], optional or found[1]
        return None
    target = origin if origin is not None else annotation
    if isinstance(target, type):
        if issubclass(target, ContextQueue):
            return _QUEUE, False
        if issubclass(target, ContextPool):
            return _POOL, False
    return None


def type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """Resolved annotations of ``fn``; raw ones where forward references do not resolve."""
    try:
        return typing.get_type_hints(fn)
    except Exception:
        return dict(getattr(fn, "__annotations__", {}))


class CallPlan:
    """How to call one function: argument filtering, fixed kwargs, context injection."""

    __slots__ = (
        "accepts_var_kw",
        "accepts_var_pos",
        "fixed",
        "injections",
        "max_positional",
        "names",
        "owner",
        "simple",
        "what",
    )

    def __init__(
        self, fn: Callable[..., Any], fixed: Mapping[str, Any], owner: str, what: str
    ) -> None:
        signature = inspect.signature(fn)
        hints = type_hints(fn)
        positional = 0
        names: set[str] = set()
        injections: list[_Injection] = []
        self.accepts_var_pos = self.accepts_var_kw = False
        for param in signature.parameters.values():
            kind = param.kind
            if kind is param.VAR_POSITIONAL:
                self.accepts_var_pos = True
                continue
            if kind is param.VAR_KEYWORD:
                self.accepts_var_kw = True
                continue
            index = -1
            if kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
                index = positional
                positional += 1
            if kind is not param.POSITIONAL_ONLY:
                names.add(param.name)
            found = _context_kind(hints.get(param.name, param.annotation))
            if found is not None and kind is not param.POSITIONAL_ONLY:
                has_default = param.default is not param.empty
                injections.append(_Injection(param.name, index, found[0], found[1], has_default))
        unknown = [k for k in fixed if k not in names]
        if unknown and not self.accepts_var_kw:
            raise TypeError(
                f"{what} {owner!r} got fixed keyword argument(s) {', '.join(map(repr, unknown))} "
                f"that its function does not accept; accepted names: {sorted(names)}"
            )
        self.owner = owner
        self.what = what
        self.max_positional = positional
        self.names = frozenset(names)
        self.fixed = dict(fixed)
        self.injections = tuple(injections)
        self.simple = not self.fixed and not self.injections

    @property
    def injected_names(self) -> frozenset[str]:
        """Parameters filled from the running agent's context (hidden from schemas)."""
        return frozenset(i.name for i in self.injections)

    def prepare(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Merge fixed kwargs and drop what the function does not accept (no injection)."""
        if self.fixed:
            merged = {k: (v() if callable(v) else v) for k, v in self.fixed.items()}
            for key in kwargs.keys() & merged.keys():
                _log.warning(
                    "Fixed kwarg %r is overridden by call-time argument for %s %r.",
                    key,
                    self.what,
                    self.owner,
                )
            merged.update(kwargs)
            kwargs = merged
        if not self.accepts_var_pos and len(args) > self.max_positional:
            args = args[: self.max_positional]
        if kwargs and not self.accepts_var_kw and not kwargs.keys() <= self.names:
            names = self.names
            kwargs = {k: v for k, v in kwargs.items() if k in names}
        return args, kwargs

    def inject(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` plus the running agent's context for parameters not given explicitly."""
        active = _seams.active_context.get()
        out = kwargs
        for injection in self.injections:
            name = injection.name
            if name in kwargs or 0 <= injection.position < len(args):
                continue
            if active is not None:
                value: Any = active[injection.kind]
            elif injection.optional and not injection.has_default:
                value = None
            else:
                continue  # a required one then fails as a missing argument, naming it
            if out is kwargs:
                out = dict(kwargs)
            out[name] = value
        return out
