"""Who may do what: roles, tenant isolation, and who may take part in a copy.

Permissions are checked in the service layer (not the CLI), so these tests
call the services directly. Non-admin roles must be refused every mutating
step of the copy story, and the refusal must change nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from provisioner.errors import NotFound, PermissionDenied, TransferRefused
from provisioner.services import actors, configs, copykeys, tenants, transfers
from provisioner.services.context import Context
from tests.security.craft import counts
from tests.support import World, labelled

NON_ADMIN_ROLES = ("general", "read_only", "general_no_export", "general_no_print")


@pytest.fixture
def story(world: World) -> World:
    """partner and client, each with one user per non-admin role, and a pending transfer."""
    users = {f"{{}}-{role}": role for role in NON_ADMIN_ROLES}
    world.tenant("partner", users={k.format("partner"): v for k, v in users.items()})
    world.tenant("client", users={k.format("client"): v for k, v in users.items()})
    world.set_config("partner", labelled(world.config("partner"), 1, "年賀状"))
    world.send("partner", world.key("client"))
    return world


def _as(world: World, login: str, slug: str, work: Callable[[Context, actors.Actor], Any]) -> Any:
    with world.app.transaction() as ctx:
        return work(ctx, actors.resolve(ctx, login, slug))


def _pending(world: World) -> int:
    with world.app.transaction() as ctx:
        actor = actors.resolve(ctx, "client-admin", "client")
        return transfers.inbox(ctx, actor, status="pending")[0].id


def _refused_for_every_role(
    world: World, slug: str, work: Callable[[Context, actors.Actor], Any]
) -> None:
    before = {s: counts(world, s) for s in ("partner", "client")}
    for role in NON_ADMIN_ROLES:
        with pytest.raises(PermissionDenied, match="only an admin"):
            _as(world, f"{slug}-{role}", slug, work)
    assert {s: counts(world, s) for s in ("partner", "client")} == before


def test_non_admin_cannot_generate_copy_keys(story: World) -> None:
    """Threat: a general user invites configuration changes into the tenant."""
    _refused_for_every_role(
        story, "client", lambda ctx, a: copykeys.generate(ctx, a, actors.get_tenant(ctx, "client"))
    )


def test_non_admin_cannot_list_or_revoke_copy_keys(story: World) -> None:
    """Threat: a general user sees key metadata or revokes the admin's keys."""
    _refused_for_every_role(story, "client", lambda ctx, a: copykeys.list_keys(ctx, a))
    _refused_for_every_role(story, "client", lambda ctx, a: copykeys.revoke(ctx, a, "1"))


def test_non_admin_cannot_send(story: World) -> None:
    """Threat: a general user of the source pushes its configuration to other tenants."""
    key = story.key("client")
    _refused_for_every_role(story, "partner", lambda ctx, a: transfers.send(ctx, a, key))


def test_non_admin_cannot_export(story: World) -> None:
    """Threat: a general user exports the whole configuration as a signed bundle."""
    _refused_for_every_role(story, "partner", lambda ctx, a: transfers.export(ctx, a))


def test_non_admin_cannot_receive(story: World) -> None:
    """Threat: a general user of the target takes a bundle file into the inbox."""
    raw = story.export("partner", story.key("client"))
    _refused_for_every_role(story, "client", lambda ctx, a: transfers.receive(ctx, a, raw))


def test_non_admin_cannot_approve(story: World) -> None:
    """Threat: a general user applies an incoming configuration."""
    transfer = _pending(story)
    _refused_for_every_role(story, "client", lambda ctx, a: transfers.approve(ctx, a, transfer))
    assert story.transfer(transfer).status == "pending"


def test_non_admin_cannot_reject(story: World) -> None:
    """Threat: a general user discards an incoming configuration the admin wanted."""
    transfer = _pending(story)
    _refused_for_every_role(story, "client", lambda ctx, a: transfers.reject(ctx, a, transfer))
    assert story.transfer(transfer).status == "pending"


def test_non_admin_cannot_set_config(story: World) -> None:
    """Threat: a general user rewrites the configuration."""
    data = labelled(story.config("client"), 1, "改ざん")
    _refused_for_every_role(
        story,
        "client",
        lambda ctx, a: configs.set_sections(ctx, a, actors.get_tenant(ctx, "client"), data),
    )


def test_non_admin_cannot_roll_back(story: World) -> None:
    """Threat: a general user rolls the configuration (or an applied transfer) back."""
    transfer = _pending(story)
    story.approve(transfer, "client-admin")
    _refused_for_every_role(
        story,
        "client",
        lambda ctx, a: configs.rollback(ctx, a, actors.get_tenant(ctx, "client"), 1),
    )
    _refused_for_every_role(story, "client", lambda ctx, a: transfers.rollback(ctx, a, transfer))
    assert story.transfer(transfer).status == "applied"


