"""The n-gram posting index behind customer partial-match search (``crm_search_grams``).

Partial match is ``search_text LIKE '%term%'`` over every contact of a tenant;
at a million contacts a scan is far too slow, and trigram indexes do not serve
the 1- and 2-character queries Japanese users type (``田``, ``田中``). So every
1-, 2- and 3-character substring (*gram*) of each part of a contact's search
text is indexed:

* a row of ``crm_search_grams`` is (tenant, gram, block) -> the set of contact
  ids ``id`` with ``id >> 16 == block`` whose text contains the gram, and ``n``,
  the size of that set. A set is stored sparse (``S`` + sorted uint16 offsets)
  up to :data:`SPARSE_MAX` members, else dense (``D`` + an 8,192-byte bitmap).
* a term of 1..3 characters IS a gram: its match set is exact without reading
  any contact, its total is ``sum(n)`` over a handful of blocks, and its first
  page needs only the first block(s).
* each trigram is also indexed at its place: key ``trigram + "\x1f" + "j.o"``
  (it starts at offset ``o`` of the contact's ``j``-th field; offsets from
  :data:`POSITIONS` on share ``j.*``).
* a longer term: the AND of its trigrams' sets is a superset (the trigrams may
  occur apart), estimated first on one block. Up to :data:`VERIFY_MAX`
  candidates (per database: reading a contact costs more on PostgreSQL) are
  verified with ``LIKE``; a larger set is rebuilt from positioned trigrams
  instead: the term is at ``j.o`` exactly when its ``i``-th trigram is at
  ``j.(o + i)`` for every ``i``, so AND-ing those chains is exact without
  reading a contact (chains through ``j.*`` only give candidates, verified with
  ``LIKE``). Either way results are identical to the scan.
* sets are combined in memory: sparse sets as Python sets, dense bitmaps as big
  integers (AND / OR / count are single C-level operations), and a page is
  walked over the non-zero bytes of a bitmap.

Grams never span the ``\\x1f`` separators between a contact's fields, and a
query term (:func:`provisioner.services.crm.text.search_key`) never contains
one, so "contains the term" is the same question on both sides.

Maintenance: ORM writes of contacts (create, update, delete, company renames,
remaps, bulk operations built on them) are diffed in a flush hook
(:func:`_after_flush`); bulk inserts (CSV import, seed data, the migration)
call :class:`Builder` with the new rows (:func:`insert_contacts` inserts and
indexes them: ids reserved up front, rows loaded with ``COPY`` or one
driver-level ``executemany``, each distinct field value's keys computed once
per index block). Writers of one tenant's index are
serialised on PostgreSQL by a transaction-scoped advisory lock (SQLite
transactions are already serial).

    total, ids = page(conn, tenant_id, ["田中"], "all", 0, 50)
"""

from __future__ import annotations

import json
import re
import struct
from array import array
from bisect import bisect_left
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import compress, filterfalse, groupby, islice, repeat
from operator import add, and_, itemgetter, ne, rshift
from typing import Any, TypeAlias

from sqlalchemy import Connection, LargeBinary, Table, bindparam, text
from sqlalchemy.orm import Session, UOWTransaction, attributes

from provisioner.db.crm_models import CrmContact, CrmSearchGram

try:  # the C build of _postings and _block_rows (setup.py); without it, the Python code
    from provisioner.services.crm import _postings as _native
except ImportError:  # a source tree where the extension was not built
    _native = None  # type: ignore[assignment]
#: whether the native extension is in use (the benchmarks report it with every figure)
NATIVE = _native is not None

BLOCK_BITS = 16
BLOCK = 1 << BLOCK_BITS
MASK = BLOCK - 1
GRAM = 3
#: above this many members a block's set is stored dense
SPARSE_MAX = 2048
_SEP = "\x1f"
_POS = "\x1f"  # trigram + _POS + "field.offset": never a plain gram (those are <= 3 chars)
#: trigrams are also indexed at their exact field offset below this
POSITIONS = 64
#: candidate sets up to this size are verified with LIKE (about 4 us each on SQLite,
#: 8-10 us on PostgreSQL); larger ones are matched by positions (a few ms whatever the
#: number of matches)
VERIFY_MAX = {"sqlite": 1500, "postgresql": 600}
#: ANDing trigram sets stops once this few candidates are left (verifying them is cheaper
#: than reading another trigram)
VERIFY_EARLY = 64
_LOCK_KEY = 0x5E4C0000  # pg_advisory_xact_lock(_LOCK_KEY + tenant_id)
_IN_CHUNK = 500
_VERIFY_CHUNK = 20000


# ---------------------------------------------------------------- grams and sets

def grams(search_text: str) -> set[str]:
    """Every 1-, 2- and 3-character substring of each field of a search text."""
    out: set[str] = set()
    for part in search_text.split(_SEP):
        out.update(part)
        if len(part) > 1:
            pairs = list(map(add, part, part[1:]))
            out.update(pairs)
            out.update(map(add, pairs, part[2:]))
    return out



def keys(search_text: str) -> set[str]:
    """What a contact is indexed under: its grams plus its positioned trigrams.

    A positioned trigram is ``trigram + "\x1f" + "j.o"``: the trigram starts at
    offset ``o`` of the ``j``-th field. Offsets from :data:`POSITIONS` on share
    the key ``j.*``.
    """
    out: set[str] = set()
    for j, part in enumerate(search_text.split(_SEP)):
        out.update(_part_keys(j, part))
    return out


def _suffixes(j: int) -> tuple[list[str], str]:
    """The position suffixes of field ``j``: ``"\x1fj.0"`` .. and the far one ``"\x1fj.*"``."""
    found = _SUFFIXES.get((j, POSITIONS))
    if found is None:
        where = f"{_POS}{j}."
        found = ([where + str(o) for o in range(POSITIONS)], where + "*")
        _SUFFIXES[(j, POSITIONS)] = found
    return found


