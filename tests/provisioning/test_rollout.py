"""HQ rollout: one bundle, many targets, each on its own; resumable; sandboxes refuse."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import undefer

from provisioner.db.models import AuditEvent, ConfigVersion, Transfer
from provisioner.errors import BundleRejected, TransferRefused
from provisioner.services import actors, configs, documents, signing, transfers
from provisioner.services.context import Provisioner
from provisioner.services.provisioning import rollout
from provisioner.services.provisioning.rollout import Target
from tests.security import craft
from tests.support import World, labelled, retried_batches


def _trust(app: Provisioner, target: str, source: str, policy: str) -> None:
    with app.transaction() as ctx:
        actor = actors.resolve(ctx, f"{target}-admin", target)
        pem = signing.public_key_pem(ctx, actors.get_tenant(ctx, source).id).encode()
        signing.trust(ctx, actor, pem, label=f"{source} HQ", policy=policy)


def _hq(world: World) -> bytes:
    world.tenant("hq")
    world.set_config("hq", labelled(world.config("hq"), 1, "本部指定"))
    return world.export("hq")


def _start(app: Provisioner, raw: bytes, targets: list[Target]) -> int:
    with app.transaction() as ctx:
        actor = actors.resolve(ctx, "hq-admin", "hq")
        return rollout.start(ctx, actor, raw, targets).id


def _summary(app: Provisioner, run_id: int) -> dict[str, Any]:
    with app.transaction() as ctx:
        return rollout.summary(ctx, actors.resolve(ctx, "hq-admin", "hq"), run_id)


def _damage(app: Provisioner, slug: str) -> None:
    """A real fault: a stray row where the tenant's next configuration version goes."""
    with app.transaction() as ctx:
        tenant = actors.get_tenant(ctx, slug)
        assert tenant.config_version is not None
        ctx.enter_tenant(tenant.id)  # the tenant's row
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


def test_one_bundle_to_many_targets_with_failures_isolated(app: Provisioner, world: World) -> None:
    raw = _hq(world)
    for n in range(1, 6):
        world.tenant(f"shop-{n}")
        _trust(app, f"shop-{n}", "hq", "auto")
    world.tenant("manual-shop")
    _trust(app, "manual-shop", "hq", "manual")
    world.tenant("keyed-shop")
    key = world.key("keyed-shop")
    world.tenant("stranger")
    world.tenant("sandbox", sandbox=True)
    _trust(app, "sandbox", "hq", "auto")
    world.tenant("broken")
    _trust(app, "broken", "hq", "auto")
    _damage(app, "broken")  # its batch fails in the database, then goes one by one
    before = {s: world.version(s) for s in ("broken", "stranger", "sandbox")}

    targets = [
        Target("shop-1"),
        Target("shop-2"),
        Target("broken"),
        Target("manual-shop"),
        Target("keyed-shop", key=True),
        Target("stranger"),
        Target("sandbox"),
        Target("nowhere"),
        Target("shop-3"),
        Target("shop-4"),
        Target("shop-5"),
    ]
    run_id = _start(app, raw, targets)
    rollout.process(app, "hq-admin", run_id, keys={"keyed-shop": key}, batch_size=4)

    summary = _summary(app, run_id)
    by_tenant = {t["tenant"]: t for t in summary["targets"]}
    assert summary["status"] == "finished"
    for n in range(1, 6):
        assert by_tenant[f"shop-{n}"]["status"] == "applied"
        assert by_tenant[f"shop-{n}"]["via"] == "auto"
        assert by_tenant[f"shop-{n}"]["version"] == 2
        assert world.document(f"shop-{n}").checkboxes[0].label == "本部指定"
    assert by_tenant["manual-shop"]["status"] == "inbox"
    assert by_tenant["manual-shop"]["via"] == "manual"
    assert world.transfer(by_tenant["manual-shop"]["transfer"]).status == "pending"
    assert by_tenant["keyed-shop"]["status"] == "inbox"
    assert by_tenant["keyed-shop"]["via"] == "key"
    assert world.transfer(by_tenant["keyed-shop"]["transfer"]).copy_key_id is not None
    assert by_tenant["stranger"]["status"] == "rejected"
    assert "does not trust 'hq'" in by_tenant["stranger"]["reason"]
    assert by_tenant["sandbox"]["status"] == "rejected"
    assert "sandbox cannot receive" in by_tenant["sandbox"]["reason"]
    assert by_tenant["nowhere"]["status"] == "rejected"
    assert "no tenant 'nowhere'" in by_tenant["nowhere"]["reason"]
    assert by_tenant["broken"]["status"] == "failed"
    assert "IntegrityError" in by_tenant["broken"]["reason"]
    assert summary["counts"] == {"applied": 5, "inbox": 2, "rejected": 3, "failed": 1}
    assert retried_batches(app) == 1  # only the batch holding "broken"
    # the failing and refusing targets are untouched: no transfer, same version
    with app.transaction() as ctx:
        for slug in ("broken", "stranger", "sandbox"):
            tenant = actors.get_tenant(ctx, slug)
            ctx.enter_tenant(tenant.id)  # the tenant's transfers (row-level security)
            assert tenant.config_version == before[slug]
            assert (
                ctx.session.scalar(
                    select(func.count())
                    .select_from(Transfer)
                    .where(Transfer.tenant_id == tenant.id)
                )
                == 0
            )


