"""ContextItem, ContextQueue and ContextPool: contents, limits, hooks, branching, dicts."""

import asyncio
import dataclasses
from typing import Any

import pytest

from pygents import (
    ContextItem,
    ContextPool,
    ContextPoolHook,
    ContextQueue,
    ContextQueueHook,
    HookRegistry,
    UnregisteredHookError,
    UnserializableHookError,
    hook,
)


def _item(content: Any, id: str | None = None, description: str | None = None) -> ContextItem[Any]:
    return ContextItem(content, description=description, id=id)


def _keyed(id: str, content: Any = None) -> ContextItem[Any]:
    return ContextItem(content if content is not None else id, description=f"about {id}", id=id)


async def _spin(times: int = 10) -> None:
    """Let any task a sync call might have scheduled run before checking it fired nothing."""
    for _ in range(times):
        await asyncio.sleep(0)


def _recorder(events: list[Any], label: str) -> Any:
    async def record(*args: Any, **kwargs: Any) -> None:
        events.append((label, *args, *kwargs.values()))

    record.__name__ = f"record_{label}"
    return record


# --- ContextItem --------------------------------------------------------------------------


def test_context_item_defaults() -> None:
    item = ContextItem("text")
    assert item.content == "text"
    assert item.description is None
    assert item.id is None


def test_context_item_is_frozen() -> None:
    item = ContextItem("text")
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.content = "other"  # type: ignore[misc]


def test_context_item_to_dict() -> None:
    assert ContextItem("c", description="d", id="i").to_dict() == {
        "content": "c",
        "description": "d",
        "id": "i",
    }


def test_context_item_from_dict_round_trip() -> None:
    item = ContextItem({"k": [1, 2]}, description="d", id="i")
    assert ContextItem.from_dict(item.to_dict()) == item


def test_context_item_is_generic() -> None:
    item = ContextItem[int](5)
    assert item.content == 5


# --- ContextQueue basics ------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, -1])
def test_queue_limit_below_one_raises_value_error(limit: int) -> None:
    with pytest.raises(ValueError):
        ContextQueue(limit=limit)


def test_queue_exposes_limit() -> None:
    assert ContextQueue(limit=3).limit == 3


def test_queue_tags_are_a_frozenset() -> None:
    assert ContextQueue(limit=1, tags=["a", "a"]).tags == frozenset({"a"})


async def test_queue_append_adds_items_in_order() -> None:
    queue: ContextQueue[str] = ContextQueue(limit=5)
    await queue.append(_item("a"), _item("b"))
    await queue.append(_item("c"))
    assert [i.content for i in queue.items] == ["a", "b", "c"]


async def test_queue_append_evicts_oldest_when_full() -> None:
    queue: ContextQueue[str] = ContextQueue(limit=2)
    await queue.append(_item("a"), _item("b"), _item("c"))
    await queue.append(_item("d"))
    assert [i.content for i in queue.items] == ["c", "d"]


async def test_queue_append_non_item_raises_type_error() -> None:
    queue: ContextQueue[str] = ContextQueue(limit=2)
    with pytest.raises(TypeError):
        await queue.append("raw")  # type: ignore[arg-type]


async def test_queue_append_with_non_item_appends_nothing() -> None:
    queue: ContextQueue[str] = ContextQueue(limit=5)
    with pytest.raises(TypeError):
        await queue.append(_item("a"), "raw")  # type: ignore[arg-type]
    assert len(queue) == 0


async def test_queue_clear_empties_it() -> None:
    queue: ContextQueue[str] = ContextQueue(limit=2)
    await queue.append(_item("a"))
    await queue.clear()
    assert queue.items == []


async def test_queue_items_is_a_copy() -> None:
    queue: ContextQueue[str] = ContextQueue(limit=3)
    await queue.append(_item("a"))
    queue.items.append(_item("b"))
    assert len(queue) == 1


