"""Maintained per-tenant counts of CRM records (``crm_tallies``): disk usage and impact analysis.

Counting a million-record tenant on every write (disk quota) or on every plan
(impact analysis) is a full scan; these counts are kept as the data changes
instead, in the same transaction as the change:

* ``("records", "")``: the rows of every table of ``CRM_TENANT_TABLES`` --
  what disk usage charges (:mod:`provisioner.services.provisioning.quotas`);
* ``("<type>.<column>", value)``: records holding ``value`` in a picklist-like
  column -- contact memo 1..10 and sex, activity kind, purchase payment method,
  media and product class, family relation and sex, product class;
* ``("contact.checkboxes", "i")``: contacts with checkbox ``i`` (1..48) checked;
* ``("<type>.classifications", code)``: contacts / companies assigned ``code``;
* ``("custom.<database>", key)``: custom records whose field ``key`` holds a
  value (not null, not empty).

Values: a value that has the form of a configuration code (``^[a-z][a-z0-9_]{0,62}$``,
what every picklist value, classification and field key is) is counted under
itself; any other non-empty value (free text, e.g. a memo that is a text field)
under :data:`OTHER`. Empty values are not counted. So a free-text column costs
one row, not one per distinct text, and every question impact analysis asks is
still answered exactly: "records holding value v" for a code v is its row,
"records holding any value" is the column's sum, "records holding a value the
new picklist does not offer" is the sum minus the offered codes' rows (a value
that is not a code cannot be offered).

Maintenance, every write path:

* ORM writes (single creates, updates and deletes; bulk updates and deletes, which
  are built on them; change-log and access-log rows) are diffed in a flush hook:
  the old values of updated and deleted rows are read from the database before
  the flush (exact even if the session's copy is stale), the new ones from the
  objects after it;
* bulk inserts (CSV import, sample data) call :func:`add_rows` with the inserted
  rows; bulk rewrites (plan remaps) :func:`shift`; bulk deletes of a contact's
  children :func:`delete_counted` (``DELETE ... RETURNING`` the counted columns);
* data that is loaded around the services (the migration that created the table,
  benchmark loaders) is counted once by :func:`rebuild`.

:func:`recount` counts everything from the tables (the reference the tests compare
against). Writers of one tenant's counts are serialised on PostgreSQL by the
search index's transaction-scoped advisory lock (one writer lock per tenant, so
the two can never wait on each other in opposite orders).

    counts(conn, tenant_id, ["contact.memo_2"])   # {"contact.memo_2": {"gold": 12, "*": 3}}
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter, methodcaller
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    delete,
    func,
    inspect,
    literal_column,
    select,
    text,
)
from sqlalchemy.orm import Session, UOWTransaction

from provisioner.db.crm_models import (
    CRM_TENANT_TABLES,
    CrmActivity,
    CrmCompany,
    CrmContact,
    CrmCustomRecord,
    CrmFamily,
    CrmProduct,
    CrmPurchase,
    CrmTally,
)
from provisioner.db.models import Base
from provisioner.services.crm import search_index

RECORDS = ("records", "")
#: the value under which non-empty values that are not codes are counted
OTHER = "*"
CODE = re.compile(r"[a-z][a-z0-9_]{0,62}")
CHECKBOX_BITS = 48
CHECKBOXES = "contact.checkboxes"
MEMOS = tuple(f"memo_{i}" for i in range(1, 11))

#: model -> its record type name (the prefix of its counts' names)
PREFIX: dict[Any, str] = {
    CrmContact: "contact",
    CrmCompany: "company",
    CrmActivity: "activity",
    CrmPurchase: "purchase",
    CrmFamily: "family",
    CrmProduct: "product",
    CrmCustomRecord: "custom",
}
#: columns counted by value
VALUE_COLUMNS: dict[Any, tuple[str, ...]] = {
    CrmContact: ("sex", *MEMOS),
    CrmActivity: ("kind",),
    CrmPurchase: ("payment_method", "media", "product_class"),
    CrmFamily: ("relation", "sex"),
    CrmProduct: ("product_class",),
}
#: columns holding classification codes as ",a,b,"
CODES_COLUMNS: dict[Any, str] = {CrmContact: "classifications", CrmCompany: "classifications"}
#: every column a model's counts depend on
TRACKED: dict[Any, tuple[str, ...]] = {
    CrmContact: ("sex", *MEMOS, "checkboxes", "classifications"),
    CrmCompany: ("classifications",),
    CrmActivity: VALUE_COLUMNS[CrmActivity],
    CrmPurchase: VALUE_COLUMNS[CrmPurchase],
    CrmFamily: VALUE_COLUMNS[CrmFamily],
    CrmProduct: VALUE_COLUMNS[CrmProduct],
    CrmCustomRecord: ("database", "data"),
}
_BIT_VALUES = tuple(str(i + 1) for i in range(CHECKBOX_BITS))
_BIT_MASK = (1 << CHECKBOX_BITS) - 1
_CHUNK = 500

Key = tuple[str, str]


def bucket(value: str) -> str:
    """The value a non-empty value is counted under: itself if it is a code, else OTHER."""
    return value if CODE.fullmatch(value) else OTHER


def name_of(model: Any, column: str) -> str:
    """The count name of a model's column: ``contact.memo_3``, ``activity.kind`` ..."""
    return f"{PREFIX[model]}.{column}"


