"""Groups, one login across the group, switching tenant, shared password, cancel."""

from __future__ import annotations

import pytest

from provisioner.errors import NotFound, PermissionDenied, PlanConflict
from provisioner.services import actors, tenants
from provisioner.services.context import Provisioner
from provisioner.services.provisioning import auth, groups
from tests.support import World

PASSWORD = "correct horse battery"


def _group(world: World, app: Provisioner, slugs: list[str], users: dict[str, str]) -> None:
    with app.transaction() as ctx:
        groups.create(ctx, "acme-group", name="ACME グループ")
    for slug in slugs:
        world.tenant(slug)
        with app.transaction() as ctx:
            groups.add_tenant(ctx, "acme-group", slug)
    with app.transaction() as ctx:
        for login, role in users.items():
            for slug in slugs:
                tenants.add_user(ctx, login, tenant_slug=slug, role=role)
        auth.set_initial_password(ctx, "sato", PASSWORD, by="operator")


def test_login_lists_tenants_in_stable_order_and_switches_without_new_login(
    app: Provisioner, world: World
) -> None:
    _group(world, app, ["tokyo", "osaka", "nagoya"], {"sato": "general"})
    with app.transaction() as ctx:
        result = auth.login(ctx, "sato", PASSWORD)
    assert [c.slug for c in result.tenants] == ["tokyo", "osaka", "nagoya"]
    assert [c.number for c in result.tenants] == [1, 2, 3]
    assert result.selected == "tokyo"
    assert all(c.group == "acme-group" for c in result.tenants)
    with app.transaction() as ctx:
        assert auth.session_actor(ctx, result.token).tenant_slug == "tokyo"
        assert auth.switch(ctx, result.token, "3").tenant_slug == "nagoya"
    with app.transaction() as ctx:
        assert auth.session_actor(ctx, result.token).tenant_slug == "nagoya"
        assert auth.switch(ctx, result.token, "osaka").tenant_slug == "osaka"
        with pytest.raises(NotFound, match="no tenant '4' in your list") as missing:
            auth.switch(ctx, result.token, "4")
        assert missing.value.hint == "your tenants: 1=tokyo, 2=osaka, 3=nagoya"
    # the same order on a second login
    with app.transaction() as ctx:
        again = auth.login(ctx, "sato", PASSWORD)
    assert [c.slug for c in again.tenants] == ["tokyo", "osaka", "nagoya"]


def test_each_membership_keeps_its_own_role(app: Provisioner, world: World) -> None:
    _group(world, app, ["tokyo", "osaka"], {"sato": "general"})
    with app.transaction() as ctx:
        tenants.add_user(ctx, "sato", tenant_slug="osaka", role="admin")
        result = auth.login(ctx, "sato", PASSWORD)
    assert [(c.slug, c.role) for c in result.tenants] == [("tokyo", "general"), ("osaka", "admin")]


def test_wrong_password_and_unknown_login_look_the_same(app: Provisioner, world: World) -> None:
    _group(world, app, ["tokyo"], {"sato": "general"})
    with app.transaction() as ctx:
        with pytest.raises(PermissionDenied) as wrong:
            auth.login(ctx, "sato", "not the password")
        with pytest.raises(PermissionDenied) as unknown:
            auth.login(ctx, "nobody", PASSWORD)
    assert wrong.value.message == unknown.value.message


def test_password_is_stored_with_argon2_and_session_token_hashed(
    app: Provisioner, world: World
) -> None:
    from sqlalchemy import select

    from provisioner.db.provisioning_models import LoginSession

    _group(world, app, ["tokyo"], {"sato": "general"})
    with app.transaction() as ctx:
        assert actors.get_user(ctx, "sato").password_hash.startswith("$argon2id$")  # type: ignore[union-attr]
        result = auth.login(ctx, "sato", PASSWORD)
    with app.transaction() as ctx, ctx.operator("read"):  # the test inspects every row
        stored = ctx.session.scalars(select(LoginSession.token_hash)).all()
    assert result.token not in stored
    assert len(stored) == 1


