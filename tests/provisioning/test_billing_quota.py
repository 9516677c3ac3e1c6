"""Billing (the 137,000 JPY example, a configurable price book), disk quota, templates."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from provisioner.clock import FrozenClock
from provisioner.db.models import ConfigVersion
from provisioner.errors import BundleRejected, QuotaExceeded, ValidationFailed
from provisioner.services import actors, documents, tenants
from provisioner.services.context import Provisioner
from provisioner.services.provisioning import billing, groups, metering, quotas, rollout, sandboxes
from provisioner.services.provisioning.rollout import Target
from tests.support import World, labelled


def _seed_b_group(app: Provisioner, world: World) -> None:
    """REQUIREMENTS B: 3 environments, 4 users, 1 GB extra disk on the third."""
    with app.transaction() as ctx:
        groups.create(ctx, "crmate", name="コールセンター")
    for slug in ("center-1", "center-2", "center-3"):
        with app.transaction() as ctx:
            tenants.create(ctx, slug, name=f"{slug} センター")
            groups.add_tenant(ctx, "crmate", slug)
    with app.transaction() as ctx:
        tenants.add_user(ctx, "kanri", tenant_slug="center-1", role="admin")
        tenants.add_user(ctx, "kanri", tenant_slug="center-2", role="admin")
        tenants.add_user(ctx, "kanri", tenant_slug="center-3", role="admin")
        tenants.add_user(ctx, "op-a", tenant_slug="center-1", role="general")
        tenants.add_user(ctx, "op-a", tenant_slug="center-3", role="general")
        tenants.add_user(ctx, "op-b", tenant_slug="center-2", role="general")
        tenants.add_user(ctx, "op-c", tenant_slug="center-3", role="general")
        quotas.add_disk(ctx, "center-3", gb=1, by="operator")


def test_seed_b_worked_example_is_137000_jpy(app: Provisioner, world: World) -> None:
    _seed_b_group(app, world)
    with app.transaction() as ctx:
        bill = billing.group_bill(ctx, "crmate", "2026-11")
    assert [(line["item"], line["amount"]) for line in bill.lines] == [
        ("licences", 22_000),
        ("additional tenant", 50_000),
        ("additional tenant", 50_000),
        ("disk add-on", 15_000),
    ]
    assert bill.total == 137_000
    assert bill.to_dict()["total"] == 137_000


def test_price_book_is_configurable(app: Provisioner, world: World) -> None:
    _seed_b_group(app, world)
    with app.transaction() as ctx:
        billing.set_prices(ctx, {"licence_jpy": 6_000}, by="operator")
        assert billing.group_bill(ctx, "crmate", "2026-11").total == 139_000
        with pytest.raises(ValidationFailed, match="cannot change the price book"):
            billing.set_prices(ctx, {"licence_jpy": -1, "free_lunch": 0}, by="operator")


def test_cancelled_tenant_is_billed_in_its_month_then_not(
    app: Provisioner, world: World, clock: FrozenClock
) -> None:
    _seed_b_group(app, world)
    with app.transaction() as ctx:
        groups.cancel_tenant(ctx, "center-2")
    with app.transaction() as ctx:
        assert billing.group_bill(ctx, "crmate", "2026-11").total == 137_000
        december = billing.group_bill(ctx, "crmate", "2026-12")
    # center-2 gone: kanri, op-a, op-c = 3 licences, one additional tenant, 1 GB
    assert december.total == 3 * 5_500 + 50_000 + 15_000


def _tiny_quota(app: Provisioner, free: int) -> None:
    with app.transaction() as ctx:
        tenant = actors.get_tenant(ctx, "shop")
        used = quotas.usage(ctx, tenant).used_bytes
        billing.set_prices(ctx, {"included_disk_bytes": used + free}, by="operator")


def test_quota_refuses_writes_and_loses_nothing(app: Provisioner, world: World) -> None:
    world.tenant("hq")
    world.set_config("hq", labelled(world.config("hq"), 1, "本部"))
    raw = world.export("hq")
    world.tenant("shop")
    with app.transaction() as ctx:
        from provisioner.services import signing

        pem = signing.public_key_pem(ctx, actors.get_tenant(ctx, "hq").id).encode()
        signing.trust(
            ctx, actors.resolve(ctx, "shop-admin", "shop"), pem, label="HQ", policy="auto"
        )
    _tiny_quota(app, free=100)
    before = world.config("shop")
    with app.transaction() as ctx:
        shop = actors.get_tenant(ctx, "shop")
        usage_before = quotas.usage(ctx, shop)
        run_id = rollout.start(ctx, actors.resolve(ctx, "hq-admin", "hq"), raw, [Target("shop")]).id
    rollout.process(app, "hq-admin", run_id)
    with app.transaction() as ctx:
        row = rollout.targets(ctx, actors.resolve(ctx, "hq-admin", "hq"), run_id)[0]
        assert row.status == "rejected"
        assert "out of disk space" in (row.reason or "")
        assert "nothing was written" in (row.reason or "")
        shop = actors.get_tenant(ctx, "shop")
        assert quotas.usage(ctx, shop) == usage_before
        ctx.enter_tenant(shop.id)  # the shop's versions (row-level security)
        assert (
            ctx.session.scalar(
                select(func.count())
                .select_from(ConfigVersion)
                .where(ConfigVersion.tenant_id == shop.id)
            )
            == 1
        )
    assert world.config("shop") == before
    # a call record needs 256 bytes: refused too; then an add-on makes room
    with app.transaction() as ctx, pytest.raises(QuotaExceeded, match="a call record") as full:
        metering.record_call(ctx, actors.resolve(ctx, "shop-admin", "shop"), "03-1111-2222")
    assert "provisioner tenant addon shop --disk-gb 1" in (full.value.hint or "")
    with app.transaction() as ctx:
        quotas.add_disk(ctx, "shop", gb=1, by="operator")
        metering.record_call(ctx, actors.resolve(ctx, "shop-admin", "shop"), "03-1111-2222")
        assert quotas.usage(ctx, actors.get_tenant(ctx, "shop")).used_bytes == (
            usage_before.used_bytes + quotas.CALL_RECORD_BYTES
        )


def test_usage_counts_stored_bytes(app: Provisioner, world: World) -> None:
    world.tenant("shop")
    with app.transaction() as ctx:
        shop = actors.get_tenant(ctx, "shop")
        first = quotas.usage(ctx, shop)
        ctx.enter_tenant(shop.id)  # the test reads the tenant's version
        row = ctx.session.scalar(select(ConfigVersion).where(ConfigVersion.tenant_id == shop.id))
        assert row is not None
        assert first.used_bytes == len(documents.version_body(ctx.session, row))
        assert first.quota_bytes == 1024**3


def test_tenant_from_a_template_bundle(app: Provisioner, world: World, clock: FrozenClock) -> None:
    world.tenant("partner")
    world.set_config("partner", labelled(world.config("partner"), 4, "診療科"))
    raw = world.export("partner", only=["checkboxes"])
    with app.transaction() as ctx:
        groups.create(ctx, "clinics", name="クリニック")
        tenant = sandboxes.create_from_bundle(
            ctx, "clinic-1", name="第一クリニック", raw=raw, group="clinics"
        )
        assert tenant.group_id is not None
    assert world.document("clinic-1").checkboxes[3].label == "診療科"
    world.tenant("other")
    bound = world.export("partner", world.key("other"))
    with app.transaction() as ctx, pytest.raises(BundleRejected, match="not a template"):
        sandboxes.create_from_bundle(ctx, "clinic-3", name="第三", raw=bound)
    clock.advance(days=91)
    with app.transaction() as ctx, pytest.raises(BundleRejected, match="expired"):
        sandboxes.create_from_bundle(ctx, "clinic-2", name="第二", raw=raw)
    with app.transaction() as ctx, ctx.operator("read"):  # the test counts every tenant's
        assert (
            ctx.session.scalar(
                select(func.count())
                .select_from(ConfigVersion)
                .where(ConfigVersion.origin.like("bundle:%"))
            )
            == 1
        )


def test_usage_counts_crm_records_of_the_tenant_only(app: Provisioner, world: World) -> None:
    from provisioner.services.crm import records

    world.tenant("shop")
    world.tenant("other")
    with app.transaction() as ctx:
        before = {
            s: quotas.usage(ctx, actors.get_tenant(ctx, s)).used_bytes for s in ("shop", "other")
        }
        records.create(
            ctx, actors.resolve(ctx, "shop-admin", "shop"), "contact", {"name": "田中 太郎"}
        )
    with app.transaction() as ctx:
        shop = actors.get_tenant(ctx, "shop")
        rows = quotas.crm_records(ctx, [shop.id])[shop.id]
        assert rows >= 1  # the contact (and its change history)
        assert quotas.usage(ctx, shop).used_bytes == before["shop"] + rows * quotas.CRM_RECORD_BYTES
        assert quotas.usage_many(ctx, [shop.id])[shop.id] == quotas.usage(ctx, shop)
        other = actors.get_tenant(ctx, "other")
        assert quotas.usage(ctx, other).used_bytes == before["other"]


def test_crm_records_are_counted_per_tenant_under_row_level_security(
    app: Provisioner, world: World
) -> None:
    """As the runtime role (row-level security applies), the counts of several tenants
    are each tenant's own, and the caller's scope and mode are as they were after."""
    from sqlalchemy import text

    from provisioner.services.crm import records

    if app.engine.dialect.name != "postgresql":
        pytest.skip("row-level security is a PostgreSQL feature")
    world.tenant("shop")
    world.tenant("other")
    with app.transaction() as ctx:
        for slug, n in (("shop", 3), ("other", 1)):
            actor = actors.resolve(ctx, f"{slug}-admin", slug)
            for i in range(n):
                records.create(ctx, actor, "contact", {"name": f"顧客 {i}"})
    with app.transaction() as ctx:
        ids = [actors.get_tenant(ctx, s).id for s in ("shop", "other")]
        expected = {}
        for tenant_id in ids:  # each tenant in its own scope: its rows only
            with ctx.tenant_scope(tenant_id):
                expected |= quotas.crm_records(ctx, [tenant_id])
    assert expected[ids[0]] > expected[ids[1]] > 0
    with app.transaction() as ctx:
        ctx.enter_tenant(ids[1])
        assert quotas.crm_records(ctx, ids) == expected
        assert quotas.crm_records(ctx, [ids[0]]) == {ids[0]: expected[ids[0]]}
        settings = ctx.session.execute(
            text(
                "SELECT current_setting('provisioner.tenant_id', true), "
                "current_setting('provisioner.operator', true)"
            )
        ).one()
        assert tuple(settings) == (str(ids[1]), "")  # the caller's scope, no operator mode
    with app.transaction() as ctx:  # unscoped, without the operator mode: nothing visible
        assert ctx.session.scalar(text("SELECT count(*) FROM crm_tallies")) == 0
