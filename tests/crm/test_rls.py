"""PostgreSQL row-level security on every CRM table, proven with a non-owner role.

The application itself still connects as the configured database user (in the test
set-up a superuser, which bypasses RLS); these tests prove the policies with a
dedicated role that is neither superuser nor table owner.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from provisioner.db.crm_models import CRM_TENANT_TABLES
from provisioner.services.crm import seed
from tests.crm.helpers import configured
from tests.support import World

ROLE = "provisioner_rls_probe"


def _postgres_only(world: World) -> None:
    if world.app.engine.dialect.name != "postgresql":
        pytest.skip("row-level security is a PostgreSQL feature (SQLite: the service layer "
                    "is the barrier, see test_isolation)")


def test_every_crm_table_has_forced_row_level_security(world: World) -> None:
    _postgres_only(world)
    with world.app.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
            "(SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) "
            "FROM pg_class c WHERE c.relname = ANY(:names)"), {"names": list(CRM_TENANT_TABLES)}
        ).all()
    assert sorted(r[0] for r in rows) == sorted(CRM_TENANT_TABLES)
    assert all(r[1] and r[2] and r[3] == 1 for r in rows), rows


def test_a_non_owner_role_sees_no_rows_without_the_tenant_setting(world: World) -> None:
    _postgres_only(world)
    configured(world, "acme")
    configured(world, "other")
    acme, other = world.actor("acme"), world.actor("other")
    with world.app.transaction() as ctx:
        seed.seed_contacts(ctx, acme, 30, seed=1)
        seed.seed_contacts(ctx, other, 20, seed=2)
    with world.app.engine.connect() as conn:
        conn.execute(text(
            f"DO $$ BEGIN CREATE ROLE {ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$"))
        conn.execute(text(f"GRANT SELECT, INSERT ON {', '.join(CRM_TENANT_TABLES)} TO {ROLE}"))
        conn.execute(text(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {ROLE}"))
        conn.commit()
        with conn.begin():
            conn.execute(text(f"SET LOCAL ROLE {ROLE}"))
            assert conn.scalar(text("SELECT current_user")) == ROLE
            for table in CRM_TENANT_TABLES:
                assert conn.scalar(text(f"SELECT count(*) FROM {table}")) == 0, table
            conn.execute(text("SELECT set_config('provisioner.tenant_id', :t, true)"),
                         {"t": str(acme.tenant_id)})
            assert conn.scalar(text("SELECT count(*) FROM crm_contacts")) == 30
            assert conn.scalar(text(
                "SELECT count(*) FROM crm_contacts WHERE tenant_id <> :t"),
                {"t": acme.tenant_id}) == 0
            with pytest.raises(Exception, match="row-level security"), conn.begin_nested():
                conn.execute(text(
                    "INSERT INTO crm_access_log (tenant_id, at, actor, kind, subject, "
                    "details) VALUES (:t, now(), 'x', 'login', '', '{}')"),
                    {"t": other.tenant_id})
        with conn.begin():
            conn.execute(text(f"REVOKE ALL ON {', '.join(CRM_TENANT_TABLES)} FROM {ROLE}"))
            conn.execute(text(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {ROLE}"))
