"""Turns: which tool to run with which arguments, how long it may take, and what happened.

``await turn.returning()`` runs a coroutine tool, ``async for v in turn.yielding()`` a
generator tool. A turn records its output, timing and ``StopReason`` and fires its hooks
(``BEFORE_RUN``, ``AFTER_RUN``, ``ON_TIMEOUT``, ``ON_ERROR``, and ``ON_COMPLETE`` always).
"""

from __future__ import annotations

import asyncio
import enum
import types
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pygents import _seams
from pygents._resume import Resumed
from pygents.errors import SafeExecutionError, TurnTimeoutError, WrongRunMethodError
from pygents.hooks import HookFn, HookRegistry, InstanceHook, TurnHook, fire, global_hooks
from pygents.registry import ToolRegistry
from pygents.tool import BaseTool

__all__ = ["StopReason", "Turn", "TurnMetadata"]

_now = datetime.now
_NO_TAGS: frozenset[str] = frozenset()
_TOOLS = ToolRegistry._tools  # never replaced, only mutated
_G_BEFORE = global_hooks(TurnHook.BEFORE_RUN)
_G_AFTER = global_hooks(TurnHook.AFTER_RUN)
_G_TIMEOUT = global_hooks(TurnHook.ON_TIMEOUT)
_G_ERROR = global_hooks(TurnHook.ON_ERROR)
_G_COMPLETE = global_hooks(TurnHook.ON_COMPLETE)
# What a running turn still lets a program set (its results); every other attribute, new
# names included, is guarded while it runs, as in 0.7.0.
_WRITABLE_WHILE_RUNNING = frozenset(
    {"output", "metadata", "start_time", "end_time", "stop_reason", "_running"}
)


class StopReason(enum.StrEnum):
    """Why a turn stopped."""

    COMPLETED = "completed"
    TIMEOUT = "timeout"
    ERROR = "error"
    CANCELLED = "cancelled"


@dataclass
class TurnMetadata:
    """When a turn started and ended, and why it stopped (all None on a fresh turn)."""

    start_time: datetime | None = None
    end_time: datetime | None = None
    stop_reason: StopReason | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data: ISO datetimes, the stop reason's value."""
        return {
            "start_time": self.start_time.isoformat() if self.start_time else None,
            "end_time": self.end_time.isoformat() if self.end_time else None,
            "stop_reason": self.stop_reason.value if self.stop_reason else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TurnMetadata:
        """The metadata saved by ``to_dict``."""
        data = data or {}
        start, end, reason = data.get("start_time"), data.get("end_time"), data.get("stop_reason")
        return cls(
            datetime.fromisoformat(start) if start else None,
            datetime.fromisoformat(end) if end else None,
            StopReason(reason) if reason else None,
        )


# Dynamic arguments are plain functions and lambdas only (as in 0.7.0): a class, a tool or
# any other callable object passed as an argument is a value, never called.
_FUNCTION = types.FunctionType


def _evaluate(values: Iterable[Any]) -> list[Any]:
    return [v() if type(v) is _FUNCTION else v for v in values]


def _evaluate_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: (v() if type(v) is _FUNCTION else v) for k, v in kwargs.items()}