async def test_queue_len_iter_and_bool() -> None:
    queue: ContextQueue[str] = ContextQueue(limit=3)
    assert not queue
    assert len(queue) == 0
    await queue.append(_item("a"), _item("b"))
    assert queue
    assert len(queue) == 2
    assert [i.content for i in queue] == ["a", "b"]


async def test_queue_history_joins_contents_with_newlines() -> None:
    queue: ContextQueue[str] = ContextQueue(limit=5)
    await queue.append(_item("one"), _item("two"), _item("three"))
    assert queue.history() == "one\ntwo\nthree"


async def test_queue_history_last_keeps_newest() -> None:
    queue: ContextQueue[str] = ContextQueue(limit=5)
    await queue.append(_item("one"), _item("two"), _item("three"))
    assert queue.history(last=2) == "two\nthree"


def test_empty_queue_history_is_empty_string() -> None:
    assert ContextQueue(limit=1).history() == ""


async def test_queue_items_assignment_replaces_contents() -> None:
    queue: ContextQueue[str] = ContextQueue(limit=5)
    await queue.append(_item("old"))
    queue.items = [_item("a"), _item("b")]
    assert [i.content for i in queue] == ["a", "b"]


def test_queue_items_assignment_keeps_newest_that_fit() -> None:
    queue: ContextQueue[str] = ContextQueue(limit=2)
    queue.items = [_item("a"), _item("b"), _item("c")]
    assert [i.content for i in queue] == ["b", "c"]


async def test_queue_items_assignment_fires_no_hooks() -> None:
    events: list[Any] = []
    for kind in ContextQueueHook:
        hook(kind)(_recorder(events, kind.value))
    queue: ContextQueue[str] = ContextQueue(limit=1)
    queue.items = [_item("a"), _item("b")]
    await _spin()
    assert events == []


# --- ContextQueue hooks -------------------------------------------------------------------


async def test_queue_append_hooks_receive_incoming_and_current() -> None:
    events: list[Any] = []
    queue: ContextQueue[str] = ContextQueue(limit=5)
    first, second, third = _item("a"), _item("b"), _item("c")
    await queue.append(first)
    queue.before_append(_recorder(events, "before"))
    queue.after_append(_recorder(events, "after"))
    await queue.append(second, third)
    assert events == [
        ("before", queue, [second, third], [first]),
        ("after", [second, third], [first, second, third]),
    ]


async def test_queue_on_evict_receives_evicted_item() -> None:
    events: list[Any] = []
    queue: ContextQueue[str] = ContextQueue(limit=1)
    first, second = _item("a"), _item("b")
    await queue.append(first)
    queue.on_evict(_recorder(events, "evict"))
    await queue.append(second)
    assert events == [("evict", queue, first)]


async def test_queue_clear_hooks_receive_items_then_queue() -> None:
    events: list[Any] = []
    queue: ContextQueue[str] = ContextQueue(limit=3)
    first = _item("a")
    await queue.append(first)
    queue.before_clear(_recorder(events, "before"))
    queue.after_clear(_recorder(events, "after"))
    await queue.clear()
    assert events == [("before", queue, [first]), ("after", queue)]


async def test_queue_hooks_list_append() -> None:
    events: list[Any] = []
    queue: ContextQueue[str] = ContextQueue(limit=3)
    queue.hooks.append(HookRegistry.wrap(_recorder(events, "after"), ContextQueueHook.AFTER_APPEND))
    item = _item("a")
    await queue.append(item)
    assert events == [("after", [item], [item])]


async def test_global_queue_hook_fires_for_every_queue() -> None:
    events: list[Any] = []
    hook(ContextQueueHook.AFTER_APPEND)(_recorder(events, "after"))
    one: ContextQueue[str] = ContextQueue(limit=1)
    two: ContextQueue[str] = ContextQueue(limit=1)
    await one.append(_item("a"))
    await two.append(_item("b"))
    assert len(events) == 2


