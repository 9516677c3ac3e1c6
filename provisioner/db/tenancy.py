"""The tenant scope of a transaction, as PostgreSQL's row-level security policies read it.

Every CRM table's policy admits the rows of the tenant named by the transaction-local
setting ``provisioner.tenant_id`` (an empty value: no tenant's rows). This module owns
the statement that sets it; the services set it through
:meth:`provisioner.services.transaction.Context.tenant_scope` (or ``enter_tenant`` for
the rest of a transaction), a pipelined read through :func:`provisioner.db.pipeline.run`,
and the derived-data rebuild of a migration through :func:`set_tenant`. SQLite has no
row-level security: there is nothing to set.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

#: the transaction's tenant, which PostgreSQL's row-level security policies key on
SET_TENANT = text("SELECT set_config('provisioner.tenant_id', :t, true)")
#: the same statement for a psycopg cursor (a pipeline)
SET_TENANT_SQL = "SELECT set_config('provisioner.tenant_id', %s, true)"


def value(tenant_id: int | None) -> str:
    """The setting's value for a tenant (``None``: no tenant, no tenant rows visible)."""
    return "" if tenant_id is None else str(tenant_id)


def set_tenant(conn: Connection, tenant_id: int | None) -> None:
    """Scope the rest of ``conn``'s transaction to the tenant (PostgreSQL; SQLite: nothing)."""
    if conn.dialect.name == "postgresql":
        conn.execute(SET_TENANT, {"t": value(tenant_id)})