class Turn[T]:
    """One unit of work: a tool, its arguments and a timeout (seconds).

    Example::

        turn = Turn("fetch", kwargs={"url": "https://example.com"}, timeout=10)
        text = await turn.returning()

    Args:
        tool: a registered tool name, or the tool itself.
        timeout: seconds; for ``yielding()`` it bounds the whole iteration.
        args: positional arguments; no-argument functions and lambdas among them are called
            when the tool runs (other callables, such as classes, are passed as they are).
        kwargs: keyword arguments, evaluated the same way.
        tags: matched against tagged global hooks.

    Raises:
        UnregisteredToolError: the tool is not in ``ToolRegistry``.
    """

    # Slots: a program makes and queues many turns, and each dict less is less for the
    # garbage collector to walk. ``__dict__`` keeps any other attribute settable (0.7.0).
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_running",
        "args",
        "hooks",
        "kwargs",
        "metadata",
        "output",
        "tags",
        "timeout",
        "tool",
    )

    _running: bool
    hooks: list[HookFn]

    def __init__(
        self: Turn[Any],  # an unparametrised Turn("x") is a Turn[Any], not an inference error
        tool: str | BaseTool,
        timeout: float = 60,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        tags: Iterable[str] | None = None,
    ) -> None:
        # Straight into the slots: the guard in __setattr__ has nothing to check on a new
        # turn, and going through it (or object.__setattr__) cost half of making a turn.
        _set_running(self, False)
        _set_tool(self, _resolve(tool))
        _set_timeout(self, timeout)
        _set_args(self, list(args) if args else [])
        _set_kwargs(self, dict(kwargs) if kwargs else {})
        _set_tags(self, frozenset(tags) if tags else _NO_TAGS)
        _set_metadata(self, TurnMetadata())
        _set_output(self, None)
        _set_hooks(self, [])

    tool: BaseTool
    timeout: float
    args: list[Any]
    kwargs: dict[str, Any]
    tags: frozenset[str]
    metadata: TurnMetadata
    output: Any

    def __setattr__(self, name: str, value: Any) -> None:
        if self._running and name not in _WRITABLE_WHILE_RUNNING:
            raise SafeExecutionError(
                f"Cannot change property {name!r} while the turn is running "
                f"(tool {self.tool.__name__!r})"
            )
        if name == "tool":
            value = _resolve(value)
        elif name == "tags":
            value = frozenset(value or ())
        object.__setattr__(self, name, value)

    def __class_getitem__(cls, item: Any) -> Any:
        return cls

    def __repr__(self) -> str:
        # 0.7.0's shape; args and kwargs are left out (they may hold secrets).
        return (
            f"Turn(tool={self.tool.__name__!r}, timeout={self.timeout!r}, "
            f"metadata={self.metadata!r})"
        )

    @property
    def is_running(self) -> bool:
        """True between the start and the end of ``returning()`` / ``yielding()``."""
        return self._running

    # -- running -----------------------------------------------------------------------

    def _start(self, method: str) -> None:
        if self._running:
            raise SafeExecutionError(
                f"turn {self.tool.__name__!r} is already running; a turn runs once at a time"
            )
        if self.tool.is_generator != (method == "yielding"):
            other = "yielding" if method == "returning" else "returning"
            kind = "an async generator" if self.tool.is_generator else "a coroutine"
            raise WrongRunMethodError(
                f"tool {self.tool.__name__!r} is {kind} tool: use turn.{other}(), not {method}()"
            )
        object.__setattr__(self, "_running", True)
        metadata = self.metadata
        metadata.start_time = _now()
        metadata.end_time = None
        metadata.stop_reason = None

    async def returning(self) -> T:
        """Run a coroutine tool and return its result (also stored in ``output``).

        Raises:
            WrongRunMethodError: the tool is an async generator.
            SafeExecutionError: the turn is already running.
            TurnTimeoutError: the tool ran past ``timeout``.
        """
        return await self._returning((), None)  # type: ignore[no-any-return]

    async def _returning(
        self, extra_hooks: Sequence[HookFn], context: _seams.ActiveContext | None
    ) -> Any:
        self._start("returning")
        hooks = [*self.hooks, *extra_hooks] if extra_hooks else self.hooks
        previous = _seams.active_context.get()
        if context is not None:
            _seams.active_context.set(context)
        reason = StopReason.ERROR
        try:
            if hooks or _G_BEFORE:
                await fire(TurnHook.BEFORE_RUN, hooks, self.tags, self)
            args = _evaluate(self.args) if self.args else ()
            kwargs = _evaluate_kwargs(self.kwargs) if self.kwargs else {}
            coro = self.tool(*args, **kwargs)
            try:  # first step inline: a tool that never suspends needs no timer
                pending = coro.send(None)
            except StopIteration as stop:
                result = stop.value
            else:
                result = await self._resume_with_timeout(coro, pending)
            object.__setattr__(self, "output", result)
            reason = StopReason.COMPLETED
            if hooks or _G_AFTER:
                await fire(TurnHook.AFTER_RUN, hooks, self.tags, self, result)
            return result
        except BaseException as exc:
            reason = await self._failed(exc, hooks)
            raise
        finally:
            self._end(reason)
            if hooks or _G_COMPLETE:
                await fire(TurnHook.ON_COMPLETE, hooks, self.tags, self, reason)
            if context is not None:
                _seams.active_context.set(previous)

    async def _resume_with_timeout(self, coro: Any, pending: Any) -> Any:
        """Finish a tool call that suspended on its first step, within ``timeout``."""
        try:
            async with asyncio.timeout(self.timeout):
                return await Resumed(coro, pending)
        except TimeoutError as exc:
            if isinstance(exc, TurnTimeoutError):
                raise
            raise self._timeout_error() from None

    def _timeout_error(self) -> TurnTimeoutError:
        return TurnTimeoutError(
            f"turn {self.tool.__name__!r} timed out after {self.timeout}s "
            "(pass a larger Turn(timeout=...) if it needs longer)"
        )

    async def _failed(self, exc: BaseException, hooks: Sequence[HookFn]) -> StopReason:
        if isinstance(exc, TurnTimeoutError):
            if hooks or _G_TIMEOUT:
                await fire(TurnHook.ON_TIMEOUT, hooks, self.tags, self)
            return StopReason.TIMEOUT
        if isinstance(exc, Exception):
            if hooks or _G_ERROR:
                await fire(TurnHook.ON_ERROR, hooks, self.tags, self, exc)
            return StopReason.ERROR
        return StopReason.CANCELLED

    def _end(self, reason: StopReason) -> None:
        metadata = self.metadata
        metadata.end_time = _now()
        metadata.stop_reason = reason
        object.__setattr__(self, "_running", False)

    async def _finish(self, reason: StopReason, hooks: Sequence[HookFn]) -> None:
        self._end(reason)
        if hooks or _G_COMPLETE:
            await fire(TurnHook.ON_COMPLETE, hooks, self.tags, self, reason)

    def yielding(self) -> AsyncGenerator[Any, None]:
        """Run a generator tool, yielding each value (all are kept in ``output``).

        The timeout bounds the whole iteration. Stopping early (``break``) records
        ``StopReason.CANCELLED``.

        Raises:
            WrongRunMethodError: the tool is a coroutine tool.
            SafeExecutionError: the turn is already running.
            TurnTimeoutError: the iteration ran past ``timeout``.
        """
        return self._yielding((), None)

    async def _yielding(
        self, extra_hooks: Sequence[HookFn], context: _seams.ActiveContext | None
    ) -> AsyncGenerator[Any, None]:
        self._start("yielding")
        hooks = [*self.hooks, *extra_hooks] if extra_hooks else self.hooks
        var = _seams.active_context
        outer = var.get()
        inner = context if context is not None else outer
        reason = StopReason.ERROR
        values: list[Any] = []
        object.__setattr__(self, "output", values)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        try:
            var.set(inner)
            if hooks or _G_BEFORE:
                await fire(TurnHook.BEFORE_RUN, hooks, self.tags, self)
            args = _evaluate(self.args) if self.args else ()
            kwargs = _evaluate_kwargs(self.kwargs) if self.kwargs else {}
            source = self.tool(*args, **kwargs)
            anext_ = source.__anext__
            loop_time = loop.time
            append = values.append
            try:
                while True:
                    var.set(inner)
                    try:  # each step inline, as in _returning: a timer only if it suspends
                        if loop_time() >= deadline:
                            raise self._timeout_error()
                        step = anext_()
                        try:
                            pending = step.send(None)
                        except StopIteration as stop:
                            value = stop.value
                        else:
                            value = await self._resume_before(step, pending, deadline)
                    except StopAsyncIteration:
                        break
                    finally:
                        var.set(outer)
                    append(value)
                    yield value
            finally:
                await source.aclose()
            reason = StopReason.COMPLETED
            var.set(inner)
            if hooks or _G_AFTER:
                await fire(TurnHook.AFTER_RUN, hooks, self.tags, self, values)
        except GeneratorExit:
            reason = StopReason.CANCELLED
            raise
        except BaseException as exc:
            reason = await self._failed(exc, hooks)
            raise
        finally:
            var.set(inner)
            try:
                await self._finish(reason, hooks)
            finally:
                var.set(outer)

    async def _resume_before(self, step: Any, pending: Any, deadline: float) -> Any:
        """Finish a generator step that suspended, within the turn's deadline."""
        try:
            async with asyncio.timeout_at(deadline):
                return await Resumed(step, pending)
        except TimeoutError as exc:
            if isinstance(exc, TurnTimeoutError):
                raise
            raise self._timeout_error() from None

    # -- hooks ---------------------------------------------------------------------------

    before_run = InstanceHook(TurnHook.BEFORE_RUN, "(turn) before the tool runs")
    after_run = InstanceHook(TurnHook.AFTER_RUN, "(turn, output) after the tool completes")
    on_timeout = InstanceHook(TurnHook.ON_TIMEOUT, "(turn) when the turn times out")
    on_error = InstanceHook(TurnHook.ON_ERROR, "(turn, exception) when the tool raises")
    on_complete = InstanceHook(TurnHook.ON_COMPLETE, "(turn, stop_reason), always, at the end")

    # -- serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain data: ``tool_name, args, kwargs, timeout, metadata, output, hooks, tags``.

        Callable arguments are evaluated; hooks are saved by name.

        Raises:
            UnserializableHookError: a hook is not the one registered under its name.
        """
        return {
            "tool_name": self.tool.__name__,
            "args": _evaluate(self.args),
            "kwargs": _evaluate_kwargs(self.kwargs),
            "timeout": self.timeout,
            "metadata": self.metadata.to_dict(),
            "output": self.output,
            "hooks": HookRegistry.names_by_type(self.hooks),
            "tags": sorted(self.tags),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Turn[Any]:
        """The turn saved by ``to_dict``, metadata and output included.

        Raises:
            UnregisteredToolError: the tool is not registered here.
            UnregisteredHookError: a hook name is not registered here.
        """
        turn: Turn[Any] = cls(
            data["tool_name"],
            timeout=data.get("timeout", 60),
            args=data.get("args"),
            kwargs=data.get("kwargs"),
            tags=data.get("tags"),
        )
        object.__setattr__(turn, "metadata", TurnMetadata.from_dict(data.get("metadata")))
        object.__setattr__(turn, "output", data.get("output"))
        turn.hooks = HookRegistry.from_names(data.get("hooks") or {})
        return turn

    def copy(self) -> Turn[T]:
        """A fresh, unrun turn with the same tool, arguments, timeout, tags and hooks."""
        twin: Turn[T] = Turn(self.tool, self.timeout, self.args, self.kwargs, self.tags)
        twin.hooks = list(self.hooks)
        return twin


# The slots' own setters, for Turn.__init__.
(
    _set_running,
    _set_tool,
    _set_timeout,
    _set_args,
    _set_kwargs,
    _set_tags,
    _set_metadata,
    _set_output,
    _set_hooks,
) = (
    Turn.__dict__[name].__set__
    for name in (
        "_running",
        "tool",
        "timeout",
        "args",
        "kwargs",
        "tags",
        "metadata",
        "output",
        "hooks",
    )
)


def _resolve(tool: str | BaseTool) -> BaseTool:
    if type(tool) is str:  # the common case, first: one dict lookup
        found = _TOOLS.get(tool)
        if found is not None:
            return found
        return ToolRegistry.get(tool)  # raises, naming the tool
    if isinstance(tool, BaseTool):
        return ToolRegistry.get(tool.__name__)
    if isinstance(tool, str):
        return ToolRegistry.get(tool)
    raise TypeError(f"Turn needs a tool name or a tool object, got {type(tool).__name__}")
