"""Receiving in few statements: the checks folded together still hold."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from provisioner.db.models import CopyKeyRow, Transfer
from provisioner.errors import KeyRejected
from provisioner.services import transfers
from provisioner.services.crm import impact, records
from tests.support import World, labelled


@pytest.fixture
def partner(world: World) -> World:
    world.tenant("partner")
    world.tenant("client")
    world.set_config("partner", labelled(world.config("partner"), 1, "年賀状"))
    return world


def test_a_key_used_meanwhile_refuses_the_insert_and_stores_nothing(partner: World) -> None:
    """The guarded consumption (on PostgreSQL in the INSERT's statement) still decides."""
    first = partner.transfer(
        partner.receive("client", partner.export("partner", partner.key("client")))
    )
    values = {c.key: getattr(first, c.key) for c in Transfer.__table__.columns if c.key != "id"}
    with partner.app.transaction() as ctx:
        ctx.enter_tenant(first.tenant_id)  # the client's rows, as the receive reads them
        key_row = ctx.session.get(CopyKeyRow, first.copy_key_id)
        assert key_row is not None
        assert key_row.used_by_transfer == first.id
        with pytest.raises(KeyRejected, match="already used by another delivery"):
            transfers._insert_once(ctx, {**values, "bundle_id": "b_" + "y" * 26}, consume=key_row)
        ctx.session.rollback()  # as the failed receive's transaction is
    with partner.app.transaction() as ctx, ctx.operator("read"):  # every tenant's rows
        assert ctx.session.scalar(select(func.count()).select_from(Transfer)) == 1
        key_row = ctx.session.get(CopyKeyRow, first.copy_key_id)
        assert key_row is not None
        assert key_row.used_by_transfer == first.id


def test_a_fresh_key_is_consumed_by_the_new_transfer(partner: World) -> None:
    transfer = partner.transfer(
        partner.receive("client", partner.export("partner", partner.key("client")))
    )
    with partner.app.transaction() as ctx:
        ctx.enter_tenant(transfer.tenant_id)  # the client's rows, as the receive reads them
        key_row = ctx.session.get(CopyKeyRow, transfer.copy_key_id)
        assert key_row is not None
        assert key_row.used_by_transfer == transfer.id
        assert key_row.used_at is not None


def test_has_records_sees_records_written_in_the_same_transaction(partner: World) -> None:
    client, other = partner.actor("client"), partner.actor("partner")
    with partner.app.transaction() as ctx:
        assert not impact.has_records(ctx, client.tenant_id)
        records.create(ctx, other, "contact", {"name": "他社"})
        assert not impact.has_records(ctx, client.tenant_id)  # another tenant's record
        records.create(ctx, client, "contact", {"name": "顧客"})  # in this transaction
        assert impact.has_records(ctx, client.tenant_id)
    with partner.app.transaction() as ctx:
        assert impact.has_records(ctx, client.tenant_id)
        assert impact.has_records(ctx, other.tenant_id)
