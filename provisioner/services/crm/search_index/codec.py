"""The block codec: how a set of contact ids of one block is stored, and set algebra on it.

A row of ``crm_search_grams`` holds the members of one block of
:data:`BLOCK` ids (``id >> BLOCK_BITS``), as offsets ``id & MASK``: sparse
(:data:`SPARSE` + little-endian uint16 offsets, sorted) up to :data:`SPARSE_MAX`
members, else dense (:data:`DENSE` + a :data:`BITMAP_BYTES`-byte bitmap, bit ``o``
= offset ``o``). The C module (``_postings.c``) writes the same format for a
bulk-loaded block; ``tests/crm/test_index_format.py`` checks that its constants agree
with these (``SPARSE_MAX`` and ``POSITIONS`` are passed to it by the writer).

In memory a set is a :data:`Part`: a Python set of offsets, or the bitmap as bytes
(AND / OR / count as big-integer operations).
"""

from __future__ import annotations

import re
import struct
from array import array
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import repeat
from typing import Any, TypeAlias

BLOCK_BITS = 16
BLOCK = 1 << BLOCK_BITS
MASK = BLOCK - 1
#: above this many members a block's set is stored dense
SPARSE_MAX = 2048
#: the first byte of a stored set
SPARSE, DENSE = b"S", b"D"

#: a block's set in memory: sparse offsets, or a dense 8,192-byte bitmap (bit o = offset o)
Part = set[int] | bytes
BITMAP_BYTES = BLOCK // 8
#: a set this large is turned into a bitmap to be ANDed with one
_AS_BITMAP = 1024
_BITS = [tuple(i for i in range(8) if v >> i & 1) for v in range(256)]
_NONZERO = re.compile(b"[^\x00]")