def custom_name(database: str) -> str:
    return f"custom.{bucket(database) if database else OTHER}"


def classification_codes(stored: str | None) -> set[str]:
    """Codes ``c`` for which ``stored`` contains ``",c,"`` (what the impact scan asks;
    parts that are not codes as :data:`OTHER`)."""
    parts = (stored or "").split(",")
    return {p if CODE.fullmatch(p) else OTHER for p in parts[1:-1] if p}


def _column_keys(model: Any, column: str, value: Any, row: Callable[[str], Any]) -> list[Key]:
    """The keys one column of one row counts under (each +1)."""
    if model is CrmCustomRecord:
        if column != "data" or not isinstance(value, Mapping):
            return []
        name = custom_name(row("database") or "")
        return [(name, bucket(str(k))) for k, v in value.items() if v is not None and v != ""]
    if column == "checkboxes":
        keys, mask = [], int(value or 0) & _BIT_MASK
        while mask:
            low = mask & -mask
            keys.append((CHECKBOXES, _BIT_VALUES[low.bit_length() - 1]))
            mask ^= low
        return keys
    if column == "classifications":
        name = name_of(model, column)
        return [(name, code) for code in classification_codes(value)]
    if value:
        return [(name_of(model, column), bucket(str(value)))]
    return []


def row_keys(model: Any, row: Mapping[str, Any], columns: Iterable[str] | None = None) -> list[Key]:
    """The keys a row (column -> value) counts under, over ``columns`` (all tracked ones)."""
    get = row.get
    out: list[Key] = []
    for column in TRACKED.get(model, ()) if columns is None else columns:
        out += _column_keys(model, column, get(column), get)
    return out


def _contact_keys(rows: Iterable[Mapping[str, Any]], out: Counter[Key]) -> None:
    """:func:`row_keys` of many contact rows (CSV imports, sample data), column by
    column: each column's distinct values are counted at C level (``Counter``), then
    each distinct value's keys are made once. The sum of :func:`row_keys` over the rows
    is the reference (tested)."""
    rows = rows if isinstance(rows, Sequence) else list(rows)
    for column in ("sex", *MEMOS):
        name = f"contact.{column}"
        for value, n in Counter(_column(rows, column)).items():
            if value:
                out[(name, bucket(str(value)))] += n
    for mask, n in Counter(_column(rows, "checkboxes")).items():
        for key in _column_keys(CrmContact, "checkboxes", mask, _no_row):
            out[key] += n
    cls = "contact.classifications"
    for stored, n in Counter(_column(rows, "classifications")).items():
        if stored:
            for code in classification_codes(stored):
                out[(cls, code)] += n


def _column(rows: Sequence[Mapping[str, Any]], column: str) -> list[Any]:
    """Each row's value of ``column`` (None where a row lacks it)."""
    try:
        return list(map(itemgetter(column), rows))
    except KeyError:
        return list(map(methodcaller("get", column), rows))


def _no_row(_column: str) -> Any:
    return None


# ---------------------------------------------------------------- writing counts