async def test_tagged_global_queue_hook_fires_only_for_shared_tag() -> None:
    events: list[Any] = []
    hook(ContextQueueHook.BEFORE_APPEND, tags=["memory"])(_recorder(events, "before"))
    tagged: ContextQueue[str] = ContextQueue(limit=1, tags=["memory", "x"])
    plain: ContextQueue[str] = ContextQueue(limit=1)
    other: ContextQueue[str] = ContextQueue(limit=1, tags=["y"])
    await tagged.append(_item("a"))
    await plain.append(_item("b"))
    await other.append(_item("c"))
    assert [e[1] for e in events] == [tagged]


# --- ContextQueue branch and dicts --------------------------------------------------------


async def test_queue_branch_copies_items() -> None:
    queue: ContextQueue[str] = ContextQueue(limit=3)
    await queue.append(_item("a"), _item("b"))
    child = queue.branch()
    assert child.limit == 3
    assert [i.content for i in child] == ["a", "b"]


async def test_queue_branch_with_smaller_limit_keeps_newest() -> None:
    queue: ContextQueue[str] = ContextQueue(limit=3)
    await queue.append(_item("a"), _item("b"), _item("c"))
    child = queue.branch(limit=2)
    assert child.limit == 2
    assert [i.content for i in child] == ["b", "c"]


async def test_queue_branch_is_independent() -> None:
    queue: ContextQueue[str] = ContextQueue(limit=3)
    await queue.append(_item("a"))
    child = queue.branch()
    await child.append(_item("child"))
    await queue.append(_item("parent"))
    assert [i.content for i in queue] == ["a", "parent"]
    assert [i.content for i in child] == ["a", "child"]


def test_queue_branch_inherits_hooks_by_default() -> None:
    queue: ContextQueue[str] = ContextQueue(limit=3)
    queue.after_append(_recorder([], "after"))
    assert queue.branch().hooks == queue.hooks


def test_queue_branch_with_hooks_replaces_them() -> None:
    queue: ContextQueue[str] = ContextQueue(limit=3)
    queue.after_append(_recorder([], "after"))
    assert queue.branch(hooks=[]).hooks == []


def test_queue_branch_keeps_tags() -> None:
    queue: ContextQueue[str] = ContextQueue(limit=3, tags=["t"])
    assert queue.branch().tags == frozenset({"t"})


async def test_queue_branch_fires_no_hooks() -> None:
    events: list[Any] = []
    queue: ContextQueue[str] = ContextQueue(limit=3)
    await queue.append(_item("a"), _item("b"), _item("c"))
    for kind in ContextQueueHook:
        queue.hooks.append(HookRegistry.wrap(_recorder(events, kind.value), kind))
    queue.branch(limit=1)
    await _spin()
    assert events == []


async def test_queue_to_dict() -> None:
    queue: ContextQueue[str] = ContextQueue(limit=4, tags=["t"])
    await queue.append(_item("a", description="first"))

    @queue.on_evict
    async def note_eviction(queue: Any, item: Any) -> None:
        pass

    data = queue.to_dict()
    assert set(data) == {"limit", "items", "hooks", "tags"}
    assert data["limit"] == 4
    assert data["items"] == [{"content": "a", "description": "first", "id": None}]
    assert data["hooks"][ContextQueueHook.ON_EVICT.value] == ["note_eviction"]
    assert list(data["tags"]) == ["t"]


async def test_queue_from_dict_round_trip() -> None:
    queue: ContextQueue[str] = ContextQueue(limit=4, tags=["t"])
    await queue.append(_item("a"), _item("b", description="second"))

    @queue.after_append
    async def after_append_hook(appended: Any, current: Any) -> None:
        pass

    restored = ContextQueue.from_dict(queue.to_dict())
    assert restored.limit == 4
    assert restored.items == queue.items
    assert restored.tags == frozenset({"t"})
    assert restored.hooks == [HookRegistry.get("after_append_hook")]


