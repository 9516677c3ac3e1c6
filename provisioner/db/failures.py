"""What a database failure means, as one of the typed errors of :mod:`provisioner.errors`.

    try:
        ...
    except (DBAPIError, sqlalchemy.exc.TimeoutError) as exc:
        raise classify(exc) from exc

The API answers with the error's status (503) and ``Retry-After`` where waiting
helps; the CLI prints the message with the driver's own first line and the hint.
Recognised causes:

============================  ==============================================================
``DatabaseUnavailable``       connection refused or lost, server starting up or shutting down
                              (SQLSTATE class 08, 57P01-57P03), SQLite file cannot be opened
``DatabaseBusy``              this process's pool waited out ``pool_timeout``; the server has
                              no connection slot left (53300); out of memory (53200)
``DatabaseLocked``            SQLite ``SQLITE_BUSY`` / ``SQLITE_LOCKED`` after the busy timeout
``StorageFull``               SQLite ``SQLITE_FULL``; PostgreSQL ``disk_full`` (53100)
``DatabaseError``             anything else from the driver
============================  ==============================================================

Data errors (SQLSTATE 22) and integrity errors (23) are not failures of the
database: the interfaces map them to 422 and 409 before asking here.
"""

from __future__ import annotations

import logging
import sqlite3

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from provisioner.errors import (
    DatabaseBusy,
    DatabaseError,
    DatabaseLocked,
    DatabaseUnavailable,
    StorageFull,
)

_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN = 5, 6, 10, 13, 14
_UNREACHABLE = (
    "connection refused",
    "could not connect",
    "connection failed",
    "server closed the connection",
    "connection is closed",
    "connection timed out",
    "no route to host",
    "name or service not known",
    "could not translate host",
    "terminating connection",
    "the database system is",
    "connection is lost",
    "ssl syscall error",
    "consuming input failed",
    "sending query failed",
)


def first_line(exc: BaseException) -> str:
    """The driver's own first line (``exc.orig`` for a SQLAlchemy wrapper)."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0].strip() if lines else type(orig).__name__


def is_database_failure(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError | PoolTimeout)


def classify(exc: BaseException) -> DatabaseError:
    """The typed error for a driver or pool failure (message without the driver's text)."""
    if isinstance(exc, PoolTimeout):
        return DatabaseBusy(
            "no database connection became free in time: every connection of this "
            "process's pool is in use",
            hint="try again shortly; if it persists, the server needs a larger connection "
            "budget (serve --max-db-connections) or less load (docs/operations.md)",
        )
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).lower()
    if isinstance(orig, sqlite3.Error):
        base = (getattr(orig, "sqlite_errorcode", 0) or 0) & 0xFF
        if base in (_SQLITE_BUSY, _SQLITE_LOCKED) or "database is locked" in text:
            return DatabaseLocked(
                "the SQLite database stayed locked by another connection for the whole "
                "busy timeout",
                hint="try again; if it persists, look for a long write holding the lock "
                "(an import, a backup, a second server on the same file)",
            )
        if base == _SQLITE_FULL or "disk is full" in text:
            return _full()
        if base == _SQLITE_CANTOPEN:
            return DatabaseUnavailable(
                "the SQLite database file cannot be opened",
                hint="check that the file and its directory exist and are readable and "
                "writable by this user (--db / PROVISIONER_DATABASE_URL)",
            )
        if base == _SQLITE_IOERR:
            return DatabaseError(
                "the SQLite database hit a disk input/output error",
                hint="check the disk (free space, health, a read-only remount); nothing "
                "was written by the failed request",
            )
        return _generic()
    sqlstate = str(getattr(orig, "sqlstate", "") or "")
    if sqlstate == "53100":
        return _full()
    if (
        sqlstate in ("53300", "53200")
        or "too many clients" in text
        or "remaining connection slots" in text
    ):
        return DatabaseBusy(
            "the database server has no connection slot left (too many clients)",
            hint="try again shortly; if it persists, lower the connection budget of the "
            "processes sharing the server or put PgBouncer in front (docs/operations.md)",
        )
    if (
        sqlstate.startswith("08")
        or sqlstate in ("57P01", "57P02", "57P03")
        or getattr(exc, "connection_invalidated", False)
        or any(marker in text for marker in _UNREACHABLE)
    ):
        return DatabaseUnavailable(
            "the database server is unavailable",
            hint="try again in a few seconds; if it persists, check that the database "
            "server is running and reachable (--db / PROVISIONER_DATABASE_URL)",
        )
    return _generic()


def _full() -> StorageFull:
    return StorageFull(
        "the database cannot write: its disk is full",
        hint="free disk space or grow the volume (SQLite also needs headroom for its "
        "write-ahead log: docs/operations.md); the failed request wrote nothing",
    )


def _generic() -> DatabaseError:
    return DatabaseError(
        "the database could not complete the request",
        hint="try again; if it persists, tell the operator",
    )


def for_operator(exc: BaseException) -> DatabaseError:
    """:func:`classify` with the driver's first line in the message (CLI, logs)."""
    error = classify(exc)
    error.message = f"{error.message}: {first_line(exc)}"
    return error


class _PipelineExitNoise(logging.Filter):
    """psycopg logs a second, derived error when a pipeline block already failed
    ("error ignored terminating <psycopg.Pipeline [BAD]>"); the first one is raised
    to the caller and reported there, so this line only confuses stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("error ignored terminating")


logging.getLogger("psycopg").addFilter(_PipelineExitNoise())
