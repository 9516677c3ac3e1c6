"""What a rollout's batches send to the database: the run's document is looked up once,
and the statements keep one text whatever the batch's size (counted with an event
listener on the engine)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, select

from provisioner.db.models import ConfigVersion, StoredDocument, Tenant
from provisioner.services import actors, configs, signing
from provisioner.services.context import Provisioner
from provisioner.services.provisioning import rollout
from provisioner.services.provisioning.rollout import Target
from tests.support import World, labelled, retried_batches

#: :func:`provisioner.services.documents.stored`, the document store's look-up
LOOK_UP = "SELECT config_documents.digest FROM config_documents"


def _trusting_shops(app: Provisioner, world: World, n: int) -> tuple[bytes, list[str]]:
    world.tenant("hq")
    world.set_config("hq", labelled(world.config("hq"), 1, "本部指定"))
    raw = world.export("hq")
    slugs = [f"shop-{i}" for i in range(1, n + 1)]
    for slug in slugs:
        world.tenant(slug)
        with app.transaction() as ctx:
            actor = actors.resolve(ctx, f"{slug}-admin", slug)
            pem = signing.public_key_pem(ctx, actors.get_tenant(ctx, "hq").id).encode()
            signing.trust(ctx, actor, pem, label="HQ", policy="auto")
    return raw, slugs


def _start(app: Provisioner, raw: bytes, slugs: list[str]) -> int:
    with app.transaction() as ctx:
        actor = actors.resolve(ctx, "hq-admin", "hq")
        return rollout.start(ctx, actor, raw, [Target(s) for s in slugs]).id


@contextmanager
def _statements(app: Provisioner) -> Iterator[list[tuple[str, bool]]]:
    """(SQL text, executemany) of every statement sent while the block runs."""
    sent: list[tuple[str, bool]] = []

    def note(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        sent.append((re.sub(r"\s+", " ", statement), executemany))

    event.listen(app.engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(app.engine, "before_cursor_execute", note)


def test_one_document_is_looked_up_by_the_first_batch_only(app: Provisioner, world: World) -> None:
    raw, slugs = _trusting_shops(app, world, 7)
    run_id = _start(app, raw, slugs)
    with _statements(app) as sent:
        rollout.process(app, "hq-admin", run_id, batch_size=2)  # batches of 2, 2, 2 and 1
    assert retried_batches(app) == 0
    look_ups = [s for s, _ in sent if s.startswith(LOOK_UP)]
    assert len(look_ups) == 1, look_ups  # the first batch's; later batches know it is stored
    stores = [s for s, _ in sent if s.startswith("INSERT INTO config_documents")]
    assert len(stores) == 1, stores  # the bundle's document, once
    # the targets' current versions are loaded whole only for the one plan made from them
    loads = [s for s, _ in sent if "config_versions.delta" in s and s.startswith("SELECT")]
    assert len(loads) == 1, loads
    with app.transaction() as ctx, ctx.operator("read"):  # every target's versions
        hq = configs.current(ctx, actors.get_tenant(ctx, "hq"))
        rows = ctx.session.execute(
            select(ConfigVersion.digest, ConfigVersion.base_digest, ConfigVersion.version)
            .join(
                Tenant,
                (Tenant.id == ConfigVersion.tenant_id)
                & (Tenant.config_version == ConfigVersion.version),
            )
            .where(Tenant.slug.in_(slugs))
        ).all()
        assert len(rows) == len(slugs)
        # every target names HQ's document, stored whole once
        assert {(d, b, v) for d, b, v in rows} == {(hq.digest, None, 2)}
        assert ctx.session.get(StoredDocument, hq.digest) is not None


def test_a_batch_rolled_back_does_not_count_its_document_as_stored(
    app: Provisioner, world: World
) -> None:
    raw, slugs = _trusting_shops(app, world, 2)
    with app.transaction() as ctx:  # a stray row where shop-1's next version goes
        tenant = actors.get_tenant(ctx, "shop-1")
        assert tenant.config_version is not None
        ctx.enter_tenant(tenant.id)  # a row of shop-1's (row-level security)
        ctx.session.add(
            ConfigVersion(
                tenant_id=tenant.id,
                version=tenant.config_version + 1,
                digest="sha256:stray",
                created_at=ctx.clock.now(),
                created_by=None,
                origin="stray",
            )
        )
    run_id = _start(app, raw, slugs)
    with _statements(app) as sent:
        # the first batch stores the document, then fails and rolls back; shop-1 alone
        # fails again; the second batch must store the document itself
        rollout.process(app, "hq-admin", run_id, batch_size=1)
    assert retried_batches(app) == 1  # the first batch only: the second one went through
    assert len([s for s, _ in sent if s.startswith(LOOK_UP)]) >= 2
    with app.transaction() as ctx:
        summary = rollout.summary(ctx, actors.resolve(ctx, "hq-admin", "hq"), run_id)
    statuses = {t["tenant"]: t["status"] for t in summary["targets"]}
    assert statuses == {"shop-1": "failed", "shop-2": "applied"}
    assert world.document("shop-2").checkboxes[0].label == "本部指定"


def test_batch_inserts_have_one_text_whatever_the_batch_size(
    app: Provisioner, world: World
) -> None:
    raw, slugs = _trusting_shops(app, world, 5)
    run_id = _start(app, raw, slugs)
    with _statements(app) as sent:
        rollout.process(app, "hq-admin", run_id, batch_size=3)  # batches of 3 and 2
    assert retried_batches(app) == 0
    inserts: dict[str, set[tuple[str, bool]]] = {}
    for statement, many in sent:
        found = re.match(r"INSERT INTO (\w+)", statement)
        if found and found[1] in {"transfers", "config_versions", "audit_events"}:
            inserts.setdefault(found[1], set()).add((statement, many))
    assert set(inserts) == {"transfers", "config_versions", "audit_events"}
    if app.engine.dialect.name == "postgresql":  # SQLite: one multi-row INSERT ... RETURNING
        texts = inserts["transfers"]
        assert len(texts) == 1, texts  # not one text per batch size: parsed and planned once
        assert all(many for _, many in texts)
    for table in ("config_versions", "audit_events"):
        batched = {s for s, many in inserts[table] if many}
        assert len(batched) == 1, (table, inserts[table])
