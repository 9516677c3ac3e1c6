"""What each tenant's call records take on disk, maintained (``call_bytes``).

Disk usage charges every recorded call :data:`CALL_RECORD_BYTES` plus the UTF-8
bytes of its note (:mod:`provisioner.services.provisioning.quotas`). Summing that
over every call a tenant ever recorded, on every quota check (every metered call),
grew with the tenant's history; the two figures are kept instead, one row per
tenant, in the same transaction as every write of call records:

* ``calls``: the tenant's rows of ``call_records``;
* ``note_bytes``: the UTF-8 bytes of their ``contact_note`` (None: 0).

Maintenance: a flush hook (:data:`FLUSH_HOOK`, installed on the application's
sessions by :func:`install`) sees every ORM write of :class:`CallRecord` -- a call
recorded (in the screen pop's own transaction), a note added, a row deleted.
The old note of an updated or deleted row is read from the database before the
flush (locked on PostgreSQL until the transaction ends), so the difference is
exact even if the session's copy was stale. A write of call records with a Core
statement must count them itself: :func:`apply`, or :data:`UPSERT` with
:func:`new_call`'s parameters in the same pipeline (the screen pop on PostgreSQL).

:func:`recount` counts from ``call_records`` (what disk usage summed before:
the reference the tests compare against); :func:`rebuild` replaces the row with
it (``provisioner reindex``, migration ``0022_call_bytes``'s backfill is the same).

    call_usage.stored(conn, tenant_id)    # (calls, note_bytes) as maintained
    call_usage.recount(conn, tenant_id)   # the same, counted from call_records
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from typing import Any

from sqlalchemy import (
    Connection,
    LargeBinary,
    cast,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.orm import Session, UOWTransaction

from provisioner.db.provisioning_models import CallBytes, CallRecord

#: what one recorded call counts, its note aside
CALL_RECORD_BYTES = 256

Figures = tuple[int, int]  # (calls, note_bytes)


def note_bytes(note: str | None) -> int:
    """What a note counts: its UTF-8 bytes (what ``octet_length`` measures)."""
    return len(note.encode()) if note else 0


def used_bytes(calls: int, note_bytes: int) -> int:
    """The disk usage of a tenant's call records."""
    return calls * CALL_RECORD_BYTES + note_bytes


# ---------------------------------------------------------------- writing

#: add (``c`` calls, ``b`` note bytes) to tenant ``t``'s row (:func:`apply`, :func:`new_call`)
UPSERT = text(
    "INSERT INTO call_bytes (tenant_id, calls, note_bytes) VALUES (:t, :c, :b) "
    "ON CONFLICT (tenant_id) DO UPDATE SET calls = call_bytes.calls + excluded.calls, "
    "note_bytes = call_bytes.note_bytes + excluded.note_bytes"
)


def new_call(tenant_id: int, note: str | None) -> dict[str, int]:
    """The parameters of :data:`UPSERT` that count one new call with this note: for a
    writer that inserts the call with a Core statement and sends both in one pipeline
    (``metering``'s PostgreSQL write), as :func:`apply` would with the same change."""
    return {"t": tenant_id, "c": 1, "b": note_bytes(note)}


def apply(conn: Connection, deltas: dict[int, list[int]]) -> None:
    """Add ``tenant_id -> [calls, note_bytes]`` changes to the tenants' rows."""
    params = [{"t": t, "c": c, "b": b} for t, (c, b) in sorted(deltas.items()) if c or b]
    if params:
        conn.execute(UPSERT, params)


# ---------------------------------------------------------------- reading


def stored(conn: Connection, tenant_id: int) -> Figures:
    """(calls, note_bytes) as maintained (a tenant without a row: zeros)."""
    row = conn.execute(
        select(CallBytes.calls, CallBytes.note_bytes).where(CallBytes.tenant_id == tenant_id)
    ).first()
    return (int(row[0]), int(row[1])) if row is not None else (0, 0)


def _text_bytes(conn: Connection, column: Any) -> Any:
    if conn.dialect.name == "postgresql":
        return func.octet_length(column)
    return func.length(cast(column, LargeBinary))  # SQLite: length of a BLOB is in bytes