_SUFFIXES: dict[tuple[int, int], tuple[list[str], str]] = {}


def _part_keys(j: int, part: str) -> set[str]:
    out = set(part)
    if len(part) > 1:
        pairs = list(map(add, part, part[1:]))
        out.update(pairs)
        triples = list(map(add, pairs, part[2:]))
        out.update(triples)
        near, far = _suffixes(j)
        out.update(map(add, triples, near))  # stops at POSITIONS
        if len(triples) > POSITIONS:
            out.update(map(add, triples[POSITIONS:], repeat(far)))
    return out


def term_grams(term: str) -> list[str]:
    """The grams a term is looked up by: itself if short, else its trigrams."""
    if len(term) <= GRAM:
        return [term]
    return list(dict.fromkeys(term[i:i + GRAM] for i in range(len(term) - GRAM + 1)))


#: a block's set in memory: sparse offsets, or a dense 8,192-byte bitmap (bit o = offset o)
Part = set[int] | bytes
_BITMAP = BLOCK // 8
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


def _bitmap(offsets: Iterable[int]) -> bytes:
    """A bitmap of offsets (large sets: one byte per offset, then packed 8:1 by big-int ops)."""
    if not isinstance(offsets, list | set | tuple) or len(offsets) < 256:
        out = bytearray(_BITMAP)
        for o in offsets:
            out[o >> 3] |= 1 << (o & 7)
        return bytes(out)
    flags = bytearray(BLOCK)
    _consume(map(flags.__setitem__, offsets, repeat(1)))
    x = int.from_bytes(flags, "little")      # offset o is bit 8*o
    x = (x | x >> 7) & _M2                   # bits 16k, 16k+1 = offsets 2k, 2k+1
    x = (x | x >> 14) & _M4                  # bits 32k..32k+3 = offsets 4k..4k+3
    x = (x | x >> 28) & _M8                  # bits 64k..64k+7 = offsets 8k..8k+7
    return x.to_bytes(BLOCK, "little")[::8]


_ONE = struct.Struct("<cH").pack  # a sparse set of one offset


def _consume(iterator: Iterator[Any]) -> None:
    deque(iterator, 0)


def _bits(bitmap: bytes, descending: bool = False) -> Iterator[int]:
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
    """A block's set from its sorted offsets: ``S`` + uint16 offsets, or ``D`` + bitmap."""
    if len(offsets) <= SPARSE_MAX:
        return b"S" + array("H", offsets).tobytes()
    return b"D" + _bitmap(offsets)


def decode(data: bytes) -> Part:
    if data[:1] == b"D":
        return bytes(data[1:])
    offsets = array("H")
    offsets.frombytes(data[1:])
    return set(offsets)


def size(part: Part) -> int:
    return len(part) if isinstance(part, set) else int.from_bytes(part, "little").bit_count()


def members(part: Part, descending: bool = False) -> Iterator[int]:
    if isinstance(part, set):
        return iter(sorted(part, reverse=descending))
    return _bits(part, descending)


def _and_part(a: Part, b: Part) -> Part:
    if isinstance(a, set) and isinstance(b, set):
        return a & b
    if isinstance(b, set):
        a, b = b, a
    if isinstance(a, set):  # and a bitmap: test each member, or AND as bitmaps if many
        assert isinstance(b, bytes)
        if len(a) < _AS_BITMAP:
            return {o for o in a if b[o >> 3] >> (o & 7) & 1}
        a = _bitmap(a)
    assert isinstance(b, bytes)
    both = int.from_bytes(a, "little") & int.from_bytes(b, "little")
    return both.to_bytes(_BITMAP, "little") if both else set()


def _or_part(a: Part, b: Part) -> Part:
    if isinstance(a, set) and isinstance(b, set):
        return a | b
    left = a if isinstance(a, bytes) else _bitmap(a)
    right = b if isinstance(b, bytes) else _bitmap(b)
    return (int.from_bytes(left, "little") | int.from_bytes(right, "little")).to_bytes(
        _BITMAP, "little")


def _union(parts: list[Part]) -> Part:
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
        bits |= int.from_bytes(_bitmap(joined), "little")
    return bits.to_bytes(_BITMAP, "little")


def _merge(old: bytes | None, adds: list[int], removes: list[int]) -> tuple[int, bytes | None]:
    """Apply membership changes to a stored block: (new size, new data or None if empty)."""
    if old is None or old[:1] == b"S":
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
        return n, b"S" + array("H", list(_bits(bytes(bitmap)))).tobytes()
    return n, b"D" + bytes(bitmap)


# ---------------------------------------------------------------- writing

@dataclass
class _Delta:
    adds: list[int] = field(default_factory=list)
    removes: list[int] = field(default_factory=list)


