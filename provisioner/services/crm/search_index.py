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
* a longer term first ANDs its trigrams' sets: a superset, as the trigrams may
  occur apart. Up to :data:`VERIFY_MAX` candidates are verified with ``LIKE``;
  a larger set is rebuilt from positioned trigrams instead: the term is at
  ``j.o`` exactly when its ``i``-th trigram is at ``j.(o + i)`` for every ``i``,
  so AND-ing those chains is exact without reading a contact (chains through
  ``j.*`` only give candidates, verified with ``LIKE``). Either way results are
  identical to the scan.
* sets are combined in memory: sparse sets as Python sets, dense bitmaps as big
  integers (AND / OR / count are single C-level operations), and a page is
  walked over the non-zero bytes of a bitmap.

Grams never span the ``\\x1f`` separators between a contact's fields, and a
query term (:func:`provisioner.services.crm.text.search_key`) never contains
one, so "contains the term" is the same question on both sides.

Maintenance: ORM writes of contacts (create, update, delete, company renames,
remaps, bulk operations built on them) are diffed in a flush hook
(:func:`_after_flush`); bulk inserts (CSV import, seed data, the migration)
call :class:`Builder` with the new rows. Writers of one tenant's index are
serialised on PostgreSQL by a transaction-scoped advisory lock (SQLite
transactions are already serial).

    total, ids = page(conn, tenant_id, ["田中"], "all", 0, 50)
"""

from __future__ import annotations

import json
import re
from array import array
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice, repeat
from operator import add
from typing import Any

from sqlalchemy import Connection, Table, bindparam, event, insert, text
from sqlalchemy.orm import Session, UOWTransaction, attributes

from provisioner.db.crm_models import CrmContact

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
#: candidate sets up to this size are verified with LIKE; larger ones by positions
VERIFY_MAX = 256
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


def _part_keys(j: int, part: str) -> set[str]:
    out = set(part)
    if len(part) > 1:
        pairs = list(map(add, part, part[1:]))
        out.update(pairs)
        triples = list(map(add, pairs, part[2:]))
        out.update(triples)
        where = f"{_POS}{j}."
        out.update(map(add, triples[:POSITIONS], (where + str(o) for o in range(POSITIONS))))
        if len(triples) > POSITIONS:
            far = where + "*"
            out.update(t + far for t in triples[POSITIONS:])
    return out


def term_grams(term: str) -> list[str]:
    """The grams a term is looked up by: itself if short, else its trigrams."""
    if len(term) <= GRAM:
        return [term]
    return list(dict.fromkeys(term[i:i + GRAM] for i in range(len(term) - GRAM + 1)))


#: a block's set in memory: sparse offsets, or a dense 8,192-byte bitmap (bit o = offset o)
Part = set[int] | bytes
_BITMAP = BLOCK // 8
_BITS = [tuple(i for i in range(8) if v >> i & 1) for v in range(256)]
_NONZERO = re.compile(b"[^\x00]")


def _bitmap(offsets: Iterable[int]) -> bytes:
    out = bytearray(_BITMAP)
    for o in offsets:
        out[o >> 3] |= 1 << (o & 7)
    return bytes(out)


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
    if isinstance(a, set):
        return a & b if isinstance(b, set) else {o for o in a if b[o >> 3] >> (o & 7) & 1}
    if isinstance(b, set):
        return {o for o in b if a[o >> 3] >> (o & 7) & 1}
    both = int.from_bytes(a, "little") & int.from_bytes(b, "little")
    return both.to_bytes(_BITMAP, "little") if both else set()


def _or_part(a: Part, b: Part) -> Part:
    if isinstance(a, set) and isinstance(b, set):
        return a | b
    left = a if isinstance(a, bytes) else _bitmap(a)
    right = b if isinstance(b, bytes) else _bitmap(b)
    return (int.from_bytes(left, "little") | int.from_bytes(right, "little")).to_bytes(
        _BITMAP, "little")


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


def _lock(conn: Connection, tenant_id: int) -> None:
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


def apply(conn: Connection, tenant_id: int,
          changes: Iterable[tuple[int, str | None, str | None]]) -> None:
    """Index changes of contacts: (id, old search text or None, new search text or None)."""
    by_block: dict[int, dict[str, _Delta]] = defaultdict(lambda: defaultdict(_Delta))
    for contact_id, old, new in changes:
        before = keys(old) if old else set()
        after = keys(new) if new else set()
        block, offset = contact_id >> BLOCK_BITS, contact_id & MASK
        deltas = by_block[block]
        for gram in after - before:
            deltas[gram].adds.append(offset)
        for gram in before - after:
            deltas[gram].removes.append(offset)
    if not any(by_block.values()):
        return
    _lock(conn, tenant_id)
    for block in sorted(by_block):
        if by_block[block]:
            _write_block(conn, tenant_id, block, by_block[block])


class Builder:
    """Index rows just inserted (CSV import, seed data, migration), in id order per block.

        builder = Builder(conn, tenant_id)
        for contact_id, text in rows: builder.add(contact_id, text)
        builder.finish()
    """

    def __init__(self, conn: Connection, tenant_id: int) -> None:
        self.conn = conn
        self.tenant_id = tenant_id
        self._block: int | None = None
        self._acc: defaultdict[str, list[int]] = defaultdict(list)
        self._parts: dict[tuple[int, str], set[str]] = {}
        self.indexed = 0
        _lock(conn, tenant_id)

    def add(self, contact_id: int, search_text: str) -> None:
        block = contact_id >> BLOCK_BITS
        if block != self._block:
            self._flush()
            self._block = block
        offset = contact_id & MASK
        getter = self._acc.__getitem__
        row: set[str] = set()
        cache = self._parts
        for j, part in enumerate(search_text.split(_SEP)):
            found = cache.get((j, part))
            if found is None:
                found = _part_keys(j, part)
                if len(cache) < 50_000:
                    cache[(j, part)] = found
            row |= found
        # C-level loop: append the offset to every gram's list
        for _ in map(list.append, map(getter, row), repeat(offset)):
            pass
        self.indexed += 1

    def _flush(self) -> None:
        if self._block is not None and self._acc:
            _write_block(self.conn, self.tenant_id, self._block,
                         {g: _Delta(adds=offs) for g, offs in self._acc.items()})
        self._acc = defaultdict(list)

    def finish(self) -> int:
        self._flush()
        self._block = None
        return self.indexed


def insert_contacts(conn: Connection, tenant_id: int, rows: list[dict[str, Any]],
                    builder: Builder | None = None) -> list[int]:
    """Insert contact rows (complete column values) in one executemany; index them.

    Returns the new ids in row order. Pass one :class:`Builder` over successive
    batches (then call its ``finish``) so each index block is written once.
    """
    if not rows:
        return []
    table = CrmContact.__table__
    assert isinstance(table, Table)
    ids = list(conn.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True),
                            rows).scalars())
    own = builder is None
    builder = builder or Builder(conn, tenant_id)
    for contact_id, row in zip(ids, rows, strict=True):
        builder.add(contact_id, row["search_text"])
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


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _context: UOWTransaction, _instances: Any) -> None:
    """Remember the indexed text of contacts about to be deleted (it must be loaded now)."""
    pending: list[tuple[int, int, str]] = session.info.setdefault(_PENDING, [])
    for obj in session.deleted:
        if isinstance(obj, CrmContact) and obj.id is not None:
            pending.append((obj.tenant_id, obj.id, obj.search_text or ""))


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, _previous: Any) -> None:
    """A failed flush's remembered deletions must not be applied by a later one."""
    session.info.pop(_PENDING, None)


