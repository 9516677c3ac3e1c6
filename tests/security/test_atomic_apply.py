"""Apply is atomic, re-checked and reversible.

Approving writes the new configuration version, the transfer's state and the
audit event in ONE transaction: a failure anywhere in the middle leaves all
three exactly as before. Approve re-plans when the target moved; merge never
deletes; ``only`` limits the sections; rollback is a new version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from provisioner.db.models import AuditEvent, ConfigVersion, Tenant, Transfer
from provisioner.errors import PlanConflict
from provisioner.services import actors, audit, configs, documents, transfers
from tests.security.craft import audit_count
from tests.support import World, labelled


def _client_admin(ctx: Any) -> actors.Actor:
    return actors.resolve(ctx, "client-admin", "client")


class Injected(RuntimeError):
    """The failure a test injects in the middle of apply."""


def snapshot(world: World, slug: str, transfer_id: int) -> dict[str, Any]:
    """Everything an approval may change, for an exact before/after comparison."""
    with world.app.transaction() as ctx, ctx.operator("read"):  # the test inspects
        tenant = actors.get_tenant(ctx, slug)
        versions = [
            (v.version, v.digest, documents.version_body(ctx.session, v), v.origin)
            for v in ctx.session.scalars(
                select(ConfigVersion)
                .where(ConfigVersion.tenant_id == tenant.id)
                .order_by(ConfigVersion.version)
            )
        ]
        t = ctx.session.get(Transfer, transfer_id)
        assert t is not None
        events = [
            (e.action, e.subject)
            for e in ctx.session.scalars(
                select(AuditEvent).where(AuditEvent.tenant_id == tenant.id).order_by(AuditEvent.id)
            )
        ]
        return {
            "pointer": ctx.session.scalar(
                select(Tenant.config_version).where(Tenant.id == tenant.id)
            ),
            "versions": versions,
            "events": events,
            "transfer": (
                t.status,
                t.decided_at,
                t.decided_by,
                t.applied_version,
                t.base_version,
                t.plan,
            ),
        }


@pytest.fixture
def pending(world: World) -> tuple[World, int]:
    world.tenant("partner")
    world.tenant("client")
    partner = world.config("partner")
    changed = labelled(partner, 1, "年賀状")
    changed["picklists"] = [
        *partner["picklists"],
        {
            "code": "rank",
            "label": "ランク",
            "values": [{"code": "a", "label": "Aランク", "active": True}],
        },
    ]
    world.set_config("partner", changed)
    return world, world.send("partner", world.key("client"))


def _fail_on_audit(monkeypatch: pytest.MonkeyPatch, action: str) -> None:
    """The audit store fails on ``action``, written one by one or in bulk."""
    original, original_many = audit.record, audit.record_many

    def record(ctx: Any, **kw: Any) -> Any:
        if kw.get("action") == action:
            raise Injected("audit store down")
        return original(ctx, **kw)

    def record_many(ctx: Any, events: Any) -> None:
        if any(e.get("action") == action for e in events):
            raise Injected("audit store down")
        original_many(ctx, events)

    monkeypatch.setattr(audit, "record", record)
    monkeypatch.setattr(audit, "record_many", record_many)


def _fail_on_approved_audit(monkeypatch: pytest.MonkeyPatch) -> None:
    _fail_on_audit(monkeypatch, "transfer:approved")


def _fail_in_claim(monkeypatch: pytest.MonkeyPatch) -> None:
    def claim(*_a: Any, **_k: Any) -> None:
        raise Injected("crash while claiming the transfer")

    monkeypatch.setattr(transfers, "_claim", claim)


def _fail_after_new_version(monkeypatch: pytest.MonkeyPatch) -> None:
    # both ways approve writes a version: a computed document, or the stored one copied
    for name in ("commit_version", "commit_transfer_copy"):
        original = getattr(configs, name)

        def crash(*a: Any, _original: Any = original, **k: Any) -> int | None:
            _original(*a, **k)  # the new version row and pointer are written...
            raise Injected("crash right after writing the new version")

        monkeypatch.setattr(configs, name, crash)


@pytest.mark.parametrize(
    "inject",
    [_fail_on_approved_audit, _fail_in_claim, _fail_after_new_version],
    ids=["audit-record", "claim", "after-commit-version"],
)
def test_failure_injected_mid_apply_leaves_everything_as_before(
    pending: tuple[World, int],
    monkeypatch: pytest.MonkeyPatch,
    inject: Callable[[pytest.MonkeyPatch], None],
) -> None:
    """Threat: a crash in the middle of apply leaves a half-applied configuration (new
    version without audit event, or applied transfer without version)."""
    world, transfer = pending
    before = snapshot(world, "client", transfer)
    inject(monkeypatch)
    with pytest.raises(Injected):
        world.approve(transfer, "client-admin")
    assert snapshot(world, "client", transfer) == before
    monkeypatch.undo()
    decision = world.approve(transfer, "client-admin")  # and it still applies cleanly
    assert (decision.outcome, decision.version) == ("applied", 2)
    assert world.config("client")["checkboxes"][0]["label"] == "年賀状"


def test_failure_injected_mid_receive_stores_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Threat: a crash after the key is consumed but before the transfer is recorded burns
    the key (or stores a transfer without its audit event)."""
    world.tenant("partner")
    world.tenant("client")
    key = world.key("client")
    _fail_on_audit(monkeypatch, "transfer:received")
    with pytest.raises(Injected):
        world.send("partner", key)
    monkeypatch.undo()
    with world.app.transaction() as ctx, ctx.operator("read"):  # the test inspects
        client = actors.get_tenant(ctx, "client")
        assert (
            ctx.session.scalars(select(Transfer).where(Transfer.tenant_id == client.id)).all() == []
        )
    assert world.transfer(world.send("partner", key)).status == "pending"  # key not burnt


