"""Derived CRM data rebuilt from the records: the search index and the counts (tallies).

``provisioner init`` calls :func:`rebuild` after the migrations that created
their tables (``rebuilds`` in ``0004_search_index``, ``0006_crm_tallies`` and
``0016_crm_jobs``;
see :func:`provisioner.db.migrate.upgrade`), with the code of the day on the
schema of the day -- the migrations themselves run no code of the package.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from provisioner.services.crm import company_search, search_index, tally

SEARCH_INDEX = "search_index"
TALLIES = "tallies"
COMPANY_INDEX = "company_index"
KNOWN = frozenset({SEARCH_INDEX, TALLIES, COMPANY_INDEX})

_SCOPE = text("SELECT set_config('provisioner.tenant_id', :t, true)")


def rebuild(conn: Connection, names: set[str]) -> None:
    """Build the named derived data of every tenant (tables empty, as a migration left them)."""
    unknown = set(names) - KNOWN
    if unknown:
        raise ValueError(f"unknown derived data {sorted(unknown)}")
    postgres = conn.dialect.name == "postgresql"
    if SEARCH_INDEX in names:
        for (tenant_id,) in conn.execute(text(
                "SELECT DISTINCT tenant_id FROM crm_contacts ORDER BY tenant_id")).all():
            if postgres:  # row-level security: the tenant's rows only
                conn.execute(_SCOPE, {"t": str(tenant_id)})
            rows = conn.execute(text(
                "SELECT id, search_text FROM crm_contacts WHERE tenant_id = :t ORDER BY id"),
                {"t": tenant_id}).all()
            search_index.index_new(conn, tenant_id, [(i, s) for i, s in rows])
    if COMPANY_INDEX in names:  # (0016_crm_jobs) search text and grams of every company
        for (tenant_id,) in conn.execute(text(
                "SELECT DISTINCT tenant_id FROM crm_companies ORDER BY tenant_id")).all():
            if postgres:
                conn.execute(_SCOPE, {"t": str(tenant_id)})
            company_search.rebuild(conn, tenant_id)
    if TALLIES in names:
        for (tenant_id,) in conn.execute(text("SELECT id FROM tenants ORDER BY id")).all():
            if postgres:
                conn.execute(_SCOPE, {"t": str(tenant_id)})
            tally.rebuild(conn, tenant_id)
    if postgres:
        conn.execute(_SCOPE, {"t": ""})
