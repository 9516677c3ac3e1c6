"""The difference between two JSON documents, per section and per key, and its application.

A configuration version that differs from a stored document by a few keys is
stored as that document's digest plus a delta (``services.documents``): the
tenant's own changes, or a template's change, cost their size, not the
document's.

A delta is JSON (``None`` means "no difference")::

    {"$": value}                          the value replaced as a whole
    {"o": {key: delta, ...}, "x": [key]}  an object: members changed or added, members removed
    {"a": [[index, delta], ...], "n": N}  an array: items changed (or appended), its new length

:func:`make` compares by identity first (a document built from another by
:func:`apply` shares every unchanged part with it), then by value in C (``==``),
and walks in Python only the paths that differ. Python's ``==`` takes ``true`` for
``1`` inside containers: that is exact for configuration documents, where the schema
fixes each member's type (no member holds a boolean in one version and a number in
another). (A member compared directly is compared with its type: ``{"a": true}`` to
``{"a": 1}`` is a change; the same pair one container deeper would not be.)

:func:`apply` never modifies its arguments: the result shares the unchanged parts
of ``base``, so a base kept in a cache
must be treated as read-only by whoever holds the result.

    >>> base = {"labels": {"a": "A", "b": "B"}, "boxes": [{"n": 1}, {"n": 2}]}
    >>> new = {"labels": {"a": "A", "c": "C"}, "boxes": [{"n": 1}, {"n": 3}, {"n": 4}]}
    >>> d = make(base, new)
    >>> d["o"]["labels"]
    {'o': {'c': {'$': 'C'}}, 'x': ['b']}
    >>> d["o"]["boxes"]
    {'a': [[1, {'o': {'n': {'$': 3}}}], [2, {'$': {'n': 4}}]], 'n': 3}
    >>> apply(base, d) == new
    True
    >>> make(new, new) is None
    True
"""

from __future__ import annotations

from typing import Any

Delta = dict[str, Any]


def make(base: Any, new: Any) -> Delta | None:
    """The delta turning ``base`` into ``new`` (None: they are equal)."""
    if base is new:
        return None
    if isinstance(base, dict) and isinstance(new, dict):
        return _object(base, new)
    if isinstance(base, list) and isinstance(new, list):
        items: list[list[Any]] = []
        for index, value in enumerate(new):
            sub = _member(base, index, value) if index < len(base) else {"$": value}
            if sub is not None:
                items.append([index, sub])
        if not items and len(base) == len(new):
            return None
        return {"a": items, "n": len(new)}
    if type(base) is type(new) and base == new:
        return None
    return {"$": new}


def _member(base: Any, key: Any, value: Any) -> Delta | None:
    old = base[key]
    if old is value or (type(old) is type(value) and old == value):
        return None  # (the comparison of unchanged parts runs in C)
    return make(old, value)


def _object(base: dict[str, Any], new: dict[str, Any]) -> Delta | None:
    changed: dict[str, Any] = {}
    for key, value in new.items():
        sub = _member(base, key, value) if key in base else {"$": value}
        if sub is not None:
            changed[key] = sub
    removed = [key for key in base if key not in new]
    if not changed and not removed:
        return None
    out: Delta = {"o": changed}
    if removed:
        out["x"] = removed
    return out


def apply(base: Any, delta: Delta | None) -> Any:
    """``base`` with ``delta`` applied (a new value; ``base`` is not modified)."""
    if delta is None:
        return base
    if "$" in delta:
        return delta["$"]
    if "o" in delta:
        if not isinstance(base, dict):
            raise ValueError("the delta changes an object where the base has none")
        out = dict(base)
        for key in delta.get("x", ()):
            out.pop(key, None)
        for key, sub in delta["o"].items():
            out[key] = apply(base.get(key), sub) if key in base else _whole(sub)
        return out
    if "a" in delta:
        if not isinstance(base, list):
            raise ValueError("the delta changes an array where the base has none")
        size = delta["n"]
        items = list(base[:size])
        items.extend([None] * (size - len(items)))
        for index, sub in delta["a"]:
            items[index] = apply(base[index], sub) if index < len(base) else _whole(sub)
        return items
    raise ValueError(f"not a delta: {sorted(delta)}")


def _whole(sub: Delta) -> Any:
    if "$" not in sub:
        raise ValueError("the delta changes a member the base does not have")
    return sub["$"]