def test_approve_replans_when_target_changed_after_plan(pending: tuple[World, int]) -> None:
    """Threat: applying a plan reviewed against version N onto version N+1 (silently
    overwriting a change the reviewer never saw)."""
    world, transfer = pending
    world.set_config("client", labelled(world.config("client"), 2, "お中元"))
    assert world.version("client") == 2
    decision = world.approve(transfer, "client-admin")
    assert decision.outcome == "replanned"
    assert "changed since the plan" in decision.message
    row = world.transfer(transfer)
    assert (row.status, row.base_version, row.plan["base_version"]) == ("pending", 2, 2)
    assert world.version("client") == 2
    assert audit_count(world, "client", "transfer:replanned") == 1
    assert audit_count(world, "client", "transfer:approved") == 0
    again = world.approve(transfer, "client-admin")  # the reviewer approves the new plan
    assert (again.outcome, again.version) == ("applied", 3)
    assert world.config("client")["checkboxes"][0]["label"] == "年賀状"


def test_decided_transfer_cannot_be_decided_again(pending: tuple[World, int]) -> None:
    """Threat: re-approving an applied (or rejected) transfer re-applies old content."""
    world, transfer = pending
    world.approve(transfer, "client-admin")
    with pytest.raises(PlanConflict, match="already applied"):
        world.approve(transfer, "client-admin")
    with world.app.transaction() as ctx, pytest.raises(PlanConflict):
        transfers.reject(ctx, _client_admin(ctx), transfer)
    assert world.version("client") == 2


def test_reject_changes_nothing_but_the_transfer_state(pending: tuple[World, int]) -> None:
    """Threat: rejecting has side effects on the configuration."""
    world, transfer = pending
    before = snapshot(world, "client", transfer)
    with world.app.transaction() as ctx:
        transfers.reject(ctx, _client_admin(ctx), transfer, reason="不要")
    after = snapshot(world, "client", transfer)
    assert (after["pointer"], after["versions"]) == (before["pointer"], before["versions"])
    assert after["transfer"][0] == "rejected"


def test_merge_never_deletes(world: World) -> None:
    """Threat: merge mode deleting the target's own items (data loss)."""
    world.tenant("partner")
    world.tenant("client")
    client = world.config("client")
    own = {
        "code": "own_list",
        "label": "自社リスト",
        "values": [{"code": "x", "label": "独自", "active": True}],
    }
    kinds = client["picklists"][0]
    kinds_plus = {
        **kinds,
        "values": [*kinds["values"], {"code": "claim", "label": "クレーム", "active": True}],
    }
    world.set_config("client", {"picklists": [kinds_plus, *client["picklists"][1:], own]})
    world.set_config("partner", labelled(world.config("partner"), 1, "年賀状"))
    transfer = world.send("partner", world.key("client"))
    with world.app.transaction() as ctx:
        plan = transfers.preview(ctx, transfers.get(ctx, "client-admin", transfer)[0], mode="merge")
    assert all(c["op"] != "removed" for c in plan["changes"]), plan["changes"]
    decision = world.approve(transfer, "client-admin", mode="merge")
    assert decision.outcome == "applied"
    result = world.config("client")
    codes = [p["code"] for p in result["picklists"]]
    assert "own_list" in codes
    assert "claim" in [v["code"] for v in result["picklists"][0]["values"]]
    assert result["checkboxes"][0]["label"] == "年賀状"


def test_replace_mode_does_delete_target_only_items(world: World) -> None:
    """Control for merge: replace gives the target exactly the source's sections."""
    world.tenant("partner")
    world.tenant("client")
    client = world.config("client")
    own = {"code": "own_list", "label": "自社リスト", "values": []}
    world.set_config("client", {"picklists": [*client["picklists"], own]})
    transfer = world.send("partner", world.key("client"))
    world.approve(transfer, "client-admin", mode="replace")
    assert world.config("client")["picklists"] == world.config("partner")["picklists"]


def test_only_limits_sections(world: World) -> None:
    """Threat: `--only checkboxes` also changing other sections the reviewer excluded."""
    world.tenant("partner")
    world.tenant("client")
    source = world.config("partner")
    partner = labelled(source, 1, "年賀状")
    partner["settings"] = {**source["settings"], "news": "パートナーからのお知らせ"}
    world.set_config("partner", partner)
    before = world.config("client")
    transfer = world.send("partner", world.key("client"))
    decision = world.approve(transfer, "client-admin", only=["checkboxes"])
    assert decision.outcome == "applied"
    after = world.config("client")
    assert after["checkboxes"][0]["label"] == "年賀状"
    assert after["settings"] == before["settings"]
    assert {k for k in after if after[k] != before[k]} == {"checkboxes"}


def test_rollback_creates_a_new_version(pending: tuple[World, int]) -> None:
    """Threat: rollback rewriting history (deleting or mutating versions)."""
    world, transfer = pending
    original = world.config("client")
    world.approve(transfer, "client-admin")
    applied = snapshot(world, "client", transfer)["versions"]
    with world.app.transaction() as ctx:
        version = transfers.rollback(ctx, _client_admin(ctx), transfer)
    assert version == 3
    versions = snapshot(world, "client", transfer)["versions"]
    assert versions[:2] == applied  # versions 1 and 2 untouched
    assert versions[2][3] == "rollback:1"
    assert world.config("client") == original
    assert world.transfer(transfer).status == "rolled_back"
    with world.app.transaction() as ctx, pytest.raises(PlanConflict):
        transfers.rollback(ctx, _client_admin(ctx), transfer)
