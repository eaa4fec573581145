"""``@hook``, ``Hook`` and dispatch: order, dedup, errors, tags, locks and fixed kwargs."""

import asyncio
from typing import Any

import pytest

from pygents import (
    Hook,
    HookMetadata,
    HookRegistry,
    Turn,
    TurnHook,
    hook,
    tool,
)


def _values(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    return [*args, *kwargs.values()]


def _make_tool() -> None:
    @tool()
    async def work() -> int:
        return 1


async def _spin(times: int = 10) -> None:
    for _ in range(times):
        await asyncio.sleep(0)


def test_hook_decorator_returns_hook() -> None:
    @hook(TurnHook.BEFORE_RUN)
    async def on_start(turn: Turn[Any]) -> None:
        """Log the start."""

    assert isinstance(on_start, Hook)


def test_hook_metadata_has_name_and_docstring() -> None:
    @hook(TurnHook.BEFORE_RUN)
    async def on_start(turn: Turn[Any]) -> None:
        """Log the start."""

    assert isinstance(on_start.metadata, HookMetadata)
    assert on_start.metadata.name == "on_start"
    assert on_start.metadata.description == "Log the start."


def test_hook_metadata_dict() -> None:
    @hook(TurnHook.BEFORE_RUN)
    async def on_start(turn: Turn[Any]) -> None:
        """Log the start."""

    assert on_start.metadata.dict() == {"name": "on_start", "description": "Log the start."}


def test_hook_exposes_type_and_fn() -> None:
    async def on_start(turn: Turn[Any]) -> None:
        pass

    h = hook(TurnHook.BEFORE_RUN)(on_start)
    assert h.type == TurnHook.BEFORE_RUN
    assert h.fn is on_start


def test_hook_tags_are_a_frozenset() -> None:
    @hook(TurnHook.BEFORE_RUN, tags=["a", "b", "a"])
    async def tagged(turn: Turn[Any]) -> None:
        pass

    assert tagged.tags == frozenset({"a", "b"})
    assert isinstance(tagged.tags, frozenset)


def test_hook_lock_is_none_by_default() -> None:
    @hook(TurnHook.BEFORE_RUN)
    async def plain(turn: Turn[Any]) -> None:
        pass

    assert plain.lock is None


def test_hook_lock_true_gives_asyncio_lock() -> None:
    @hook(TurnHook.BEFORE_RUN, lock=True)
    async def locked(turn: Turn[Any]) -> None:
        pass

    assert isinstance(locked.lock, asyncio.Lock)


def test_hook_on_sync_function_raises_type_error() -> None:
    def sync_hook(turn: Turn[Any]) -> None:
        pass

    with pytest.raises(TypeError):
        hook(TurnHook.BEFORE_RUN)(sync_hook)  # type: ignore[arg-type]


def test_hook_with_unknown_fixed_kwarg_raises_type_error() -> None:
    async def strict(turn: Turn[Any]) -> None:
        pass

    with pytest.raises(TypeError):
        hook(TurnHook.BEFORE_RUN, nope=1)(strict)


def test_hook_fixed_kwarg_accepted_by_var_keyword() -> None:
    @hook(TurnHook.BEFORE_RUN, extra=1)
    async def loose(turn: Turn[Any], **kwargs: Any) -> None:
        pass

    assert isinstance(loose, Hook)


def test_hook_with_empty_type_list_raises_value_error() -> None:
    async def nothing(turn: Turn[Any]) -> None:
        pass

    with pytest.raises(ValueError):
        hook([])(nothing)


async def test_hook_fixed_kwargs_are_passed_on_fire() -> None:
    seen: list[Any] = []

    @hook(TurnHook.BEFORE_RUN, label="fixed")
    async def labelled(turn: Any, label: str) -> None:
        seen.append((turn, label))

    await HookRegistry.fire(TurnHook.BEFORE_RUN, [], "the-turn")
    assert seen == [("the-turn", "fixed")]


async def test_global_hook_fires_for_every_matching_event() -> None:
    _make_tool()
    seen: list[Any] = []

    @hook(TurnHook.BEFORE_RUN)
    async def watch(turn: Turn[Any]) -> None:
        seen.append(turn)

    first, second = Turn("work"), Turn("work")
    await first.returning()
    await second.returning()
    assert seen == [first, second]


async def test_global_hook_does_not_fire_for_other_types() -> None:
    _make_tool()
    seen: list[Any] = []

    @hook(TurnHook.ON_ERROR)
    async def errors_only(*args: Any, **kwargs: Any) -> None:
        seen.append(args)

    await Turn("work").returning()
    assert seen == []


async def test_hook_with_type_list_fires_for_each_type() -> None:
    _make_tool()
    seen: list[str] = []

    @hook([TurnHook.BEFORE_RUN, TurnHook.AFTER_RUN])
    async def both(*args: Any, **kwargs: Any) -> None:
        seen.append("fired")

    await Turn("work").returning()
    assert seen == ["fired", "fired"]


async def test_fire_runs_instance_hooks_first_then_globals_not_in_list() -> None:
    order: list[str] = []

    def recorder(label: str) -> Any:
        async def record(*args: Any, **kwargs: Any) -> None:
            order.append(label)

        record.__name__ = f"record_{label}"
        return record

    g1 = hook(TurnHook.BEFORE_RUN)(recorder("g1"))
    g2 = hook(TurnHook.BEFORE_RUN)(recorder("g2"))
    i1 = HookRegistry.wrap(recorder("i1"), TurnHook.BEFORE_RUN)
    i2 = HookRegistry.wrap(recorder("i2"), TurnHook.BEFORE_RUN)
    assert g1 is not g2

    await HookRegistry.fire(TurnHook.BEFORE_RUN, [i1, g2, i2], "turn")
    assert order == ["i1", "g2", "i2", "g1"]


async def test_fire_never_runs_the_same_hook_twice() -> None:
    calls: list[str] = []

    @hook(TurnHook.BEFORE_RUN)
    async def once(*args: Any, **kwargs: Any) -> None:
        calls.append("once")

    await HookRegistry.fire(TurnHook.BEFORE_RUN, [once, once], "turn")
    assert calls == ["once"]


async def test_global_hook_in_instance_list_fires_once_on_turn() -> None:
    _make_tool()
    calls: list[str] = []

    @hook(TurnHook.BEFORE_RUN)
    async def everywhere(turn: Turn[Any]) -> None:
        calls.append("everywhere")

    turn = Turn("work")
    turn.hooks.append(everywhere)
    await turn.returning()
    assert calls == ["everywhere"]


async def test_fire_only_runs_instance_hooks_of_the_fired_type() -> None:
    calls: list[str] = []

    async def before(*args: Any, **kwargs: Any) -> None:
        calls.append("before")

    async def after(*args: Any, **kwargs: Any) -> None:
        calls.append("after")

    hooks = [
        HookRegistry.wrap(after, TurnHook.AFTER_RUN),
        HookRegistry.wrap(before, TurnHook.BEFORE_RUN),
    ]
    await HookRegistry.fire(TurnHook.BEFORE_RUN, hooks, "turn")
    assert calls == ["before"]


async def test_fire_passes_args_and_kwargs_to_hook() -> None:
    seen: list[Any] = []

    async def capture(turn: Any, output: Any) -> None:
        seen.append((turn, output))

    h = HookRegistry.wrap(capture, TurnHook.AFTER_RUN)
    await HookRegistry.fire(TurnHook.AFTER_RUN, [h], "turn", output=42)
    assert seen == [("turn", 42)]


async def test_raising_instance_hook_stops_later_hooks() -> None:
    calls: list[str] = []

    async def boom(*args: Any, **kwargs: Any) -> None:
        calls.append("boom")
        raise RuntimeError("hook failed")

    async def later(*args: Any, **kwargs: Any) -> None:
        calls.append("later")

    @hook(TurnHook.BEFORE_RUN)
    async def global_later(*args: Any, **kwargs: Any) -> None:
        calls.append("global")

    hooks = [
        HookRegistry.wrap(boom, TurnHook.BEFORE_RUN),
        HookRegistry.wrap(later, TurnHook.BEFORE_RUN),
    ]
    with pytest.raises(RuntimeError, match="hook failed"):
        await HookRegistry.fire(TurnHook.BEFORE_RUN, hooks, "turn")
    assert calls == ["boom"]


async def test_raising_before_run_hook_stops_the_turn() -> None:
    ran: list[str] = []

    @tool()
    async def guarded() -> str:
        ran.append("tool")
        return "ok"

    turn = Turn("guarded")

    @turn.before_run
    async def refuse(turn: Turn[Any]) -> None:
        raise PermissionError("no")

    with pytest.raises(PermissionError):
        await turn.returning()
    assert ran == []


async def test_tagged_global_hook_fires_when_one_tag_is_shared() -> None:
    _make_tool()
    seen: list[str] = []

    @hook(TurnHook.BEFORE_RUN, tags=["a", "b"])
    async def tagged(turn: Turn[Any]) -> None:
        seen.append("fired")

    await Turn("work", tags=["b", "c"]).returning()
    assert seen == ["fired"]


async def test_tagged_global_hook_skips_objects_without_shared_tag() -> None:
    _make_tool()
    seen: list[str] = []

    @hook(TurnHook.BEFORE_RUN, tags=["a"])
    async def tagged(turn: Turn[Any]) -> None:
        seen.append("fired")

    await Turn("work", tags=["c"]).returning()
    await Turn("work").returning()
    assert seen == []


async def test_untagged_global_hook_fires_for_tagged_objects() -> None:
    _make_tool()
    seen: list[str] = []

    @hook(TurnHook.BEFORE_RUN)
    async def untagged(turn: Turn[Any]) -> None:
        seen.append("fired")

    await Turn("work", tags=["x"]).returning()
    assert seen == ["fired"]


async def test_instance_hook_ignores_tags() -> None:
    _make_tool()
    seen: list[str] = []

    @hook(TurnHook.BEFORE_RUN, tags=["only-x"])
    async def tagged(turn: Turn[Any]) -> None:
        seen.append("fired")

    turn = Turn("work", tags=["y"])
    turn.hooks.append(tagged)
    await turn.returning()
    assert seen == ["fired"]


async def test_hook_with_lock_serialises_concurrent_runs() -> None:
    release = asyncio.Event()
    active = 0
    peak = 0

    @hook(TurnHook.BEFORE_RUN, lock=True)
    async def locked(*args: Any, **kwargs: Any) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await release.wait()
        active -= 1

    first = asyncio.create_task(HookRegistry.fire(TurnHook.BEFORE_RUN, [], "a"))
    second = asyncio.create_task(HookRegistry.fire(TurnHook.BEFORE_RUN, [], "b"))
    await _spin()
    assert active == 1
    release.set()
    await asyncio.gather(first, second)
    assert peak == 1


async def test_hook_without_lock_runs_concurrently() -> None:
    release = asyncio.Event()
    active = 0

    @hook(TurnHook.BEFORE_RUN)
    async def unlocked(*args: Any, **kwargs: Any) -> None:
        nonlocal active
        active += 1
        await release.wait()

    first = asyncio.create_task(HookRegistry.fire(TurnHook.BEFORE_RUN, [], "a"))
    second = asyncio.create_task(HookRegistry.fire(TurnHook.BEFORE_RUN, [], "b"))
    await _spin()
    assert active == 2
    release.set()
    await asyncio.gather(first, second)


async def test_hook_drops_arguments_it_does_not_accept() -> None:
    seen: list[Any] = []

    @hook(TurnHook.AFTER_RUN)
    async def only_turn(turn: Any) -> None:
        seen.append(turn)

    await HookRegistry.fire(TurnHook.AFTER_RUN, [], "turn", output=1)
    assert seen == ["turn"]
