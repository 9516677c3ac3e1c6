"""The per-transaction context every service receives (a leaf of the services).

:class:`Context` carries the session, the clock, the master key and the
cross-cutting :class:`Checks` that the composition root
(:class:`provisioner.services.context.Provisioner`) registered at start-up. It
imports no service, so every service (including the ones the composition root
wires in) can use it without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from provisioner.clock import Clock
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
    #: the checks registered by the composition root (none for a bare Context)
    checks: Checks = field(default_factory=Checks)
    #: how deep the current write is in a chain of rule actions on other records
    rule_depth: int = 0

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
