"""The application object (the composition root) and the per-transaction context.

:class:`Provisioner` wires the application together at start-up: the engine,
the clock, the master key, every table of the schema, and the cross-cutting
checks the core services run without importing the areas that impose them
(:func:`default_checks`: the disk quota on every new configuration version).
:class:`Context` (defined in :mod:`provisioner.services.transaction`, a leaf,
and re-exported here) is what every service receives.

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
(for rate limiting and audit) and nothing else, and that record must stay; a
screen pop of an unknown caller records the call, then answers "not found".
The services that use it write nothing else before that point. (The log rows of
a read-only transaction are kept the same way.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker

from provisioner import paths
from provisioner.clock import Clock, SystemClock
from provisioner.db import failures, migrate, roles, schema
from provisioner.db.engine import deferred_begin, make_engine
from provisioner.db.migrate import Outcome
from provisioner.db.models import Tenant
from provisioner.errors import ConfigurationError
from provisioner.security.keystore import MasterKey
from provisioner.services.crm import derived, records
from provisioner.services.provisioning import call_usage, quotas
from provisioner.services.transaction import Checks, Context

__all__ = ["Checks", "Context", "Provisioner"]

#: every table of every area, mapped before the first session opens
METADATA = schema.metadata


def _room_for_version(ctx: Context, tenant: Tenant, size: int) -> None:
    quotas.require_room(ctx, tenant, size, what="this configuration version")


def default_checks() -> Checks:
    """The cross-cutting checks every application runs (wired here, not imported by the core)."""
    checks = Checks()
    checks.on_new_version(_room_for_version)  # the disk quota (provisioning) on configs
    return checks


#: a read-only transaction's isolation: one snapshot for all its reads (PostgreSQL; SQLite
#: reads one snapshot anyway)
_READ_ONLY = {"isolation_level": "REPEATABLE READ"}


class Provisioner:
    """The application object and composition root: engine, clock, keys, wired checks."""

    def __init__(
        self,
        engine: Engine,
        *,
        master_key: MasterKey,
        clock: Clock | None = None,
        home: Path | None = None,
    ) -> None:
        self.engine = engine
        self.master_key = master_key
        self.clock: Clock = clock or SystemClock()
        self.home = home
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # the derived data of record writes (search index, counts) hangs off these sessions
        records.install_maintenance(self._sessions)
        call_usage.install(self._sessions)  # the disk usage of call records (call_bytes)
        #: cross-cutting checks the services run (see :func:`default_checks`)
        self.checks = default_checks()

    @classmethod
    def open(
        cls,
        db_url: str | None = None,
        *,
        clock: Clock | None = None,
        migrate_to_head: bool = False,
        require_schema: bool = True,
        **engine_options: Any,
    ) -> Provisioner:
        home = paths.home()
        engine = make_engine(paths.database_url(db_url), **engine_options)
        app = cls(engine, master_key=MasterKey.from_environment(home), clock=clock, home=home)
        if migrate_to_head:
            app.migrate()
        elif require_schema:
            app.require_schema()
        return app

    def migrate(self, progress: Callable[[str], None] | None = None) -> Outcome:
        """Create or upgrade the schema to this release's head (refusing a newer one)."""
        if self.engine.url.get_backend_name() == "sqlite" and self.engine.url.database:
            Path(self.engine.url.database).parent.mkdir(parents=True, exist_ok=True)
        try:
            # derived data is rebuilt with today's code
            return migrate.upgrade(self.engine, rebuild=derived.rebuild, progress=progress)
        except OperationalError as exc:
            raise failures.for_operator(exc) from exc

    def refuse_exempt_role(self, *, allowed: bool = False) -> None:
        """Refuse a PostgreSQL role that skips row-level security (superuser, BYPASSRLS)
        unless ``allowed``: the database would not keep tenants apart
        (:mod:`provisioner.db.roles`). SQLite: nothing to check."""
        if self.engine.dialect.name != "postgresql":
            return
        try:
            with self.engine.connect() as conn:
                roles.refuse_exempt(conn, allowed=allowed)
        except OperationalError as exc:
            raise failures.for_operator(exc) from exc

    def require_schema(self) -> None:
        try:
            current = migrate.current(self.engine)
        except OperationalError as exc:
            raise failures.for_operator(exc) from exc
        if not current:
            raise ConfigurationError(
                "the database is not initialised", hint="run 'provisioner init' first"
            )
        migrate.refuse_newer(current)
        if current != migrate.heads():
            raise ConfigurationError(
                f"the database schema is at revision {', '.join(sorted(current))}, this "
                f"provisioner needs {', '.join(sorted(migrate.heads()))}",
                hint="run 'provisioner init' to migrate",
            )

    @contextmanager
    def transaction(self, *, read_only: bool = False) -> Iterator[Context]:
        """One transaction; ``read_only``: see the module's documentation."""
        session = self._sessions()
        ctx = Context(session, self.clock, self.master_key, read_only=read_only, checks=self.checks)
        try:
            if read_only:
                with deferred_begin():
                    # begins now: DEFERRED on SQLite (a snapshot under WAL); on
                    # PostgreSQL REPEATABLE READ, so that every statement reads one
                    # snapshot (a search reads the index's sets and its pending log
                    # in separate statements); read-only, it never fails to serialize
                    postgres = self.engine.dialect.name == "postgresql"
                    session.connection(execution_options=_READ_ONLY if postgres else None)
            yield ctx
            if read_only and (session.new or session.dirty or session.deleted):
                raise RuntimeError("a read-only transaction changed rows")
            session.commit()
        except BaseException:
            if ctx._commit_on_error:
                session.commit()
                self._hand_off(ctx)  # kept like the writes
            else:
                session.rollback()
            raise
        finally:
            session.close()
        self._hand_off(ctx)

    def _hand_off(self, ctx: Context) -> None:
        """Write the rows a read-only transaction left."""
        rows, ctx._deferred_rows = ctx._deferred_rows, []
        if rows:
            self.write_log_rows(rows)

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
                if tenant_id is not None:  # the transaction ends here: nothing to restore
                    writer.enter_tenant(tenant_id)
                writer.session.add_all(group)
                writer.session.flush()