async def test_queue_from_dict_fires_no_hooks() -> None:
    events: list[Any] = []
    queue: ContextQueue[str] = ContextQueue(limit=1)
    await queue.append(_item("a"))
    data = queue.to_dict()
    data["items"].append({"content": "b", "description": None, "id": None})
    for kind in ContextQueueHook:
        hook(kind)(_recorder(events, kind.value))
    restored = ContextQueue.from_dict(data)
    await _spin()
    assert events == []
    assert [i.content for i in restored] == ["b"]


def test_queue_from_dict_with_unknown_hook_raises() -> None:
    data = ContextQueue(limit=1).to_dict()
    data["hooks"] = {ContextQueueHook.ON_EVICT.value: ["nobody"]}
    with pytest.raises(UnregisteredHookError):
        ContextQueue.from_dict(data)


def test_queue_to_dict_with_unregistered_closure_hook_raises() -> None:
    def factory() -> Any:
        async def shared_name(*args: Any) -> None:
            pass

        return shared_name

    first: ContextQueue[str] = ContextQueue(limit=1)
    second: ContextQueue[str] = ContextQueue(limit=1)
    first.on_evict(factory())
    second.on_evict(factory())
    assert first.to_dict()["hooks"]
    with pytest.raises(UnserializableHookError):
        second.to_dict()


# --- ContextPool basics -------------------------------------------------------------------


def test_pool_default_limit_is_none() -> None:
    assert ContextPool().limit is None


def test_pool_tags_are_a_frozenset() -> None:
    assert ContextPool(tags=["x"]).tags == frozenset({"x"})


async def test_pool_add_and_get() -> None:
    pool: ContextPool[str] = ContextPool()
    item = _keyed("a")
    await pool.add(item)
    assert pool.get("a") is item


async def test_pool_add_without_id_raises_value_error() -> None:
    pool: ContextPool[str] = ContextPool()
    with pytest.raises(ValueError):
        await pool.add(ContextItem("x", description="has description"))


async def test_pool_add_without_description_raises_value_error() -> None:
    pool: ContextPool[str] = ContextPool()
    with pytest.raises(ValueError):
        await pool.add(ContextItem("x", id="x"))


def test_pool_get_unknown_raises_key_error() -> None:
    with pytest.raises(KeyError):
        ContextPool().get("missing")


async def test_pool_same_id_replaces_in_place() -> None:
    pool: ContextPool[str] = ContextPool(limit=2)
    await pool.add(_keyed("a"))
    await pool.add(_keyed("b"))
    replacement = _keyed("a", "new a")
    await pool.add(replacement)
    assert [i.id for i in pool.items] == ["a", "b"]
    assert pool.get("a") is replacement


async def test_pool_same_id_in_full_pool_does_not_evict() -> None:
    events: list[Any] = []
    pool: ContextPool[str] = ContextPool(limit=1)
    await pool.add(_keyed("a"))
    pool.on_evict(_recorder(events, "evict"))
    await pool.add(_keyed("a", "again"))
    assert events == []
    assert len(pool) == 1


async def test_pool_new_id_in_full_pool_evicts_oldest_insertion() -> None:
    pool: ContextPool[str] = ContextPool(limit=2)
    await pool.add(_keyed("a"))
    await pool.add(_keyed("b"))
    await pool.add(_keyed("a", "replaced"))
    await pool.add(_keyed("c"))
    assert [i.id for i in pool.items] == ["b", "c"]


async def test_pool_remove() -> None:
    pool: ContextPool[str] = ContextPool()
    await pool.add(_keyed("a"))
    await pool.remove("a")
    with pytest.raises(KeyError):
        pool.get("a")


async def test_pool_remove_unknown_raises_key_error() -> None:
    with pytest.raises(KeyError):
        await ContextPool().remove("missing")


async def test_pool_clear() -> None:
    pool: ContextPool[str] = ContextPool()
    await pool.add(_keyed("a"))
    await pool.clear()
    assert len(pool) == 0