def lock_tenant_writes(conn: Connection, tenant_id: int) -> None:
    """Serialise the tenant's derived-data writers (index blocks, tallies) until the
    transaction ends (PostgreSQL: an advisory lock; SQLite: the write lock already does)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY + tenant_id})


def _existing(conn: Connection, tenant_id: int, block: int,
              names: list[str]) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for start in range(0, len(names), _IN_CHUNK):
        chunk = names[start:start + _IN_CHUNK]
        marks = ", ".join(f":g{i}" for i in range(len(chunk)))
        params: dict[str, Any] = {f"g{i}": g for i, g in enumerate(chunk)}
        params.update(t=tenant_id, b=block)
        # only generated :gN markers are formatted in
        sql = ("SELECT gram, data FROM crm_search_grams WHERE tenant_id = :t AND block = :b "  # noqa: S608
               f"AND gram IN ({marks})")
        for gram, data in conn.execute(text(sql), params):
            found[gram] = bytes(data)
    return found


def _write_block(conn: Connection, tenant_id: int, block: int,
                 deltas: dict[str, _Delta]) -> None:
    old = _existing(conn, tenant_id, block, sorted(deltas))
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    deletes: list[dict[str, Any]] = []
    for gram, delta in deltas.items():
        before = old.get(gram)
        if before is None and not delta.removes:
            offsets = sorted(set(delta.adds))
            n, data = len(offsets), encode(offsets) if offsets else None
        else:
            n, data = _merge(before, delta.adds, delta.removes)
        key = {"t": tenant_id, "g": gram, "b": block}
        if data is None:
            if before is not None:
                deletes.append(key)
        elif before is None:
            inserts.append({**key, "n": n, "d": data})
        elif data != before:
            updates.append({**key, "n": n, "d": data})
    if deletes:
        conn.execute(text("DELETE FROM crm_search_grams WHERE tenant_id = :t AND gram = :g "
                          "AND block = :b"), deletes)
    if updates:
        conn.execute(text("UPDATE crm_search_grams SET n = :n, data = :d WHERE tenant_id = :t "
                          "AND gram = :g AND block = :b"), updates)
    if inserts:
        conn.execute(text("INSERT INTO crm_search_grams (tenant_id, gram, block, n, data) "
                          "VALUES (:t, :g, :b, :n, :d)"), inserts)


#: the fields a contact's text changes: ((field number, old value, new value), ...)
_Changed: TypeAlias = tuple[tuple[int, str, str], ...]


#: the key changes of some fields' values: (positioned keys removed, added; plain grams
#: that may be removed, may be added -- each only if the rest of the text lacks it)
_FieldDiff: TypeAlias = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]


def _field_diff(changed: _Changed) -> _FieldDiff:
    """What changing fields ``j`` from ``old`` to ``new`` ((j, old, new), ...) does to a
    contact's keys, apart from the plain grams its other fields hold."""
    before: set[str] = set()
    after: set[str] = set()
    for j, old, new in changed:
        before |= _part_keys(j, old)
        after |= _part_keys(j, new)
    removed, added = before - after, after - before
    return (tuple(k for k in removed if len(k) > GRAM), tuple(k for k in added if len(k) > GRAM),
            tuple(k for k in removed if len(k) <= GRAM),
            tuple(k for k in added if len(k) <= GRAM))


def _changed_keys(old: str, new: str, known: dict[_Changed, _FieldDiff]
                  ) -> tuple[_Changed, tuple[str, ...], tuple[str, ...]] | None:
    """How a contact's keys change from text ``old`` to ``new`` (same number of fields):
    (the changed fields -- their positioned keys are in ``known[changed]`` --, plain
    grams removed, plain grams added); None if the number of fields differs.

    Positioned trigrams belong to one field: only the changed fields' count. A plain
    gram of an old changed field is removed only if the new text holds it nowhere
    (grams never contain the separator, so ``gram in new`` is "in some field"), and
    one of a new changed field is added only if the old text lacked it. The diff of the
    changed fields' values is computed once per distinct change (``known``).
    """
    olds, news = old.split(_SEP), new.split(_SEP)
    if len(olds) != len(news):
        return None
    changed = tuple([(j, olds[j], news[j])
                     for j in compress(range(len(olds)), map(ne, olds, news))])
    diff = known.get(changed)
    if diff is None:
        diff = known[changed] = _field_diff(changed)
    return (changed, tuple(filterfalse(new.__contains__, diff[2])),
            tuple(filterfalse(old.__contains__, diff[3])))


def apply(conn: Connection, tenant_id: int,
          changes: Iterable[tuple[int, str | None, str | None]]) -> None:
    """Index changes of contacts: (id, old search text or None, new search text or None).

    An update that keeps the number of fields is diffed field by field
    (:func:`_changed_keys`); contacts with the same change (a remap: one old and one
    new value) share one computation and have their offsets added to its keys
    together. Otherwise all keys of the old and new texts are compared. The result
    is the same either way: exactly the keys of the new texts.
    """
    by_block: dict[int, dict[str, _Delta]] = defaultdict(lambda: defaultdict(_Delta))
    known: dict[_Changed, _FieldDiff] = {}
    #: (block, changed fields, plain grams removed, added) -> offsets
    grouped: defaultdict[tuple[int, _Changed, tuple[str, ...], tuple[str, ...]],
                         list[int]] = defaultdict(list)
    for contact_id, old, new in changes:
        if old == new:
            continue
        block, offset = contact_id >> BLOCK_BITS, contact_id & MASK
        if old and new:
            found = _changed_keys(old, new, known)
            if found is not None:
                grouped[(block, *found)].append(offset)
                continue
        before = keys(old) if old else set()
        after = keys(new) if new else set()
        deltas = by_block[block]
        for gram in after - before:
            deltas[gram].adds.append(offset)
        for gram in before - after:
            deltas[gram].removes.append(offset)
    for (block, changed, plain_removed, plain_added), offsets in grouped.items():
        deltas = by_block[block]
        positioned_removed, positioned_added, _, _ = known[changed]
        for gram in (*positioned_added, *plain_added):
            deltas[gram].adds.extend(offsets)
        for gram in (*positioned_removed, *plain_removed):
            deltas[gram].removes.extend(offsets)
    if not any(by_block.values()):
        return
    lock_tenant_writes(conn, tenant_id)
    for block in sorted(by_block):
        if by_block[block]:
            _write_block(conn, tenant_id, block, by_block[block])


