"""Bulk inserts under PostgreSQL row-level security: the staging path is no bypass.

A role under row-level security may not ``COPY FROM`` into a tenant table, so
:func:`bulk.insert_rows` copies into a temporary table of the transaction
and moves the rows with one ``INSERT ... SELECT``, which the policies check like
any INSERT. These tests run the services as the suite's runtime role (neither
superuser nor table owner: ``runtime_app`` checks it).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, Table, text

from provisioner.db import bulk
from provisioner.db.crm_models import CrmChange
from provisioner.db.tenancy import set_operator
from provisioner.services.crm import csvio, scope, search
from provisioner.services.crm.search import Query
from tests.crm.helpers import configured, runtime_app
from tests.support import World

GOOD = (
    "氏名,フリガナ,会社名,電話番号,ランク\r\n"
    "田中 太郎,タナカ タロウ,(株)山田商事,03-1234-5678,gold\r\n"
    "鈴木 花子,スズキ ハナコ,株式会社山田商事,090-1111-2222,\r\n"
)
COLUMNS = ["tenant_id", "at", "actor", "record_type", "record_id", "action", "changes", "purpose"]


def _postgres_only(world: World) -> None:
    if world.app.engine.dialect.name != "postgresql":
        pytest.skip("COPY and row-level security are PostgreSQL features")


def _staging_tables(conn: Connection) -> int:
    """The session's temporary tables (the staging tables live there)."""
    return int(
        conn.scalar(text("SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()"))
        or 0
    )


def _changes() -> Table:
    table = CrmChange.__table__
    assert isinstance(table, Table)
    return table


def _change(tenant_id: int, record_id: int) -> tuple[object, ...]:
    return (
        tenant_id,
        datetime(2026, 1, 1, tzinfo=UTC),
        "probe",
        "contact",
        record_id,
        "create",
        {"import": "probe"},
        "probe",
    )


def test_staged_rows_of_another_tenant_are_refused(world: World) -> None:
    _postgres_only(world)
    configured(world, "acme")
    configured(world, "other")
    acme, other = world.actor("acme"), world.actor("other")
    with runtime_app(world) as app:
        with app.transaction() as ctx:
            scope.enter(ctx, acme)
            conn = ctx.session.connection()
            assert bulk.copy_mode(conn, "crm_changes") == "staged"
            with pytest.raises(Exception, match="row-level security"), conn.begin_nested():
                bulk.insert_rows(
                    conn,
                    _changes(),
                    COLUMNS,
                    [_change(acme.tenant_id, 1), _change(other.tenant_id, 2)],
                )
            assert _staging_tables(conn) == 0
            bulk.insert_rows(conn, _changes(), COLUMNS, [_change(acme.tenant_id, 3)])
            assert _staging_tables(conn) == 0  # dropped right after the INSERT ... SELECT
        with app.transaction() as ctx:
            scope.enter(ctx, other)
            conn = ctx.session.connection()
            assert _staging_tables(conn) == 0
            assert conn.scalar(text("SELECT count(*) FROM crm_changes WHERE actor = 'probe'")) == 0
    with world.app.engine.begin() as conn:
        set_operator(conn, "read")  # every tenant's rows
        assert conn.execute(
            text("SELECT tenant_id, record_id FROM crm_changes WHERE actor = 'probe'")
        ).all() == [(acme.tenant_id, 3)]


def test_an_import_as_the_plain_role_writes_only_its_tenant(world: World) -> None:
    _postgres_only(world)
    configured(world, "acme")
    configured(world, "other")
    acme, other = world.actor("acme"), world.actor("other")
    with runtime_app(world) as app:
        with app.transaction() as ctx:
            report = csvio.import_customers(ctx, acme, GOOD.encode())
            assert _staging_tables(ctx.session.connection()) == 0
        assert report.created == 2
        with app.transaction() as ctx:  # the next transaction (the same pooled session)
            assert _staging_tables(ctx.session.connection()) == 0
            assert search.search(ctx, other, Query()).total == 0
            assert search.search(ctx, acme, Query(q="山田商事")).total == 2
        with app.transaction() as ctx:  # the other tenant cannot stage acme's rows either
            scope.enter(ctx, other)
            conn = ctx.session.connection()
            with pytest.raises(Exception, match="row-level security"):
                bulk.insert_rows(conn, _changes(), COLUMNS, [_change(acme.tenant_id, 9)])
    with world.app.engine.begin() as conn:
        set_operator(conn, "read")  # every tenant's rows
        counts = {
            t: n
            for t, n in conn.execute(
                text("SELECT tenant_id, count(*) FROM crm_contacts GROUP BY tenant_id")
            )
        }
        assert counts == {acme.tenant_id: 2}
        grams = {
            t for (t,) in conn.execute(text("SELECT DISTINCT tenant_id FROM crm_search_grams"))
        }
        assert grams == {acme.tenant_id}
        assert conn.scalar(text("SELECT count(*) FROM crm_changes WHERE actor = 'probe'")) == 0
