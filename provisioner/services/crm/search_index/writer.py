"""Writing the index: diffs of contact writes, bulk-built blocks, the flush hook.

ORM writes of contacts (create, update, delete, company renames, remaps, bulk
operations built on them) are diffed in a flush hook (:data:`FLUSH_HOOK`,
installed by the record-write path); bulk inserts (CSV import, seed data, the
rebuild of ``provisioner init``) call :class:`Builder` with the new rows
(:func:`insert_contacts` inserts and indexes them: ids reserved up front, rows
loaded by :func:`provisioner.db.bulk.insert_rows`, each distinct field value's
keys computed once per index block, in C when the extension is built, with
:func:`postings` and :func:`block_rows` as its reference). Writers of one
tenant's index are serialised on PostgreSQL by a transaction-scoped advisory lock
(SQLite transactions are already serial).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import compress, filterfalse, groupby, islice, repeat
from operator import add, and_, itemgetter, ne, rshift
from typing import Any, TypeAlias

from sqlalchemy import Connection, Table, text
from sqlalchemy.orm import Session, UOWTransaction, attributes

from provisioner.db.bulk import insert_rows
from provisioner.db.crm_models import CrmContact, CrmSearchGram
from provisioner.services.crm.search_index import codec, gram_keys, pending
from provisioner.services.crm.search_index.codec import (
    BLOCK,
    BLOCK_BITS,
    DENSE,
    MASK,
    SPARSE,
    consume,
    encode,
    encode_one,
    merge,
    to_bitmap,
)
from provisioner.services.crm.search_index.gram_keys import (
    GRAM,
    SEP,
    keys,
    part_keys,
    suffixes,
)

try:  # the C build of postings and block_rows (setup.py); without it, the Python code
    from provisioner.services.crm import _postings as _native
except ImportError:  # a source tree where the extension was not built
    _native = None  # type: ignore[assignment]

#: whether the C extension builds the index rows (False: the Python reference does;
#: the benchmarks say which they measured)
NATIVE: bool = _native is not None

_LOCK_KEY = 0x5E4C0000  # pg_advisory_xact_lock(_LOCK_KEY + tenant_id)
_IN_CHUNK = 500


@dataclass
class _Delta:
    adds: list[int] = field(default_factory=list)
    removes: list[int] = field(default_factory=list)


def lock_tenant_writes(conn: Connection, tenant_id: int) -> None:
    """Serialise the tenant's derived-data writers (index blocks, tallies) until the
    transaction ends (PostgreSQL: an advisory lock; SQLite: the write lock already does)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY + tenant_id})


def _existing(conn: Connection, tenant_id: int, block: int, names: list[str]) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for start in range(0, len(names), _IN_CHUNK):
        chunk = names[start : start + _IN_CHUNK]
        marks = ", ".join(f":g{i}" for i in range(len(chunk)))
        params: dict[str, Any] = {f"g{i}": g for i, g in enumerate(chunk)}
        params.update(t=tenant_id, b=block)
        # only generated :gN markers are formatted in
        sql = (
            "SELECT gram, data FROM crm_search_grams WHERE tenant_id = :t AND block = :b "  # noqa: S608
            f"AND gram IN ({marks})"
        )
        for gram, data in conn.execute(text(sql), params):
            found[gram] = bytes(data)
    return found


def _write_block(conn: Connection, tenant_id: int, block: int, deltas: dict[str, _Delta]) -> None:
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
            n, data = merge(before, delta.adds, delta.removes)
        key = {"t": tenant_id, "g": gram, "b": block}
        if data is None:
            if before is not None:
                deletes.append(key)
        elif before is None:
            inserts.append({**key, "n": n, "d": data})
        elif data != before:
            updates.append({**key, "n": n, "d": data})
    if deletes:
        conn.execute(
            text("DELETE FROM crm_search_grams WHERE tenant_id = :t AND gram = :g AND block = :b"),
            deletes,
        )
    if updates:
        conn.execute(
            text(
                "UPDATE crm_search_grams SET n = :n, data = :d WHERE tenant_id = :t "
                "AND gram = :g AND block = :b"
            ),
            updates,
        )
    if inserts:
        conn.execute(
            text(
                "INSERT INTO crm_search_grams (tenant_id, gram, block, n, data) "
                "VALUES (:t, :g, :b, :n, :d)"
            ),
            inserts,
        )


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
        before |= part_keys(j, old)
        after |= part_keys(j, new)
    removed, added = before - after, after - before
    return (
        tuple(k for k in removed if len(k) > GRAM),
        tuple(k for k in added if len(k) > GRAM),
        tuple(k for k in removed if len(k) <= GRAM),
        tuple(k for k in added if len(k) <= GRAM),
    )