class Builder:
    """Index rows just inserted (CSV import, seed data, migration), in id order per block.

        builder = Builder(conn, tenant_id)
        for contact_id, text in rows: builder.add(contact_id, text)
        builder.finish()

    Work is grouped by field value: each distinct value of a field (a surname,
    a company, a memo choice) has its keys computed once and its contacts' ids
    appended to those keys' lists together. A block's contacts are collected as
    (offset, search text) and grouped when the block is written: by the C
    extension (``_postings.text_rows`` / ``text_postings``) when built, else by
    :meth:`_grouped`. A block whose only contacts of the tenant are the ones
    being added has no index rows yet: its rows are written without reading or
    merging (else they are merged like :func:`apply`).
    """

    def __init__(self, conn: Connection, tenant_id: int) -> None:
        self.conn = conn
        self.tenant_id = tenant_id
        self._block: int | None = None
        #: the current block's contacts, in the order added: offsets and search texts
        self._offsets: list[int] = []
        self._texts: list[str] = []
        self.indexed = 0
        lock_tenant_writes(conn, tenant_id)

    def add(self, contact_id: int, search_text: str) -> None:
        block = contact_id >> BLOCK_BITS
        if block != self._block:
            self._flush()
            self._block = block
        self._offsets.append(contact_id & MASK)
        self._texts.append(search_text)
        self.indexed += 1

    def add_many(self, ids: Iterable[int], texts: Iterable[str]) -> None:
        """:meth:`add` of each (id, search text), a run of ids of one block at a time.

        Raises ``ValueError`` (adding nothing) if ``ids`` and ``texts`` differ in length.
        """
        ids = list(ids)
        texts = list(texts)
        if len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids but {len(texts)} search texts")
        start = 0
        for block, run in groupby(map(rshift, ids, repeat(BLOCK_BITS))):
            end = start + len(list(run))
            if block != self._block:
                self._flush()
                self._block = block
            self._offsets.extend(map(and_, islice(ids, start, end), repeat(MASK)))
            self._texts.extend(islice(texts, start, end))
            self.indexed += end - start
            start = end

    @staticmethod
    def _grouped(offsets: list[int], texts: list[str]) -> list[dict[str, list[int]]]:
        """Per field number: field value -> the offsets having it (in the order given).

        The reference for the grouping done by ``_postings.text_rows`` and
        ``text_postings``; the input of :func:`_postings`.
        """
        fields: list[dict[str, list[int]]] = []
        for offset, search_text in zip(offsets, texts, strict=True):
            parts = search_text.split(_SEP)
            while len(fields) < len(parts):
                fields.append({})
            for values, part in zip(fields, parts, strict=False):
                found = values.get(part)
                if found is None:
                    values[part] = [offset]
                else:
                    found.append(offset)
        return fields

    def _flush(self) -> None:
        if self._block is None or not self._offsets:
            return
        offsets, texts = self._offsets, self._texts
        if _block_is_new(self.conn, self.tenant_id, self._block, len(offsets)):
            rows = (_native.text_rows(offsets, texts, POSITIONS, SPARSE_MAX)
                    if _native is not None
                    else _block_rows(_postings(self._grouped(offsets, texts))))
            _insert_block(self.conn, self.tenant_id, self._block, rows)
        else:
            postings = (_native.text_postings(offsets, texts, POSITIONS) if _native is not None
                        else _postings(self._grouped(offsets, texts)))
            _write_block(self.conn, self.tenant_id, self._block,
                         {g: _Delta(adds=offs) for g, offs in postings.items()})
        self._offsets = []
        self._texts = []

    def finish(self) -> int:
        self._flush()
        self._block = None
        return self.indexed


def _postings(fields: list[dict[str, list[int]]]) -> dict[str, list[int]]:
    """Key -> offsets (unsorted, maybe repeated) from field values -> offsets.

    The same keys as :func:`_part_keys`, but a positioned trigram is collected
    under (field, offset) -> trigram and its key string made once at the end;
    the per-member work is C-level ``map`` loops appending to lists.

    The reference for ``_postings.postings`` (the C extension, used when built),
    which gives the same keys with sorted distinct offsets.
    """
    plain: defaultdict[str, list[int]] = defaultdict(list)
    get = plain.__getitem__
    at = defaultdict.__getitem__
    out: dict[str, list[int]] = {}
    for j, values in enumerate(fields):
        near: list[defaultdict[str, list[int]]] = [defaultdict(list) for _ in range(POSITIONS)]
        far: defaultdict[str, list[int]] = defaultdict(list)
        for part, offsets in values.items():
            found = set(part)
            triples: list[str] = []
            if len(part) > 1:
                pairs = list(map(add, part, part[1:]))
                found.update(pairs)
                triples = list(map(add, pairs, part[2:]))
                found.update(triples)
            if len(offsets) == 1:
                offset = offsets[0]
                _consume(map(list.append, map(get, found), repeat(offset)))
                _consume(map(list.append, map(at, near, triples), repeat(offset)))
                if len(triples) > POSITIONS:
                    _consume(map(list.append, map(far.__getitem__, set(triples[POSITIONS:])),
                                  repeat(offset)))
            else:
                _consume(map(list.extend, map(get, found), repeat(offsets)))
                _consume(map(list.extend, map(at, near, triples), repeat(offsets)))
                if len(triples) > POSITIONS:
                    _consume(map(list.extend, map(far.__getitem__, set(triples[POSITIONS:])),
                                  repeat(offsets)))
        suffixes, far_suffix = _suffixes(j)
        for suffix, by_triple in zip(suffixes, near, strict=True):
            for triple, offsets in by_triple.items():
                out[triple + suffix] = offsets
        for triple, offsets in far.items():
            out[triple + far_suffix] = offsets
    out.update(plain)
    return out


def _block_is_new(conn: Connection, tenant_id: int, block: int, adding: int) -> bool:
    """Whether the tenant's contacts in ``block`` are exactly the ``adding`` new ones."""
    lo = block << BLOCK_BITS
    present = conn.scalar(text(
        "SELECT count(*) FROM crm_contacts WHERE id >= :lo AND id < :hi AND tenant_id = :t"),
        {"lo": lo, "hi": lo + BLOCK, "t": tenant_id})
    return int(present or 0) == adding


