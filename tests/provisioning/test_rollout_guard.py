"""The version pointer moves only with a guard on the base version -- rollouts included.

A rollout batch writes its targets' versions through ``configs.commit_versions``,
the primitive every configuration change uses: one guarded
``UPDATE tenants SET config_version = :new WHERE id = :id AND config_version = :base``
for all of them, its row count checked. A tenant whose pointer moved after the
batch read it is never overwritten: the batch stops with PlanConflict, rolls
back, and its targets go one by one through the ordinary services, which plan
against the version the tenant has now.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, func, select

from provisioner.canonical import canonical_bytes
from provisioner.db.models import AuditEvent, ConfigVersion
from provisioner.errors import PlanConflict
from provisioner.services import actors, configs, signing
from provisioner.services.context import Provisioner
from provisioner.services.provisioning import rollout
from provisioner.services.provisioning.rollout import Target
from tests.support import World, labelled


def _trust_hq(app: Provisioner, world: World, slugs: list[str]) -> bytes:
    world.tenant("hq")
    world.set_config("hq", labelled(world.config("hq"), 1, "本部指定"))
    for slug in slugs:
        world.tenant(slug)
        with app.transaction() as ctx:
            actor = actors.resolve(ctx, f"{slug}-admin", slug)
            pem = signing.public_key_pem(ctx, actors.get_tenant(ctx, "hq").id).encode()
            signing.trust(ctx, actor, pem, label="hq HQ", policy="auto")
    return world.export("hq")


@contextmanager
def _pointer_moved_before_the_batch_writes(
    app: Provisioner, tenant_id: int, base: int
) -> Iterator[list[str]]:
    """Another change moves the tenant from ``base`` to ``base + 1`` just before the batch's
    guarded UPDATE runs (on the batch's own connection: its row locks would hold off any
    other writer, so this is the only way such a race can be staged)."""
    fired: list[str] = []

    def move(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        if fired or not statement.startswith("UPDATE tenants SET config_version"):
            return
        if not executemany:  # the batch moves many pointers in one executemany
            return
        fired.append(statement)
        cursor.execute(
            "INSERT INTO config_versions (tenant_id, version, digest, base_digest, delta, "
            "size_bytes, created_at, created_by, origin) SELECT tenant_id, version + 1, "
            "'sha256:concurrent', COALESCE(base_digest, digest), delta, size_bytes, "
            "created_at, 'someone', 'concurrent' "
            f"FROM config_versions WHERE tenant_id = {tenant_id} AND version = {base}"
        )
        cursor.execute(f"UPDATE tenants SET config_version = {base + 1} WHERE id = {tenant_id}")

    event.listen(app.engine, "before_cursor_execute", move)
    try:
        yield fired
    finally:
        event.remove(app.engine, "before_cursor_execute", move)


def test_a_rollout_never_overwrites_a_pointer_that_moved(app: Provisioner, world: World) -> None:
    slugs = ["shop-1", "shop-2", "shop-3"]
    raw = _trust_hq(app, world, slugs)
    with app.transaction() as ctx:
        shop_2 = actors.get_tenant(ctx, "shop-2").id
        run_id = rollout.start(
            ctx, actors.resolve(ctx, "hq-admin", "hq"), raw, [Target(s) for s in slugs]
        ).id

    with _pointer_moved_before_the_batch_writes(app, shop_2, base=1) as fired:
        rollout.process(app, "hq-admin", run_id)

    assert fired, "the batch's guarded UPDATE did not run"
    with app.transaction() as ctx, ctx.operator("read"):  # the test inspects every tenant
        retried = ctx.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "rollout:batch_retried_one_by_one")
        ).all()
        assert len(retried) == 1
        error = retried[0].details["error"]
        assert error.startswith("PlanConflict: the configuration of 'shop-2' changed")
        # the batch wrote nothing: every target went through the ordinary services once
        summary = rollout.summary(ctx, actors.resolve(ctx, "hq-admin", "hq"), run_id)
        assert summary["counts"] == {"applied": 3}
        for slug in slugs:
            tenant = actors.get_tenant(ctx, slug)
            assert tenant.config_version == 2
            assert (
                ctx.session.scalar(
                    select(func.count())
                    .select_from(ConfigVersion)
                    .where(ConfigVersion.tenant_id == tenant.id)
                )
                == 2
            )
    for slug in slugs:
        assert world.document(slug).checkboxes[0].label == "本部指定"


def _new(ctx: Any, slug: str, label: str, base: int | None = None) -> configs.NewVersion:
    tenant = actors.get_tenant(ctx, slug)
    head = configs.current(ctx, tenant)
    body = canonical_bytes({**head.data, **labelled(head.data, 1, label)})
    return configs.NewVersion(
        tenant, head.version if base is None else base, body, f"{slug}-admin", "set"
    )


def test_commit_versions_moves_every_pointer_with_one_guarded_statement(
    app: Provisioner, world: World
) -> None:
    for slug in ("a-shop", "b-shop"):
        world.tenant(slug)
    with app.transaction() as ctx, ctx.operator("write"):  # cross-tenant, as a rollout batch
        made = configs.commit_versions(ctx, [_new(ctx, "a-shop", "一"), _new(ctx, "b-shop", "二")])
        same = configs.commit_versions(ctx, [_new(ctx, "a-shop", "一")])
    assert made == [2, 2]
    assert same == [None]  # the document already is the result: nothing written
    assert world.document("a-shop").checkboxes[0].label == "一"
    assert world.document("b-shop").checkboxes[0].label == "二"


def test_commit_versions_with_a_stale_base_is_a_plan_conflict_and_writes_nothing(
    app: Provisioner, world: World
) -> None:
    for slug in ("a-shop", "b-shop"):
        world.tenant(slug)
    world.set_config("b-shop", labelled(world.config("b-shop"), 1, "先に変更"))  # b: v2

    with (
        pytest.raises(PlanConflict, match="'b-shop' changed while this change"),
        app.transaction() as ctx,
    ):
        configs.commit_versions(ctx, [_new(ctx, "a-shop", "一"), _new(ctx, "b-shop", "二", base=1)])

    assert (world.version("a-shop"), world.version("b-shop")) == (1, 2)
    assert world.document("b-shop").checkboxes[0].label == "先に変更"