@event.listens_for(Session, "after_flush")
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
    """The exact set of contacts whose search text contains ``term`` (a search key)."""
    names = term_grams(term)
    if len(term) > GRAM:
        sizes: dict[str, int] = {gram: int(total) for gram, total in conn.execute(text(
            "SELECT gram, sum(n) FROM crm_search_grams WHERE tenant_id = :t "
            "AND gram IN :g GROUP BY gram").bindparams(bindparam("g", expanding=True)),
            {"t": tenant_id, "g": names})}
        if len(sizes) < len(names):
            return {}
        if min(sizes.values()) > VERIFY_MAX:  # many candidates: chains, not LIKE
            return _chains(conn, tenant_id, term)
    sets = sorted((_gram_blocks(conn, tenant_id, g) for g in names), key=count)
    result = sets[0] if sets else {}
    for other in sets[1:]:
        if not result:
            break
        result = _and(result, other)
    if len(term) > GRAM and result:
        result = _verify(conn, tenant_id, term, result)
    return result


def _chains(conn: Connection, tenant_id: int, term: str) -> Blocks:
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

    spread = {triple: int(conn.scalar(text(
        "SELECT count(*) FROM crm_search_grams WHERE tenant_id = :t "
        "AND gram >= :lo AND gram < :hi"), bounds(triple)) or 0)
        for triple in dict.fromkeys(triples)}
    anchor_at = min(range(len(triples)), key=lambda i: spread[triples[i]])
    anchor = triples[anchor_at]
    anchored: dict[str, dict[int, bytes]] = defaultdict(dict)
    for gram, block, data in conn.execute(text(
            "SELECT gram, block, data FROM crm_search_grams WHERE tenant_id = :t "
            "AND gram >= :lo AND gram < :hi"), bounds(anchor)):
        anchored[gram[len(anchor) + 1:]][block] = bytes(data)
    plans: list[tuple[str, list[str] | None]] = []  # anchor place -> keys of every link
    for place in anchored:
        field_no, _, at = place.partition(".")
        start = None if at == "*" else int(at) - anchor_at
        if start is not None and start < 0:
            continue
        if start is None or start + len(triples) - 1 >= POSITIONS:
            plans.append((place, None))  # not provable from positions: verify
        else:
            plans.append((place, [f"{t}{_POS}{field_no}.{start + i}"
                                  for i, t in enumerate(triples)]))
    wanted = sorted({key for _, keys in plans if keys for key in keys})
    stored: dict[str, dict[int, bytes]] = defaultdict(dict)
    for begin in range(0, len(wanted), _IN_CHUNK):
        for gram, block, data in conn.execute(text(
                "SELECT gram, block, data FROM crm_search_grams WHERE tenant_id = :t "
                "AND gram IN :g").bindparams(bindparam("g", expanding=True)),
                {"t": tenant_id, "g": wanted[begin:begin + _IN_CHUNK]}):
            stored[gram][block] = bytes(data)
    exact: Blocks = {}
    unsure: Blocks = {}
    for place, keys in plans:
        first = anchored[place]
        if keys is None:
            chain: Blocks = {b: decode(d) for b, d in first.items()}
            target = unsure
        else:
            links = [stored.get(key, {}) for key in keys]
            links.sort(key=lambda link: sum(len(d) for d in link.values()))
            chain = {b: decode(d) for b, d in links[0].items()}
            for link in links[1:]:
                chain = {b: p for b, p in ((b, _and_part(p, decode(link[b])))
                                           for b, p in chain.items() if b in link) if p}
                if not chain:
                    break
            target = exact
        for block, part in chain.items():
            target[block] = _or_part(target[block], part) if block in target else part
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
    "keys",
    "match_set",
    "page",
    "term_set",
]