def _block_rows(postings: dict[str, list[int]]) -> list[tuple[str, int, bytes]]:
    """A new block's rows (gram, n, data) sorted by gram, from :func:`_postings`.

    The reference for ``_postings.rows`` (the C extension, used when built), which
    gives the same rows straight from the field values.
    """
    rows: list[tuple[str, int, bytes]] = []
    for gram, offsets in postings.items():
        if len(offsets) == 1:  # encode(offsets), shorter
            rows.append((gram, 1, _ONE(b"S", offsets[0])))
            continue
        if len(offsets) > SPARSE_MAX:  # likely dense: no need to sort or de-duplicate
            bitmap = _bitmap(offsets)
            n = int.from_bytes(bitmap, "little").bit_count()
            if n > SPARSE_MAX:
                rows.append((gram, n, b"D" + bitmap))
                continue
        offsets = sorted(set(offsets))
        rows.append((gram, len(offsets), encode(offsets)))
    rows.sort()
    return rows


def _insert_block(conn: Connection, tenant_id: int, block: int,
                  rows: list[tuple[str, int, bytes]]) -> None:
    """Write a block that has no rows yet: its (gram, n, data) rows in one go."""
    grams = CrmSearchGram.__table__
    assert isinstance(grams, Table)
    insert_rows(conn, grams, ["tenant_id", "gram", "block", "n", "data"],
                [(tenant_id, gram, block, n, data) for gram, n, data in rows])


def reserve_ids(conn: Connection, count: int) -> list[int]:
    """``count`` new contact ids, ascending (SQLite: the write lock is held; PG: the sequence)."""
    if count <= 0:
        return []
    if conn.dialect.name == "postgresql":
        return sorted(conn.scalars(text(
            "SELECT nextval(pg_get_serial_sequence('crm_contacts', 'id')) "
            "FROM generate_series(1, :n)"), {"n": count}))
    top = int(conn.scalar(text("SELECT coalesce(max(id), 0) FROM crm_contacts")) or 0)
    return list(range(top + 1, top + 1 + count))


def _processors(conn: Connection, table: Table, columns: list[str]) -> list[Any]:
    """Each column's bind processor, or None where the driver takes the Python value as is
    (``bytes`` for a binary column: sqlite3 and psycopg bind it without a wrapper)."""
    dialect = conn.dialect
    native_bytes = dialect.driver in ("pysqlite", "psycopg")
    out: list[Any] = []
    for name in columns:
        kind = table.c[name].type
        if native_bytes and isinstance(kind, LargeBinary):
            out.append(None)
        else:
            out.append(kind.dialect_impl(dialect).bind_processor(dialect))
    return out


