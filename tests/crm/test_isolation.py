"""Tenant isolation: every record type x read/create/update/delete from another tenant."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from provisioner.db.crm_models import CRM_TENANT_TABLES
from provisioner.db.models import Base
from provisioner.errors import NotFound, PermissionDenied
from provisioner.services import actors
from provisioner.services.crm import records
from provisioner.services.crm.records import TYPES
from tests.crm.helpers import configured, one_of_each
from tests.support import World

#: what a create in the other tenant would point at (its parent), per type
PARENT_KEY = {"department": "company_id", "family": "contact_id", "card_exchange": "contact_id",
              "secret_note": "contact_id", "activity": "contact_id", "purchase": "contact_id",
              "external_link": "contact_id", "custom_record": "owner_id"}


def test_every_type_is_invisible_and_untouchable_from_another_tenant(world: World) -> None:
    configured(world, "acme")
    configured(world, "evil")
    acme = world.actor("acme")
    evil = world.actor("evil")
    ids = one_of_each(world, acme)
    assert set(ids) == set(TYPES)
    before = _counts(world)
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
    after = _counts(world)
    after["crm_contacts"] -= 1
    after["crm_changes"] -= 1
    assert after == before


def test_users_without_membership_cannot_act(world: World) -> None:
    configured(world, "acme")
    world.tenant("other", users={"outsider": "admin"})
    with world.app.transaction() as ctx, pytest.raises(PermissionDenied):
        actors.resolve(ctx, "outsider", "acme")


def _valid(type_name: str, data: dict[str, object]) -> dict[str, object]:
    extra: dict[str, dict[str, object]] = {
        "department": {"name": "部"}, "family": {"name": "家族"},
        "card_exchange": {"employee": "x", "date": "2026-01-01"},
        "secret_note": {"body": "b"}, "activity": {"date": "2026-01-01"},
        "purchase": {"date": "2026-01-01"}, "external_link": {"system": "erp",
                                                              "external_id": "Z"},
        "custom_record": {"database": "visits", "data": {"count": 1}},
    }
    return {**data, **extra[type_name]}


def _counts(world: World) -> dict[str, int]:
    with world.app.transaction() as ctx:
        return {name: ctx.session.scalar(select(func.count()).select_from(
            Base.metadata.tables[name])) or 0 for name in CRM_TENANT_TABLES}