def _trail(app: Provisioner, slug: str) -> dict[str, Any]:
    """Everything a delivery wrote for a target, without ids and instants."""
    with app.transaction() as ctx:
        tenant = actors.get_tenant(ctx, slug)
        ctx.enter_tenant(tenant.id)  # the tenant's rows (row-level security)
        transfer = ctx.session.scalar(
            select(Transfer).where(Transfer.tenant_id == tenant.id).options(undefer("*"))
        )
        assert transfer is not None
        version = ctx.session.get(ConfigVersion, (tenant.id, tenant.config_version))
        assert version is not None
        events = [
            (
                e.actor,
                e.action,
                {k: v for k, v in e.details.items() if k not in {"rollout", "bundle_id"}},
            )
            for e in ctx.session.scalars(
                select(AuditEvent)
                .where(
                    AuditEvent.tenant_id == tenant.id,
                    AuditEvent.action.in_(
                        ["transfer:received", "transfer:approved", "rollout:auto_applied"]
                    ),
                )
                .order_by(AuditEvent.id)
            )
        ]
        return {
            "transfer": {
                c: getattr(transfer, c)
                for c in (
                    "status",
                    "payload_digest",
                    "signer_key_id",
                    "source_tenant",
                    "source_name",
                    "source_version",
                    "source_digest",
                    "copy_key_id",
                    "envelope",
                    "incoming_digest",
                    "base_version",
                    "received_by",
                    "decided_by",
                    "applied_version",
                    "reason",
                )
            },
            "plan": transfer.plan,
            "version": (
                version.version,
                version.digest,
                documents.version_body(ctx.session, version),
                version.created_by,
                version.origin == f"transfer:{transfer.id}",
            ),
            "events": events,
        }


def _same_admin(value: Any, login: str) -> Any:
    if isinstance(value, str):
        return value.replace(login, "ADMIN")
    if isinstance(value, dict):
        return {k: _same_admin(v, login) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_same_admin(v, login) for v in value)
    return value


def test_batched_delivery_writes_what_the_ordinary_services_write(
    app: Provisioner, world: World
) -> None:
    raw = _hq(world)
    for slug in ("fast", "slow", "broken"):
        world.tenant(slug)
        _trust(app, slug, "hq", "auto")
    _damage(app, "broken")
    rollout.process(app, "hq-admin", _start(app, raw, [Target("fast")]))
    assert retried_batches(app) == 0
    # "broken" makes the second batch fail: "slow" goes through transfers.accept/approve
    rollout.process(app, "hq-admin", _start(app, raw, [Target("slow"), Target("broken")]))
    assert retried_batches(app) == 1
    fast, slow = _trail(app, "fast"), _trail(app, "slow")
    assert fast["transfer"]["decided_by"] == "fast-admin"  # who set the auto policy
    fast = _same_admin(fast, "fast-admin")
    slow = _same_admin(slow, "slow-admin")
    for part in ("transfer", "plan", "version", "events"):
        assert fast[part] == slow[part], part
    assert [e[1] for e in fast["events"]] == [
        "transfer:received",
        "transfer:approved",
        "rollout:auto_applied",
    ]


def test_auto_policy_is_verified_planned_and_audited(app: Provisioner, world: World) -> None:
    raw = _hq(world)
    world.tenant("shop")
    _trust(app, "shop", "hq", "auto")
    run_id = _start(app, raw, [Target("shop")])
    rollout.process(app, "hq-admin", run_id)
    target = _summary(app, run_id)["targets"][0]
    with app.transaction() as ctx, ctx.operator("read"):  # the test inspects the target
        transfer = ctx.session.get(Transfer, target["transfer"])
        assert transfer is not None
        assert transfer.status == "applied"
        assert transfer.decided_by == "shop-admin"  # the admin who set the auto policy
        assert transfer.plan["summary"]  # planned like any transfer
        shop = actors.get_tenant(ctx, "shop")
        actions = list(
            ctx.session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.tenant_id == shop.id)
                .order_by(AuditEvent.id)
            )
        )
    assert actions[-3:] == ["transfer:received", "transfer:approved", "rollout:auto_applied"]


