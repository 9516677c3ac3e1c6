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

from typing import Any

from sqlalchemy import Connection, func, select, text

#: the transaction's tenant, which PostgreSQL's row-level security policies key on
SET_TENANT = text("SELECT set_config('provisioner.tenant_id', :t, true)")
#: the same, naming the tenant by its slug (the value set is returned: '' if none)
SET_TENANT_NAMED = text(
    "SELECT set_config('provisioner.tenant_id', "
    "COALESCE((SELECT id::text FROM tenants WHERE slug = :slug), ''), true)"
)
#: the same statement for a psycopg cursor (a pipeline)
SET_TENANT_SQL = "SELECT set_config('provisioner.tenant_id', %s, true)"
#: any one setting, for a psycopg cursor (name, value)
SET_SETTING_SQL = "SELECT set_config(%s, %s, true)"


def value(tenant_id: int | None) -> str:
    """The setting's value for a tenant (``None``: no tenant, no tenant rows visible)."""
    return "" if tenant_id is None else str(tenant_id)


def set_tenant(conn: Connection, tenant_id: int | None) -> None:
    """Scope the rest of ``conn``'s transaction to the tenant (PostgreSQL; SQLite: nothing)."""
    if conn.dialect.name == "postgresql":
        conn.execute(SET_TENANT, {"t": value(tenant_id)})


#: the credential settings a policy may key on (``provisioner.<name>``; see migration 0021)
CREDENTIALS = ("user_id", "session", "copy_key", "signing_key")
#: the cross-tenant mode (``''``: none, ``read``: every tenant's rows readable, ``write``:
#: readable and writable), set by the services that declare cross-tenant work
OPERATOR_MODES = ("", "read", "write")


def settings_statement(names: tuple[str, ...]) -> Any:
    """One statement setting several ``provisioner.<name>`` values for the transaction."""
    calls = ", ".join(f"set_config('provisioner.{n}', :{n}, true)" for n in names)
    return text(f"SELECT {calls}")


def settings_from(**values: Any) -> Any:
    """A SELECT setting ``provisioner.<name>`` to each SQL expression (NULL: ''), for the
    rest of the transaction; its row names each value set."""
    return select(
        *(
            func.set_config(f"provisioner.{name}", func.coalesce(value, ""), True).label(name)
            for name, value in values.items()
        )
    )


def set_operator(conn: Connection, mode: str) -> None:
    """The rest of ``conn``'s transaction in a cross-tenant mode (PostgreSQL; SQLite: nothing)."""
    if conn.dialect.name == "postgresql":
        conn.execute(settings_statement(("operator",)), {"operator": mode})
