"""PostgreSQL row-level security on every CRM table, proven with a non-owner role.

The test set-up migrates as the schema's owner and runs the services as the
suite's runtime role, which is neither superuser nor table owner (``runtime_app``
checks it): a bare query without the tenant setting sees no rows, and the
application itself works tenant by tenant.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from provisioner.db.crm_models import CRM_SEARCH_TABLES, CRM_TENANT_TABLES
from provisioner.errors import NotFound
from provisioner.services.crm import csvio, impact, records, search, seed
from provisioner.services.crm.search import Query
from tests.crm.helpers import configured, make, runtime_app
from tests.support import World


def _postgres_only(world: World) -> None:
    if world.app.engine.dialect.name != "postgresql":
        pytest.skip(
            "row-level security is a PostgreSQL feature (SQLite: the service layer "
            "is the barrier, see test_isolation)"
        )


def test_every_crm_table_has_forced_row_level_security(world: World) -> None:
    _postgres_only(world)
    with world.app.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
                "(SELECT array_agg(p.polname::text ORDER BY p.polname) FROM pg_policy p "
                "WHERE p.polrelid = c.oid) "
                "FROM pg_class c WHERE c.relname = ANY(:names)"
            ),
            {"names": [*CRM_TENANT_TABLES, *CRM_SEARCH_TABLES]},
        ).all()
    assert sorted(r[0] for r in rows) == sorted([*CRM_TENANT_TABLES, *CRM_SEARCH_TABLES])
    policies = ["operator_read", "operator_write", "tenant_isolation"]
    assert all(r[1] and r[2] and r[3] == policies for r in rows), rows


def test_a_non_owner_role_sees_no_rows_without_the_tenant_setting(world: World) -> None:
    _postgres_only(world)
    configured(world, "acme")
    configured(world, "other")
    acme, other = world.actor("acme"), world.actor("other")
    with world.app.transaction() as ctx:
        seed.seed_contacts(ctx, acme, 30, seed=1)
        seed.seed_contacts(ctx, other, 20, seed=2)
    with runtime_app(world) as app, app.engine.connect() as conn, conn.begin():
        for table in CRM_TENANT_TABLES:
            assert conn.scalar(text(f"SELECT count(*) FROM {table}")) == 0, table
        conn.execute(
            text("SELECT set_config('provisioner.tenant_id', :t, true)"),
            {"t": str(acme.tenant_id)},
        )
        assert conn.scalar(text("SELECT count(*) FROM crm_contacts")) == 30
        assert (
            conn.scalar(
                text("SELECT count(*) FROM crm_contacts WHERE tenant_id <> :t"),
                {"t": acme.tenant_id},
            )
            == 0
        )
        with pytest.raises(Exception, match="row-level security"), conn.begin_nested():
            conn.execute(
                text(
                    "INSERT INTO crm_access_log (tenant_id, at, actor, kind, subject, "
                    "details) VALUES (:t, now(), 'x', 'login', '', '{}')"
                ),
                {"t": other.tenant_id},
            )


def test_the_application_works_as_a_non_superuser_non_owner_role(world: World) -> None:
    """The services, connected as a plain login role, see exactly their tenant's rows."""
    _postgres_only(world)
    configured(world, "acme")
    configured(world, "other")
    acme, other = world.actor("acme"), world.actor("other")
    theirs = make(
        world, other, "contact", {"name": "他社 顧客", "memo_2": "gold", "phone": "03-5555-0000"}
    )
    with runtime_app(world) as app:
        with app.transaction() as ctx:
            mine = records.create(
                ctx,
                acme,
                "contact",
                {"name": "自社 顧客", "memo_2": "gold", "phone": "03-5555-0000"},
            ).record
            assert records.show(ctx, acme, "contact", mine["id"])["name"] == "自社 顧客"
            assert [i["id"] for i in search.search(ctx, acme, Query()).items] == [mine["id"]]
            assert search.lookup(ctx, acme, "0355550000")["contact"]["id"] == mine["id"]
            assert (
                csvio.export(ctx, acme, "customers", Query()).decode("utf-8-sig").count("顧客") == 1
            )
        with app.transaction() as ctx, pytest.raises(NotFound):
            records.show(ctx, acme, "contact", theirs["id"])
        base = world.config("acme")
        removed = [dict(p) for p in base["picklists"]]
        rank = next(p for p in removed if p["code"] == "rank")
        rank["values"] = [v for v in rank["values"] if v["code"] != "gold"]
        with app.transaction() as ctx:
            report = impact.impact(ctx, acme.tenant_id, base, {**base, "picklists": removed})
            assert [(i["value"], i["count"]) for i in report["items"]] == [("gold", 1)]
            assert impact.apply_remap(
                ctx, acme.tenant_id, {**base, "picklists": removed}, {"rank.gold": "silver"}
            ) == {"rank.gold": 1}
    with world.app.transaction() as ctx:  # the other tenant's value was not remapped
        assert records.show(ctx, other, "contact", theirs["id"])["memo_2"] == "gold"


def test_a_read_only_lookup_ends_its_transaction_and_what_follows_is_scoped_again(
    world: World,
) -> None:
    """A read-only transaction's lookup sends its COMMIT with the pipelined read: a later
    service in the same context scopes its own statements, and a bare statement after it
    carries no tenant setting, so it sees no rows."""
    _postgres_only(world)
    configured(world, "acme")
    configured(world, "other")
    acme, other = world.actor("acme"), world.actor("other")
    make(world, other, "contact", {"name": "他社", "phone": "03-7777-0000"})
    mine = make(
        world, acme, "contact", {"name": "自社", "phone": "03-7777-0000", "log_personal_info": True}
    )
    with runtime_app(world) as app:
        with app.transaction(read_only=True) as ctx:
            card = search.lookup(ctx, acme, "0377770000")
            assert (card["contact"]["id"], card["other_matches"]) == (mine["id"], [])
            assert ctx.session.scalar(text("SELECT count(*) FROM crm_contacts")) == 0
            assert [i["id"] for i in search.search(ctx, acme, Query()).items] == [mine["id"]]
            assert search.lookup(ctx, acme, "03-7777-0000")["contact"]["id"] == mine["id"]
        with app.transaction() as ctx:
            views = [e for e in records.access_log(ctx, acme) if e["kind"] == "personal_info_view"]
        assert [e["subject"] for e in views] == [f"contact:{mine['id']}"] * 2