async def test_pool_len_iter_and_bool() -> None:
    pool: ContextPool[str] = ContextPool()
    assert not pool
    await pool.add(_keyed("a"))
    await pool.add(_keyed("b"))
    assert pool
    assert len(pool) == 2
    assert [i.id for i in pool] == ["a", "b"]


async def test_pool_items_is_a_copy() -> None:
    pool: ContextPool[str] = ContextPool()
    await pool.add(_keyed("a"))
    pool.items.clear()
    assert len(pool) == 1


async def test_pool_catalogue_lists_id_and_description() -> None:
    pool: ContextPool[str] = ContextPool()
    await pool.add(ContextItem("x", description="search results", id="r1"))
    await pool.add(ContextItem("y", description="a page", id="p2"))
    assert pool.catalogue() == "- [r1] search results\n- [p2] a page"


def test_empty_pool_catalogue_is_empty_string() -> None:
    assert ContextPool().catalogue() == ""


# --- ContextPool hooks --------------------------------------------------------------------


async def test_pool_add_hooks_receive_pool_and_item() -> None:
    events: list[Any] = []
    pool: ContextPool[str] = ContextPool()
    pool.before_add(_recorder(events, "before"))
    pool.after_add(_recorder(events, "after"))
    item = _keyed("a")
    await pool.add(item)
    assert events == [("before", pool, item), ("after", pool, item)]


async def test_pool_before_add_sees_item_not_yet_stored() -> None:
    present: list[bool] = []
    pool: ContextPool[str] = ContextPool()

    @pool.before_add
    async def check(pool: ContextPool[str], item: ContextItem[str]) -> None:
        present.append(item.id in [i.id for i in pool.items])

    await pool.add(_keyed("a"))
    assert present == [False]


async def test_pool_eviction_happens_before_before_add() -> None:
    events: list[Any] = []
    pool: ContextPool[str] = ContextPool(limit=1)
    old, new = _keyed("old"), _keyed("new")
    await pool.add(old)
    pool.on_evict(_recorder(events, "evict"))
    pool.before_add(_recorder(events, "before_add"))
    pool.after_add(_recorder(events, "after_add"))
    await pool.add(new)
    assert events == [
        ("evict", pool, old),
        ("before_add", pool, new),
        ("after_add", pool, new),
    ]


async def test_pool_before_add_sees_pool_after_eviction() -> None:
    seen: list[list[str | None]] = []
    pool: ContextPool[str] = ContextPool(limit=1)
    await pool.add(_keyed("old"))

    @pool.before_add
    async def check(pool: ContextPool[str], item: ContextItem[str]) -> None:
        seen.append([i.id for i in pool.items])

    await pool.add(_keyed("new"))
    assert seen == [[]]


async def test_pool_remove_hooks_receive_pool_and_item() -> None:
    events: list[Any] = []
    pool: ContextPool[str] = ContextPool()
    item = _keyed("a")
    await pool.add(item)
    pool.before_remove(_recorder(events, "before"))
    pool.after_remove(_recorder(events, "after"))
    await pool.remove("a")
    assert events == [("before", pool, item), ("after", pool, item)]


async def test_pool_clear_hooks_receive_snapshot_then_pool() -> None:
    events: list[Any] = []
    pool: ContextPool[str] = ContextPool()
    first, second = _keyed("a"), _keyed("b")
    await pool.add(first)
    await pool.add(second)
    pool.before_clear(_recorder(events, "before"))
    pool.after_clear(_recorder(events, "after"))
    await pool.clear()
    assert events == [("before", pool, {"a": first, "b": second}), ("after", pool)]


async def test_global_pool_hook_fires() -> None:
    events: list[Any] = []
    hook(ContextPoolHook.AFTER_ADD)(_recorder(events, "after"))
    pool: ContextPool[str] = ContextPool()
    item = _keyed("a")
    await pool.add(item)
    assert events == [("after", pool, item)]


