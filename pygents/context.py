"""Context: ``ContextItem``, the bounded ``ContextQueue`` and the keyed ``ContextPool``.

A queue is a sliding window (oldest evicted first); a pool is keyed by item id (the same id
replaces in place, a new id in a full pool evicts the oldest by insertion). Neither fires
hooks while branching or restoring from a dict.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from types import EllipsisType
from typing import Any

from pygents.hooks import (
    ContextPoolHook,
    ContextQueueHook,
    HookFn,
    HookRegistry,
    InstanceHook,
    fire,
    global_hooks,
)

__all__ = ["ContextItem", "ContextPool", "ContextQueue"]

type _HookFn = Callable[..., Awaitable[Any]]

_QH = ContextQueueHook
_PH = ContextPoolHook
_G_QUEUE = [global_hooks(t) for t in ContextQueueHook]
# The only events ``ContextPool.add`` fires: checked inline, it is the pool's hot path.
_G_POOL_EVICT = global_hooks(ContextPoolHook.ON_EVICT)
_G_POOL_BEFORE_ADD = global_hooks(ContextPoolHook.BEFORE_ADD)
_G_POOL_AFTER_ADD = global_hooks(ContextPoolHook.AFTER_ADD)


def _any_global(lists: list[list[HookFn]]) -> bool:
    return any(lists)


# No slots=True: on a frozen slotted dataclass, ``ContextItem[str](...)`` raises TypeError
# (typing sets ``__orig_class__`` through the broken zero-argument ``super()``, gh-90562).
@dataclass(frozen=True)
class ContextItem[T]:
    """One piece of context: its content, an optional description and an optional id.

    Routed by agents: an item without ``id`` goes to the context queue, one with an ``id``
    to the context pool.
    """

    content: T
    description: str | None = None
    id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"content", "description", "id"}``."""
        return {"content": self.content, "description": self.description, "id": self.id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContextItem[Any]:
        """The item saved by ``to_dict``."""
        return cls(data["content"], data.get("description"), data.get("id"))


def _check_limit(limit: int | None, owner: str, optional: bool) -> None:
    if limit is None and optional:
        return
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"{owner} limit must be >= 1 (an integer), got {limit!r}")


