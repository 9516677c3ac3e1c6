"""The disk quota guards single CRM record writes, from the maintained record count."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from provisioner.db.crm_models import CrmChange, CrmContact
from provisioner.errors import QuotaExceeded
from provisioner.services import actors
from provisioner.services.context import Provisioner
from provisioner.services.crm import records, scope, tally
from provisioner.services.provisioning import billing, quotas
from tests.provisioning.conftest import Cli
from tests.support import World


def _leave_free(app: Provisioner, slug: str, free: int) -> None:
    with app.transaction() as ctx:
        used = quotas.usage(ctx, actors.get_tenant(ctx, slug)).used_bytes
        billing.set_prices(ctx, {"included_disk_bytes": used + free}, by="operator")


def _stored(app: Provisioner, slug: str) -> tuple[int, int, int, int]:
    """(contacts, change-log rows, maintained record count, used bytes) of the tenant."""
    with app.transaction() as ctx:
        tenant = actors.get_tenant(ctx, slug)
        actor = actors.resolve(ctx, f"{slug}-admin", slug)
        scope.enter(ctx, actor)
        contacts = (
            ctx.session.scalar(
                select(func.count())
                .select_from(CrmContact)
                .where(CrmContact.tenant_id == tenant.id)
            )
            or 0
        )
        changes = (
            ctx.session.scalar(
                select(func.count()).select_from(CrmChange).where(CrmChange.tenant_id == tenant.id)
            )
            or 0
        )
        counted = tally.records(ctx.session.connection(), tenant.id)
        return contacts, changes, counted, quotas.usage(ctx, tenant).used_bytes


def test_a_record_create_over_quota_is_refused_and_writes_nothing(
    app: Provisioner, world: World
) -> None:
    world.tenant("shop")
    admin = world.actor("shop")
    with app.transaction() as ctx:
        contact = records.create(ctx, admin, "contact", {"name": "既存 顧客"}).record
    before = _stored(app, "shop")
    assert before[:3] == (1, 1, 2)  # the contact and its change-log row, counted
    # room for one record, not for a record and its change-log row
    _leave_free(app, "shop", quotas.CRM_RECORD_BYTES)
    for type_name, data in (
        ("contact", {"name": "新規 顧客"}),
        ("activity", {"contact_id": contact["id"], "date": "2026-11-01"}),
        ("company", {"name": "株式会社新規"}),
    ):
        with (
            pytest.raises(QuotaExceeded, match=f"a new {type_name} needs 1,024 bytes") as err,
            app.transaction() as ctx,
        ):
            records.create(ctx, admin, type_name, data)
        assert "nothing was written" in err.value.message
        assert "--disk-gb" in (err.value.hint or "")
        assert _stored(app, "shop") == before
    with app.transaction() as ctx:  # what is stored stays readable and changeable
        assert records.show(ctx, admin, "contact", contact["id"])["name"] == "既存 顧客"
        records.update(ctx, admin, "contact", contact["id"], {"title": "部長"})
    with app.transaction() as ctx:
        quotas.add_disk(ctx, "shop", gb=1, by="operator")
    with app.transaction() as ctx:
        records.create(ctx, admin, "contact", {"name": "新規 顧客"})
    contacts, _, counted, used = _stored(app, "shop")
    assert contacts == 2
    assert counted == before[2] + 3  # + the update's and the create's change-log rows
    assert used == before[3] + 3 * quotas.CRM_RECORD_BYTES


def test_usage_reads_the_maintained_count(app: Provisioner, world: World) -> None:
    world.tenant("shop")
    admin = world.actor("shop")
    with app.transaction() as ctx:
        for i in range(3):
            records.create(ctx, admin, "contact", {"name": f"顧客 {i}"})
    with app.transaction() as ctx:
        shop = actors.get_tenant(ctx, "shop")
        scope.enter(ctx, admin)
        assert quotas.crm_records(ctx, [shop.id]) == {shop.id: 6}
        assert tally.recount(ctx.session.connection(), shop.id)[tally.RECORDS] == 6


def test_the_cli_refuses_a_record_over_quota_until_disk_is_added(
    app: Provisioner, world: World, run: Cli
) -> None:
    world.tenant("shop")
    data = json.dumps({"name": "架電 太郎", "phone": "03-9999-0000"})
    argv = ("record", "create", "contact", "-t", "shop", "--as", "shop-admin", "--data", data)
    run.json(*argv)
    before = _stored(app, "shop")
    _leave_free(app, "shop", 100)
    refused = run.run(*argv, code=1)
    assert "out of disk space: a new contact needs 1,024 bytes" in refused.stderr
    assert "nothing was written" in refused.stderr
    assert "provisioner tenant addon shop --disk-gb 1" in refused.stderr
    as_json = run.run(*argv, code=1, as_json=True)
    assert "quota_exceeded" in as_json.stdout + as_json.stderr
    assert _stored(app, "shop") == before
    run.run("tenant", "addon", "shop", "--disk-gb", "1")
    assert run.json(*argv)["record"]["name"] == "架電 太郎"
    assert _stored(app, "shop")[:3] == (before[0] + 1, before[1] + 1, before[2] + 2)
