"""Old migrations run no code of today; ``provisioner init`` rebuilds the derived data.

``0004_search_index`` and ``0006_crm_tallies`` create their tables empty and name
the derived data in ``rebuilds``; ``migrate.upgrade`` reports what the applied
migrations named, and the composition root (``Provisioner.migrate``, run by
``provisioner init``) fills it in the same transaction with today's code. The
result is the index and the counts the data has (the tests
``test_the_migration_builds_the_index_of_existing_contacts`` and
``test_the_migration_counts_existing_records`` compare them after ``init``).
"""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, text

from provisioner.db import migrate
from provisioner.db.tenancy import set_operator, set_tenant
from provisioner.services.crm import derived, seed
from tests.crm.helpers import configured, owner_engine
from tests.support import World


def _snapshot(conn: Connection, tenant_id: int) -> dict[str, Any]:
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT set_config('provisioner.tenant_id', :t, true)"), {"t": str(tenant_id)}
        )
    return {
        "grams": conn.execute(
            text(
                "SELECT gram, block, n, data FROM crm_search_grams WHERE tenant_id = :t "
                "ORDER BY gram, block"
            ),
            {"t": tenant_id},
        ).all(),
        "tallies": conn.execute(
            text(
                "SELECT name, value, n FROM crm_tallies WHERE tenant_id = :t ORDER BY name, value"
            ),
            {"t": tenant_id},
        ).all(),
        "company_grams": conn.execute(
            text(
                "SELECT gram, company_id FROM crm_company_grams WHERE tenant_id = :t "
                "ORDER BY gram, company_id"
            ),
            {"t": tenant_id},
        ).all(),
    }


def _back_to_0002(owner: Engine) -> None:
    cfg = migrate.alembic_config()
    with owner.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0002_crm")


def test_the_migrations_leave_derived_data_to_init(
    world: World, request: pytest.FixtureRequest
) -> None:
    """The migrations run as the schema's owner; the rebuild is then run again as the
    runtime role (PostgreSQL: neither superuser nor owner, under forced row-level
    security, as a non-superuser owner is too): the same derived data."""
    configured(world)
    admin = world.actor("acme")
    with world.app.transaction() as ctx:
        seed.seed_contacts(ctx, admin, 40, seed=5)
    with owner_engine(world, request) as owner:
        _check_migrations(world, owner, admin.tenant_id)


def _check_migrations(world: World, owner: Engine, tenant_id: int) -> None:
    _back_to_0002(owner)

    # the migrations alone: the tables exist, empty, and the derived data is named
    assert migrate.upgrade(owner).rebuilt == {
        derived.SEARCH_INDEX,
        derived.TALLIES,
        derived.COMPANY_INDEX,
    }
    with world.app.engine.begin() as conn:
        empty = _snapshot(conn, tenant_id)
    assert empty == {"grams": [], "tallies": [], "company_grams": []}
    assert migrate.upgrade(owner).rebuilt == set()  # at the heads: none

    # init: the same migrations, then today's rebuild in their transaction
    _back_to_0002(owner)
    migrate.upgrade(owner, rebuild=derived.rebuild)  # what provisioner init runs
    with world.app.engine.begin() as conn:  # as the runtime role
        after_init = _snapshot(conn, tenant_id)
        set_operator(conn, "write")  # every tenant's derived rows
        conn.execute(text("DELETE FROM crm_search_grams"))
        conn.execute(text("DELETE FROM crm_tallies"))
        conn.execute(text("DELETE FROM crm_company_grams"))
        set_operator(conn, "")
        set_tenant(conn, None)  # no scope: the rebuild scopes each tenant itself
        derived.rebuild(conn, {derived.SEARCH_INDEX, derived.TALLIES, derived.COMPANY_INDEX})
        rebuilt = _snapshot(conn, tenant_id)
    assert after_init["grams"]
    assert after_init["tallies"]
    assert after_init["company_grams"]  # the companies the sample data made
    assert after_init == rebuilt
    assert migrate.current(world.app.engine) == migrate.heads()