def recount(conn: Connection, tenant_id: int) -> Figures:
    """(calls, note_bytes) counted from ``call_records`` (a scan of the tenant's calls)."""
    calls, notes = conn.execute(
        select(
            func.count(CallRecord.id),
            func.coalesce(func.sum(_text_bytes(conn, CallRecord.contact_note)), 0),
        ).where(CallRecord.tenant_id == tenant_id)
    ).one()
    return int(calls), int(notes)


def rebuild(conn: Connection, tenant_id: int) -> Figures:
    """Replace the tenant's row by a :func:`recount`; returns it."""
    fresh = recount(conn, tenant_id)
    conn.execute(delete(CallBytes).where(CallBytes.tenant_id == tenant_id))
    if fresh != (0, 0):
        conn.execute(
            insert(CallBytes).values(tenant_id=tenant_id, calls=fresh[0], note_bytes=fresh[1])
        )
    return fresh


# ---------------------------------------------------------------- the flush hook

_PENDING = "call_usage_pending"


def _old_notes(session: Session, ids: list[int]) -> dict[int, int]:
    """id -> the bytes of the row's note as stored now (locked until the transaction ends
    on PostgreSQL: no other writer changes it between this read and the flush)."""
    out: dict[int, int] = {}
    conn = session.connection()
    statement = select(CallRecord.id, _text_bytes(conn, CallRecord.contact_note)).where(
        CallRecord.id.in_(ids)
    )
    if conn.dialect.name == "postgresql":
        statement = statement.with_for_update()
    for row_id, size in conn.execute(statement):
        out[row_id] = int(size or 0)
    return out


def _before_flush(session: Session, _context: UOWTransaction, _instances: Any) -> None:
    """Take away what the rows about to be updated (their note) or deleted count now."""
    deleted = [o for o in session.deleted if isinstance(o, CallRecord)]
    changed = [
        o
        for o in session.dirty
        if isinstance(o, CallRecord)
        and o not in session.deleted
        and "contact_note" in inspect(o).committed_state
    ]
    if not deleted and not changed:
        session.info.pop(_PENDING, None)
        return
    deltas: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    old = _old_notes(session, [o.id for o in deleted + changed])
    for obj in deleted:
        if obj.id in old:
            deltas[obj.tenant_id][0] -= 1
            deltas[obj.tenant_id][1] -= old[obj.id]
    for obj in changed:
        if obj.id in old:
            deltas[obj.tenant_id][1] -= old[obj.id]
    session.info[_PENDING] = (deltas, [o for o in changed if o.id in old])


def _after_flush(session: Session, _context: UOWTransaction) -> None:
    """Add what the inserted rows and the updated notes count now; write the differences."""
    deltas, changed = session.info.pop(_PENDING, (defaultdict(lambda: [0, 0]), []))
    for obj in session.new:
        if isinstance(obj, CallRecord):
            deltas[obj.tenant_id][0] += 1
            deltas[obj.tenant_id][1] += note_bytes(obj.contact_note)
    for obj in changed:
        deltas[obj.tenant_id][1] += note_bytes(obj.contact_note)
    if deltas:
        apply(session.connection(), deltas)


def _after_rollback(session: Session, _previous: Any) -> None:
    """A failed flush's remembered values must not be applied by a later one."""
    session.info.pop(_PENDING, None)


FLUSH_HOOK: tuple[tuple[str, Any], ...] = (
    ("before_flush", _before_flush),
    ("after_flush", _after_flush),
    ("after_soft_rollback", _after_rollback),
)


def install(sessions: Any) -> None:
    """Keep ``call_bytes`` on the sessions of ``sessions`` (the application's
    ``sessionmaker``; the composition root calls this once)."""
    # once per sessionmaker, remembered by a weak reference (as records.install_maintenance)
    if sessions in _INSTALLED:
        return
    for name, listener in FLUSH_HOOK:
        event.listen(sessions, name, listener)
    _INSTALLED.add(sessions)


#: the sessionmakers :func:`install` has equipped
_INSTALLED: weakref.WeakSet[Any] = weakref.WeakSet()
