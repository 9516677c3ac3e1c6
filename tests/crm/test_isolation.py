"""Tenant isolation: every record type x read/create/update/delete from another tenant."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack

import pytest
from sqlalchemy import func, select

from provisioner.db.crm_models import CRM_TENANT_TABLES
from provisioner.db.schema import metadata
from provisioner.errors import NotFound, PermissionDenied
from provisioner.services import actors
from provisioner.services.crm import bulk, records, search
from provisioner.services.crm.records import TYPES
from provisioner.services.crm.search import Query
from tests.crm.helpers import configured, one_of_each
from tests.support import World

#: what a create in the other tenant would point at (its parent), per type
PARENT_KEY = {
    "department": "company_id",
    "family": "contact_id",
    "card_exchange": "contact_id",
    "secret_note": "contact_id",
    "activity": "contact_id",
    "purchase": "contact_id",
    "external_link": "contact_id",
    "custom_record": "owner_id",
    "job": "contact_id",
}


def test_every_type_is_invisible_and_untouchable_from_another_tenant(world: World) -> None:
    configured(world, "acme")
    configured(world, "evil")
    acme = world.actor("acme")
    evil = world.actor("evil")
    ids = one_of_each(world, acme)
    assert set(ids) == set(TYPES)
    before = _counts(world)
    before_acme = _counts(world, acme.tenant_id)
    for type_name, record_id in ids.items():
        with world.app.transaction() as ctx, pytest.raises(NotFound):
            records.show(ctx, evil, type_name, record_id)
        with world.app.transaction() as ctx, pytest.raises(NotFound):
            records.update(ctx, evil, type_name, record_id, {})
        with world.app.transaction() as ctx, pytest.raises(NotFound):
            records.delete_record(ctx, evil, type_name, record_id)
        with world.app.transaction() as ctx, pytest.raises(NotFound):
            records.history(ctx, evil, type_name, record_id)
        if type_name in PARENT_KEY:
            parent = ids["company" if type_name == "department" else "contact"]
            data = {PARENT_KEY[type_name]: parent}
            with world.app.transaction() as ctx, pytest.raises(NotFound):
                records.create(ctx, evil, type_name, _valid(type_name, data))
    # a contact of evil cannot be moved under acme's company
    with world.app.transaction() as ctx:
        mine = records.create(ctx, evil, "contact", {"name": "X"}).record["id"]
    with world.app.transaction() as ctx, pytest.raises(NotFound):
        records.update(ctx, evil, "contact", mine, {"company_id": ids["company"]})
    with world.app.transaction() as ctx, pytest.raises(NotFound):
        records.list_children(ctx, evil, "activity", ids["contact"])
    # nor can any of evil's own records be re-pointed at acme's parents
    with world.app.transaction() as ctx:
        evil_ids = {
            "company": records.create(ctx, evil, "company", {"name": "E"}).record["id"],
            "contact": mine,
        }
    evil_ids["department"] = records_create(
        world, evil, "department", {"company_id": evil_ids["company"], "name": "部"}
    )
    for child, key in PARENT_KEY.items():
        parent_type = "company" if child == "department" else "contact"
        own = records_create(world, evil, child, _valid(child, {key: evil_ids[parent_type]}))
        with world.app.transaction() as ctx, pytest.raises(NotFound):
            records.update(ctx, evil, child, own, {key: ids[parent_type]})
        if child not in ("department", "custom_record"):
            with world.app.transaction() as ctx, pytest.raises(NotFound):
                records.list_children(ctx, evil, child, ids["contact"])
    with world.app.transaction() as ctx, pytest.raises(NotFound):
        records.update(ctx, evil, "contact", mine, {"department_id": ids["department"]})
    # a search, a lookup or a bulk operation of evil never reaches acme's rows
    with world.app.transaction() as ctx:
        assert {i["id"] for i in search.search(ctx, evil, Query(limit=1000)).items}.isdisjoint(
            {ids["contact"]}
        )
        assert search.search(ctx, evil, Query(q="山田")).total == 0
        with pytest.raises(NotFound):
            search.lookup(ctx, evil, "03-1111-2222")
        bulk.bulk_update(ctx, evil, Query(), checkboxes={1: True})
        bulk.bulk_delete(ctx, evil, Query())
    with world.app.transaction() as ctx:
        assert records.show(ctx, acme, "contact", ids["contact"])["checkboxes"] == []
    after = _counts(world)
    for table in CRM_TENANT_TABLES:
        if table not in ("crm_changes", "crm_access_log"):
            assert _counts(world, acme.tenant_id)[table] == before_acme[table], table
    assert after["crm_changes"] > before["crm_changes"]  # evil's own changes only


def test_unique_codes_are_per_tenant(world: World) -> None:
    configured(world, "acme")
    configured(world, "beta")
    acme, beta = world.actor("acme"), world.actor("beta")
    for actor in (acme, beta):
        contact = records_create(world, actor, "contact", {"name": "X"})
        records_create(world, actor, "product", {"code": "P-1", "name": "製品"})
        records_create(
            world,
            actor,
            "external_link",
            {"contact_id": contact, "system": "erp", "external_id": "E-1"},
        )


def records_create(
    world: World, actor: actors.Actor, type_name: str, data: dict[str, object]
) -> int:
    with world.app.transaction() as ctx:
        record_id: int = records.create(ctx, actor, type_name, data).record["id"]
    return record_id


def test_users_without_membership_cannot_act(world: World) -> None:
    configured(world, "acme")
    world.tenant("other", users={"outsider": "admin"})
    with world.app.transaction() as ctx, pytest.raises(PermissionDenied):
        actors.resolve(ctx, "outsider", "acme")


def _valid(type_name: str, data: Mapping[str, object]) -> dict[str, object]:
    extra: dict[str, dict[str, object]] = {
        "department": {"name": "部"},
        "family": {"name": "家族"},
        "card_exchange": {"employee": "x", "date": "2026-01-01"},
        "secret_note": {"body": "b"},
        "activity": {"date": "2026-01-01"},
        "purchase": {"date": "2026-01-01"},
        "external_link": {"system": "erp", "external_id": "Z"},
        "custom_record": {"database": "visits", "data": {"count": 1}},
        "job": {"company_name": "前職"},
    }
    return {**data, **extra[type_name]}


def _counts(world: World, tenant_id: int | None = None) -> dict[str, int]:
    """Rows per CRM table (of one tenant, or all)."""
    with world.app.transaction() as ctx, ExitStack() as scoped:
        if tenant_id is None:
            scoped.enter_context(ctx.operator("read"))  # every tenant's rows
        else:
            ctx.enter_tenant(tenant_id)
        out = {}
        for name in CRM_TENANT_TABLES:
            table = metadata.tables[name]
            query = select(func.count()).select_from(table)
            if tenant_id is not None:
                query = query.where(table.c.tenant_id == tenant_id)
            out[name] = ctx.session.scalar(query) or 0
        return out
