"""A priority queue with aging: CRITICAL > HIGH > NORMAL > LOW, and every `aging` seconds of waiting
counts as one priority level, so LOW never starves.

An item's effective priority at time t is `priority + (t - enqueued) / aging`; comparing two items
at any t is comparing `enqueued - priority * aging`, which does not change with t. So the order is
a static sort key and the queue stays a sorted list; FIFO among equals by insertion sequence.
Not thread-safe: its owner guards it (the coordination engine with its lock, an LLM endpoint limiter
with its own).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class AgingQueue(Generic[T]):
    def __init__(self, aging: float = 30.0):
        if aging <= 0:
            raise ValueError("aging must be positive")
        self.aging = aging
        self._keys: list[tuple[float, int]] = []
        self._items: dict[tuple[float, int], T] = {}
        self._where: dict[int, tuple[float, int]] = {}  # id(item) -> key
        self._seq = itertools.count()

    def key(self, priority: int, enqueued: float) -> float:
        return enqueued - priority * self.aging

    def push(self, item: T, priority: int, enqueued: float) -> None:
        k = (self.key(priority, enqueued), next(self._seq))
        bisect.insort(self._keys, k)
        self._items[k] = item
        self._where[id(item)] = k

    def remove(self, item: T) -> bool:
        return self.take(item) is not None

    def take(self, item: T) -> tuple[float, int] | None:
        """Remove an item; its place in the order (for `put_back`), or None when it was not queued."""
        k = self._where.pop(id(item), None)
        if k is None:
            return None
        del self._items[k]
        i = bisect.bisect_left(self._keys, k)
        del self._keys[i]
        return k

    def put_back(self, item: T, place: tuple[float, int]) -> None:
        """Queue an item again where `take` found it (its priority and its turn among equals)."""
        bisect.insort(self._keys, place)
        self._items[place] = item
        self._where[id(item)] = place

    def __contains__(self, item: T) -> bool:
        return id(item) in self._where

    def __iter__(self) -> Iterator[T]:
        """Items in dispatch order, lazily (removing while iterating is fine; removed items are skipped)."""
        for k in self._keys[:]:
            item = self._items.get(k)
            if item is not None:
                yield item

    def __len__(self) -> int:
        return len(self._keys)

    def pop(self) -> T:
        k = self._keys.pop(0)
        item = self._items.pop(k)
        del self._where[id(item)]
        return item
