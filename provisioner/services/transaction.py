"""The per-transaction context every service receives (a leaf of the services).

:class:`Context` carries the session, the clock, the master key and the
cross-cutting :class:`Checks` that the composition root
(:class:`provisioner.services.context.Provisioner`) registered at start-up. It
imports no service, so every service (including the ones the composition root
wires in) can use it without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement

from provisioner.clock import Clock
from provisioner.db import pipeline, tenancy
from provisioner.db.models import Tenant
from provisioner.security.keystore import MasterKey

#: a check run before a new configuration version is written: ``check(ctx, tenant, size)``
#: with the document's size in bytes; it raises a ProvisionerError to refuse (nothing written)
VersionCheck = Callable[["Context", Tenant, int], None]


@dataclass
class Checks:
    """Cross-cutting checks, registered by the composition root, run by the core services.

    The core does not import the feature areas that impose rules on it: the
    provisioning area's disk quota on a new configuration version is registered
    here (``Provisioner.__init__``) and :func:`provisioner.services.configs.commit_versions`
    runs whatever is registered.
    """

    new_version: list[VersionCheck] = field(default_factory=list)

    def on_new_version(self, check: VersionCheck) -> None:
        self.new_version.append(check)


@dataclass
class Context:
    session: Session
    clock: Clock
    master_key: MasterKey
    _commit_on_error: bool = False
    #: a read-only transaction: rows go through :meth:`add_log_row` only
    read_only: bool = False
    _deferred_rows: list[Any] = field(default_factory=list)
    #: the checks registered by the composition root (none for a bare Context)
    checks: Checks = field(default_factory=Checks)
    #: how deep the current write is in a chain of rule actions on other records
    rule_depth: int = 0
    #: the tenant this transaction is scoped to (None: none), as this context set it
    scoped_tenant: int | None = None
    #: the cross-tenant mode this context set (``''``: none; see :meth:`operator`)
    operator_mode: str = ""

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

    def _scope(self, tenant_id: int | None) -> None:
        if tenant_id == self.scoped_tenant and tenant_id is not None:
            return  # set already (the setting lives as long as the transaction)
        if self.postgres:
            self._flush_pending()  # what is pending is written in the scope it was made in
            self.session.execute(tenancy.SET_TENANT, {"t": tenancy.value(tenant_id)})
        self.scoped_tenant = tenant_id

    @contextmanager
    def tenant_scope(self, tenant_id: int | None) -> Iterator[None]:
        """Scope what runs inside to a tenant, then restore the scope it had.

        PostgreSQL's row-level security policies show and accept that tenant's rows
        only (SQLite: nothing to do). ``None``: no tenant's rows. This is the one way
        the services set the scope (:meth:`enter_tenant` is the same for the rest of
        the transaction; a pipelined read passes the tenant to
        :meth:`run_pipelined`). If the body fails, the scope is restored if the
        transaction can still run a statement (a failed PostgreSQL transaction
        cannot: it ends, scope and all).
        """
        previous = self.scoped_tenant
        self._scope(tenant_id)
        try:
            yield
        except BaseException:
            with suppress(SQLAlchemyError):
                self._scope(previous)
            raise
        self._scope(previous)

    def enter_tenant(self, tenant_id: int) -> None:
        """Scope the rest of the transaction to a tenant (see :meth:`tenant_scope`)."""
        self._scope(tenant_id)

    def enter_tenant_named(self, slug: str) -> int | None:
        """Scope the rest of the transaction to the tenant with this slug, in one statement
        (PostgreSQL; the tenant's id, None if there is none: then no tenant's rows).
        SQLite: nothing to set, returns None."""
        if not self.postgres:
            return None
        found = self.session.execute(tenancy.SET_TENANT_NAMED, {"slug": slug}).scalar()
        self.scoped_tenant = int(found) if found else None
        return self.scoped_tenant

    @property
    def postgres(self) -> bool:
        """Whether the transaction runs on PostgreSQL (row-level security applies)."""
        return self.session.get_bind().dialect.name == "postgresql"

    def _flush_pending(self) -> None:
        session = self.session
        if session.new or session.dirty or session.deleted:
            session.flush()

    @contextmanager
    def of_tenant(self, tenant_id: int) -> Iterator[None]:
        """Work on one tenant's rows inside (a service given a tenant rather than an actor):
        nothing to do when the transaction is scoped to it already or writes across
        tenants (:meth:`operator`); else :meth:`tenant_scope`, restored afterwards."""
        if tenant_id == self.scoped_tenant or self.operator_mode == "write":
            yield
            return
        with self.tenant_scope(tenant_id):
            yield

    @contextmanager
    def operator(self, mode: str = "read") -> Iterator[None]:
        """Cross-tenant work, declared: every tenant's rows readable (``read``) or also
        writable (``write``) inside, then the mode it had.

        PostgreSQL's row-level security admits every tenant's rows in this mode only
        (policies ``operator_read``/``operator_write``); the services use it for work
        that is cross-tenant by nature (a rollout's batches, the billing run, the
        workflow scheduler's scan, operator commands), after their own checks.
        """
        _check_mode(mode)
        previous = self.operator_mode
        if mode == previous or (mode == "read" and previous == "write"):
            yield  # already wider
            return
        self._set_operator(mode)
        try:
            yield
        except BaseException:
            with suppress(SQLAlchemyError):
                self._set_operator(previous)
            raise
        self._set_operator(previous)

    def enter_operator(self, mode: str) -> None:
        """The rest of the transaction in a cross-tenant mode (see :meth:`operator`): for
        a transaction that is cross-tenant work as a whole (a rollout's batch)."""
        _check_mode(mode)
        if mode != self.operator_mode and self.operator_mode != "write":
            self._set_operator(mode)

    def _set_operator(self, mode: str) -> None:
        if self.postgres:
            self._flush_pending()  # what is pending is written in the mode it was made in
            self.session.execute(tenancy.settings_statement(("operator",)), {"operator": mode})
        self.operator_mode = mode

    def present(self, **credentials: str | int) -> None:
        """Present credentials for the rest of the transaction: the rows they reach
        become visible (``user_id``: the user's memberships and sessions; ``session``:
        a session by its token hash; ``copy_key``: a copy key by its selector;
        ``signing_key``: a public key by its key id). PostgreSQL only; SQLite: nothing.
        """
        unknown = set(credentials) - set(tenancy.CREDENTIALS)
        if unknown:
            raise ValueError(f"unknown credentials {sorted(unknown)}")
        if credentials and self.postgres:
            names = tuple(sorted(credentials))
            self.session.execute(
                tenancy.settings_statement(names), {n: str(credentials[n]) for n in names}
            )

    def run_pipelined(
        self,
        statements: Sequence[ClauseElement],
        values: Mapping[str, Any],
        *,
        tenant_id: int | None = None,
        credentials: Mapping[str, str] | None = None,
        commit: bool = False,
    ) -> list[list[SimpleNamespace]]:
        """PostgreSQL: scope the transaction to ``tenant_id`` (if given), present the
        ``credentials`` (see :meth:`present`) and run the statements, in one round trip
        (:func:`provisioner.db.pipeline.run`; ``commit``: end the transaction in it,
        then the scope ends with it)."""
        self.session.flush()  # what is pending is written first, as the statements expect
        rows = pipeline.run(
            self.session.connection(),
            statements,
            values,
            tenant_id=tenant_id,
            credentials=credentials,
            commit=commit,
        )
        if commit:
            self.scoped_tenant, self.operator_mode = None, ""
        elif tenant_id is not None:
            self.scoped_tenant = tenant_id
        return rows

    def keep_writes_on_error(self) -> None:
        """Commit what this transaction wrote even if it ends with an error."""
        self._commit_on_error = True


def _check_mode(mode: str) -> None:
    if mode not in tenancy.OPERATOR_MODES or not mode:
        raise ValueError(f"operator mode {mode!r}: 'read' or 'write'")