def test_non_member_cannot_act_in_tenant(story: World) -> None:
    """Threat: a user of another tenant (or an unknown login) acts in client."""
    for login in ("partner-admin", "nobody"):
        with story.app.transaction() as ctx, pytest.raises(PermissionDenied):
            actors.resolve(ctx, login, "client")


# --------------------------------------------------------------------------- tenant isolation


def test_other_tenant_cannot_see_or_decide_transfers(story: World) -> None:
    """Threat: tenant B's admin reads or decides tenant A's incoming transfer by guessing
    its id; B gets NotFound, worded exactly like a missing id (no existence oracle)."""
    story.tenant("other")
    transfer = _pending(story)
    missing = transfer + 1000
    calls: list[Callable[[Context, int], Any]] = [
        lambda ctx, t: transfers.get(ctx, "other-admin", t),
        lambda ctx, t: transfers.approve(ctx, actors.resolve(ctx, "other-admin", "other"), t),
        lambda ctx, t: transfers.reject(ctx, actors.resolve(ctx, "other-admin", "other"), t),
        lambda ctx, t: transfers.rollback(ctx, actors.resolve(ctx, "other-admin", "other"), t),
    ]
    for call in calls:
        messages = []
        for target in (transfer, missing):
            with story.app.transaction() as ctx, pytest.raises(NotFound) as info:
                call(ctx, target)
            messages.append(str(info.value).replace(str(target), "ID"))
            assert "partner" not in str(info.value)
            assert "client" not in str(info.value)
        assert messages[0] == messages[1]
    with story.app.transaction() as ctx:
        assert transfers.inbox(ctx, actors.resolve(ctx, "other-admin", "other")) == []
    assert story.transfer(transfer).status == "pending"


def test_source_cannot_see_or_approve_its_sent_transfer(story: World) -> None:
    """Threat: the SENDER approves its own delivery in the target (self-approval)."""
    transfer = _pending(story)
    with story.app.transaction() as ctx, pytest.raises(NotFound):
        transfers.approve(ctx, actors.resolve(ctx, "partner-admin", "partner"), transfer)
    assert story.transfer(transfer).status == "pending"


# --------------------------------------------------------------------------- who may copy


def test_sandbox_cannot_receive(world: World) -> None:
    """Threat: a sandbox (test tenant) receiving configurations, then promoted by mistake."""
    world.tenant("partner")
    world.tenant("sandbox", sandbox=True)
    world.tenant("client")
    with pytest.raises(TransferRefused, match="sandbox"):
        world.key("sandbox")
    raw = world.export("partner", world.key("client"))
    with pytest.raises(TransferRefused, match="sandbox"):
        world.receive("sandbox", raw)
    assert counts(world, "sandbox")["transfers"] == 0


def test_sandbox_cannot_send(world: World) -> None:
    """Threat: a sandbox's trial configuration pushed into other tenants (REQUIREMENTS A:
    a sandbox cannot use the copy feature at all)."""
    world.tenant("sandbox", sandbox=True)
    world.tenant("client")
    key = world.key("client")
    with pytest.raises(TransferRefused, match="sandbox cannot send"):
        world.send("sandbox", key)
    assert counts(world, "client")["transfers"] == 0


def test_target_with_active_integrations_refused_with_hint(world: World) -> None:
    """Threat: overwriting the configuration under live integrations (broken sync)."""
    world.tenant("partner")
    world.tenant("linked", integrations=True)
    with pytest.raises(TransferRefused, match="integrations") as info:
        world.key("linked")
    assert info.value.hint is not None
    assert "--no-integrations" in info.value.hint


def test_integrations_switched_on_after_receipt_block_approval(world: World) -> None:
    """Threat: integrations turned on between receipt and approval (checked again at apply)."""
    world.tenant("partner")
    world.tenant("client")
    transfer = world.send("partner", world.key("client"))
    with world.app.transaction() as ctx:
        tenants.update_flags(ctx, "client", integrations=True)
    with pytest.raises(TransferRefused, match="integrations") as info:
        world.approve(transfer, "client-admin")
    assert info.value.hint is not None
    assert "disable" in info.value.hint
    assert (world.version("client"), world.transfer(transfer).status) == (1, "pending")


def test_light_plan_refused(world: World) -> None:
    """Threat: a light-plan tenant using configuration copy (not in its plan), either way."""
    world.tenant("partner")
    world.tenant("small", plan="light")
    world.tenant("client")
    with pytest.raises(TransferRefused, match="light"):
        world.key("small")
    with pytest.raises(TransferRefused, match="light"):
        world.send("small", world.key("client"))
    with pytest.raises(TransferRefused, match="light"):
        world.receive("small", world.export("partner", world.key("client")))
