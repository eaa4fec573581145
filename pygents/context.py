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

from pygents.hooks import GLOBAL_HOOKS, ContextPoolHook, ContextQueueHook, Hook, fire
from pygents.registry import HookRegistry, InstanceHook

__all__ = ["ContextItem", "ContextPool", "ContextQueue"]

type _HookFn = Callable[..., Awaitable[Any]]

_QH = ContextQueueHook
_PH = ContextPoolHook
_G_QUEUE = [GLOBAL_HOOKS[t] for t in ContextQueueHook]
# The only events ``ContextPool.add`` fires: checked inline, it is the pool's hot path.
_G_POOL_EVICT = GLOBAL_HOOKS[ContextPoolHook.ON_EVICT]
_G_POOL_BEFORE_ADD = GLOBAL_HOOKS[ContextPoolHook.BEFORE_ADD]
_G_POOL_AFTER_ADD = GLOBAL_HOOKS[ContextPoolHook.AFTER_ADD]


def _any_global(lists: list[list[Hook]]) -> bool:
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
        raise ValueError(f"{owner} limit must be an integer >= 1, got {limit!r}")


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
        self.hooks: list[Hook] = []
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
        return f"<ContextQueue {len(self._items)}/{self._limit}>"

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
                evicted = self._items.popleft()
                await fire(_QH.ON_EVICT, hooks, tags, self, evicted)
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

    def branch(self, limit: int | None = None, hooks: list[Hook] | None = None) -> ContextQueue[T]:
        """A new queue with the newest items that fit in ``limit`` (default: the same limit).

        The branch inherits this queue's hooks unless ``hooks`` is given, and its tags. No
        hook fires.
        """
        child: ContextQueue[T] = ContextQueue(
            limit if limit is not None else self._limit, self.tags
        )
        child.items = self._items
        child.hooks = list(self.hooks if hooks is None else hooks)
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
        self.hooks: list[Hook] = []
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
        return f"<ContextPool {len(self._items)}/{self._limit}>"

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
                f"a ContextItem added to a pool needs an id and a description, got "
                f"id={item.id!r}, description={item.description!r}"
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
            evicted = items.pop(next(iter(items)))
            await fire(_PH.ON_EVICT, hooks, tags, self, evicted)
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
        """A copy of this pool (hooks and tags too); with a smaller ``limit``, the newest fit."""
        new_limit = self._limit if isinstance(limit, EllipsisType) else limit
        child: ContextPool[T] = ContextPool(new_limit, self.tags)
        child._restore(self._items.values())
        child.hooks = list(self.hooks)
        return child

    def _restore(self, items: Iterable[ContextItem[T]]) -> None:
        kept = list(items)
        if self._limit is not None:
            kept = kept[-self._limit :]
        self._items = {item.id: item for item in kept if item.id is not None}

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
        """The pool saved by ``to_dict`` (hooks looked up by name; no hook fires)."""
        pool: ContextPool[Any] = cls(data.get("limit"), data.get("tags"))
        pool._restore(ContextItem.from_dict(d) for d in data.get("items", []))
        pool.hooks = HookRegistry.from_names(data.get("hooks") or {})
        return pool

    before_add = InstanceHook(_PH.BEFORE_ADD, "(pool, item) before an add, after any eviction")
    after_add = InstanceHook(_PH.AFTER_ADD, "(pool, item) after an add")
    before_remove = InstanceHook(_PH.BEFORE_REMOVE, "(pool, item) before a remove")
    after_remove = InstanceHook(_PH.AFTER_REMOVE, "(pool, item) after a remove")
    before_clear = InstanceHook(_PH.BEFORE_CLEAR, "(pool, snapshot_dict) before a clear")
    after_clear = InstanceHook(_PH.AFTER_CLEAR, "(pool) after a clear")
    on_evict = InstanceHook(_PH.ON_EVICT, "(pool, item) for each item an add evicts")