def test_shared_password_change_applies_to_the_whole_group(
    app: Provisioner, world: World, clock: object
) -> None:
    _group(world, app, ["tokyo", "osaka"], {"sato": "general"})
    with app.transaction() as ctx:
        session = auth.login(ctx, "sato", PASSWORD)
        actor = auth.switch(ctx, session.token, "osaka")
        auth.change_password(ctx, actor, PASSWORD, "new password 2026")
    with app.transaction() as ctx:
        with pytest.raises(PermissionDenied):
            auth.login(ctx, "sato", PASSWORD)
        with pytest.raises(PermissionDenied, match="session has ended"):
            auth.session_actor(ctx, session.token)
    with app.transaction() as ctx:
        result = auth.login(ctx, "sato", "new password 2026")
        # changed in osaka, works in tokyo (preselected) and osaka
        assert auth.session_actor(ctx, result.token).tenant_slug == "tokyo"
        assert auth.switch(ctx, result.token, "osaka").tenant_slug == "osaka"


def test_session_expires(app: Provisioner, world: World, clock: object) -> None:
    from provisioner.clock import FrozenClock

    assert isinstance(clock, FrozenClock)
    _group(world, app, ["tokyo"], {"sato": "general"})
    with app.transaction() as ctx:
        token = auth.login(ctx, "sato", PASSWORD).token
    clock.advance(hours=12)
    with app.transaction() as ctx, pytest.raises(PermissionDenied, match="session has ended"):
        auth.session_actor(ctx, token)


def test_tenant_cannot_be_removed_from_its_group_only_cancelled(
    app: Provisioner, world: World
) -> None:
    _group(world, app, ["tokyo", "osaka"], {"sato": "general"})
    with app.transaction() as ctx:
        groups.create(ctx, "other", name="他社")
    with (
        app.transaction() as ctx,
        pytest.raises(PermissionDenied, match=r"can not be removed.*only be cancelled"),
    ):
        groups.remove_tenant(ctx, "acme-group", "osaka")
    with app.transaction() as ctx, pytest.raises(PermissionDenied, match="can not leave"):
        groups.add_tenant(ctx, "other", "osaka")
    with app.transaction() as ctx:
        token = auth.login(ctx, "sato", PASSWORD).token
        version = actors.get_tenant(ctx, "osaka").config_version
        groups.cancel_tenant(ctx, "osaka")
    with app.transaction() as ctx:
        # unreachable at once (the same day) ...
        with pytest.raises(NotFound):
            actors.get_tenant(ctx, "osaka")
        with pytest.raises(PermissionDenied, match="cancelled"):
            actors.resolve(ctx, "osaka-admin", "osaka")
        with pytest.raises(NotFound):
            auth.switch(ctx, token, "osaka")
        assert [c.slug for c in auth.login(ctx, "sato", PASSWORD).tenants] == ["tokyo"]
        # ... but its data is kept, and it is still in its group
        kept = actors.get_tenant(ctx, "osaka", include_cancelled=True)
        assert kept.config_version == version
        assert kept.group_id is not None
        with pytest.raises(PlanConflict, match="already cancelled"):
            groups.cancel_tenant(ctx, "osaka")


def test_light_plan_cannot_use_groups(app: Provisioner, world: World) -> None:
    world.tenant("tiny", plan="light")
    with app.transaction() as ctx:
        groups.create(ctx, "g", name="G")
    with app.transaction() as ctx, pytest.raises(PermissionDenied, match=r"light.*groups"):
        groups.add_tenant(ctx, "g", "tiny")
    # nor can a group tenant move to the light plan
    world.tenant("member")
    with app.transaction() as ctx:
        groups.add_tenant(ctx, "g", "member")
    with app.transaction() as ctx, pytest.raises(PermissionDenied, match=r"light.*groups"):
        tenants.update_flags(ctx, "member", plan="light")
    assert world.tenant_row("member").plan == "standard"
