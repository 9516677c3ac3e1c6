"""The application object and the per-transaction context services receive.

    app = Provisioner.open()                 # database URL and home from the environment
    with app.transaction() as ctx:           # commits on success, rolls back on error
        tenants.create(ctx, "acme", name="ACME")

``ctx.keep_writes_on_error()`` makes the transaction commit even though an
error propagates: a refused copy-key redemption records the failed attempt
(for rate limiting and audit) and nothing else, and that record must stay.
The services that use it write nothing before that point.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from provisioner import paths
from provisioner.clock import Clock, SystemClock
from provisioner.db import migrate
from provisioner.db.engine import make_engine
from provisioner.errors import ConfigurationError
from provisioner.security.keystore import MasterKey


@dataclass
class Context:
    session: Session
    clock: Clock
    master_key: MasterKey
    _commit_on_error: bool = False

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
    def transaction(self) -> Iterator[Context]:
        session = self._sessions()
        ctx = Context(session, self.clock, self.master_key)
        try:
            yield ctx
            session.commit()
        except BaseException:
            if ctx._commit_on_error:
                session.commit()
            else:
                session.rollback()
            raise
        finally:
            session.close()
