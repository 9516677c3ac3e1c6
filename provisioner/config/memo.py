"""Results of pure functions of read-only values, remembered by the identity of those values.

A rollout plans the same template change for thousands of tenants. A tenant's
document is built on the shared parse of its base (:mod:`provisioner.config.delta`
shares every unchanged part), so the sections a tenant did not touch are the very
objects of every other tenant's document: their three-way merge with the
template's sections, their reference checks and their canonical bytes are the same
for every tenant, and an :class:`IdentityMemo` lets them be computed once per
rollout. Only a section a tenant changed (a new object) is computed again.

The values are keyed by ``id()`` and the memo holds them, so an identity cannot be
reused by another object while its entry lives. Whoever uses a memo promises that
the values are never changed (the document cache's rule) and that the function
depends on nothing else than its inputs and the tag.

    >>> memo = IdentityMemo()
    >>> section = [1, 2, 3]
    >>> memo.get("sum", (section,), lambda: sum(section)), memo.hits
    (6, 0)
    >>> memo.get("sum", (section,), lambda: sum(section)), memo.hits
    (6, 1)
    >>> memo.get("sum", ([1, 2, 3],), lambda: -1)  # an equal value is not the same one
    -1
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

#: entries kept (least recently used dropped first): a rollout needs a few per section
LIMIT = 1024


class IdentityMemo:
    """An LRU of ``compute()`` results keyed by a tag and the identity of the inputs."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self.items: OrderedDict[tuple[Any, ...], tuple[tuple[Any, ...], Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, tag: Hashable, inputs: tuple[Any, ...], compute: Callable[[], T]) -> T:
        key = (tag, *[id(value) for value in inputs])
        found = self.items.get(key)
        if found is not None and all(a is b for a, b in zip(found[0], inputs, strict=True)):
            self.items.move_to_end(key)
            self.hits += 1
            value: T = found[1]
            return value
        self.misses += 1
        value = compute()
        self.items[key] = (inputs, value)
        if len(self.items) > self.limit:
            self.items.popitem(last=False)
        return value
