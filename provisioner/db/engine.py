"""Engines for the two supported databases, chosen by one URL.

* ``sqlite:///path`` (default): WAL journal (checkpointed every 32 MB, or
  ``PROVISIONER_SQLITE_WAL_MB``; a writer waits ``PROVISIONER_SQLITE_BUSY_TIMEOUT``
  seconds, default 60, for the write lock),
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
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.pool import QueuePool

from provisioner import metrics
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


def sqlite_busy_timeout() -> float:
    """Seconds a SQLite writer waits for the write lock before ``database_locked``
    (``PROVISIONER_SQLITE_BUSY_TIMEOUT``, default 60)."""
    raw = os.environ.get("PROVISIONER_SQLITE_BUSY_TIMEOUT", "")
    try:
        return max(0.0, float(raw)) if raw else 60.0
    except ValueError:
        raise ConfigurationError(
            f"PROVISIONER_SQLITE_BUSY_TIMEOUT={raw!r} is not a number of seconds"
        ) from None


def sqlite_wal_pages() -> int:
    """4 KiB pages of WAL between automatic checkpoints (``PROVISIONER_SQLITE_WAL_MB``,
    default 32 MB: :data:`WAL_AUTOCHECKPOINT_PAGES`)."""
    raw = os.environ.get("PROVISIONER_SQLITE_WAL_MB", "")
    if not raw:
        return WAL_AUTOCHECKPOINT_PAGES
    try:
        megabytes = float(raw)
    except ValueError:
        megabytes = 0
    if not 0.5 <= megabytes <= 4096:
        raise ConfigurationError(
            f"PROVISIONER_SQLITE_WAL_MB={raw!r} is not a size in MB between 0.5 and 4096"
        )
    return int(megabytes * 256)


class MeasuredQueuePool(QueuePool):
    """A QueuePool that counts the callers waiting for a connection (``/metrics``)."""

    def _do_get(self) -> Any:
        if self.checkedout() < self.size() + self._max_overflow:
            return super()._do_get()
        metrics.pool_waiting.inc()
        try:
            return super()._do_get()
        finally:
            metrics.pool_waiting.dec()


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
    """An engine for ``url``; ``kwargs`` go to ``create_engine`` (PostgreSQL: ``pool_size``
    10, ``max_overflow`` 20 and ``pool_timeout`` 30 s unless given; ``serve`` sets
    them from its connection budget)."""
    url = normalize_url(url)
    kwargs.setdefault("json_serializer", _json_dumps)
    kwargs.setdefault("json_deserializer", orjson.loads)
    if url.startswith("sqlite"):
        _create_private(make_url(url).database)
        busy = sqlite_busy_timeout()
        wal_pages = sqlite_wal_pages()
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": busy}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy * 1000)}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            # A transfer writes a few MB (bundle, incoming document, plan): with the
            # default 1000-page (4 MB) auto-checkpoint nearly every transfer paid a
            # checkpoint and its fsyncs. Checkpoint every 32 MB instead (a small disk:
            # PROVISIONER_SQLITE_WAL_MB), and truncate the WAL file back to twice that
            # at most afterwards (docs/operations.md: the free space SQLite needs).
            cursor.execute(f"PRAGMA wal_autocheckpoint={wal_pages}")
            cursor.execute(f"PRAGMA journal_size_limit={wal_pages * 4096 * 2}")
            cursor.close()

        engine.dialect.do_begin = _sqlite_begin  # type: ignore[method-assign,assignment]

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("poolclass", MeasuredQueuePool)
    kwargs.setdefault("pool_timeout", 30.0)
    engine = create_engine(url, **kwargs)
    _check_on_checkout(engine)
    _wait_for_a_slot(engine, float(kwargs["pool_timeout"]))
    return engine


#: PostgreSQL errors meaning "no connection slot now": worth waiting for one
_NO_SLOT = ("53300", "57P03")


def _wait_for_a_slot(engine: Engine, timeout: float) -> None:
    """A new connection the server refuses for want of a slot (``too many clients``, or
    still starting) is tried again, with back-off, for up to ``timeout`` seconds (the
    pool's own wait): the request waits for a connection instead of failing at once.
    (The dialect's ``connect`` is wrapped, not a ``do_connect`` event: any dialect event
    makes SQLAlchemy dispatch events around every statement.)"""
    dialect = engine.dialect
    connect = dialect.connect

    def patient_connect(*args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + timeout
        pause = 0.05
        while True:
            try:
                return connect(*args, **kwargs)
            except Exception as exc:
                if (
                    str(getattr(exc, "sqlstate", "") or "") not in _NO_SLOT
                    and "too many clients" not in str(exc)
                    and "the database system is starting up" not in str(exc)
                ):
                    raise
                if time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 1.0)

    dialect.connect = patient_connect  # type: ignore[method-assign]


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


# --------------------------------------------------------------------------- connection budget

#: PostgreSQL: share of the server's usable connections ``serve`` takes by default
DEFAULT_BUDGET_SHARE = 0.5
#: ... and at most this many per worker by default
DEFAULT_PER_WORKER = 10
#: a worker needs at least this many connections (a request's transaction, plus the
#: short write transaction of a read-only one's log rows while another request runs)
MIN_PER_WORKER = 2


@dataclass(frozen=True)
class Budget:
    """How many PostgreSQL connections each ``serve`` worker may hold."""

    per_worker: int
    workers: int
    server_max: int | None  # the server's max_connections minus its reserved slots
    in_use: int | None  # connections open on the server when it was asked

    @property
    def total(self) -> int:
        return self.per_worker * self.workers

    def describe(self) -> str:
        text = f"{self.workers} worker(s) x {self.per_worker} database connections = {self.total}"
        if self.server_max is not None:
            text += f" of the server's {self.server_max} (now in use: {self.in_use})"
        return text


def server_connection_limits(engine: Engine) -> tuple[int, int]:
    """PostgreSQL: (usable connection slots, connections open now)."""
    with engine.connect() as conn:
        maximum = int(conn.exec_driver_sql("SHOW max_connections").scalar_one())
        reserved = int(conn.exec_driver_sql("SHOW superuser_reserved_connections").scalar_one())
        in_use = int(
            conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            ).scalar_one()
        )
    return maximum - reserved, in_use


def plan_budget(workers: int, maximum: int | None, limits: tuple[int, int] | None) -> Budget:
    """Split the connection budget over the workers, or refuse (``ConfigurationError``).

    ``maximum``: the configured total (``--max-db-connections``); by default half the
    server's usable slots, at most :data:`DEFAULT_PER_WORKER` per worker. ``limits``:
    :func:`server_connection_limits` (None on SQLite, where the budget is not needed).
    """
    usable, in_use = limits if limits is not None else (None, None)
    if maximum is None:
        if usable is None:
            return Budget(DEFAULT_PER_WORKER, workers, None, None)
        maximum = min(int(usable * DEFAULT_BUDGET_SHARE), DEFAULT_PER_WORKER * workers)
    elif usable is not None and maximum > usable:
        raise ConfigurationError(
            f"--max-db-connections {maximum} is more than the database server allows "
            f"({usable}: max_connections minus the reserved slots)",
            hint="lower --max-db-connections, or raise max_connections on the server",
        )
    per_worker = maximum // workers
    if per_worker < MIN_PER_WORKER:
        raise ConfigurationError(
            f"{workers} workers cannot share {maximum} database connections (each needs "
            f"at least {MIN_PER_WORKER})",
            hint="use fewer --workers, raise --max-db-connections, or put PgBouncer in "
            "front of the server (docs/operations.md)",
        )
    return Budget(per_worker, workers, usable, in_use)