async def test_tagged_global_pool_hook_fires_only_for_shared_tag() -> None:
    events: list[Any] = []
    hook(ContextPoolHook.AFTER_ADD, tags=["kb"])(_recorder(events, "after"))
    tagged: ContextPool[str] = ContextPool(tags=["kb"])
    plain: ContextPool[str] = ContextPool()
    await tagged.add(_keyed("a"))
    await plain.add(_keyed("b"))
    assert [e[1] for e in events] == [tagged]


# --- ContextPool branch and dicts ---------------------------------------------------------


async def test_pool_branch_copies_items_and_limit() -> None:
    pool: ContextPool[str] = ContextPool(limit=5)
    await pool.add(_keyed("a"))
    child = pool.branch()
    assert child.limit == 5
    assert [i.id for i in child] == ["a"]


async def test_pool_branch_with_limit_keeps_newest() -> None:
    pool: ContextPool[str] = ContextPool()
    for key in "abc":
        await pool.add(_keyed(key))
    child = pool.branch(limit=2)
    assert child.limit == 2
    assert [i.id for i in child] == ["b", "c"]


async def test_pool_branch_is_independent() -> None:
    pool: ContextPool[str] = ContextPool()
    await pool.add(_keyed("a"))
    child = pool.branch()
    await child.add(_keyed("child"))
    await pool.remove("a")
    assert [i.id for i in pool] == []
    assert [i.id for i in child] == ["a", "child"]


def test_pool_branch_keeps_tags() -> None:
    assert ContextPool(tags=["t"]).branch().tags == frozenset({"t"})


async def test_pool_branch_fires_no_hooks() -> None:
    events: list[Any] = []
    pool: ContextPool[str] = ContextPool()
    for key in "abc":
        await pool.add(_keyed(key))
    for kind in ContextPoolHook:
        hook(kind)(_recorder(events, kind.value))
    pool.branch(limit=1)
    await _spin()
    assert events == []


async def test_pool_to_dict() -> None:
    pool: ContextPool[str] = ContextPool(limit=3, tags=["t"])
    await pool.add(ContextItem("c", description="d", id="i"))

    @pool.after_add
    async def after_add_hook(pool: Any, item: Any) -> None:
        pass

    data = pool.to_dict()
    assert set(data) == {"limit", "items", "hooks", "tags"}
    assert data["limit"] == 3
    assert data["items"] == [{"content": "c", "description": "d", "id": "i"}]
    assert data["hooks"][ContextPoolHook.AFTER_ADD.value] == ["after_add_hook"]
    assert list(data["tags"]) == ["t"]


async def test_pool_from_dict_round_trip() -> None:
    pool: ContextPool[str] = ContextPool(limit=3, tags=["t"])
    await pool.add(_keyed("a"))
    await pool.add(_keyed("b"))

    @pool.before_remove
    async def before_remove_hook(pool: Any, item: Any) -> None:
        pass

    restored = ContextPool.from_dict(pool.to_dict())
    assert restored.limit == 3
    assert restored.items == pool.items
    assert restored.tags == frozenset({"t"})
    assert restored.hooks == [HookRegistry.get("before_remove_hook")]


async def test_unbounded_pool_round_trip_keeps_none_limit() -> None:
    pool: ContextPool[str] = ContextPool()
    await pool.add(_keyed("a"))
    assert ContextPool.from_dict(pool.to_dict()).limit is None


async def test_pool_from_dict_fires_no_hooks() -> None:
    events: list[Any] = []
    pool: ContextPool[str] = ContextPool()
    await pool.add(_keyed("a"))
    data = pool.to_dict()
    for kind in ContextPoolHook:
        hook(kind)(_recorder(events, kind.value))
    restored = ContextPool.from_dict(data)
    await _spin()
    assert events == []
    assert [i.id for i in restored] == ["a"]


def test_pool_from_dict_with_unknown_hook_raises() -> None:
    data = ContextPool().to_dict()
    data["hooks"] = {ContextPoolHook.AFTER_ADD.value: ["nobody"]}
    with pytest.raises(UnregisteredHookError):
        ContextPool.from_dict(data)
