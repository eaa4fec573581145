"""Tools: the ``@tool`` decorator, ``Tool`` / ``AsyncGenTool``, their metadata and subtools.

A tool is an async function (``Tool``) or async generator function (``AsyncGenTool``)
registered in ``ToolRegistry`` under its name. Everything about how it is called (accepted
arguments, fixed kwargs, context injection, schemas) is worked out once, at decoration.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol, overload

from pygents import _flow, _schema, _seams
from pygents._call import CallPlan
from pygents.hooks import InstanceHook, ToolHook, ToolHookEntry, fire_tool, global_hooks
from pygents.limits import Rate, RateLimiter
from pygents.registry import ToolRegistry
from pygents.retry import Retry

__all__ = ["AsyncGenTool", "BaseTool", "Tool", "ToolMetadata", "tool"]

_now = datetime.now
_G_BEFORE = global_hooks(ToolHook.BEFORE_INVOKE)
_G_YIELD = global_hooks(ToolHook.ON_YIELD)
_G_AFTER = global_hooks(ToolHook.AFTER_INVOKE)
_G_ERROR = global_hooks(ToolHook.ON_ERROR)


class ToolDecorator(Protocol):
    """What ``@tool(...)`` and ``@parent.subtool(...)`` return: makes the tool."""

    @overload
    def __call__(self, fn: Callable[..., Coroutine[Any, Any, Any]], /) -> Tool: ...
    @overload
    def __call__(self, fn: Callable[..., AsyncIterator[Any]], /) -> AsyncGenTool: ...


def _generator_only(owner: Any) -> None:
    if not owner.is_generator:
        raise TypeError(
            f"on_yield hooks need an async generator tool; {owner.__name__!r} is a coroutine"
        )


@dataclass
class ToolMetadata:
    """What a tool is (name, docstring, schemas) and when it last ran."""

    name: str
    description: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None

    def dict(self) -> dict[str, Any]:
        """The six fields as plain data, datetimes as ISO strings."""
        return {
            "name": self.name,
            "description": self.description,
            "start_time": self.start_time.isoformat() if self.start_time else None,
            "end_time": self.end_time.isoformat() if self.end_time else None,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
        }


def _check_flow(
    name: str, lock: bool, retry: object, rate: object, concurrency: object
) -> int | None:
    """Validate the flow-control options of tool ``name``; returns its concurrency."""
    where = f"tool {name!r}"
    if retry is not None:
        if not isinstance(retry, Retry):
            raise TypeError(f"{where}: retry must be a Retry(...) or None, got {retry!r}")
        retry.check(f"{where}: retry")
    if rate is not None:
        if not isinstance(rate, Rate):
            raise TypeError(f"{where}: rate must be a Rate(...) or None, got {rate!r}")
        rate.check(f"{where}: rate")
    if concurrency is None:
        return 1 if lock else None
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ValueError(f"{where}: concurrency must be an int >= 1 or None, got {concurrency!r}")
    if lock and concurrency != 1:
        raise ValueError(
            f"{where}: lock=True means concurrency=1, but concurrency={concurrency} was given; "
            "pass one of them"
        )
    return concurrency


class BaseTool:
    """What ``Tool`` and ``AsyncGenTool`` share: metadata, hooks, lock, tags, subtools.

    ``hooks`` holds ``(ToolHook, hook)`` pairs, as in 0.7.0: an event fires the pairs whose
    first element is that event. The decorators (``@my_tool.before_invoke`` ...) append them.

    Flow control (read by runtimes; set at decoration): ``retry`` (a ``Retry`` or None),
    ``rate`` (a ``Rate`` or None) and ``concurrency`` (at most that many runs at once, or
    None; ``lock=True`` gives 1).
    """

    is_generator = False
    scoped_name: str
    retry: Retry | None
    rate: Rate | None
    concurrency: int | None

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        lock: bool = False,
        tags: Iterable[str] | None = None,
        fixed_kwargs: dict[str, Any] | None = None,
        parent: BaseTool | None = None,
        retry: Retry | None = None,
        rate: Rate | None = None,
        concurrency: int | None = None,
    ) -> None:
        short = fn.__name__
        scoped = f"{parent.scoped_name}.{short}" if parent is not None else short
        self.scoped_name = scoped
        self.concurrency = _check_flow(scoped, lock, retry, rate, concurrency)
        self.retry = retry
        self.rate = rate
        self._slots: asyncio.Semaphore | None = None
        self._rate_limiter: RateLimiter | None = None
        self._plan = CallPlan(fn, fixed_kwargs or {}, scoped, "tool")
        self.fn = fn
        self.parent = parent
        self.subtools: list[BaseTool] = []
        self.hooks: list[ToolHookEntry] = []
        self.lock = asyncio.Lock() if lock else None
        self.tags: frozenset[str] = frozenset(tags or ())
        self.fixed_kwargs = dict(fixed_kwargs or {})
        self.__name__ = scoped
        self.__qualname__ = scoped
        self.__doc__ = fn.__doc__
        self.__module__ = fn.__module__
        self._lock_name = "tool:" + scoped
        self.metadata = ToolMetadata(
            name=short,
            description=inspect.getdoc(fn),
            input_schema=_schema.input_schema(fn, self._plan.injected_names),
            output_schema=_schema.output_schema(fn, self.is_generator),
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.__name__}>"

    @property
    def lock(self) -> asyncio.Lock | None:
        """The tool's ``asyncio.Lock`` if declared ``lock=True`` (one run at a time), else None."""
        return self._lock

    @lock.setter
    def lock(self, value: asyncio.Lock | None) -> None:
        self._lock = value
        # The one flag the hot path reads: call the function directly, or go through _flow.
        self._plain = (
            value is None and self.retry is None and self.rate is None and self.concurrency is None
        )

    def _local_slots(self) -> asyncio.Semaphore:
        """The in-process semaphore of ``concurrency=N`` (made on first use)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency or 1)
        return self._slots

    def _local_rate_limiter(self) -> RateLimiter:
        """The in-process GCRA limiter of ``rate`` (made on first use)."""
        if self._rate_limiter is None:
            assert self.rate is not None, "only rate-limited tools pass the rate gate"
            self._rate_limiter = RateLimiter(self.rate)
        return self._rate_limiter

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    before_invoke = InstanceHook(
        ToolHook.BEFORE_INVOKE, "(*args, **kwargs) before each run", paired=True
    )
    after_invoke = InstanceHook(
        ToolHook.AFTER_INVOKE,
        "(result) after a run; a generator's: the values it yielded (so far, if stopped early)",
        paired=True,
    )
    on_error = InstanceHook(ToolHook.ON_ERROR, "(exc=...) when the tool raises", paired=True)
    on_retry = InstanceHook(
        ToolHook.ON_RETRY,
        "(attempt=, exc=, delay_s=, tool=) before each retry's backoff wait",
        paired=True,
    )
    on_yield = InstanceHook(
        ToolHook.ON_YIELD,
        "(value) for each value a generator tool yields",
        check=_generator_only,
        paired=True,
    )

    def doc_tree(self) -> dict[str, Any]:
        """``{"name", "description", "subtools": [...]}``, recursively."""
        return {
            "name": self.metadata.name,
            "description": self.metadata.description,
            "subtools": [t.doc_tree() for t in self.subtools],
        }

    @overload
    def subtool(self, fn: Callable[..., Coroutine[Any, Any, Any]], /) -> Tool: ...
    @overload
    def subtool(self, fn: Callable[..., AsyncIterator[Any]], /) -> AsyncGenTool: ...
    @overload
    def subtool(
        self,
        fn: None = None,
        /,
        *,
        lock: bool = False,
        tags: Iterable[str] | None = None,
        retry: Retry | None = None,
        rate: Rate | None = None,
        concurrency: int | None = None,
        **fixed_kwargs: Any,
    ) -> ToolDecorator: ...
    def subtool(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        lock: bool = False,
        tags: Iterable[str] | None = None,
        retry: Retry | None = None,
        rate: Rate | None = None,
        concurrency: int | None = None,
        **fixed_kwargs: Any,
    ) -> Any:
        """Declare a child tool, registered as ``"<parent>.<child>"`` (same options as @tool)."""
        flow = _Flow(retry, rate, concurrency)

        def decorate(target: Callable[..., Any]) -> BaseTool:
            child = _make(target, lock, tags, fixed_kwargs, parent=self, flow=flow)
            self.subtools.append(child)
            return child

        return decorate if fn is None else decorate(fn)


class Tool(BaseTool):
    """A coroutine tool: ``await my_tool(...)`` runs it with hooks, lock and timing."""

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        plan = self._plan
        if not plan.simple or kwargs or len(args) > plan.max_positional:
            args, kwargs = plan.prepare(args, kwargs)
        hooks = self.hooks
        if hooks or _G_BEFORE:
            await fire_tool(ToolHook.BEFORE_INVOKE, hooks, self.tags, *args, **kwargs)
        if plan.injections:
            kwargs = plan.inject(args, kwargs)
        metadata = self.metadata
        metadata.start_time = _now()
        try:
            if self._plain:
                result = await self.fn(*args, **kwargs)
            else:
                result = await _flow.call(self, args, kwargs)
        except Exception as exc:
            metadata.end_time = _now()
            if hooks or _G_ERROR:
                await fire_tool(ToolHook.ON_ERROR, hooks, self.tags, exc=exc)
            raise
        except _seams.RetryDeferred:  # the retry runs later, elsewhere: no outcome yet
            metadata.end_time = _now()
            raise
        metadata.end_time = _now()
        if hooks or _G_AFTER:
            await fire_tool(ToolHook.AFTER_INVOKE, hooks, self.tags, result)
        return result


class AsyncGenTool(BaseTool):
    """An async generator tool: ``async for value in my_tool(...)``."""

    is_generator = True

    async def __call__(self, *args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        plan = self._plan
        if not plan.simple or kwargs or len(args) > plan.max_positional:
            args, kwargs = plan.prepare(args, kwargs)
        hooks = self.hooks
        tags = self.tags
        if hooks or _G_BEFORE:
            await fire_tool(ToolHook.BEFORE_INVOKE, hooks, tags, *args, **kwargs)
        if plan.injections:
            kwargs = plan.inject(args, kwargs)
        metadata = self.metadata
        metadata.start_time = _now()
        values: list[Any] = []
        try:
            # A lock, slot, rate or retry policy lives in _flow.iterate, which holds the slot
            # while suspended at each yield: ON_YIELD hooks run inside it.
            gen = self.fn(*args, **kwargs) if self._plain else _flow.iterate(self, args, kwargs)
            try:
                async for value in gen:
                    values.append(value)
                    if hooks or _G_YIELD:
                        await fire_tool(ToolHook.ON_YIELD, hooks, tags, value)
                    yield value
            finally:
                await gen.aclose()
        except Exception as exc:  # the tool (or an ON_YIELD hook) failed
            metadata.end_time = _now()
            if hooks or _G_ERROR:
                await fire_tool(ToolHook.ON_ERROR, hooks, tags, exc=exc)
            raise
        except _seams.RetryDeferred:  # the retry runs later, elsewhere: no outcome yet
            metadata.end_time = _now()
            raise
        except BaseException:
            # Any other exit still ends the run, with what it produced so far: the consumer
            # stopped early (GeneratorExit from aclose), the iteration was cancelled (a
            # timeout, a cancelled task, or asyncio.run's shutdown cancelling the finaliser
            # of an abandoned generator, which delivers CancelledError, not GeneratorExit).
            metadata.end_time = _now()
            if hooks or _G_AFTER:
                await fire_tool(ToolHook.AFTER_INVOKE, hooks, tags, values)
            raise
        metadata.end_time = _now()
        if hooks or _G_AFTER:
            await fire_tool(ToolHook.AFTER_INVOKE, hooks, tags, values)


class _Flow(NamedTuple):
    retry: Retry | None = None
    rate: Rate | None = None
    concurrency: int | None = None


_NO_FLOW = _Flow()


def _make(
    fn: Callable[..., Any],
    lock: bool,
    tags: Iterable[str] | None,
    fixed_kwargs: dict[str, Any],
    parent: BaseTool | None = None,
    flow: _Flow = _NO_FLOW,
) -> BaseTool:
    if isinstance(fn, BaseTool):
        raise TypeError(f"{fn.__name__!r} is already a tool; decorate the function once")
    if inspect.isasyncgenfunction(fn):
        cls: type[BaseTool] = AsyncGenTool
    elif inspect.iscoroutinefunction(fn):
        cls = Tool
    else:
        if inspect.isgeneratorfunction(fn):
            what = "a generator function"
        elif inspect.isfunction(fn) or inspect.ismethod(fn):
            what = "a plain function"
        else:
            what = f"a {type(fn).__name__}, not a function"
        raise TypeError(
            "Tool must be async (coroutine or async generator function); "
            f"{getattr(fn, '__name__', fn)!r} is {what}, define it with 'async def'"
        )
    made = cls(
        fn,
        lock=lock,
        tags=tags,
        fixed_kwargs=fixed_kwargs,
        parent=parent,
        retry=flow.retry,
        rate=flow.rate,
        concurrency=flow.concurrency,
    )
    ToolRegistry.register(made)
    return made


@overload
def tool(fn: Callable[..., Coroutine[Any, Any, Any]], /) -> Tool: ...
@overload
def tool(fn: Callable[..., AsyncIterator[Any]], /) -> AsyncGenTool: ...
@overload
def tool(
    fn: None = None,
    /,
    *,
    lock: bool = False,
    tags: Iterable[str] | None = None,
    retry: Retry | None = None,
    rate: Rate | None = None,
    concurrency: int | None = None,
    **fixed_kwargs: Any,
) -> ToolDecorator: ...
def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    lock: bool = False,
    tags: Iterable[str] | None = None,
    retry: Retry | None = None,
    rate: Rate | None = None,
    concurrency: int | None = None,
    **fixed_kwargs: Any,
) -> Any:
    """Make an async function (or async generator function) a registered tool.

    Usable bare (``@tool``) or called (``@tool(lock=True, tags=["io"], api_key=get_key)``).
    Fixed kwargs are merged into every call; a callable one is called at each invocation.

    Flow control (see ``Retry``, ``Rate``): ``retry`` retries failed attempts with backoff;
    ``rate`` makes calls over the limit wait their turn; ``concurrency=N`` lets at most N
    runs of the tool proceed at once (others wait). ``lock=True`` is ``concurrency=1``
    (through the lock seam, as in 0.7.0); ``retry``, ``rate`` and ``concurrency`` are
    therefore not fixed kwargs (a function parameter of one of these names cannot be fixed).

    Example::

        @tool
        async def add(a: int, b: int) -> int:
            return a + b

        assert await add(1, 2) == 3

    Raises:
        TypeError: the function is not async, or a fixed kwarg is not one of its parameters,
            or ``retry`` / ``rate`` is not a ``Retry`` / ``Rate``.
        ValueError: a tool with the same name is already registered, or a flow-control
            option is out of range (the message names the tool and the field).
    """
    flow = _Flow(retry, rate, concurrency)

    def decorate(target: Callable[..., Any]) -> Any:
        return _make(target, lock, tags, fixed_kwargs, flow=flow)

    return decorate if fn is None else decorate(fn)
