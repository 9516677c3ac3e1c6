"""The driver-level pieces of ``provisioner/db``: the tenant scope (``Context.tenant_scope``
restores the scope it found), the pipeline (one round trip, never a commit the caller did
not ask for) and bulk loading (``db.bulk.insert_rows``, the same rows on both paths)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Integer, String, Table, bindparam, cast, func, literal, select, text
from sqlalchemy.exc import DBAPIError

from provisioner.db import bulk, pipeline
from provisioner.db.crm_models import CrmChange
from provisioner.services.context import Provisioner
from tests.support import World

SETTING = text("SELECT current_setting('provisioner.tenant_id', true)")


def _postgres(app: Provisioner) -> bool:
    return app.engine.dialect.name == "postgresql"


def test_tenant_scope_restores_the_previous_scope(app: Provisioner) -> None:
    with app.transaction() as ctx:
        assert ctx.scoped_tenant is None
        ctx.enter_tenant(3)
        with ctx.tenant_scope(5):
            assert ctx.scoped_tenant == 5
            if _postgres(app):
                assert ctx.session.scalar(SETTING) == "5"
            with ctx.tenant_scope(None):
                assert ctx.scoped_tenant is None
                if _postgres(app):
                    assert ctx.session.scalar(SETTING) == ""
            assert ctx.scoped_tenant == 5
        assert ctx.scoped_tenant == 3
        if _postgres(app):
            assert ctx.session.scalar(SETTING) == "3"


def test_tenant_scope_restores_after_an_error_the_transaction_survives(app: Provisioner) -> None:
    with app.transaction() as ctx:
        ctx.enter_tenant(3)
        with pytest.raises(LookupError), ctx.tenant_scope(5):
            raise LookupError("not a database error")
        assert ctx.scoped_tenant == 3
        if _postgres(app):
            assert ctx.session.scalar(SETTING) == "3"


def test_tenant_scope_in_a_failed_transaction_keeps_the_database_error(app: Provisioner) -> None:
    if not _postgres(app):
        pytest.skip("a failed statement aborts the transaction on PostgreSQL only")
    with (
        pytest.raises(DBAPIError, match="division by zero"),
        app.transaction() as ctx,
        ctx.tenant_scope(5),
    ):
        ctx.session.execute(text("SELECT 1 / 0"))


_ECHO = select(literal(1).label("one"), bindparam("word").label("word"))
_SCOPED = select(func.current_setting("provisioner.tenant_id", True).label("tenant"))


def test_the_pipeline_runs_statements_in_the_callers_transaction(app: Provisioner) -> None:
    if not _postgres(app):
        with app.transaction() as ctx, pytest.raises(NotImplementedError):
            pipeline.run(ctx.session.connection(), [_ECHO], {"word": "x"})
        return
    with app.transaction() as ctx:
        echo, scoped = ctx.run_pipelined([_ECHO, _SCOPED], {"word": "語"}, tenant_id=7)
        assert (echo[0].one, echo[0].word) == (1, "語")
        assert scoped[0].tenant == "7"
        assert ctx.scoped_tenant == 7
        conn = ctx.session.connection()
        assert not pipeline.idle(conn)  # still in the transaction: nothing committed
        assert conn.scalar(SETTING) == "7"


def test_the_pipeline_commits_only_when_asked(app: Provisioner) -> None:
    if not _postgres(app):
        pytest.skip("pipelines are PostgreSQL's")
    with app.transaction(read_only=True) as ctx:
        conn = ctx.session.connection()
        assert pipeline.idle(conn)
        ctx.run_pipelined([_ECHO], {"word": "x"}, tenant_id=7, commit=True)
        assert pipeline.idle(conn)  # ended in the same round trip, scope and all
        assert ctx.scoped_tenant is None


def test_a_pipeline_error_is_a_dbapi_error(app: Provisioner) -> None:
    if not _postgres(app):
        pytest.skip("pipelines are PostgreSQL's")
    broken = select(cast(bindparam("word", type_=String), Integer).label("x"))
    with pytest.raises(DBAPIError, match="invalid input syntax"), app.transaction() as ctx:
        ctx.run_pipelined([broken], {"word": "not a number"}, tenant_id=1)


def _changes() -> Table:
    table = CrmChange.__table__
    assert isinstance(table, Table)
    return table


COLUMNS = ["tenant_id", "at", "actor", "record_type", "record_id", "action", "changes", "purpose"]


@pytest.mark.parametrize("use_copy", [True, False])
def test_insert_rows_loads_the_same_rows_either_way(
    world: World, use_copy: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "USE_COPY", use_copy)
    world.tenant("acme")
    tenant = world.tenant_row("acme")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        (tenant.id, at, "bulk", "contact", i, "create", {"n": i, "名": "田中"}, "p")
        for i in range(1, 4)
    ]
    with world.app.transaction() as ctx:
        ctx.enter_tenant(tenant.id)
        conn = ctx.session.connection()
        bulk.insert_rows(conn, _changes(), COLUMNS, rows)
        bulk.insert_rows(conn, _changes(), COLUMNS, [])  # nothing: no statement
        got = conn.execute(
            select(CrmChange.record_id, CrmChange.changes, CrmChange.at)
            .where(CrmChange.actor == "bulk")
            .order_by(CrmChange.record_id)
        ).all()
    assert [(r.record_id, r.changes) for r in got] == [
        (i, {"n": i, "名": "田中"}) for i in range(1, 4)
    ]
    assert all(r.at.replace(tzinfo=UTC) == at for r in got)
