"""The disk quota also guards the core writers: config set, receive/send and approve."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import undefer

from provisioner.db.models import ConfigVersion, Transfer
from provisioner.errors import QuotaExceeded
from provisioner.services import actors, copykeys, documents, transfers
from provisioner.services.context import Provisioner
from provisioner.services.provisioning import billing, quotas
from tests.support import World, labelled


def _leave_free(app: Provisioner, slug: str, free: int) -> None:
    with app.transaction() as ctx:
        used = quotas.usage(ctx, actors.get_tenant(ctx, slug)).used_bytes
        billing.set_prices(ctx, {"included_disk_bytes": used + free}, by="operator")


def _add_gb(app: Provisioner, slug: str) -> None:
    with app.transaction() as ctx:
        quotas.add_disk(ctx, slug, gb=1, by="operator")


def test_config_set_over_quota_is_refused_and_writes_nothing(
    app: Provisioner, world: World
) -> None:
    world.tenant("shop")
    before, version = world.config("shop"), world.version("shop")
    _leave_free(app, "shop", 100)
    with pytest.raises(QuotaExceeded, match="this configuration version"):
        world.set_config("shop", labelled(before, 1, "年賀状"))
    assert world.version("shop") == version
    assert world.config("shop") == before
    _add_gb(app, "shop")
    assert world.set_config("shop", labelled(before, 1, "年賀状")) == version + 1


def test_receive_and_approve_over_quota_are_refused(app: Provisioner, world: World) -> None:
    world.tenant("hq")
    world.tenant("shop")
    world.set_config("hq", labelled(world.config("hq"), 1, "本部"))
    key = world.key("shop")
    _leave_free(app, "shop", 100)
    with pytest.raises(QuotaExceeded, match="this bundle"):
        world.send("hq", key)
    with app.transaction() as ctx:  # refused before the key was consumed: it still works
        states = [
            copykeys.state(k, ctx.clock.now())
            for k in copykeys.list_keys(ctx, actors.resolve(ctx, "shop-admin", "shop"))
        ]
    assert states == ["active"]
    _leave_free(app, "shop", 100_000_000)
    transfer_id = world.send("hq", key)
    version = world.version("shop")
    _leave_free(app, "shop", 100)  # room for no new version now
    with pytest.raises(QuotaExceeded, match="this configuration version"):
        world.approve(transfer_id, "shop-admin")
    assert world.transfer(transfer_id).status == "pending"
    assert world.version("shop") == version
    _add_gb(app, "shop")
    assert world.approve(transfer_id, "shop-admin").outcome == "applied"


def test_stored_sizes_are_the_real_bytes_for_every_writer(app: Provisioner, world: World) -> None:
    """Usage sums sizes kept on the rows: each writer must store the true byte count."""
    world.tenant("hq")
    world.tenant("shop")
    world.set_config("hq", labelled(world.config("hq"), 1, "年賀状"))  # commit_version
    transfer_id = world.send("hq", world.key("shop"))  # accept: envelope
    world.approve(transfer_id, "shop-admin")  # the row-to-row copy
    with app.transaction() as ctx, ctx.operator("read"):  # the test inspects every tenant
        versions = [
            (documents.version_body(ctx.session, v), v.size_bytes)
            for v in ctx.session.scalars(select(ConfigVersion))
        ]
        envelopes = [
            (transfers.bundle_file(ctx.session, t), t.envelope_bytes)  # the file as received
            for t in ctx.session.scalars(select(Transfer).options(undefer("*")))
        ]
    assert len(versions) == 4
    assert all(size == len(doc) for doc, size in versions)
    assert envelopes
    assert all(size == len(raw) for raw, size in envelopes)
    with app.transaction() as ctx:
        shop = actors.get_tenant(ctx, "shop")
        ctx.enter_tenant(shop.id)  # the shop's rows
        shop_docs = [
            documents.version_body(ctx.session, v)
            for v in ctx.session.scalars(
                select(ConfigVersion).where(ConfigVersion.tenant_id == shop.id)
            )
        ]
        shop_raw = [
            transfers.bundle_file(ctx.session, t)
            for t in ctx.session.scalars(
                select(Transfer).where(Transfer.tenant_id == shop.id).options(undefer("*"))
            )
        ]
        assert quotas.usage(ctx, shop).used_bytes == sum(len(d) for d in shop_docs) + sum(
            len(r) for r in shop_raw
        )


def test_import_and_seed_over_quota_are_refused_and_write_nothing(
    app: Provisioner, world: World
) -> None:
    from provisioner.db.crm_models import CrmContact
    from provisioner.services.crm import csvio, seed

    world.tenant("shop")
    admin = world.actor("shop")
    csv = "氏名,電話番号\n" + "".join(f"山田 太郎{i},03-1234-{i:04d}\n" for i in range(20))
    _leave_free(app, "shop", 10 * quotas.CRM_RECORD_BYTES)  # room for 10 records, not 40
    with app.transaction() as ctx, pytest.raises(QuotaExceeded, match="importing 20 customers"):
        csvio.import_customers(ctx, admin, csv.encode("utf-8"))
    with app.transaction() as ctx, pytest.raises(QuotaExceeded, match="100 sample customers"):
        seed.seed_contacts(ctx, admin, 100)
    with app.transaction() as ctx:
        with ctx.operator("read"):  # no tenant's contacts at all
            assert ctx.session.scalar(select(func.count()).select_from(CrmContact)) == 0
        assert csvio.import_customers(ctx, admin, csv.encode("utf-8"), dry_run=True).rows == 20
    _leave_free(app, "shop", 100 * quotas.CRM_RECORD_BYTES)
    with app.transaction() as ctx:
        csvio.import_customers(ctx, admin, csv.encode("utf-8"))
        assert ctx.session.scalar(select(func.count()).select_from(CrmContact)) == 20