_UPSERT = text(
    "INSERT INTO crm_tallies (tenant_id, name, value, n) VALUES (:t, :k, :v, :n) "
    "ON CONFLICT (tenant_id, name, value) DO UPDATE SET n = crm_tallies.n + excluded.n"
)


def apply(conn: Connection, tenant_id: int, delta: Mapping[Key, int], *, lock: bool = True) -> None:
    """Add ``delta`` (key -> change) to the tenant's counts (``lock``: take the writer lock;
    the flush hook took it before the flush)."""
    params = [{"t": tenant_id, "k": k, "v": v, "n": n} for (k, v), n in sorted(delta.items()) if n]
    if not params:
        return
    if lock:
        search_index.lock_tenant_writes(conn, tenant_id)
    conn.execute(_UPSERT, params)


def add_rows(
    conn: Connection,
    tenant_id: int,
    model: Any,
    rows: Sequence[Mapping[str, Any]],
    *,
    extra_records: int = 0,
) -> None:
    """Count rows just bulk-inserted into ``model``'s table (complete column values).

    ``extra_records``: other CRM rows written alongside (change-log rows of an import).
    """
    delta: Counter[Key] = Counter()
    if model is CrmContact:
        _contact_keys(rows, delta)
    else:
        for row in rows:
            delta.update(row_keys(model, row))
    delta[RECORDS] += len(rows) + extra_records
    apply(conn, tenant_id, delta)


def add_records(conn: Connection, tenant_id: int, n: int) -> None:
    """Count ``n`` rows just bulk-inserted into a table whose values are not counted."""
    apply(conn, tenant_id, {RECORDS: n})


def shift(
    conn: Connection,
    tenant_id: int,
    model: Any,
    column: str,
    old: str,
    new: str,
    rows: int,
    *,
    extra_records: int = 0,
) -> None:
    """``rows`` records of ``model`` had ``column`` rewritten from ``old`` to ``new``.

    ``extra_records``: CRM rows written alongside (the rewrite's change-log rows).
    """
    delta: Counter[Key] = Counter({RECORDS: extra_records})
    if model in VALUE_COLUMNS and column in VALUE_COLUMNS[model]:
        name = name_of(model, column)
        if old:
            delta[(name, bucket(old))] -= rows
        if new:
            delta[(name, bucket(new))] += rows
    apply(conn, tenant_id, delta)


def delete_counted(conn: Connection, tenant_id: int, model: Any, where: Any) -> int:
    """``DELETE FROM model WHERE where`` (the tenant's rows), subtracting what they counted.

    Returns the number of rows deleted.
    """
    table = model.__table__
    statement = delete(table).where(table.c.tenant_id == tenant_id, where)
    columns = TRACKED.get(model)
    delta: Counter[Key] = Counter()
    if columns:
        found = conn.execute(statement.returning(*(table.c[c] for c in columns))).all()
        for values in found:
            delta.update(row_keys(model, dict(zip(columns, values, strict=True))))
        deleted = len(found)
    else:
        deleted = conn.execute(statement).rowcount
    if deleted:
        delta[RECORDS] += deleted
        apply(conn, tenant_id, {k: -n for k, n in delta.items()})
    return int(deleted)


# ---------------------------------------------------------------- reading counts


def counts(conn: Connection, tenant_id: int, names: Iterable[str]) -> dict[str, dict[str, int]]:
    """name -> value -> count (values with a zero count left out) for these names."""
    wanted = sorted(set(names))
    out: dict[str, dict[str, int]] = {name: {} for name in wanted}
    table = _table()
    for start in range(0, len(wanted), _CHUNK):
        for name, value, n in conn.execute(
            select(table.c.name, table.c.value, table.c.n).where(
                table.c.tenant_id == tenant_id,
                table.c.name.in_(wanted[start : start + _CHUNK]),
                table.c.n != 0,
            )
        ):
            out[name][value] = int(n)
    return out


def records(conn: Connection, tenant_id: int) -> int:
    """The tenant's number of CRM records (every table of ``CRM_TENANT_TABLES``)."""
    table = _table()
    return int(
        conn.scalar(
            select(table.c.n).where(
                table.c.tenant_id == tenant_id,
                table.c.name == RECORDS[0],
                table.c.value == RECORDS[1],
            )
        )
        or 0
    )


