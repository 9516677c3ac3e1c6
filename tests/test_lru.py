"""The least-recently-used cache shared by the document store, plans and rollouts."""

from __future__ import annotations

from provisioner.lru import LRU


def test_the_least_recently_used_goes_first() -> None:
    cache: LRU[str, int] = LRU(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3)
    assert "b" not in cache
    assert (cache.get("a"), cache.get("c"), len(cache)) == (1, 3, 2)


def test_weight_bounds_the_cache_and_a_value_heavier_than_it_is_not_kept() -> None:
    cache: LRU[str, bytes] = LRU(10, len)
    cache.put("six", b"x" * 6)
    cache.put("four", b"x" * 4)
    cache.put("three", b"x" * 3)  # over 10: the oldest goes
    assert "six" not in cache
    assert cache.weight == 7
    cache.put("big", b"x" * 11)
    assert "big" not in cache
    assert cache.weight == 7


def test_a_key_kept_keeps_its_first_value() -> None:
    cache: LRU[str, int] = LRU(4)
    cache.put("a", 1)
    cache.put("a", 2)  # the value of a key never changes where this cache is used
    assert cache.get("a") == 1
    cache.clear()
    assert (len(cache), cache.weight, cache.get("a")) == (0, 0, None)