def _spread_masks() -> tuple[int, int, int]:
    def every(width: int, bits: int) -> int:
        unit = ((1 << bits) - 1).to_bytes(width, "little")
        return int.from_bytes(unit * (BLOCK // width), "little")

    return every(2, 2), every(4, 4), every(8, 8)


_M2, _M4, _M8 = _spread_masks()


def to_bitmap(offsets: Iterable[int]) -> bytes:
    """A bitmap of offsets (large sets: one byte per offset, then packed 8:1 by big-int ops)."""
    if not isinstance(offsets, list | set | tuple) or len(offsets) < 256:
        out = bytearray(BITMAP_BYTES)
        for o in offsets:
            out[o >> 3] |= 1 << (o & 7)
        return bytes(out)
    flags = bytearray(BLOCK)
    consume(map(flags.__setitem__, offsets, repeat(1)))
    x = int.from_bytes(flags, "little")  # offset o is bit 8*o
    x = (x | x >> 7) & _M2  # bits 16k, 16k+1 = offsets 2k, 2k+1
    x = (x | x >> 14) & _M4  # bits 32k..32k+3 = offsets 4k..4k+3
    x = (x | x >> 28) & _M8  # bits 64k..64k+7 = offsets 8k..8k+7
    return x.to_bytes(BLOCK, "little")[::8]


encode_one = struct.Struct("<cH").pack  # a sparse set of one offset


def consume(iterator: Iterator[Any]) -> None:
    deque(iterator, 0)


def bits(bitmap: bytes, descending: bool = False) -> Iterator[int]:
    """Members of a bitmap in order (C-level scan for the non-zero bytes)."""
    if descending:
        last = len(bitmap) - 1
        for m in _NONZERO.finditer(bitmap[::-1]):
            at = last - m.start()
            base = at << 3
            for bit in reversed(_BITS[bitmap[at]]):
                yield base + bit
        return
    for m in _NONZERO.finditer(bitmap):
        at = m.start()
        base = at << 3
        for bit in _BITS[bitmap[at]]:
            yield base + bit


def encode(offsets: list[int]) -> bytes:
    """A block's set from its sorted offsets: :data:`SPARSE` + uint16 offsets, or
    :data:`DENSE` + bitmap."""
    if len(offsets) <= SPARSE_MAX:
        return SPARSE + array("H", offsets).tobytes()
    return DENSE + to_bitmap(offsets)


def decode(data: bytes) -> Part:
    if data[:1] == DENSE:
        return bytes(data[1:])
    offsets = array("H")
    offsets.frombytes(data[1:])
    return set(offsets)


def size(part: Part) -> int:
    return len(part) if isinstance(part, set) else int.from_bytes(part, "little").bit_count()


def members(part: Part, descending: bool = False) -> Iterator[int]:
    if isinstance(part, set):
        return iter(sorted(part, reverse=descending))
    return bits(part, descending)


def and_part(a: Part, b: Part) -> Part:
    if isinstance(a, set) and isinstance(b, set):
        return a & b
    if isinstance(b, set):
        a, b = b, a
    if isinstance(a, set):  # and a bitmap: test each member, or AND as bitmaps if many
        assert isinstance(b, bytes)
        if len(a) < _AS_BITMAP:
            return {o for o in a if b[o >> 3] >> (o & 7) & 1}
        a = to_bitmap(a)
    assert isinstance(b, bytes)
    both = int.from_bytes(a, "little") & int.from_bytes(b, "little")
    return both.to_bytes(BITMAP_BYTES, "little") if both else set()


def or_part(a: Part, b: Part) -> Part:
    if isinstance(a, set) and isinstance(b, set):
        return a | b
    left = a if isinstance(a, bytes) else to_bitmap(a)
    right = b if isinstance(b, bytes) else to_bitmap(b)
    return (int.from_bytes(left, "little") | int.from_bytes(right, "little")).to_bytes(
        BITMAP_BYTES, "little"
    )


def union(parts: list[Part]) -> Part:
    """OR of many sets of one block (each bitmap converted once)."""
    sets = [p for p in parts if isinstance(p, set)]
    maps = [p for p in parts if isinstance(p, bytes)]
    joined = set().union(*sets)
    if not maps:
        return joined
    bits = 0
    for bitmap in maps:
        bits |= int.from_bytes(bitmap, "little")
    if joined:
        bits |= int.from_bytes(to_bitmap(joined), "little")
    return bits.to_bytes(BITMAP_BYTES, "little")


def merge(old: bytes | None, adds: list[int], removes: list[int]) -> tuple[int, bytes | None]:
    """Apply membership changes to a stored block: (new size, new data or None if empty)."""
    if old is None or old[:1] == SPARSE:
        current: set[int] = set()
        if old is not None:
            existing = array("H")
            existing.frombytes(old[1:])
            current.update(existing)
        current.difference_update(removes)
        current.update(adds)
        if not current:
            return 0, None
        return len(current), encode(sorted(current))
    bitmap = bytearray(old[1:])
    for o in removes:
        bitmap[o >> 3] &= ~(1 << (o & 7)) & 0xFF
    for o in adds:
        bitmap[o >> 3] |= 1 << (o & 7)
    n = int.from_bytes(bitmap, "little").bit_count()
    if n == 0:
        return 0, None
    if n <= SPARSE_MAX // 2:
        return n, SPARSE + array("H", list(bits(bytes(bitmap)))).tobytes()
    return n, DENSE + bytes(bitmap)


#: a stored set as read: sparse offsets (sorted) or a bitmap
Raw: TypeAlias = "array[int] | bytes"


def read_raw(data: bytes) -> Raw:
    if data[:1] == DENSE:
        return data[1:]
    offsets = array("H")
    offsets.frombytes(data[1:])
    return offsets


def to_part(raw: Raw) -> Part:
    return raw if isinstance(raw, bytes) else set(raw)


def raw_size(rows: dict[int, Raw]) -> int:
    return sum(len(r) if isinstance(r, array) else SPARSE_MAX for r in rows.values())
