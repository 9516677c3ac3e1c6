"""Approving a whole document names the stored document: same bytes, same digest, stored once."""

from __future__ import annotations

from sqlalchemy import func, select

from provisioner.canonical import sha256_hex
from provisioner.db.models import ConfigVersion, StoredDocument
from provisioner.services import documents
from tests.support import World, labelled


def _row(world: World, slug: str) -> ConfigVersion:
    tenant = world.tenant_row(slug)
    with world.app.transaction() as ctx:
        ctx.enter_tenant(tenant.id)  # the tenant's rows
        row = ctx.session.scalar(
            select(ConfigVersion).where(
                ConfigVersion.tenant_id == tenant.id, ConfigVersion.version == tenant.config_version
            )
        )
        assert row is not None
        return row


def test_whole_document_approval_stores_the_source_document(world: World) -> None:
    world.tenant("src")
    world.tenant("dst")
    world.set_config("src", labelled(world.config("src"), 5, "お歳暮"))
    tid = world.send("src", world.key("dst"))
    assert world.transfer(tid).plan["incoming_digest"].startswith("sha256:")
    decision = world.approve(tid, "dst-admin")
    assert decision.outcome == "applied"
    src, dst = _row(world, "src"), _row(world, "dst")
    with world.app.transaction() as ctx:
        body = documents.version_body(ctx.session, dst)
        assert body == documents.version_body(ctx.session, src)
        stored = ctx.session.scalar(
            select(func.count())
            .select_from(StoredDocument)
            .where(StoredDocument.digest == dst.digest)
        )
    assert stored == 1  # one copy, named by both versions and by the transfer
    assert dst.base_digest is None  # the arrived document itself, no delta
    assert dst.digest == src.digest == "sha256:" + sha256_hex(body)
    assert dst.origin == f"transfer:{tid}"
    assert dst.created_by == "dst-admin"
    # approving an identical document again changes nothing
    again = world.send("src", world.key("dst"))
    assert world.approve(again, "dst-admin").outcome == "unchanged"


def test_section_approval_computes_the_new_document(world: World) -> None:
    world.tenant("src")
    world.tenant("dst")
    world.set_config("src", labelled(world.config("src"), 5, "お歳暮"))
    world.set_config("dst", labelled(world.config("dst"), 6, "暑中見舞"))
    tid = world.send("src", world.key("dst"))
    world.approve(tid, "dst-admin", only=["checkboxes"])
    dst = _row(world, "dst")
    with world.app.transaction() as ctx:
        body = documents.version_body(ctx.session, dst)
    assert dst.digest == "sha256:" + sha256_hex(body)
    boxes = {c["index"]: c["label"] for c in world.config("dst")["checkboxes"]}
    assert boxes[5] == "お歳暮"
    assert boxes[6] != "暑中見舞"  # replaced by the source's checkboxes section