def stored(conn: Connection, tenant_id: int) -> dict[Key, int]:
    """Every non-zero count of the tenant, as maintained."""
    table = _table()
    return {
        (name, value): int(n)
        for name, value, n in conn.execute(
            select(table.c.name, table.c.value, table.c.n).where(
                table.c.tenant_id == tenant_id, table.c.n != 0
            )
        )
    }


def _table() -> Table:
    table = CrmTally.__table__
    assert isinstance(table, Table)
    return table


# ---------------------------------------------------------------- counting from the tables


def recount(conn: Connection, tenant_id: int) -> dict[Key, int]:
    """Every count of the tenant, counted from the tables (set-based; one scan per table)."""
    out: Counter[Key] = Counter()
    for name in CRM_TENANT_TABLES:
        table = Base.metadata.tables[name]
        out[RECORDS] += int(
            conn.scalar(
                select(func.count()).select_from(table).where(table.c.tenant_id == tenant_id)
            )
            or 0
        )
    for model, columns in VALUE_COLUMNS.items():
        table = model.__table__
        for column in columns:
            col = table.c[column]
            for value, n in conn.execute(
                select(col, func.count())
                .where(table.c.tenant_id == tenant_id, col != "")
                .group_by(col)
            ):
                out[(name_of(model, column), bucket(str(value)))] += int(n)
    contacts = CrmContact.__table__
    sums = conn.execute(
        select(
            *(
                func.coalesce(
                    func.sum(
                        contacts.c.checkboxes.op(">>")(literal_column(str(bit))).op("&")(
                            literal_column("1")
                        )
                    ),
                    0,
                )
                for bit in range(CHECKBOX_BITS)
            )
        ).where(contacts.c.tenant_id == tenant_id)
    ).one()
    for bit, n in enumerate(sums):
        out[(CHECKBOXES, _BIT_VALUES[bit])] += int(n)
    for model, column in CODES_COLUMNS.items():
        col = model.__table__.c[column]
        for value, n in conn.execute(
            select(col, func.count())
            .where(model.__table__.c.tenant_id == tenant_id, col != "")
            .group_by(col)
        ):
            for code in classification_codes(value):
                out[(name_of(model, column), code)] += int(n)
    for database, data in conn.execute(
        select(CrmCustomRecord.database, CrmCustomRecord.data).where(
            CrmCustomRecord.tenant_id == tenant_id
        )
    ):
        out.update(row_keys(CrmCustomRecord, {"database": database, "data": data}))
    return {k: n for k, n in out.items() if n}


def rebuild(conn: Connection, tenant_id: int) -> dict[Key, int]:
    """Replace the tenant's counts by a :func:`recount` (data loaded around the services)."""
    search_index.lock_tenant_writes(conn, tenant_id)
    table = _table()
    conn.execute(delete(table).where(table.c.tenant_id == tenant_id))
    fresh = recount(conn, tenant_id)
    if fresh:
        conn.execute(
            _UPSERT,
            [{"t": tenant_id, "k": k, "v": v, "n": n} for (k, v), n in sorted(fresh.items())],
        )
    return fresh


# ---------------------------------------------------------------- the flush hook

_OLD = "crm_tally_old"
_LOCKED = "crm_tally_locked"  # tenants whose writer lock this transaction holds
_CRM_MODELS: frozenset[Any] | None = None


def _crm_models() -> frozenset[Any]:
    global _CRM_MODELS
    if _CRM_MODELS is None:
        _CRM_MODELS = frozenset(
            m.class_
            for m in Base.registry.mappers
            if getattr(m.class_, "__tablename__", None) in CRM_TENANT_TABLES
        )
    return _CRM_MODELS


def _old_rows(session: Session, model: Any, ids: list[int]) -> dict[int, dict[str, Any]]:
    """The rows as stored now (before the flush writes): id -> tracked column -> value."""
    table = model.__table__
    columns = TRACKED[model]
    out: dict[int, dict[str, Any]] = {}
    conn = session.connection()
    for start in range(0, len(ids), _CHUNK):
        for row in conn.execute(
            select(table.c.id, *(table.c[c] for c in columns)).where(
                table.c.id.in_(ids[start : start + _CHUNK])
            )
        ):
            out[row[0]] = dict(zip(columns, row[1:], strict=True))
    return out