def changed_keys(
    old: str, new: str, known: dict[_Changed, _FieldDiff]
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
    olds, news = old.split(SEP), new.split(SEP)
    if len(olds) != len(news):
        return None
    changed = tuple(
        [(j, olds[j], news[j]) for j in compress(range(len(olds)), map(ne, olds, news))]
    )
    diff = known.get(changed)
    if diff is None:
        diff = known[changed] = _field_diff(changed)
    return (
        changed,
        tuple(filterfalse(new.__contains__, diff[2])),
        tuple(filterfalse(old.__contains__, diff[3])),
    )


def apply(
    conn: Connection, tenant_id: int, changes: Iterable[tuple[int, str | None, str | None]]
) -> None:
    """Index changes of contacts: (id, old search text or None, new search text or None).

    An update that keeps the number of fields is diffed field by field
    (:func:`changed_keys`); contacts with the same change (a remap: one old and one
    new value) share one computation and have their offsets added to its keys
    together. Otherwise all keys of the old and new texts are compared. The result
    is the same either way: exactly the keys of the new texts.

    A small write (:func:`.pending.loggable`: a create, an update or a delete of a
    few contacts) is appended to the tenant's pending log instead, one row per
    contact, and the log folded into the sets when it grows past
    :data:`.pending.FOLD_AT` rows; a larger one folds the log first, then writes the
    sets.
    """
    changes = [change for change in changes if change[1] != change[2]]
    if not changes:
        return
    if pending.loggable(changes):
        _log(conn, tenant_id, changes)
        return
    fold(conn, tenant_id)  # the sets are written directly: the log's rows first
    by_block: dict[int, dict[str, _Delta]] = defaultdict(lambda: defaultdict(_Delta))
    known: dict[_Changed, _FieldDiff] = {}
    #: (block, changed fields, plain grams removed, added) -> offsets
    grouped: defaultdict[tuple[int, _Changed, tuple[str, ...], tuple[str, ...]], list[int]] = (
        defaultdict(list)
    )
    for contact_id, old, new in changes:
        block, offset = contact_id >> BLOCK_BITS, contact_id & MASK
        if old and new:
            found = changed_keys(old, new, known)
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


def _log(
    conn: Connection, tenant_id: int, changes: list[tuple[int, str | None, str | None]]
) -> None:
    """Append a small write's key changes to the pending log; fold it when it is full."""
    rows: list[tuple[int, set[str], set[str]]] = []
    for contact_id, old, new in changes:
        before = keys(old) if old else set()
        after = keys(new) if new else set()
        if before != after:
            rows.append((contact_id, before - after, after - before))
    if not rows:
        return
    lock_tenant_writes(conn, tenant_id)
    if pending.append(conn, tenant_id, rows) > pending.FOLD_AT:
        fold(conn, tenant_id)


def fold(conn: Connection, tenant_id: int) -> int:
    """Write the tenant's pending log into the sets and empty it (taking the tenant's
    index lock); the number of logged rows folded.

    Each (key, contact) ends as the log's last row naming it says: added or removed.
    """
    lock_tenant_writes(conn, tenant_id)
    log = pending.take(conn, tenant_id)
    if not log:
        return 0
    last: dict[str, dict[int, bool]] = defaultdict(dict)
    for contact_id, removed, added in log.rows():
        for key in removed:
            last[key][contact_id] = False
        for key in added:
            last[key][contact_id] = True
    by_block: dict[int, dict[str, _Delta]] = defaultdict(lambda: defaultdict(_Delta))
    for key, states in last.items():
        for contact_id, present in states.items():
            delta = by_block[contact_id >> BLOCK_BITS][key]
            (delta.adds if present else delta.removes).append(contact_id & MASK)
    for block in sorted(by_block):
        _write_block(conn, tenant_id, block, by_block[block])
    return len(log)


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
        fold(conn, tenant_id)  # (the lock taken) the sets are written directly from here

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
        ``text_postings``; the input of :func:`postings`.
        """
        fields: list[dict[str, list[int]]] = []
        for offset, search_text in zip(offsets, texts, strict=True):
            parts = search_text.split(SEP)
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
            rows = (
                _native.text_rows(offsets, texts, gram_keys.POSITIONS, codec.SPARSE_MAX)
                if _native is not None
                else block_rows(postings(self._grouped(offsets, texts)))
            )
            _insert_block(self.conn, self.tenant_id, self._block, rows)
        else:
            found = (
                _native.text_postings(offsets, texts, gram_keys.POSITIONS)
                if _native is not None
                else postings(self._grouped(offsets, texts))
            )
            _write_block(
                self.conn,
                self.tenant_id,
                self._block,
                {g: _Delta(adds=offs) for g, offs in found.items()},
            )
        self._offsets = []
        self._texts = []

    def finish(self) -> int:
        self._flush()
        self._block = None
        return self.indexed


def postings(fields: list[dict[str, list[int]]]) -> dict[str, list[int]]:
    """Key -> offsets (unsorted, maybe repeated) from field values -> offsets.

    The same keys as :func:`part_keys`, but a positioned trigram is collected
    under (field, offset) -> trigram and its key string made once at the end;
    the per-member work is C-level ``map`` loops appending to lists.

    The reference for ``_postings.postings`` (the C extension, used when built),
    which gives the same keys with sorted distinct offsets.
    """
    plain: defaultdict[str, list[int]] = defaultdict(list)
    get = plain.__getitem__
    at = defaultdict.__getitem__
    out: dict[str, list[int]] = {}
    positions = gram_keys.POSITIONS
    for j, values in enumerate(fields):
        near: list[defaultdict[str, list[int]]] = [defaultdict(list) for _ in range(positions)]
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
                consume(map(list.append, map(get, found), repeat(offset)))
                consume(map(list.append, map(at, near, triples), repeat(offset)))
                if len(triples) > positions:
                    consume(
                        map(
                            list.append,
                            map(far.__getitem__, set(triples[positions:])),
                            repeat(offset),
                        )
                    )
            else:
                consume(map(list.extend, map(get, found), repeat(offsets)))
                consume(map(list.extend, map(at, near, triples), repeat(offsets)))
                if len(triples) > positions:
                    consume(
                        map(
                            list.extend,
                            map(far.__getitem__, set(triples[positions:])),
                            repeat(offsets),
                        )
                    )
        near_suffixes, far_suffix = suffixes(j)
        for suffix, by_triple in zip(near_suffixes, near, strict=True):
            for triple, offsets in by_triple.items():
                out[triple + suffix] = offsets
        for triple, offsets in far.items():
            out[triple + far_suffix] = offsets
    out.update(plain)
    return out


def _block_is_new(conn: Connection, tenant_id: int, block: int, adding: int) -> bool:
    """Whether the tenant's contacts in ``block`` are exactly the ``adding`` new ones."""
    lo = block << BLOCK_BITS
    present = conn.scalar(
        text("SELECT count(*) FROM crm_contacts WHERE id >= :lo AND id < :hi AND tenant_id = :t"),
        {"lo": lo, "hi": lo + BLOCK, "t": tenant_id},
    )
    return int(present or 0) == adding


def block_rows(postings: dict[str, list[int]]) -> list[tuple[str, int, bytes]]:
    """A new block's rows (gram, n, data) sorted by gram, from :func:`postings`.

    The reference for ``_postings.rows`` (the C extension, used when built), which
    gives the same rows straight from the field values.
    """
    rows: list[tuple[str, int, bytes]] = []
    for gram, offsets in postings.items():
        if len(offsets) == 1:  # encode(offsets), shorter
            rows.append((gram, 1, encode_one(SPARSE, offsets[0])))
            continue
        if len(offsets) > codec.SPARSE_MAX:  # likely dense: no need to sort or de-duplicate
            bitmap = to_bitmap(offsets)
            n = int.from_bytes(bitmap, "little").bit_count()
            if n > codec.SPARSE_MAX:
                rows.append((gram, n, DENSE + bitmap))
                continue
        offsets = sorted(set(offsets))
        rows.append((gram, len(offsets), encode(offsets)))
    rows.sort()
    return rows


def _insert_block(
    conn: Connection, tenant_id: int, block: int, rows: list[tuple[str, int, bytes]]
) -> None:
    """Write a block that has no rows yet: its (gram, n, data) rows in one go."""
    grams = CrmSearchGram.__table__
    assert isinstance(grams, Table)
    insert_rows(
        conn,
        grams,
        ["tenant_id", "gram", "block", "n", "data"],
        [(tenant_id, gram, block, n, data) for gram, n, data in rows],
    )


def reserve_ids(conn: Connection, count: int) -> list[int]:
    """``count`` new contact ids, ascending (SQLite: the write lock is held; PG: the sequence)."""
    if count <= 0:
        return []
    if conn.dialect.name == "postgresql":  # one array, not a row per id
        return list(
            conn.scalar(
                text(
                    "SELECT array_agg(i ORDER BY i) FROM (SELECT "
                    "nextval(pg_get_serial_sequence('crm_contacts', 'id')) AS i "
                    "FROM generate_series(1, :n)) AS reserved"
                ),
                {"n": count},
            )
        )
    top = int(conn.scalar(text("SELECT coalesce(max(id), 0) FROM crm_contacts")) or 0)
    return list(range(top + 1, top + 1 + count))


def insert_contacts(
    conn: Connection, tenant_id: int, rows: list[dict[str, Any]], builder: Builder | None = None
) -> list[int]:
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
    insert_rows(
        conn, table, ["id", *names], list(map(add, zip(ids), map(values, rows)))
    )  # (id, *values(row))
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
