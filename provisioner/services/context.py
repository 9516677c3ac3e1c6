"""The application object and the per-transaction context services receive.

    app = Provisioner.open()                 # database URL and home from the environment
    with app.transaction() as ctx:           # commits on success, rolls back on error
        tenants.create(ctx, "acme", name="ACME")

``app.transaction(read_only=True)`` only reads (on SQLite it begins DEFERRED, so
readers run side by side): an append-only log row it must still write
(:meth:`Context.add_log_row`, e.g. a personal-information view) is committed in
a short write transaction of its own right after it, before the caller gets
its result -- never dropped, and never a write lock held while reading.

``ctx.keep_writes_on_error()`` makes the transaction commit even though an
error propagates: a refused copy-key redemption records the failed attempt
(for rate limiting and audit) and nothing else, and that record must stay.
The services that use it write nothing before that point. (The log rows of a
read-only transaction are kept the same way: a screen pop of an unknown caller
records the call, then answers "not found".)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from provisioner import paths
from provisioner.clock import Clock, SystemClock
from provisioner.db import migrate
from provisioner.db.engine import deferred_begin, make_engine
from provisioner.errors import ConfigurationError
from provisioner.security.keystore import MasterKey

#: the transaction's tenant, which PostgreSQL's row-level security policies key on
SET_TENANT = text("SELECT set_config('provisioner.tenant_id', :t, true)")
#: the same statement for a psycopg cursor (a pipeline)
SET_TENANT_SQL = "SELECT set_config('provisioner.tenant_id', %s, true)"


@dataclass
class Context:
    session: Session
    clock: Clock
    master_key: MasterKey
    _commit_on_error: bool = False
    #: a read-only transaction: rows go through :meth:`add_log_row` only
    read_only: bool = False
    _deferred_rows: list[Any] = field(default_factory=list)

    def add_log_row(self, row: Any) -> None:
        """Add an append-only log row: to this transaction, or after a read-only one.

        After a read-only transaction the rows are committed in a write transaction
        of their own before :meth:`Provisioner.transaction` returns; if that fails,
        the caller gets the error, not the result.
        """
        if self.read_only:
            self._deferred_rows.append(row)
        else:
            self.session.add(row)

    def enter_tenant(self, tenant_id: int) -> None:
        """Scope the transaction to a tenant: PostgreSQL's row-level security policies
        show and accept that tenant's rows only (SQLite: nothing to do)."""
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(SET_TENANT, {"t": str(tenant_id)})

    def keep_writes_on_error(self) -> None:
        """Commit what this transaction wrote even if it ends with an error."""
        self._commit_on_error = True


class Provisioner:
    def __init__(self, engine: Engine, *, master_key: MasterKey, clock: Clock | None = None,
                 home: Path | None = None) -> None:
        self.engine = engine
        self.master_key = master_key
        self.clock: Clock = clock or SystemClock()
        self.home = home
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, db_url: str | None = None, *, clock: Clock | None = None,
             migrate_to_head: bool = False) -> Provisioner:
        home = paths.home()
        engine = make_engine(paths.database_url(db_url))
        app = cls(engine, master_key=MasterKey.from_environment(home), clock=clock, home=home)
        if migrate_to_head:
            app.migrate()
        else:
            app.require_schema()
        return app

    def migrate(self) -> None:
        if self.engine.url.get_backend_name() == "sqlite" and self.engine.url.database:
            Path(self.engine.url.database).parent.mkdir(parents=True, exist_ok=True)
        try:
            migrate.upgrade(self.engine)
        except OperationalError as exc:
            raise ConfigurationError(
                f"cannot reach the database: {str(exc.orig).strip().splitlines()[0]}",
                hint="check --db / PROVISIONER_DATABASE_URL",
            ) from None

    def require_schema(self) -> None:
        try:
            current = migrate.current(self.engine)
        except OperationalError as exc:
            raise ConfigurationError(
                f"cannot reach the database: {str(exc.orig).strip().splitlines()[0]}",
                hint="check --db / PROVISIONER_DATABASE_URL",
            ) from None
        if not current:
            raise ConfigurationError(
                "the database is not initialised", hint="run 'provisioner init' first"
            )
        if current != migrate.heads():
            raise ConfigurationError(
                f"the database schema is at revision {', '.join(sorted(current))}, this "
                f"provisioner needs {', '.join(sorted(migrate.heads()))}",
                hint="run 'provisioner init' to migrate",
            )

    @contextmanager
    def transaction(self, *, read_only: bool = False,
                    log_rows: list[Any] | None = None) -> Iterator[Context]:
        """One transaction; ``read_only``: see the module's documentation.

        ``log_rows`` (read-only only): the log rows to write are appended there
        instead, and the caller commits them with :meth:`write_log_rows` before
        using the result (an async server route does that in a worker thread).
        """
        session = self._sessions()
        ctx = Context(session, self.clock, self.master_key, read_only=read_only)
        try:
            if read_only:
                with deferred_begin():
                    session.connection()  # begins now: DEFERRED on SQLite
            yield ctx
            if read_only and (session.new or session.dirty or session.deleted):
                raise RuntimeError("a read-only transaction changed rows")
            session.commit()
        except BaseException:
            if ctx._commit_on_error:
                session.commit()
                self._hand_off(ctx, log_rows)  # kept like the writes
            else:
                session.rollback()
            raise
        finally:
            session.close()
        self._hand_off(ctx, log_rows)

    def _hand_off(self, ctx: Context, log_rows: list[Any] | None) -> None:
        """The rows a read-only transaction left: written now, or given to the caller."""
        rows, ctx._deferred_rows = ctx._deferred_rows, []
        if rows:
            if log_rows is None:
                self.write_log_rows(rows)
            else:
                log_rows.extend(rows)

    def write_log_rows(self, rows: list[Any]) -> None:
        """Commit the log rows a read-only transaction left (one short write transaction).

        On PostgreSQL each tenant's rows are written under that tenant's row-level
        security scope (``provisioner.tenant_id``), as the read-only transaction had it.
        """
        by_tenant: dict[Any, list[Any]] = {}
        for row in rows:
            by_tenant.setdefault(getattr(row, "tenant_id", None), []).append(row)
        with self.transaction() as writer:
            for tenant_id, group in by_tenant.items():
                if tenant_id is not None:
                    writer.enter_tenant(tenant_id)
                writer.session.add_all(group)
                writer.session.flush()
