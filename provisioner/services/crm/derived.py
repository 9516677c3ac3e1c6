"""Derived CRM data rebuilt from the records: the search index and the counts (tallies).

``provisioner init`` calls :func:`rebuild` after the migrations that created
their tables (``rebuilds`` in ``0004_search_index``, ``0006_crm_tallies`` and
``0016_crm_jobs``;
see :func:`provisioner.db.migrate.upgrade`), with the code of the day on the
schema of the day -- the migrations themselves run no code of the package.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from provisioner.db.tenancy import set_tenant
from provisioner.services.crm import company_search, search_index, tally

SEARCH_INDEX = "search_index"
TALLIES = "tallies"
COMPANY_INDEX = "company_index"
KNOWN = frozenset({SEARCH_INDEX, TALLIES, COMPANY_INDEX})


def rebuild(conn: Connection, names: set[str]) -> None:
    """Build the named derived data of every tenant (tables empty, as a migration left them).

    Tenant by tenant, each in its own scope: on PostgreSQL the tables are under forced
    row-level security, which binds their owner too (unless a superuser), so the
    tenants are listed from ``tenants`` (no tenant's rows) and each one's records read
    with ``provisioner.tenant_id`` set to it.
    """
    unknown = set(names) - KNOWN
    if unknown:
        raise ValueError(f"unknown derived data {sorted(unknown)}")
    tenant_ids = [t for (t,) in conn.execute(text("SELECT id FROM tenants ORDER BY id")).all()]
    for tenant_id in tenant_ids:
        set_tenant(conn, tenant_id)  # row-level security: the tenant's rows only
        if SEARCH_INDEX in names:
            rows = conn.execute(
                text("SELECT id, search_text FROM crm_contacts WHERE tenant_id = :t ORDER BY id"),
                {"t": tenant_id},
            ).all()
            if rows:
                search_index.index_new(conn, tenant_id, [(i, s) for i, s in rows])
        if COMPANY_INDEX in names:  # (0016_crm_jobs) search text and grams of every company
            company_search.rebuild(conn, tenant_id)
        if TALLIES in names:
            tally.rebuild(conn, tenant_id)
    set_tenant(conn, None)
