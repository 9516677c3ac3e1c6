"""The pending log: index changes of single writes, folded into the sets in batches.

A block's set is one row of ``crm_search_grams`` of up to 8 KiB; a contact has
about 200 keys, so writing a single contact's changes into the sets rewrites some
200 rows spread over the whole index -- on SQLite every page they live on goes to
the WAL, hundreds of KiB per create in a tenant of a few thousand contacts. A
small write (:data:`SMALL` contacts or fewer, see
:func:`~provisioner.services.crm.search_index.writer.apply`) appends instead one
row per contact to ``crm_search_pending`` (tenant, seq) -> (contact id, keys
removed, keys added): rows appended in key order, a page or two of WAL whatever
the tenant's size.

The log is folded into the sets (:func:`fold`) when it holds more than
:data:`FOLD_AT` rows, and before any bulk write of the sets (an import, a large
update, a rebuild), so the rows of the log are always later than the sets: the
index is the sets with the log applied in ``seq`` order (a contact's last change
of a key wins). Every reader of the sets applies it (:class:`Pending`, loaded
once per search; :mod:`.query`), so searches equal a scan whether or not the
log is empty. :data:`FOLD_AT` bounds what a search reads and checks: at most that
many rows of a few KiB, searched as strings (:class:`Pending`).

Keys are stored as ``"\\n" + "\\n".join(keys) + "\\n"``: a search text never holds
a line break (white space is removed from it, :func:`~provisioner.services.crm.
text.search_key`), so ``"\\n" + key + "\\n" in row`` is exact. Writes whose texts
hold one anyway go to the sets directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sqlalchemy import Connection, text

from provisioner.services.crm.search_index.codec import BLOCK_BITS, MASK

#: fold the log into the sets once it holds more than this many rows (contacts changed)
FOLD_AT = 32
#: a write of this many contacts or fewer is logged; a larger one goes to the sets
SMALL = 4
#: between the keys of a logged row (never in a search text, hence in no key)
NL = "\n"

#: block -> (offsets added, offsets removed): the net effect of the log on one key
Changes = dict[int, tuple[list[int], list[int]]]


def loggable(changes: list[tuple[int, str | None, str | None]]) -> bool:
    """Whether a write of these (id, old text, new text) goes to the log."""
    return len(changes) <= SMALL and not any(
        NL in (old or "") or NL in (new or "") for _, old, new in changes
    )


def _framed(keys: Iterable[str]) -> str:
    joined = NL.join(sorted(keys))
    return NL + joined + NL if joined else ""


def append(conn: Connection, tenant_id: int, rows: list[tuple[int, set[str], set[str]]]) -> int:
    """Log (contact id, keys removed, keys added) in order (the tenant's index lock held);
    the number of rows the log holds now."""
    if not rows:
        return 0
    top, held = conn.execute(
        text("SELECT coalesce(max(seq), 0), count(*) FROM crm_search_pending WHERE tenant_id = :t"),
        {"t": tenant_id},
    ).one()
    conn.execute(
        text(
            "INSERT INTO crm_search_pending (tenant_id, seq, contact_id, removed, added) "
            "VALUES (:t, :s, :c, :r, :a)"
        ),
        [
            {"t": tenant_id, "s": int(top) + i, "c": cid, "r": _framed(gone), "a": _framed(new)}
            for i, (cid, gone, new) in enumerate(rows, start=1)
        ],
    )
    return int(held) + len(rows)


class Pending:
    """A tenant's logged index changes as read at the start of a search.

    ``key in log``: whether the log names ``key`` (removed or added); ``changes(key)``
    its net effect on that key, per block; ``keys_with_prefix``: the keys it names that
    start so. All are substring searches of the rows as stored (C-level, no parsing):
    a search asks about a handful of keys, the log names thousands.
    """

    __slots__ = ("_changes", "_prefixed", "_rows", "_text")

    def __init__(self, rows: list[tuple[int, str, str]]) -> None:
        #: (contact id, removed, added) in the order written; keys framed by NL
        self._rows = rows
        #: every row's keys, each still framed by NL
        self._text = "".join(removed + added for _, removed, added in rows)
        self._changes: dict[str, Changes] = {}
        self._prefixed: dict[str, list[str]] = {}

    def __bool__(self) -> bool:
        return bool(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: str) -> bool:
        return bool(self._rows) and NL + key + NL in self._text

    def rows(self) -> Iterator[tuple[int, list[str], list[str]]]:
        """(contact id, keys removed, keys added), in the order written."""
        for contact_id, removed, added in self._rows:
            yield (
                contact_id,
                removed[1:-1].split(NL) if removed else [],
                added[1:-1].split(NL) if added else [],
            )

    def changes(self, key: str) -> Changes:
        """block -> (offsets the log adds to ``key``, offsets it removes), disjoint."""
        found = self._changes.get(key)
        if found is not None:
            return found
        found = {}
        if key in self:
            needle = NL + key + NL
            last: dict[int, bool] = {}
            for contact_id, removed, added in self._rows:
                if needle in added:
                    last[contact_id] = True
                elif needle in removed:
                    last[contact_id] = False
            for contact_id, present in last.items():
                adds, removes = found.setdefault(contact_id >> BLOCK_BITS, ([], []))
                (adds if present else removes).append(contact_id & MASK)
        self._changes[key] = found
        return found

    def keys_with_prefix(self, prefix: str) -> list[str]:
        """The keys the log names that start with ``prefix``, sorted."""
        found = self._prefixed.get(prefix)
        if found is not None:
            return found
        keys: set[str] = set()
        needle = NL + prefix
        at = self._text.find(needle)
        while at >= 0:
            end = self._text.index(NL, at + 1)
            keys.add(self._text[at + 1 : end])
            at = self._text.find(needle, end)
        found = self._prefixed[prefix] = sorted(keys)
        return found


EMPTY = Pending([])


def load(conn: Connection, tenant_id: int) -> Pending:
    """The tenant's log, in the order written (at most :data:`FOLD_AT` rows once committed:
    a write that passes it folds it)."""
    rows = conn.execute(
        text(
            "SELECT contact_id, removed, added FROM crm_search_pending WHERE tenant_id = :t "
            "ORDER BY seq"
        ),
        {"t": tenant_id},
    ).all()
    if not rows:
        return EMPTY
    return Pending([(int(c), r or "", a or "") for c, r, a in rows])


def take(conn: Connection, tenant_id: int) -> Pending:
    """The tenant's log, emptied (its changes are the caller's to write to the sets; the
    tenant's index lock held)."""
    found = load(conn, tenant_id)
    if found:
        conn.execute(text("DELETE FROM crm_search_pending WHERE tenant_id = :t"), {"t": tenant_id})
    return found