class ContextQueue[T]:
    """A bounded window of context items; appending to a full queue evicts the oldest.

    Example::

        queue = ContextQueue(limit=2)
        await queue.append(ContextItem("a"), ContextItem("b"), ContextItem("c"))
        assert [i.content for i in queue] == ["b", "c"]
    """

    def __init__(self, limit: int, tags: Iterable[str] | None = None) -> None:
        _check_limit(limit, "ContextQueue", optional=False)
        self._limit = limit
        self._items: deque[ContextItem[T]] = deque()
        self.hooks: list[HookFn] = []
        self.tags: frozenset[str] = frozenset(tags or ())

    @property
    def limit(self) -> int:
        """The most items the queue holds."""
        return self._limit

    @property
    def items(self) -> list[ContextItem[T]]:
        """A copy of the items, oldest first."""
        return list(self._items)

    @items.setter
    def items(self, items: Iterable[ContextItem[T]]) -> None:
        """Replace the contents, keeping the newest that fit; fires no hooks."""
        kept = list(items)[-self._limit :]
        for item in kept:
            _require_item(item)
        self._items = deque(kept)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[ContextItem[T]]:
        return iter(list(self._items))

    def __bool__(self) -> bool:
        return bool(self._items)

    def __repr__(self) -> str:
        return f"ContextQueue(limit={self._limit}, len={len(self._items)})"

    async def append(self, *items: ContextItem[T]) -> None:
        """Add items at the newest end, evicting the oldest when full.

        Raises:
            TypeError: an argument is not a ``ContextItem`` (nothing is appended).
        """
        for item in items:
            _require_item(item)
        if not self.hooks and not _any_global(_G_QUEUE):
            buffer = self._items
            limit = self._limit
            for item in items:
                if len(buffer) >= limit:
                    buffer.popleft()
                buffer.append(item)
            return
        hooks, tags = self.hooks, self.tags
        await fire(_QH.BEFORE_APPEND, hooks, tags, self, list(items), self.items)
        for item in items:
            if len(self._items) >= self._limit:
                # ON_EVICT sees the item still in the queue (as in 0.7.0), then it goes.
                evicted = self._items[0]
                await fire(_QH.ON_EVICT, hooks, tags, self, evicted)
                if self._items and self._items[0] is evicted:
                    self._items.popleft()
            self._items.append(item)
        await fire(_QH.AFTER_APPEND, hooks, tags, list(items), self.items)

    async def clear(self) -> None:
        """Remove every item (``BEFORE_CLEAR`` sees them, ``AFTER_CLEAR`` the empty queue)."""
        hooks, tags = self.hooks, self.tags
        await fire(_QH.BEFORE_CLEAR, hooks, tags, self, self.items)
        self._items.clear()
        await fire(_QH.AFTER_CLEAR, hooks, tags, self)

    def history(self, last: int | None = None) -> str:
        """The contents (as ``str``) of the newest ``last`` items (all if None), one a line."""
        items = list(self._items)
        if last is not None:
            items = items[-last:] if last > 0 else []
        return "\n".join(str(item.content) for item in items)

    def branch(
        self, limit: int | None = None, hooks: list[HookFn] | EllipsisType | None = ...
    ) -> ContextQueue[T]:
        """A new queue with the newest items that fit in ``limit`` (None: the same limit).

        ``hooks``: left out, a copy of this queue's; ``None``, no hooks; a list, a copy of
        it. The branch keeps the tags. No hook fires.
        """
        child: ContextQueue[T] = ContextQueue(
            limit if limit is not None else self._limit, self.tags
        )
        child.items = self._items
        inherited = self.hooks if isinstance(hooks, EllipsisType) else hooks or ()
        child.hooks = list(inherited)
        return child

    def to_dict(self) -> dict[str, Any]:
        """``{"limit", "items", "hooks", "tags"}`` as plain data."""
        return {
            "limit": self._limit,
            "items": [item.to_dict() for item in self._items],
            "hooks": HookRegistry.names_by_type(self.hooks),
            "tags": sorted(self.tags),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContextQueue[Any]:
        """The queue saved by ``to_dict`` (hooks looked up by name; no hook fires)."""
        queue: ContextQueue[Any] = cls(data["limit"], data.get("tags"))
        queue.items = [ContextItem.from_dict(d) for d in data.get("items", [])]
        queue.hooks = HookRegistry.from_names(data.get("hooks") or {})
        return queue

    before_append = InstanceHook(_QH.BEFORE_APPEND, "(queue, incoming, current) before appending")
    after_append = InstanceHook(_QH.AFTER_APPEND, "(appended, current) after appending")
    before_clear = InstanceHook(_QH.BEFORE_CLEAR, "(queue, items) before a clear")
    after_clear = InstanceHook(_QH.AFTER_CLEAR, "(queue) after a clear")
    on_evict = InstanceHook(_QH.ON_EVICT, "(queue, item) for each item an append evicts")


def _require_item(item: object) -> None:
    if not isinstance(item, ContextItem):
        raise TypeError(
            f"context queues hold ContextItem objects, got {type(item).__name__}: {item!r}; "
            "wrap it as ContextItem(content)"
        )


class ContextPool[T]:
    """Context items keyed by id, optionally bounded (oldest insertion evicted first).

    Example::

        pool = ContextPool(limit=10)
        await pool.add(ContextItem("...", description="search results", id="r1"))
        print(pool.catalogue())  # - [r1] search results
    """

    def __init__(self, limit: int | None = None, tags: Iterable[str] | None = None) -> None:
        _check_limit(limit, "ContextPool", optional=True)
        self._limit = limit
        self._items: dict[str, ContextItem[T]] = {}
        self.hooks: list[HookFn] = []
        self.tags: frozenset[str] = frozenset(tags or ())

    @property
    def limit(self) -> int | None:
        """The most items the pool holds (None: unbounded)."""
        return self._limit

    @property
    def items(self) -> list[ContextItem[T]]:
        """A copy of the items, in insertion order."""
        return list(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[ContextItem[T]]:
        return iter(list(self._items.values()))

    def __bool__(self) -> bool:
        return bool(self._items)

    def __repr__(self) -> str:
        return f"ContextPool(limit={self._limit}, len={len(self._items)})"

    async def add(self, item: ContextItem[T]) -> None:
        """Store ``item`` under its id; an existing id is replaced in place, without eviction.

        Raises:
            ValueError: the item has no ``id`` or no ``description``.
        """
        if not isinstance(item, ContextItem):
            raise TypeError(f"context pools hold ContextItem objects, got {type(item).__name__}")
        key = item.id
        if key is None or item.description is None:
            raise ValueError(
                "ContextPool requires a ContextItem with both 'id' and 'description' set; "
                f"got id={item.id!r}, description={item.description!r}"
            )
        items = self._items
        limit = self._limit
        if not self.hooks and not (_G_POOL_EVICT or _G_POOL_BEFORE_ADD or _G_POOL_AFTER_ADD):
            if limit is not None and key not in items and len(items) >= limit:
                del items[next(iter(items))]
            items[key] = item
            return
        hooks, tags = self.hooks, self.tags
        if limit is not None and key not in items and len(items) >= limit:
            # ON_EVICT sees the item still in the pool (as in 0.7.0), then it goes.
            oldest = next(iter(items))
            evicted = items[oldest]
            await fire(_PH.ON_EVICT, hooks, tags, self, evicted)
            if items.get(oldest) is evicted:
                del items[oldest]
        await fire(_PH.BEFORE_ADD, hooks, tags, self, item)
        items[key] = item
        await fire(_PH.AFTER_ADD, hooks, tags, self, item)

    def get(self, id: str) -> ContextItem[T]:
        """The item stored under ``id`` (``KeyError`` if none)."""
        try:
            return self._items[id]
        except KeyError:
            raise KeyError(f"no context item with id {id!r} in this pool") from None

    async def remove(self, id: str) -> None:
        """Remove the item stored under ``id`` (``KeyError`` if none)."""
        item = self.get(id)
        hooks, tags = self.hooks, self.tags
        await fire(_PH.BEFORE_REMOVE, hooks, tags, self, item)
        del self._items[id]
        await fire(_PH.AFTER_REMOVE, hooks, tags, self, item)

    async def clear(self) -> None:
        """Remove every item (``BEFORE_CLEAR`` gets a ``{id: item}`` snapshot)."""
        hooks, tags = self.hooks, self.tags
        await fire(_PH.BEFORE_CLEAR, hooks, tags, self, dict(self._items))
        self._items.clear()
        await fire(_PH.AFTER_CLEAR, hooks, tags, self)

    def catalogue(self) -> str:
        """One ``- [id] description`` line per item; ``""`` when empty."""
        return "\n".join(f"- [{i.id}] {i.description}" for i in self._items.values())

    def branch(self, limit: int | EllipsisType | None = ...) -> ContextPool[T]:
        """A copy of this pool (hooks and tags too); with a smaller ``limit``, the newest fit.

        The copy is of this pool's own class, built as ``type(self)(limit=..., tags=...)``
        (so a subclass whose ``__init__`` takes those keywords keeps working). No hook fires.
        """
        new_limit = self._limit if isinstance(limit, EllipsisType) else limit
        child = type(self)(limit=new_limit, tags=self.tags)
        child._restore(self._items.values())
        child.hooks = list(self.hooks)
        return child

    def _restore(self, items: Iterable[ContextItem[T]]) -> None:
        """Replace the contents (the newest that fit), firing no hook.

        Raises:
            ValueError: an item has no id (nothing is changed).
        """
        kept = list(items)
        if self._limit is not None:
            kept = kept[-self._limit :]
        restored: dict[str, ContextItem[T]] = {}
        for item in kept:
            if item.id is None:
                raise ValueError(f"ContextPool requires a ContextItem with 'id' set; got {item!r}")
            restored[item.id] = item
        self._items = restored

    def to_dict(self) -> dict[str, Any]:
        """``{"limit", "items", "hooks", "tags"}`` as plain data."""
        return {
            "limit": self._limit,
            "items": [item.to_dict() for item in self._items.values()],
            "hooks": HookRegistry.names_by_type(self.hooks),
            "tags": sorted(self.tags),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContextPool[Any]:
        """The pool saved by ``to_dict`` (hooks looked up by name; no hook fires).

        Items need an id (a description is not checked here).

        Raises:
            ValueError: an item has no id.
            UnregisteredHookError: a hook name is not registered here.
        """
        pool: ContextPool[Any] = cls(data.get("limit"), data.get("tags"))
        items = [ContextItem.from_dict(d) for d in data.get("items", [])]
        for index, item in enumerate(items):  # checked before the limit drops any
            if item.id is None:
                raise ValueError(
                    "ContextPool requires a ContextItem with 'id' set; "
                    f"data['items'][{index}] has none: {data['items'][index]!r}"
                )
        pool._restore(items)
        pool.hooks = HookRegistry.from_names(data.get("hooks") or {})
        return pool

    before_add = InstanceHook(_PH.BEFORE_ADD, "(pool, item) before an add, after any eviction")
    after_add = InstanceHook(_PH.AFTER_ADD, "(pool, item) after an add")
    before_remove = InstanceHook(_PH.BEFORE_REMOVE, "(pool, item) before a remove")
    after_remove = InstanceHook(_PH.AFTER_REMOVE, "(pool, item) after a remove")
    before_clear = InstanceHook(_PH.BEFORE_CLEAR, "(pool, snapshot_dict) before a clear")
    after_clear = InstanceHook(_PH.AFTER_CLEAR, "(pool) after a clear")
    on_evict = InstanceHook(_PH.ON_EVICT, "(pool, item) for each item an add evicts")