def test_a_tampered_or_foreign_bundle_does_not_start(app: Provisioner, world: World) -> None:
    raw = _hq(world)
    world.tenant("other")
    foreign = world.export("other")
    envelope = craft.envelope_of(raw)
    tampered = craft.payload_bytes(raw).replace("本部指定".encode(), "偽装指定".encode())
    envelope["payload"] = base64.b64encode(tampered).decode()
    with pytest.raises(BundleRejected):
        _start(app, craft.rewrap(envelope), [Target("x")])
    with pytest.raises(BundleRejected):  # signed by another tenant than the source
        _start(app, foreign, [Target("x")])
    with pytest.raises(BundleRejected, match="bound to a copy key"):
        _start(app, world.export("hq", world.key("other")), [Target("other")])


def test_rollout_resumes_after_interruption(app: Provisioner, world: World) -> None:
    raw = _hq(world)
    slugs = [f"shop-{n}" for n in range(1, 7)]
    for slug in slugs:
        world.tenant(slug)
        _trust(app, slug, "hq", "auto")
    run_id = _start(app, raw, [Target(s) for s in slugs])
    seen: list[str] = []

    def interrupt_after_two(slug: str, status: str) -> None:
        seen.append(slug)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rollout.process(app, "hq-admin", run_id, on_progress=interrupt_after_two, batch_size=1)
    half = _summary(app, run_id)
    assert half["status"] == "running"
    assert half["counts"] == {"applied": 2, "pending": 4}
    rollout.process(app, "hq-admin", run_id)
    done = _summary(app, run_id)
    assert done["status"] == "finished"
    assert done["counts"] == {"applied": 6}
    with app.transaction() as ctx, ctx.operator("read"):  # each target received it once
        assert ctx.session.scalar(select(func.count()).select_from(Transfer)) == 6


def test_sandbox_can_neither_send_nor_receive(app: Provisioner, world: World) -> None:
    from provisioner.db.crm_models import CrmContact
    from provisioner.services.crm import records
    from provisioner.services.provisioning import sandboxes

    world.tenant("prod")
    world.set_config("prod", labelled(world.config("prod"), 2, "本番設定"))
    with app.transaction() as ctx:  # production holds data
        records.create(
            ctx, actors.resolve(ctx, "prod-admin", "prod"), "contact", {"name": "田中 太郎"}
        )
    with app.transaction() as ctx:
        box = sandboxes.create_sandbox(ctx, "prod-sandbox", source="prod")
        assert box.is_sandbox
        assert box.group_id is None
        # the configuration, and no data
        assert (
            ctx.session.scalar(
                select(func.count()).select_from(CrmContact).where(CrmContact.tenant_id == box.id)
            )
            == 0
        )
        with ctx.operator("read"):  # every tenant's contacts: the production's one
            assert ctx.session.scalar(select(func.count()).select_from(CrmContact)) == 1
    # the configuration is copied, and the source's admins are its admins
    assert world.document("prod-sandbox").checkboxes[1].label == "本番設定"
    change = labelled(world.config("prod-sandbox"), 3, "試験中")
    with app.transaction() as ctx:  # the source's admin tries a change in the sandbox
        configs.set_sections(
            ctx,
            actors.resolve(ctx, "prod-admin", "prod-sandbox"),
            actors.get_tenant(ctx, "prod-sandbox"),
            change,
        )
    bundle = world.export("prod")
    # it receives nothing, neither by copy key ...
    with pytest.raises(TransferRefused, match="sandbox"):
        world.key("prod-sandbox", login="prod-admin")
    # ... nor a bundle file
    with pytest.raises(TransferRefused, match="sandbox"), app.transaction() as ctx:
        transfers.receive(ctx, actors.resolve(ctx, "prod-admin", "prod-sandbox"), bundle)
    # ... and it sends nothing either (REQUIREMENTS A: no copy feature at all)
    key = world.key("prod")
    with pytest.raises(TransferRefused, match="sandbox cannot send"):
        world.send("prod-sandbox", key, login="prod-admin")
    assert world.document("prod").checkboxes[2].label != "試験中"
