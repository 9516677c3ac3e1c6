"""Tenant admins manage their users (issue 12): roles, disable / enable, remove, password
reset, the licensed user count, the user department master; the copy feature is for
admins only; a sandbox neither sends nor receives; only standard-plan tenants are grouped."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from provisioner.errors import (
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    TransferRefused,
    ValidationFailed,
)
from provisioner.services import actors, tenants, transfers, users
from provisioner.services.context import Provisioner
from provisioner.services.provisioning import auth, groups
from tests.provisioning.conftest import Cli
from tests.support import World

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def light_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        auth, "_HASHER", PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    )


@pytest.fixture
def acme(world: World) -> str:
    world.tenant("acme", users={"sato": "general", "kato": "read_only"})
    return "acme"


def test_admins_list_users_and_change_roles(app: Provisioner, world: World, acme: str) -> None:
    admin = world.actor("acme")
    with app.transaction() as ctx:
        assert [(u["login"], u["role"], u["disabled"]) for u in users.list_users(ctx, admin)] == [
            ("acme-admin", "admin", False),
            ("kato", "read_only", False),
            ("sato", "general", False),
        ]
        assert (
            users.set_role(ctx, admin, "sato", "general_no_export")["role"] == "general_no_export"
        )
        with pytest.raises(ValidationFailed, match="unknown role"):
            users.set_role(ctx, admin, "sato", "superuser")
        with pytest.raises(PermissionDenied, match="yourself"):  # the last admin stays
            users.set_role(ctx, admin, "acme-admin", "general")
        with pytest.raises(NotFound):
            users.set_role(ctx, admin, "nobody", "general")
    sato = world.actor("acme", "sato")
    with app.transaction() as ctx, pytest.raises(PermissionDenied, match="only an admin"):
        users.list_users(ctx, sato)
    assert world.actor("acme", "sato").role == "general_no_export"


def test_a_disabled_user_can_neither_act_nor_log_in(
    app: Provisioner, world: World, acme: str
) -> None:
    admin = world.actor("acme")
    with app.transaction() as ctx:
        auth.set_initial_password(ctx, "sato", PASSWORD, by="test")
        token = auth.login(ctx, "sato", PASSWORD).token
    with app.transaction() as ctx:
        assert users.disable(ctx, admin, "sato")["disabled"] is True
    with app.transaction() as ctx:
        with pytest.raises(PermissionDenied):
            actors.resolve(ctx, "sato", "acme")
        with pytest.raises(PermissionDenied):  # the open session ended with it
            auth.session_actor(ctx, token)
        with pytest.raises(PermissionDenied, match="no active tenant"):
            auth.login(ctx, "sato", PASSWORD)
        with pytest.raises(PermissionDenied, match="yourself"):
            users.disable(ctx, admin, "acme-admin")
    with app.transaction() as ctx:
        users.enable(ctx, admin, "sato")
    with app.transaction() as ctx:
        assert actors.resolve(ctx, "sato", "acme").role == "general"
        assert auth.login(ctx, "sato", PASSWORD).selected == "acme"


def test_remove_ends_the_membership_only(app: Provisioner, world: World, acme: str) -> None:
    world.tenant("beta")
    admin = world.actor("acme")
    with app.transaction() as ctx:
        tenants.add_user(ctx, "sato", tenant_slug="beta", role="general")
        users.remove(ctx, admin, "sato")
    with app.transaction() as ctx:
        with pytest.raises(PermissionDenied):
            actors.resolve(ctx, "sato", "acme")
        assert actors.resolve(ctx, "sato", "beta").tenant_slug == "beta"
        with pytest.raises(PermissionDenied, match="yourself"):
            users.remove(ctx, admin, "acme-admin")


def test_password_reset_by_the_admin_of_every_tenant_of_the_user(
    app: Provisioner, world: World, acme: str
) -> None:
    world.tenant("acme-osaka")
    world.tenant("other")
    admin, sato = world.actor("acme"), world.actor("acme", "sato")
    with app.transaction() as ctx:
        groups.create(ctx, "acme-group", name="ACME")
        groups.add_tenant(ctx, "acme-group", "acme")
        groups.add_tenant(ctx, "acme-group", "acme-osaka")
        tenants.add_user(ctx, "sato", tenant_slug="acme-osaka", role="general")
        tenants.add_user(ctx, "kato", tenant_slug="other", role="general")
        auth.set_initial_password(ctx, "sato", PASSWORD, by="test")
        old = auth.login(ctx, "sato", PASSWORD).token
    with app.transaction() as ctx:
        new = users.reset_password(ctx, admin, "sato")
    assert len(new) >= 12
    with app.transaction() as ctx:
        with pytest.raises(PermissionDenied):
            auth.session_actor(ctx, old)
        with pytest.raises(PermissionDenied):
            auth.login(ctx, "sato", PASSWORD)
        assert auth.login(ctx, "sato", new).login == "sato"
        # kato also uses a tenant outside acme's group: the shared password is not acme's
        with pytest.raises(PermissionDenied, match="other"):
            users.reset_password(ctx, admin, "kato")
        with pytest.raises(PermissionDenied, match="only an admin"):
            users.reset_password(ctx, sato, "kato")


def test_a_tenant_refuses_users_beyond_its_licensed_count(
    app: Provisioner, world: World, acme: str
) -> None:
    admin = world.actor("acme")
    with app.transaction() as ctx:
        users.set_licensed_users(ctx, "acme", 3, by="operator")
    with app.transaction() as ctx, pytest.raises(QuotaExceeded, match="licensed for 3"):
        tenants.add_user(ctx, "suzuki", tenant_slug="acme", role="general")
    with app.transaction() as ctx:
        users.disable(ctx, admin, "kato")  # a disabled user frees a licence
        tenants.add_user(ctx, "suzuki", tenant_slug="acme", role="general")
    with app.transaction() as ctx, pytest.raises(QuotaExceeded):
        users.enable(ctx, admin, "kato")
    acme_id = world.tenant_row("acme").id
    with app.transaction() as ctx:
        assert users.enabled_users(ctx, acme_id) == 3


def test_the_user_department_master(app: Provisioner, world: World, acme: str) -> None:
    admin = world.actor("acme")
    with app.transaction() as ctx:
        users.add_department(ctx, admin, "sales", "営業部")
        users.add_department(ctx, admin, "support", "サポート部")
        assert users.set_department(ctx, admin, "sato", "sales")["department"] == "sales"
        with pytest.raises(NotFound, match="no department 'hr'"):
            users.set_department(ctx, admin, "sato", "hr")
        with pytest.raises(ValidationFailed):
            users.add_department(ctx, admin, "bad code!", "x")
    with app.transaction() as ctx:
        assert users.departments(ctx, admin) == [
            {"code": "sales", "name": "営業部"},
            {"code": "support", "name": "サポート部"},
        ]
        assert {u["login"]: u["department"] for u in users.list_users(ctx, admin)}[
            "sato"
        ] == "sales"
        assert users.set_department(ctx, admin, "sato", None)["department"] is None


def test_the_copy_feature_is_for_admins_only_end_to_end(
    app: Provisioner, world: World, acme: str
) -> None:
    world.tenant("source")
    transfer_id = world.send("source", world.key("acme"))
    for login in ("sato", "kato"):
        general = world.actor("acme", login)
        with app.transaction() as ctx, pytest.raises(PermissionDenied, match="only an admin"):
            transfers.inbox(ctx, general)
        with app.transaction() as ctx, pytest.raises(PermissionDenied, match="only an admin"):
            transfers.get(ctx, login, transfer_id)
    admin = world.actor("acme")
    with app.transaction() as ctx:
        assert [t.id for t in transfers.inbox(ctx, admin)] == [transfer_id]


def test_a_sandbox_cannot_send_either(app: Provisioner, world: World) -> None:
    world.tenant("prod")
    world.tenant("box", sandbox=True)
    key = world.key("prod")
    with pytest.raises(TransferRefused, match="sandbox cannot send"):
        world.send("box", key)
    with pytest.raises(TransferRefused, match="sandbox cannot send"):
        world.export("box")


def test_only_standard_plan_tenants_join_a_group(app: Provisioner, world: World) -> None:
    world.tenant("pro", plan="professional")
    world.tenant("std")
    with app.transaction() as ctx:
        groups.create(ctx, "g", name="G")
        groups.add_tenant(ctx, "g", "std")
    with app.transaction() as ctx, pytest.raises(PermissionDenied, match="only the standard"):
        groups.add_tenant(ctx, "g", "pro")
    with app.transaction() as ctx, pytest.raises(PermissionDenied, match="only the standard"):
        tenants.update_flags(ctx, "std", plan="enterprise")
    assert world.tenant_row("std").plan == "standard"


def test_user_commands(run: Cli) -> None:
    run.run("tenant", "create", "acme", "--name", "ACME", "--plan", "standard")
    run.run("user", "add", "boss", "--tenant", "acme", "--role", "admin")
    run.run("user", "add", "sato", "--tenant", "acme", "--role", "general")
    admin = ("-t", "acme", "--as", "boss")
    assert [u["login"] for u in run.json("user", "list", *admin)] == ["boss", "sato"]
    assert run.json("user", "role", "sato", "read_only", *admin)["role"] == "read_only"
    assert run.json("user", "disable", "sato", *admin)["disabled"] is True
    run.run("search", "-t", "acme", "--as", "sato", code=1)  # a disabled user cannot act
    assert run.json("user", "enable", "sato", *admin)["disabled"] is False
    run.run("user", "department-add", "sales", "営業部", *admin)
    assert run.json("user", "departments", *admin) == [{"code": "sales", "name": "営業部"}]
    assert run.json("user", "department", "sato", "sales", *admin)["department"] == "sales"
    reset = run.json("user", "reset-password", "sato", *admin)
    assert (
        run.json("login", "sato", "--password-stdin", input=reset["password"] + "\n")["login"]
        == "sato"
    )
    assert "only an admin" in run.run("user", "list", "-t", "acme", "--as", "sato", code=1).stderr
    assert run.json("tenant", "licences", "acme", "2")["licensed_users"] == 2
    assert (
        "licensed for 2"
        in run.run("user", "add", "kato", "--tenant", "acme", "--role", "general", code=1).stderr
    )
    run.run("user", "remove", "sato", *admin, "--yes")
    assert [u["login"] for u in run.json("user", "list", *admin)] == ["boss"]
