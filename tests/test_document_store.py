"""Configuration documents stored once per distinct content (config_documents, by digest).

A rollout stores the template once and, per tenant, a small delta (its own changes
and the template's change); every version still reads back as the exact document,
quotas count the logical size, and migration 0018 moves existing rows both ways.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.orm import undefer

from provisioner.canonical import canonical_bytes, sha256_hex
from provisioner.config import delta
from provisioner.db import migrate, plans
from provisioner.db.engine import make_engine
from provisioner.db.models import ConfigVersion, StoredDocument, Tenant, Transfer
from provisioner.services import actors, configs, documents, signing
from provisioner.services.context import Provisioner
from provisioner.services.provisioning import quotas, rollout
from tests.support import World, labelled

SHOPS = [f"shop-{n}" for n in range(6)]

#: JSON as in configuration documents: a member's type is fixed by the schema, so no
#: member is a boolean in one document and a number in the other (``==`` equates them)
json_values = st.recursive(
    st.none() | st.integers(-(2**53), 2**53) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_values, json_values)
def test_a_delta_turns_its_base_into_the_new_document_and_leaves_the_base_alone(
    base: Any, new: Any
) -> None:
    before = canonical_bytes(base)
    found = delta.make(base, new)
    assert canonical_bytes(delta.apply(base, found)) == canonical_bytes(new)
    assert canonical_bytes(base) == before  # neither make nor apply changes the base
    assert delta.apply(base, orjson.loads(orjson.dumps(found))) == new  # stored as JSON
    assert (found is None) == (canonical_bytes(base) == canonical_bytes(new))


def test_a_member_compared_directly_is_compared_with_its_type() -> None:
    base = {"a": True, "b": [True, 1, "1", None]}
    new = {"a": 1, "b": [1, True, 1, 0]}
    assert canonical_bytes(delta.apply(base, delta.make(base, new))) == canonical_bytes(new)


def _trust(app: Provisioner, target: str) -> None:
    with app.transaction() as ctx:
        actor = actors.resolve(ctx, f"{target}-admin", target)
        pem = signing.public_key_pem(ctx, actors.get_tenant(ctx, "hq").id).encode()
        signing.trust(ctx, actor, pem, label="HQ", policy="auto")


def _roll_out(world: World) -> None:
    raw = world.export("hq")
    with world.app.transaction() as ctx:
        run = rollout.start(
            ctx, actors.resolve(ctx, "hq-admin", "hq"), raw, [rollout.Target(s) for s in SHOPS]
        )
    rollout.process(world.app, "hq-admin", run.id)


def _versions(world: World) -> list[tuple[ConfigVersion, bytes]]:
    with world.app.transaction() as ctx, ctx.operator("read"):  # every tenant's versions
        rows = list(ctx.session.scalars(select(ConfigVersion).order_by("tenant_id", "version")))
        return [(row, documents.version_body(ctx.session, row)) for row in rows]


def test_a_rollout_stores_the_template_once_and_each_tenant_its_changes(world: World) -> None:
    world.tenant("hq")
    world.set_config("hq", labelled(world.config("hq"), 1, "本部指定"))
    for slug in SHOPS:
        world.tenant(slug)
        _trust(world.app, slug)
    _roll_out(world)
    for n, slug in enumerate(SHOPS):  # each shop changes a checkbox of its own
        world.set_config(slug, labelled(world.config(slug), 2, f"{n}号店専用"))
    world.set_config("hq", labelled(world.config("hq"), 3, "本部の新項目"))
    with world.app.transaction() as ctx:
        stored_before = ctx.session.scalar(select(func.count()).select_from(StoredDocument))
    _roll_out(world)

    versions = _versions(world)
    for row, body in versions:  # every version reads back as exactly its document
        assert row.digest == "sha256:" + sha256_hex(body)
        assert row.size_bytes == len(body)  # the logical size, however it is stored
    latest = {row.tenant_id: (row, body) for row, body in versions}
    with world.app.transaction() as ctx:
        ids = dict(ctx.session.execute(select(Tenant.slug, Tenant.id)).all())
        stored_after = ctx.session.scalar(select(func.count()).select_from(StoredDocument))
    for n, slug in enumerate(SHOPS):
        row, body = latest[ids[slug]]
        boxes = orjson.loads(body)["checkboxes"]
        assert boxes[0]["label"] == "本部指定"
        assert boxes[1]["label"] == f"{n}号店専用"  # its own change kept
        assert boxes[2]["label"] == "本部の新項目"  # the template's change taken
        assert row.base_digest is not None
        assert row.delta is not None
        assert len(row.delta) < 1024, "a tenant's version costs what differs, not the document"
    # the second rollout stored three new documents: HQ's new template (as it arrived),
    # the bundle's file without it and the part of the plan every shop shares (the
    # template's change), which every shop's transfer names
    assert stored_after == stored_before + 3
    with world.app.transaction() as ctx, ctx.operator("read"):  # every shop's transfers
        transfers = ctx.session.scalars(
            select(Transfer)
            .where(Transfer.tenant_id.in_(ids[s] for s in SHOPS))
            .options(undefer(Transfer.payload_frame), undefer(Transfer.stored_plan))
        ).all()
        assert len(transfers) == 2 * len(SHOPS)
        frames = {orjson.dumps(t.payload_frame) for t in transfers}
        assert len(frames) == 2  # one file document per rollout
        upgrades = [t for t in transfers if t.plan["mode"] == "upgrade"]
        assert len(upgrades) == len(SHOPS)
        assert len({t.stored_plan[plans.SHARED] for t in upgrades}) == 1
        for t in upgrades:  # the row holds its own part; the plan reads back whole
            assert "changes" not in t.stored_plan
            assert t.plan["upgrade"]["taken"] == ["checkboxes.3.label"]
            assert t.plan["upgrade"]["kept"] == ["checkboxes.2.label"]
            assert t.plan["base_version"] == t.base_version
            assert [c["key"] for c in t.plan["changes"]] == ["3"]


def test_usage_counts_the_logical_size_of_a_version_stored_as_a_delta(world: World) -> None:
    world.tenant("shop")
    world.set_config("shop", labelled(world.config("shop"), 2, "自店の項目"))
    with world.app.transaction() as ctx:
        shop = actors.get_tenant(ctx, "shop")
        ctx.enter_tenant(shop.id)  # the shop's rows, as its services read them
        rows = list(
            ctx.session.scalars(select(ConfigVersion).where(ConfigVersion.tenant_id == shop.id))
        )
        assert rows[-1].base_digest is not None  # the change is stored as a delta
        logical = sum(len(documents.version_body(ctx.session, r)) for r in rows)
        assert quotas.usage(ctx, shop).used_bytes == logical


def test_history_diff_and_rollback_read_versions_stored_as_deltas(world: World) -> None:
    world.tenant("shop")
    first = world.config("shop")
    world.set_config("shop", labelled(first, 2, "二番"))
    world.set_config("shop", labelled(world.config("shop"), 3, "三番"))
    admin = world.actor("shop")
    with world.app.transaction() as ctx:
        tenant = actors.get_tenant(ctx, "shop")
        changes = configs.diff_versions(ctx, tenant, 1, 3)
        assert {c.key for c in changes} == {"2", "3"}
        configs.rollback(ctx, admin, tenant, 1)
    assert world.config("shop") == first
    with world.app.transaction() as ctx:  # the rollback names the stored first document
        tenant = actors.get_tenant(ctx, "shop")
        ctx.enter_tenant(tenant.id)  # the shop's rows, as its services read them
        head = ctx.session.get(ConfigVersion, (tenant.id, tenant.config_version))
        assert head is not None
        assert head.base_digest is None
        assert head.digest == configs.history(ctx, tenant)[0].digest


def test_the_migration_moves_documents_out_of_the_rows_and_back(
    world: World, request: pytest.FixtureRequest
) -> None:
    from alembic import command

    # migrations run as the schema's owner (on PostgreSQL the tests' runtime role is not)
    owner = (
        make_engine(request.getfixturevalue("postgres_owner_url"))
        if world.app.engine.dialect.name == "postgresql"
        else world.app.engine
    )
    request.addfinalizer(owner.dispose)

    world.tenant("src")
    world.tenant("dst")
    world.set_config("src", labelled(world.config("src"), 5, "お歳暮"))
    world.set_config("dst", labelled(world.config("dst"), 6, "暑中見舞"))
    world.approve(world.send("src", world.key("dst")), "dst-admin", only=["checkboxes"])
    versions = [(r.tenant_id, r.version, r.digest, body) for r, body in _versions(world)]
    with world.app.transaction() as ctx, ctx.operator("read"):  # every tenant's transfers
        incoming = {
            t.id: documents.body(ctx.session, t.incoming_digest)
            for t in ctx.session.scalars(select(Transfer))
        }
    assert any(r.base_digest is not None for r, _ in _versions(world))  # deltas to move back

    cfg = migrate.alembic_config()
    with owner.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0016_crm_jobs")
    with owner.connect() as conn:
        old = {
            (t, v): (d, doc.encode())
            for t, v, d, doc in conn.execute(
                text("SELECT tenant_id, version, digest, document FROM config_versions")
            )
        }
        old_incoming = dict(conn.execute(text("SELECT id, incoming FROM transfers")).all())
    assert old == {(t, v): (d, body) for t, v, d, body in versions}
    assert {k: bytes(v) for k, v in old_incoming.items()} == incoming

    documents.clear_caches()  # read back from the database alone
    migrate.upgrade(owner)
    assert [(r.tenant_id, r.version, r.digest, body) for r, body in _versions(world)] == versions
    with world.app.transaction() as ctx:
        stored = ctx.session.scalar(select(func.count()).select_from(StoredDocument))
        arrived = {"sha256:" + sha256_hex(body) for body in incoming.values()}
        assert stored == len({d for _, _, d, _ in versions} | arrived)