def _converted(conn: Connection, table: Table, columns: list[str],
               rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``rows`` with values converted by the column types, C-level per row: the converted
    columns are appended to each row and an ``itemgetter`` puts them in place (a column
    of one value, such as a timestamp, is converted once)."""
    convert = [(i, p) for i, p in enumerate(_processors(conn, table, columns)) if p is not None]
    if not convert:
        return rows
    tail: list[Iterable[Any]] = []
    for i, process in convert:
        column = list(map(itemgetter(i), rows))
        if column.count(column[0]) == len(column):
            tail.append(repeat(process(column[0]), len(column)))
        else:
            tail.append(map(process, column))
    width = len(columns)
    place = dict(zip((i for i, _ in convert), range(width, width + len(convert)), strict=True))
    pick = itemgetter(*(place.get(i, i) for i in range(width)))
    return list(map(pick, map(add, rows, zip(*tail, strict=True))))


def insert_rows(conn: Connection, table: Table, columns: list[str],
                rows: list[tuple[Any, ...]]) -> None:
    """Complete rows in one go, values converted by the column types.

    PostgreSQL: ``COPY`` where the session may load the table directly
    (:func:`_copy_mode`); where row-level security applies (the application role),
    ``COPY`` into a temporary staging table of this transaction, then one
    ``INSERT ... SELECT`` from it -- that statement is checked against the policies
    like any other INSERT (a row of another tenant is refused), and the staging table
    is dropped right after it (and at commit, ``ON COMMIT DROP``). Elsewhere (SQLite,
    :data:`USE_COPY` off, no TEMPORARY privilege) one driver-level ``executemany``.
    """
    if not rows:
        return
    rows = _converted(conn, table, columns, rows)
    names = ", ".join(columns)
    how = _copy_mode(conn, table.name)
    if how:
        driver = conn.connection.driver_connection
        assert driver is not None
        target = table.name
        if how == "staged":  # only schema names and a fixed prefix are formatted in
            target = f"_bulk_{table.name}"
            conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {target} ON COMMIT DROP AS "  # noqa: S608
                                 f"SELECT {names} FROM {table.name} WITH NO DATA")
            target = f"pg_temp.{target}"
        with driver.cursor() as cursor, cursor.copy(
                f"COPY {target} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        if how == "staged":
            conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) "  # noqa: S608
                                 f"SELECT {names} FROM {target}")
            conn.exec_driver_sql(f"DROP TABLE {target}")
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    conn.exec_driver_sql(
        f"INSERT INTO {table.name} ({names}) "  # noqa: S608  (schema names)
        f"VALUES ({', '.join([mark] * len(columns))})", rows)


#: PostgreSQL: bulk rows go in with COPY where the session may (False: always INSERT)
USE_COPY = True


def _copy_mode(conn: Connection, table: str) -> str:
    """How :func:`insert_rows` loads ``table`` with ``COPY``: ``"direct"``, ``"staged"``
    (row-level security applies to the session: through a temporary table), or ``""``
    (not at all: not PostgreSQL, :data:`USE_COPY` off, or no TEMPORARY privilege)."""
    if not USE_COPY or conn.dialect.name != "postgresql":
        return ""
    secured, temporary = conn.execute(text(
        "SELECT row_security_active(:t), "
        "has_database_privilege(current_database(), 'TEMPORARY')"), {"t": table}).one()
    if not secured:
        return "direct"
    return "staged" if temporary else ""


def insert_contacts(conn: Connection, tenant_id: int, rows: list[dict[str, Any]],
                    builder: Builder | None = None) -> list[int]:
    """Insert contact rows (complete column values) in one go (:func:`insert_rows`, ids
    from :func:`reserve_ids`); index them.

    Returns the new ids in row order. Pass one :class:`Builder` over successive
    batches (then call its ``finish``) so each index block is written once.
    """
    if not rows:
        return []
    table = CrmContact.__table__
    assert isinstance(table, Table)
    ids = reserve_ids(conn, len(rows))
    names = list(rows[0])
    values = itemgetter(*names)
    insert_rows(conn, table, ["id", *names],
                list(map(add, zip(ids), map(values, rows))))  # (id, *values(row))
    own = builder is None
    builder = builder or Builder(conn, tenant_id)
    builder.add_many(ids, map(itemgetter("search_text"), rows))
    if own:
        builder.finish()
    return ids


def index_new(conn: Connection, tenant_id: int, rows: Iterable[tuple[int, str]]) -> int:
    """Index contacts that are not indexed yet (sorted by id for the fewest block writes)."""
    builder = Builder(conn, tenant_id)
    for contact_id, search_text in sorted(rows):
        builder.add(contact_id, search_text)
    return builder.finish()


# ---------------------------------------------------------------- the flush hook

_PENDING = "crm_search_index_pending"


def _before_flush(session: Session, _context: UOWTransaction, _instances: Any) -> None:
    """Remember the indexed text of contacts about to be deleted (it must be loaded now)."""
    pending: list[tuple[int, int, str]] = session.info.setdefault(_PENDING, [])
    for obj in session.deleted:
        if isinstance(obj, CrmContact) and obj.id is not None:
            pending.append((obj.tenant_id, obj.id, obj.search_text or ""))


def _after_rollback(session: Session, _previous: Any) -> None:
    """A failed flush's remembered deletions must not be applied by a later one."""
    session.info.pop(_PENDING, None)


def _after_flush(session: Session, _context: UOWTransaction) -> None:
    """Diff the search text of the contacts this flush wrote and update the index."""
    changes: dict[int, list[tuple[int, str | None, str | None]]] = defaultdict(list)
    for tenant_id, contact_id, old in session.info.pop(_PENDING, []):
        changes[tenant_id].append((contact_id, old, None))
    for obj in session.new:
        if isinstance(obj, CrmContact):
            changes[obj.tenant_id].append((obj.id, None, obj.search_text or ""))
    for obj in session.dirty:
        if isinstance(obj, CrmContact) and obj not in session.deleted:
            history = attributes.get_history(obj, "search_text")
            if history.added or history.deleted:
                old = history.deleted[0] if history.deleted else ""
                new = history.added[0] if history.added else ""
                if old != new:
                    changes[obj.tenant_id].append((obj.id, old or "", new or ""))
    if changes:
        conn = session.connection()
        for tenant_id, items in changes.items():
            apply(conn, tenant_id, items)


#: this module's flush hook (event, listener): installed on the application's sessions
#: by the record-write path (:func:`provisioner.services.crm.records.install_maintenance`),
#: not on import
FLUSH_HOOK: tuple[tuple[str, Any], ...] = (
    ("before_flush", _before_flush),
    ("after_soft_rollback", _after_rollback),
    ("after_flush", _after_flush),
)


# ---------------------------------------------------------------- querying

#: an exact set of contact ids of one tenant: block -> members
Blocks = dict[int, Part]


def _gram_blocks(conn: Connection, tenant_id: int, gram: str) -> Blocks:
    return {block: decode(bytes(data)) for block, data in conn.execute(text(
        "SELECT block, data FROM crm_search_grams WHERE tenant_id = :t AND gram = :g"),
        {"t": tenant_id, "g": gram})}


def _and(a: Blocks, b: Blocks) -> Blocks:
    out: Blocks = {}
    for block in a.keys() & b.keys():
        both = _and_part(a[block], b[block])
        if both:
            out[block] = both
    return out


def _or(a: Blocks, b: Blocks) -> Blocks:
    out = dict(a)
    for block, part in b.items():
        mine = out.get(block)
        out[block] = part if mine is None else _or_part(mine, part)
    return out


def ids_of(blocks: Blocks) -> Iterator[int]:
    for block in sorted(blocks):
        base = block << BLOCK_BITS
        for offset in members(blocks[block]):
            yield base + offset


def count(blocks: Blocks) -> int:
    return sum(size(part) for part in blocks.values())


def _by_block(ids: Iterable[int]) -> Blocks:
    out: defaultdict[int, set[int]] = defaultdict(set)
    for contact_id in ids:
        out[contact_id >> BLOCK_BITS].add(contact_id & MASK)
    return dict(out)


def _verify(conn: Connection, tenant_id: int, term: str, candidates: Blocks) -> Blocks:
    """The candidates whose search text really contains ``term`` (one LIKE per candidate)."""
    ids = list(ids_of(candidates))
    pattern = "%" + term.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"
    found: list[int] = []
    for start in range(0, len(ids), _VERIFY_CHUNK):
        chunk = ids[start:start + _VERIFY_CHUNK]
        if conn.dialect.name == "postgresql":
            sql = "id = ANY(:ids)"
            value: Any = chunk
        else:
            sql = "id IN (SELECT value FROM json_each(:ids))"
            value = json.dumps(chunk)
        query = (f"SELECT id FROM crm_contacts WHERE {sql} AND +tenant_id = :t "  # noqa: S608
                 "AND search_text LIKE :p ESCAPE '/'")  # (sql is one of two constants)
        found.extend(i for (i,) in conn.execute(text(query),
                                                {"ids": value, "t": tenant_id, "p": pattern}))
    return _by_block(found)


def term_set(conn: Connection, tenant_id: int, term: str) -> Blocks:
    """The exact set of contacts whose search text contains ``term`` (a search key).

    A term longer than a trigram is answered one of two ways, whichever is
    cheaper for it:

    * few candidates (the AND of its trigrams' sets, estimated on the largest
      block of the rarest): the sets are ANDed smallest first -- only those
      that narrow that block's sample, stopping once at most
      :data:`VERIFY_EARLY` are left -- and the candidates are verified with
      ``LIKE`` (a few microseconds each);
    * many: matched exactly by positioned trigrams (:func:`_chains`), whose cost
      depends on the number of places the trigrams occur at, not on the
      number of matches.
    """
    names = term_grams(term)
    if len(term) <= GRAM:
        return _gram_blocks(conn, tenant_id, term)
    sizes: dict[str, int] = dict.fromkeys(names, 0)
    largest: dict[str, tuple[int, int]] = {}  # gram -> (n, block) of its largest block
    for gram, block, n in conn.execute(text(
            "SELECT gram, block, n FROM crm_search_grams WHERE tenant_id = :t "
            "AND gram IN :g").bindparams(bindparam("g", expanding=True)),
            {"t": tenant_id, "g": names}):
        sizes[gram] += n
        largest[gram] = max(largest.get(gram, (0, 0)), (n, block))
    if len(largest) < len(names):
        return {}
    order = sorted(names, key=sizes.__getitem__)
    plan = order
    if sizes[order[0]] > VERIFY_EARLY:
        share, block = largest[order[0]]
        left = _sample(conn, tenant_id, order, block)
        if left[-1] * sizes[order[0]] > VERIFY_MAX[conn.dialect.name] * share:
            return _chains(conn, tenant_id, term)
        # AND only as many trigrams as narrow the sample down (names: often just one)
        plan = order[:next(i + 1 for i, n in enumerate(left) if n <= left[-1] * 1.25 + 1)]
    result: Blocks = {}
    for gram in plan:
        if result and count(result) <= VERIFY_EARLY:
            break
        if not result:
            result = _gram_blocks(conn, tenant_id, gram)
        else:
            result = _and_rows(result, _gram_rows(conn, tenant_id, gram, list(result)))
        if not result:
            return {}
    return _verify(conn, tenant_id, term, result)


def _sample(conn: Connection, tenant_id: int, order: list[str], block: int) -> list[int]:
    """How many contacts of ``block`` have the first 1, 2, ... trigrams (one query)."""
    stored = {gram: _raw(bytes(data)) for gram, data in conn.execute(text(
        "SELECT gram, data FROM crm_search_grams WHERE tenant_id = :t AND block = :b "
        "AND gram IN :g").bindparams(bindparam("g", expanding=True)),
        {"t": tenant_id, "b": block, "g": order})}
    left: list[int] = []
    sample: Blocks = {}
    for gram in order:
        raw = stored.get(gram)
        if raw is None:
            sample = {}
        elif not left:
            sample = {block: _part(raw)}
        elif sample:
            sample = _and_rows(sample, {block: raw})
        left.append(count(sample))
    return left


#: a stored set as read: sparse offsets (sorted) or a bitmap
Raw: TypeAlias = "array[int] | bytes"


def _raw(data: bytes) -> Raw:
    if data[:1] == b"D":
        return data[1:]
    offsets = array("H")
    offsets.frombytes(data[1:])
    return offsets


def _part(raw: Raw) -> Part:
    return raw if isinstance(raw, bytes) else set(raw)


def _raw_size(rows: dict[int, Raw]) -> int:
    return sum(len(r) if isinstance(r, array) else SPARSE_MAX for r in rows.values())


def _gram_rows(conn: Connection, tenant_id: int, gram: str,
               blocks: list[int]) -> dict[int, Raw]:
    """A gram's stored sets in ``blocks``, undecoded."""
    return {block: _raw(bytes(data)) for block, data in conn.execute(text(
        "SELECT block, data FROM crm_search_grams WHERE tenant_id = :t AND gram = :g "
        "AND block IN :b").bindparams(bindparam("b", expanding=True)),
        {"t": tenant_id, "g": gram, "b": blocks})}


def _and_rows(a: Blocks, rows: dict[int, Raw]) -> Blocks:
    """``a`` AND stored sets, without building a set of a large sparse one."""
    out: Blocks = {}
    for block, part in a.items():
        other = rows.get(block)
        if other is None:
            continue
        both: Part
        if isinstance(other, bytes):
            both = _and_part(part, other)
        elif isinstance(part, bytes):
            both = {o for o in other if part[o >> 3] >> (o & 7) & 1}
        elif len(part) * 16 < len(other):  # few members: binary search the sorted offsets
            last = len(other)
            both = {o for o in part if (i := bisect_left(other, o)) < last and other[i] == o}
        else:
            both = part.intersection(other)
        if both:
            out[block] = both
    return out


def _chains(conn: Connection, tenant_id: int, term: str) -> Blocks:  # noqa: C901
    """Exact matches of a long term from positioned trigrams.

    The term is at offset ``o`` of field ``j`` exactly when its ``i``-th trigram
    is at ``j.(o + i)`` for every ``i``. The trigram with the fewest places
    anchors the chains; only the keys the chains need are read for the others.
    A chain through an offset past :data:`POSITIONS` (key ``j.*``) only gives
    candidates, verified with LIKE.
    """
    triples = [term[i:i + GRAM] for i in range(len(term) - GRAM + 1)]

    def bounds(triple: str) -> dict[str, Any]:
        return {"t": tenant_id, "lo": triple + _POS, "hi": triple + chr(ord(_POS) + 1)}

    distinct = list(dict.fromkeys(triples))
    # the number of places of each trigram, in one statement (generated :lN/:hN markers)
    counts = " UNION ALL ".join(
        f"SELECT {i} AS k, count(*) AS n FROM crm_search_grams "  # noqa: S608
        f"WHERE tenant_id = :t AND gram >= :l{i} AND gram < :h{i}"
        for i in range(len(distinct)))
    params: dict[str, Any] = {"t": tenant_id}
    for i, triple in enumerate(distinct):
        params[f"l{i}"], params[f"h{i}"] = triple + _POS, triple + chr(ord(_POS) + 1)
    spread = dict.fromkeys(distinct, 0)
    for k, n in conn.execute(text(counts), params):
        spread[distinct[k]] = int(n)
    anchor_at = min(range(len(triples)), key=lambda i: spread[triples[i]])
    anchor = triples[anchor_at]
    stored: dict[str, dict[int, Raw]] = defaultdict(dict)
    for gram, block, data in conn.execute(text(
            "SELECT gram, block, data FROM crm_search_grams WHERE tenant_id = :t "
            "AND gram >= :lo AND gram < :hi"), bounds(anchor)):
        stored[gram][block] = _raw(bytes(data))
    plans: list[tuple[str, list[str] | None]] = []  # anchor key -> keys of every link
    for anchor_key in list(stored):
        field_no, _, at = anchor_key[len(anchor) + 1:].partition(".")
        start = None if at == "*" else int(at) - anchor_at
        if start is not None and start < 0:
            continue
        if start is None or start + len(triples) - 1 >= POSITIONS:
            plans.append((anchor_key, None))  # not provable from positions: verify
        else:
            plans.append((anchor_key, [f"{t}{_POS}{field_no}.{start + i}"
                                       for i, t in enumerate(triples)]))
    wanted = sorted({key for _, keys in plans if keys for key in keys} - stored.keys())
    for begin in range(0, len(wanted), _IN_CHUNK):
        for gram, block, data in conn.execute(text(
                "SELECT gram, block, data FROM crm_search_grams WHERE tenant_id = :t "
                "AND gram IN :g").bindparams(bindparam("g", expanding=True)),
                {"t": tenant_id, "g": wanted[begin:begin + _IN_CHUNK]}):
            stored[gram][block] = _raw(bytes(data))
    found: defaultdict[int, list[Part]] = defaultdict(list)
    unsure: Blocks = {}
    for anchor_key, keys in plans:
        if keys is None:
            for block, part in ((b, _part(r)) for b, r in stored[anchor_key].items()):
                unsure[block] = _or_part(unsure[block], part) if block in unsure else part
            continue
        links = [stored.get(key) for key in keys]
        if not all(links):
            continue
        ordered = sorted((link for link in links if link), key=_raw_size)
        chain = {b: _part(r) for b, r in ordered[0].items()}
        for link in ordered[1:]:
            chain = _and_rows(chain, link)
            if not chain:
                break
        for block, part in chain.items():
            found[block].append(part)
    exact = {block: _union(parts) for block, parts in found.items()}
    if unsure:
        doubtful: Blocks = {}
        for block, part in unsure.items():
            known = exact.get(block)
            rest = {o for o in members(part)
                    if known is None or not _and_part({o}, known)}
            if rest:
                doubtful[block] = rest
        exact = _or(exact, _verify(conn, tenant_id, term, doubtful))
    return exact


def match_set(conn: Connection, tenant_id: int, terms: list[str], match: str) -> Blocks:
    """AND (``all``) or OR (``any``) of the terms' exact sets."""
    result: Blocks | None = None
    for term in sorted(terms, key=len, reverse=True):
        current = term_set(conn, tenant_id, term)
        if result is None:
            result = current
        elif match == "all":
            result = _and(result, current)
        else:
            result = _or(result, current)
        if match == "all" and not result:
            return {}
    return result or {}


def _walk(blocks: Blocks, offset: int, limit: int, descending: bool) -> list[int]:
    """``limit`` ids after skipping ``offset``, in id order (or reverse)."""
    out: list[int] = []
    for block in sorted(blocks, reverse=descending):
        if len(out) >= limit:
            break
        part = blocks[block]
        total = size(part)
        if offset >= total:
            offset -= total
            continue
        base = block << BLOCK_BITS
        out.extend(base + o for o in islice(members(part, descending), offset,
                                             offset + limit - len(out)))
        offset = 0
    return out


def page(conn: Connection, tenant_id: int, terms: list[str], match: str, offset: int,
         limit: int, *, descending: bool = False) -> tuple[int, list[int]]:
    """Exact total and one page of ids (in id order) of the contacts matching the terms.

    A single term of 1..3 characters is answered from the stored counts plus the
    blocks the page falls in; anything else builds the full match set.
    """
    if len(terms) == 1 and len(terms[0]) <= GRAM:
        sizes = list(conn.execute(text(
            "SELECT block, n FROM crm_search_grams WHERE tenant_id = :t AND gram = :g "
            "ORDER BY block"), {"t": tenant_id, "g": terms[0]}))
        total = sum(n for _, n in sizes)
        out: list[int] = []
        skip = offset
        for block, n in (reversed(sizes) if descending else sizes):
            if len(out) >= limit:
                break
            if skip >= n:
                skip -= n
                continue
            data = conn.scalar(text(
                "SELECT data FROM crm_search_grams WHERE tenant_id = :t AND gram = :g "
                "AND block = :b"), {"t": tenant_id, "g": terms[0], "b": block})
            assert data is not None
            out.extend(_walk({block: decode(bytes(data))}, skip, limit - len(out), descending))
            skip = 0
        return total, out
    blocks = match_set(conn, tenant_id, terms, match)
    return count(blocks), _walk(blocks, offset, limit, descending)


__all__ = [
    "Builder",
    "apply",
    "grams",
    "index_new",
    "insert_contacts",
    "insert_rows",
    "keys",
    "match_set",
    "page",
    "reserve_ids",
    "term_set",
]
