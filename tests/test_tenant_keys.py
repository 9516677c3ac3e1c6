"""On PostgreSQL every key of a tenant table includes ``tenant_id`` (migration 0014).

Two reasons, both tested here: the schema can be distributed by tenant (Citus wants
the distribution column in every primary key and unique constraint, and in every
foreign key between distributed tables: docs/scaling.md), and the database itself
refuses a row that points at another tenant's row -- foreign-key checks bypass
row-level security, so without the composite keys a write past the application
could link tenant A's contact to tenant B's company.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from provisioner.db.engine import make_engine
from tests.crm.helpers import configured, make
from tests.support import World

#: the documented exceptions (docs/scaling.md), each with its reason
EXCEPTIONS = {
    (
        "audit_events",
        "pk_audit_events",
    ): "operator events (price book, groups, passwords) belong to no tenant",
}

#: constraints of tables with a NOT NULL tenant_id that leave tenant_id out: primary
#: keys, unique constraints, and foreign keys to another such table
NONCOMPLIANT = """
WITH tenant_tables AS (
  SELECT c.oid, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
    AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                AND a.attname = 'tenant_id' AND NOT a.attisdropped)
)
SELECT t.relname, con.conname, pg_get_constraintdef(con.oid)
FROM tenant_tables t JOIN pg_constraint con ON con.conrelid = t.oid
WHERE con.contype IN ('p', 'u', 'f')
  AND (con.contype <> 'f' OR con.confrelid IN (SELECT oid FROM tenant_tables))
  AND NOT EXISTS (SELECT 1 FROM unnest(con.conkey) k
                  JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k
                  WHERE a.attname = 'tenant_id')
  AND (con.contype <> 'f' OR EXISTS (
        SELECT 1 FROM unnest(con.confkey) k
        JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k
        WHERE a.attname = 'tenant_id'))
ORDER BY 1, 2
"""

#: foreign keys between tenant tables that name tenant_id on the referencing side only
#: (such a key proves nothing; keys to the tenants table itself are what they should be)
HALF_COMPOSITE = """
SELECT con.conrelid::regclass::text, con.conname FROM pg_constraint con
WHERE con.contype = 'f' AND con.connamespace = (
        SELECT oid FROM pg_namespace WHERE nspname = current_schema())
  AND EXISTS (SELECT 1 FROM unnest(con.conkey) k JOIN pg_attribute a
              ON a.attrelid = con.conrelid AND a.attnum = k WHERE a.attname = 'tenant_id')
  AND NOT EXISTS (SELECT 1 FROM unnest(con.confkey) k JOIN pg_attribute a
                  ON a.attrelid = con.confrelid AND a.attnum = k WHERE a.attname = 'tenant_id')
  AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = con.confrelid
              AND a.attname = 'tenant_id' AND NOT a.attisdropped)
"""


def _postgres(world: World) -> None:
    if world.app.engine.dialect.name != "postgresql":
        pytest.skip("the tenant keys are PostgreSQL's (SQLite is never distributed)")


def _two_tenants(world: World) -> tuple[dict[str, int], dict[str, int]]:
    """(acme's company/department/contact ids, beta's)."""
    out = []
    for slug in ("acme", "beta"):  # each: company, department, contact, activity
        configured(world, slug)
        admin = world.actor(slug)
        company = make(world, admin, "company", {"name": f"{slug}商事"})
        department = make(
            world, admin, "department", {"company_id": company["id"], "name": "営業部"}
        )
        contact = make(
            world,
            admin,
            "contact",
            {"name": f"{slug}太郎", "company_id": company["id"], "department_id": department["id"]},
        )
        activity = make(
            world,
            admin,
            "activity",
            {"contact_id": contact["id"], "date": "2026-12-01", "content": "電話"},
        )
        out.append(
            {
                "company": company["id"],
                "department": department["id"],
                "contact": contact["id"],
                "activity": activity["id"],
            }
        )
    return out[0], out[1]


@contextmanager
def _as_superuser(request: pytest.FixtureRequest) -> Iterator[Connection]:
    """A connection that passes row-level security (the database's owner, a superuser):
    the test plays a write past the application (a bug, a console session, a restored
    dump)."""
    engine = make_engine(request.getfixturevalue("postgres_owner_url"), pool_size=1)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def test_every_key_of_a_tenant_table_includes_tenant_id(world: World) -> None:
    _postgres(world)
    with world.app.engine.connect() as conn:
        found = {
            (table, name): definition
            for table, name, definition in conn.execute(text(NONCOMPLIANT))
        }
        half = conn.execute(text(HALF_COMPOSITE)).all()
    unexpected = {key: d for key, d in found.items() if key not in EXCEPTIONS}
    assert not unexpected, (
        "keys of tenant tables without tenant_id (add it, as migration 0014_tenant_keys "
        f"does, or document an exception in docs/scaling.md): {unexpected}"
    )
    assert set(EXCEPTIONS) <= set(found), "an exception no longer needed: remove it"
    assert half == []


@pytest.mark.parametrize(
    ("table", "column", "points_at"),
    [
        ("crm_contacts", "company_id", "company"),
        ("crm_contacts", "department_id", "department"),
        ("crm_departments", "company_id", "company"),
        ("crm_activities", "contact_id", "contact"),
    ],
)
def test_a_row_cannot_point_at_another_tenants_row(
    world: World, request: pytest.FixtureRequest, table: str, column: str, points_at: str
) -> None:
    _postgres(world)
    acme, beta = _two_tenants(world)
    own = {
        "crm_contacts": "contact",
        "crm_departments": "department",
        "crm_activities": "activity",
    }[table]
    with _as_superuser(request) as conn:
        statement = text(f"UPDATE {table} SET {column} = :target WHERE id = :id")
        params = {"target": beta[points_at], "id": acme[own]}
        with pytest.raises(IntegrityError, match="violates foreign key constraint"):
            conn.execute(statement, params)


def test_deleting_a_company_unlinks_its_contacts_and_keeps_their_tenant(
    world: World, request: pytest.FixtureRequest
) -> None:
    _postgres(world)
    acme, _beta = _two_tenants(world)
    with _as_superuser(request) as conn, conn.begin():
        conn.execute(text("DELETE FROM crm_companies WHERE id = :c"), {"c": acme["company"]})
        row = conn.execute(
            text("SELECT tenant_id, company_id, department_id FROM crm_contacts WHERE id = :c"),
            {"c": acme["contact"]},
        ).one()
    assert row.tenant_id is not None
    assert (row.company_id, row.department_id) == (None, None)  # department cascaded


def test_a_lookup_by_id_alone_still_uses_the_primary_key(world: World) -> None:
    _postgres(world)
    acme, _beta = _two_tenants(world)
    with world.app.engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(
            conn.execute(
                text("EXPLAIN SELECT name FROM crm_contacts WHERE id = :c"), {"c": acme["contact"]}
            ).scalars()
        )
    assert "pk_crm_contacts" in plan
    assert "Index Cond: (id =" in plan
