"""Strict JSON for untrusted input.

``loads_canonical`` is the fast path for signed payloads: orjson parses, and the
result must re-serialize to exactly the input bytes (RFC 8785 canonical form).
That single comparison rejects duplicate keys (the re-serialization loses one),
whitespace, unsorted keys and non-canonical numbers or escapes. When it
fails, ``diagnose`` re-reads the input slowly to say precisely what is wrong.

    >>> loads_strict(b'{"a": 1, "a": 2}')
    Traceback (most recent call last):
    ...
    provisioner.errors.BundleRejected: duplicate key 'a' at $
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from typing import Any

import orjson

from provisioner.canonical import canonical_bytes
from provisioner.errors import BundleRejected, excerpt

MAX_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64


class _Duplicate(ValueError):
    pass


class _Constant(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise _Constant(name)


def _depth_exceeded(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterable[Any] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _find_duplicate_path(data: bytes) -> str:
    """Best-effort JSON path of the first duplicate key (for the message only)."""
    path: list[str] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                path.append(key)
                raise _Duplicate(key)
            seen.add(key)
        return dict(pairs)

    with contextlib.suppress(_Duplicate, ValueError, RecursionError):
        json.loads(data, object_pairs_hook=hook)
    return path[0] if path else "?"


def check_size(data: bytes, what: str) -> None:
    if len(data) > MAX_BYTES:
        raise BundleRejected(
            f"{what} is {len(data):,} bytes, more than the {MAX_BYTES:,}-byte (16 MiB) limit",
            hint="split the configuration with --only, or remove unused items",
        )


def check_encoding(data: bytes, what: str) -> None:
    """Refuse, with a precise message, the commonest files that are not UTF-8 JSON text:
    a byte order mark, or NUL bytes (UTF-16 or UTF-32; JSON text never holds a NUL).
    Other invalid UTF-8 is found by the parsers."""
    if data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        raise BundleRejected(
            f"{what} starts with a byte order mark: it must be UTF-8 without one",
            hint="write bundle files in UTF-8 (never UTF-16)",
        )
    if b"\x00" in data:
        raise BundleRejected(
            f"{what} contains NUL bytes: it is not UTF-8 (UTF-16?)",
            hint="write bundle files in UTF-8 (never UTF-16)",
        )


def loads_strict(data: bytes, *, what: str = "document") -> Any:
    """Parse untrusted JSON: UTF-8 without a byte order mark (RFC 8259 section 8.1),
    no duplicate keys, no NaN/Infinity, depth <= 64, <= 16 MiB."""
    check_size(data, what)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleRejected(
            f"{what} is not UTF-8 (byte {exc.start:,} is not valid UTF-8)",
            hint="write bundle files in UTF-8 (a UTF-16 file is refused)",
        ) from None
    if text.startswith("\ufeff"):
        raise BundleRejected(
            f"{what} starts with a byte order mark",
            hint="write bundle files in UTF-8 without a BOM",
        )
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except _Duplicate as exc:
        raise BundleRejected(f"duplicate key {excerpt(exc.args[0])} at $") from None
    except _Constant as exc:
        raise BundleRejected(
            f"{what} contains {exc.args[0]}, which JSON does not allow",
            hint="write numbers as plain integers",
        ) from None
    except RecursionError:
        raise BundleRejected(f"{what} is nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleRejected(f"{what} is not valid JSON: {exc}") from None
    if _depth_exceeded(value, MAX_DEPTH):
        raise BundleRejected(f"{what} is nested deeper than {MAX_DEPTH} levels")
    return value


def loads_strict_fast(data: bytes, *, what: str = "document") -> tuple[Any, bool]:
    """:func:`loads_strict`, also telling whether ``data`` is RFC 8785 canonical JSON
    (followed by at most one newline, as a bundle file is written).

    Canonical input is read in one orjson pass: it serialises back to exactly the
    same bytes, which no input with a duplicate key, ``NaN`` or whitespace does.
    Anything else is read by :func:`loads_strict`, with its precise errors.
    """
    check_size(data, what)
    body = data[:-1] if data.endswith(b"\n") else data
    try:
        value = orjson.loads(body)
        same = canonical_bytes(value) == body
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError):
        same = False
    if same and not _depth_exceeded(value, MAX_DEPTH):
        return value, True
    return loads_strict(data, what=what), False


def diagnose(data: bytes, *, what: str) -> BundleRejected:
    """Explain why ``data`` is unacceptable (slow; only called on failure)."""
    try:
        value = loads_strict(data, what=what)
    except BundleRejected as exc:
        if exc.message.startswith("duplicate key"):
            return BundleRejected(
                f"{what} has a duplicate key {excerpt(_find_duplicate_path(data))}",
                hint="each object member may appear once",
            )
        return exc
    try:
        canonical = canonical_bytes(value)
    except (TypeError, orjson.JSONEncodeError) as exc:
        reason = (
            "an integer beyond 64 bits"
            if "Integer" in str(exc)
            else "text that is not valid Unicode (e.g. a lone surrogate escape)"
        )
        return BundleRejected(
            f"{what} contains {reason}",
            hint="integers must fit in 53 bits; strings must be valid UTF-8",
        )
    if canonical != data:
        return BundleRejected(
            f"{what} is not RFC 8785 canonical JSON",
            hint="produce payloads with an RFC 8785 (JCS) serializer",
        )
    return BundleRejected(f"{what} could not be read")


def loads_canonical(data: bytes, *, what: str = "payload") -> Any:
    """Fast strict parse of a signed payload that must be in canonical form.

    Depth is not walked here: callers validate the result against a model whose
    depth is bounded, and call :func:`diagnose` (which does check depth) when
    validation fails, so a deeply nested payload is still reported as such.
    """
    check_size(data, what)
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise diagnose(data, what=what) from None
    try:
        same = canonical_bytes(value) == data
    except (TypeError, orjson.JSONEncodeError):
        same = False  # e.g. an integer beyond 64 bits
    if not same:
        raise diagnose(data, what=what)
    return value
