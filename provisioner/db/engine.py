"""Engines for the two supported databases, chosen by one URL.

* ``sqlite:///path`` (default): WAL journal (checkpointed every 32 MB),
  synchronous=NORMAL, foreign keys on, a busy timeout, and every transaction
  opened with ``BEGIN IMMEDIATE`` so concurrent writers queue instead of
  failing half-way with "database is locked" -- except read-only ones
  (``Provisioner.transaction(read_only=True)``, begun inside
  :func:`deferred_begin`), which begin DEFERRED: under WAL they read a snapshot
  without taking the write lock, so readers neither wait for each other nor for
  writers. The BEGIN is the dialect's (``do_begin``), not an engine event: any
  engine event listener makes SQLAlchemy dispatch events around every statement.
* ``postgresql://...`` (psycopg 3): READ COMMITTED; the services take row
  locks (``SELECT ... FOR UPDATE``) or use guarded ``UPDATE ... WHERE state``
  statements where races matter. Pooled connections are checked at checkout
  without a round trip (one the server closed is replaced; only one idle for a
  while is pinged): see :func:`_check_on_checkout`.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError

from provisioner.errors import ConfigurationError

#: SQLite WAL pages (4 KiB) between automatic checkpoints
WAL_AUTOCHECKPOINT_PAGES = 8192
_DEFERRED: ContextVar[bool] = ContextVar("provisioner_deferred_begin", default=False)


@contextmanager
def deferred_begin() -> Iterator[None]:
    """SQLite transactions begun inside begin DEFERRED (``BEGIN``), not IMMEDIATE.

    Only for read-only transactions: a deferred transaction that writes after
    another connection committed fails with "database is locked" (a stale snapshot).
    """
    token = _DEFERRED.set(True)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


def _sqlite_begin(dbapi_conn: Any) -> None:
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("BEGIN" if _DEFERRED.get() else "BEGIN IMMEDIATE")
    finally:
        cursor.close()


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and use the psycopg 3 driver."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(
            f"cannot parse database URL {url!r}",
            hint="use sqlite:///path/to/file.db or postgresql://user@host:5432/dbname",
        ) from None
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in {"sqlite", "postgresql"}:
        raise ConfigurationError(
            f"unsupported database {parsed.get_backend_name()!r}",
            hint="provisioner runs on SQLite (default) or PostgreSQL",
        )
    return parsed.render_as_string(hide_password=False)


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode("utf-8")


def _create_private(database: str | None) -> None:
    """Create a new SQLite database file readable by its owner only (0600, whatever the
    umask): it holds sealed keys, password hashes and customer data. SQLite gives its
    ``-wal`` and ``-shm`` files the database file's permissions."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    try:
        fd = os.open(database, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # e.g. no such directory: SQLite itself reports it when connecting
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalize_url(url)
    kwargs.setdefault("json_serializer", _json_dumps)
    kwargs.setdefault("json_deserializer", orjson.loads)
    if url.startswith("sqlite"):
        _create_private(make_url(url).database)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60},
                               **kwargs)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            # A transfer writes a few MB (bundle, incoming document, plan): with the
            # default 1000-page (4 MB) auto-checkpoint nearly every transfer paid a
            # checkpoint and its fsyncs. Checkpoint every 32 MB instead, and truncate
            # the WAL file back to 64 MB at most afterwards.
            cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            cursor.execute(f"PRAGMA journal_size_limit={64 * 1024 * 1024}")
            cursor.close()

        engine.dialect.do_begin = _sqlite_begin  # type: ignore[method-assign,assignment]

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    engine = create_engine(url, **kwargs)
    _check_on_checkout(engine)
    return engine


#: PostgreSQL: a pooled connection idle longer than this is pinged (a round trip) at checkout
PING_IDLE_SECONDS = 10.0
_RETURNED_AT = "provisioner_returned_at"


def _closed_by_server(dbapi_conn: Any) -> bool:
    """Whether the server has written to (or closed) an idle connection: it is going away.

    An idle connection receives nothing unless the server ends it (termination
    notice, end of file): a readable socket is a dead connection, known without
    a round trip.
    """
    try:
        fd = dbapi_conn.fileno()
    except Exception:  # a closed connection has no socket
        return True
    # poll, not select: select() refuses descriptors numbered 1024 and up, which a busy
    # server reaches, and would then have every pooled connection thrown away
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    try:
        return bool(poller.poll(0))
    except OSError:
        return True


def _check_on_checkout(engine: Engine) -> None:
    """Hand out live connections only, without a round trip per transaction.

    Replaces ``pool_pre_ping`` (a ``SELECT 1`` before every transaction). At
    checkout a connection the server has closed (a restart, an administrator's
    ``pg_terminate_backend``, an idle timeout) is recognised by its socket
    (:func:`_closed_by_server`); one idle for more than
    :data:`PING_IDLE_SECONDS` -- long enough for a silent network failure --
    is pinged as before. Either way a dead connection is discarded and the pool
    connects again (``DisconnectionError``), so the transaction never sees it.
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.pop(_RETURNED_AT, None)
        if returned is None:  # a new connection
            return
        if _closed_by_server(dbapi_conn):
            raise DisconnectionError("the server closed this pooled connection")
        if time.monotonic() - returned > PING_IDLE_SECONDS:
            try:
                engine.dialect.do_ping(dbapi_conn)
            except Exception as exc:  # any failure: the connection is unusable
                raise DisconnectionError(f"pooled connection failed its ping: {exc}") from exc
