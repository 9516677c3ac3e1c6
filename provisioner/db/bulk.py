"""Bulk loading at driver level: complete rows into one table in one go.

    insert_rows(conn, table, ["tenant_id", "gram", "block", "n", "data"], rows)

Values are converted by the column types (SQLAlchemy's bind processors, applied
column-wise at C level), then loaded with ``COPY`` on PostgreSQL or one
driver-level ``executemany`` elsewhere. This is the one place the services load
rows past the ORM and Core statement layers (the search index's blocks, contacts
imported from CSV or seeded, change-log and workflow-log rows): none of them
writes ``COPY`` or a driver cursor itself. It runs inside the caller's
transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import repeat
from operator import add, itemgetter
from typing import Any

from sqlalchemy import Connection, LargeBinary, Table, text

#: PostgreSQL: bulk rows go in with COPY where the session may (False: always INSERT)
USE_COPY = True


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


def converted(
    conn: Connection, table: Table, columns: list[str], rows: list[tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
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


def copy_mode(conn: Connection, table: str) -> str:
    """How :func:`insert_rows` loads ``table`` with ``COPY``: ``"direct"``, ``"staged"``
    (row-level security applies to the session: through a temporary table), or ``""``
    (not at all: not PostgreSQL, :data:`USE_COPY` off, or no TEMPORARY privilege)."""
    if not USE_COPY or conn.dialect.name != "postgresql":
        return ""
    secured, temporary = conn.execute(
        text(
            "SELECT row_security_active(:t), "
            "has_database_privilege(current_database(), 'TEMPORARY')"
        ),
        {"t": table},
    ).one()
    if not secured:
        return "direct"
    return "staged" if temporary else ""


def _type_oids(conn: Connection, table: str, columns: list[str]) -> list[int]:
    """The PostgreSQL type of each of ``table``'s ``columns`` (what a binary ``COPY``
    writes each value as)."""
    found: dict[str, int] = {
        name: oid
        for name, oid in conn.execute(
            text(
                "SELECT attname, atttypid::int FROM pg_attribute "
                "WHERE attrelid = CAST(:t AS regclass) AND attnum > 0 AND NOT attisdropped"
            ),
            {"t": table},
        )
    }
    return [found[name] for name in columns]


def insert_rows(
    conn: Connection, table: Table, columns: list[str], rows: list[tuple[Any, ...]]
) -> None:
    """Complete rows in one go, values converted by the column types.

    PostgreSQL: ``COPY`` (in binary format for a table with a binary column: its bytes
    go as they are, not as hex text) where the session may load the table directly
    (:func:`copy_mode`); where row-level security applies (the application role),
    ``COPY`` into a temporary staging table of this transaction, then one
    ``INSERT ... SELECT`` from it -- that statement is checked against the policies
    like any other INSERT (a row of another tenant is refused), and the staging table
    is dropped right after it (and at commit, ``ON COMMIT DROP``). Elsewhere (SQLite,
    :data:`USE_COPY` off, no TEMPORARY privilege) one driver-level ``executemany``.
    """
    if not rows:
        return
    rows = converted(conn, table, columns, rows)
    names = ", ".join(columns)
    how = copy_mode(conn, table.name)
    if how:
        driver = conn.connection.driver_connection
        assert driver is not None
        target = table.name
        if how == "staged":  # only schema names and a fixed prefix are formatted in
            target = f"_bulk_{table.name}"
            conn.exec_driver_sql(
                f"CREATE TEMPORARY TABLE {target} ON COMMIT DROP AS "  # noqa: S608
                f"SELECT {names} FROM {table.name} WITH NO DATA"
            )
            target = f"pg_temp.{target}"
        binary = any(isinstance(table.c[name].type, LargeBinary) for name in columns)
        how_copy = " (FORMAT BINARY)" if binary else ""
        types = _type_oids(conn, table.name, columns) if binary else []
        with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY {target} ({names}) FROM STDIN{how_copy}") as copy,
        ):
            if binary:
                copy.set_types(types)
            for row in rows:
                copy.write_row(row)
        if how == "staged":
            conn.exec_driver_sql(
                f"INSERT INTO {table.name} ({names}) "  # noqa: S608
                f"SELECT {names} FROM {target}"
            )
            conn.exec_driver_sql(f"DROP TABLE {target}")
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    conn.exec_driver_sql(
        f"INSERT INTO {table.name} ({names}) "  # noqa: S608  (schema names)
        f"VALUES ({', '.join([mark] * len(columns))})",
        rows,
    )