def _before_flush(session: Session, _context: UOWTransaction, _instances: Any) -> None:
    """Take what the rows about to be updated or deleted count now, from the database."""
    models = _crm_models()
    delta: dict[int, Counter[Key]] = defaultdict(Counter)
    changed: dict[Any, dict[int, tuple[int, Any, tuple[str, ...]]]] = defaultdict(dict)
    deleted: dict[Any, dict[int, int]] = defaultdict(dict)
    for obj in session.deleted:
        model = type(obj)
        if model in models:
            if model in TRACKED:
                deleted[model][obj.id] = obj.tenant_id
            else:
                delta[obj.tenant_id][RECORDS] -= 1
    for obj in session.dirty:
        model = type(obj)
        if model in TRACKED and obj not in session.deleted:
            state = inspect(obj)
            columns = tuple(c for c in TRACKED[model] if c in state.committed_state)
            if columns:
                changed[model][obj.id] = (obj.tenant_id, obj, columns)
    tenants = set(delta)
    tenants.update(getattr(obj, "tenant_id", 0) for obj in session.new if type(obj) in models)
    for model in set(changed) | set(deleted):
        old = _old_rows(session, model, [*changed[model], *deleted[model]])
        for row_id, tenant_id in deleted[model].items():
            if row_id in old:
                delta[tenant_id][RECORDS] -= 1
                delta[tenant_id].subtract(row_keys(model, old[row_id]))
        for row_id, (tenant_id, _obj, columns) in changed[model].items():
            if row_id in old:
                delta[tenant_id].subtract(row_keys(model, old[row_id], columns))
    pending = [
        (obj, columns) for entries in changed.values() for _tenant, obj, columns in entries.values()
    ]
    tenants.update(delta)
    tenants.update(
        tenant_id for entries in changed.values() for tenant_id, _obj, _c in entries.values()
    )
    locked: set[int] = session.info.setdefault(_LOCKED, set())
    if tenants - locked:
        conn = session.connection()
        for tenant_id in sorted(tenants - locked):  # before this flush writes any row
            search_index.lock_tenant_writes(conn, tenant_id)
        locked |= tenants
    session.info[_OLD] = (delta, pending)


def _after_rollback(session: Session, _previous: Any) -> None:
    """A failed flush's remembered values must not be applied by a later one."""
    session.info.pop(_OLD, None)
    session.info.pop(_LOCKED, None)


def _after_commit(session: Session) -> None:
    session.info.pop(_LOCKED, None)  # the transaction's locks are gone


def _after_flush(session: Session, _context: UOWTransaction) -> None:
    """Add what the inserted and updated rows count now; write the differences."""
    delta, pending = session.info.pop(_OLD, ({}, []))
    locked = session.info.setdefault(_LOCKED, set())
    delta = defaultdict(Counter, delta)
    models = _crm_models()
    for obj in session.new:
        model = type(obj)
        if model in models:
            counter = delta[obj.tenant_id]
            counter[RECORDS] += 1
            if model in TRACKED:
                counter.update(row_keys(model, {c: getattr(obj, c) for c in TRACKED[model]}))
    for obj, columns in pending:
        model = type(obj)
        names = set(columns) | ({"database"} if model is CrmCustomRecord else set())
        delta[obj.tenant_id].update(row_keys(model, {c: getattr(obj, c) for c in names}, columns))
    if any(any(c.values()) for c in delta.values()):
        conn = session.connection()
        for tenant_id in sorted(delta):
            apply(conn, tenant_id, delta[tenant_id], lock=tenant_id not in locked)
            locked.add(tenant_id)


#: this module's flush hook (event, listener): installed on the application's sessions
#: by the record-write path (:func:`provisioner.services.crm.records.install_maintenance`),
#: not on import
FLUSH_HOOK: tuple[tuple[str, Any], ...] = (
    ("before_flush", _before_flush),
    ("after_soft_rollback", _after_rollback),
    ("after_commit", _after_commit),
    ("after_flush", _after_flush),
)
