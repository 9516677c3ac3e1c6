"""Several SQLAlchemy statements in one round trip (PostgreSQL: a psycopg pipeline).

    rows = pipeline.run(conn, [CURRENT, CONTACTS], {"tenant": 7, "digits": "0312"},
                        tenant_id=7)

:func:`run` compiles each statement once per dialect, sends the tenant scope
(optional) and every statement before reading any reply, and returns each
statement's rows converted by its columns' types (attribute access by column key,
as a Core row). It runs in the caller's transaction (psycopg's own ``BEGIN`` if none
was sent yet) and never commits it unless the caller asks, with ``commit=True``: a
read-only transaction that has sent nothing yet may end in the same round trip
(then the caller's own commit has nothing left to do, and a later statement runs in a
transaction of its own, without the scope).

A driver error is raised as SQLAlchemy's :class:`~sqlalchemy.exc.DBAPIError`, as a
statement run through SQLAlchemy would be. Other databases have no pipeline: the
services read statement by statement there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import psycopg
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement

from provisioner.db.tenancy import CREDENTIALS, SET_SETTING_SQL, SET_TENANT_SQL, value


@dataclass(frozen=True)
class _Compiled:
    """A statement compiled for psycopg, with its result columns' converters (none: a
    statement that returns no rows, such as an ``INSERT`` without ``RETURNING``)."""

    statement: ClauseElement  # kept: the cache is keyed by its id
    compiled: Any
    names: tuple[str, ...]
    converters: tuple[Any, ...]

    @classmethod
    def of(cls, statement: ClauseElement, dialect: Any) -> _Compiled:
        compiled = statement.compile(dialect=dialect)
        columns = list(getattr(statement, "exported_columns", ()))
        return cls(
            statement,
            compiled,
            tuple(str(c.key) for c in columns),
            tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns),
        )

    def rows(self, fetched: list[tuple[Any, ...]]) -> list[SimpleNamespace]:
        convert = [(i, f) for i, f in enumerate(self.converters) if f is not None]
        out = []
        for raw in fetched:
            values = list(raw)
            for i, f in convert:
                values[i] = f(values[i])
            out.append(SimpleNamespace(**dict(zip(self.names, values, strict=True))))
        return out


_COMPILED: dict[tuple[int, str], _Compiled] = {}


def _compiled(statement: ClauseElement, dialect: Any) -> _Compiled:
    key = (id(statement), dialect.name)
    found = _COMPILED.get(key)
    if found is None or found.statement is not statement:
        found = _COMPILED[key] = _Compiled.of(statement, dialect)
    return found


def run(
    conn: Connection,
    statements: Sequence[ClauseElement],
    values: Mapping[str, Any],
    *,
    tenant_id: int | None = None,
    credentials: Mapping[str, str] | None = None,
    commit: bool = False,
) -> list[list[SimpleNamespace]]:
    """Each statement's rows, all sent in one round trip (PostgreSQL only). A statement
    may write (``INSERT ... RETURNING``, or no rows: then its list is empty).

    ``tenant_id``: scope the transaction to that tenant first (the row-level security
    setting, :mod:`provisioner.db.tenancy`); ``credentials``: present these first
    (``Context.present``'s names: the rows they reach become visible). ``commit``: end
    the transaction in the same round trip (only the caller knows it may: see the
    module's documentation).
    Build the statements once (module constants): each is compiled once per dialect.
    """
    if conn.dialect.name != "postgresql":
        raise NotImplementedError("pipelines are PostgreSQL's (psycopg)")
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    compiled = [_compiled(s, conn.dialect) for s in statements]
    cursors = [driver.cursor() for _ in range(len(compiled) + 1)]
    try:
        with driver.pipeline():
            if tenant_id is not None:
                cursors[0].execute(SET_TENANT_SQL, (value(tenant_id),))
            for name, setting in (credentials or {}).items():
                if name not in CREDENTIALS:
                    raise ValueError(f"unknown credential {name!r}")
                cursors[0].execute(SET_SETTING_SQL, (f"provisioner.{name}", setting))
            for cursor, statement in zip(cursors[1:], compiled, strict=True):
                cursor.execute(
                    statement.compiled.string, statement.compiled.construct_params(dict(values))
                )
            if commit:
                cursors[0].execute("COMMIT")
        return [
            statement.rows(cursor.fetchall() if cursor.description is not None else [])
            for cursor, statement in zip(cursors[1:], compiled, strict=True)
        ]
    except psycopg.Error as exc:
        raise DBAPIError.instance("pipeline", dict(values), exc, psycopg.Error) from exc
    finally:
        for cursor in cursors:
            cursor.close()


def idle(conn: Connection) -> bool:
    """Whether the driver has not begun a transaction yet (nothing sent since the last end)."""
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    return driver.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
