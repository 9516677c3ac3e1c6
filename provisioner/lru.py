"""A small thread-safe least-recently-used cache.

Used where a value is fully determined by its key and dropping it only costs a
recomputation or a read: documents by digest (``services.documents``), the shared parts
of plans (``db.plans``), a rollout's plans by current document (``rollout``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """At most ``limit`` of weight (``weigh(value)``, 1 per value by default); the least
    recently used values go first. A value heavier than the limit is not kept."""

    def __init__(self, limit: int, weigh: Callable[[V], int] | None = None) -> None:
        self.limit = limit
        self.weigh: Callable[[V], int] = weigh or (lambda _: 1)
        self.items: OrderedDict[K, V] = OrderedDict()
        self.weight = 0
        self.lock = threading.Lock()

    def __contains__(self, key: K) -> bool:
        """Whether ``key`` is kept (its recency unchanged)."""
        return key in self.items

    def __len__(self) -> int:
        return len(self.items)

    def get(self, key: K) -> V | None:
        with self.lock:
            value = self.items.get(key)
            if value is not None:
                self.items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` (a key already kept keeps its value and becomes the most recent)."""
        size = self.weigh(value)
        if size > self.limit:
            return
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return
            self.items[key] = value
            self.weight += size
            while self.weight > self.limit:
                _, old = self.items.popitem(last=False)
                self.weight -= self.weigh(old)

    def clear(self) -> None:
        with self.lock:
            self.items.clear()
            self.weight = 0
