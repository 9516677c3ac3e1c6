"""Tenant admins manage their users: list, role, disable / enable, remove, password reset,
the user department master; the operator sets a tenant's licensed user count.

    provisioner user list -t acme --as admin
    provisioner user role sato general_no_export -t acme --as admin
    provisioner user disable sato -t acme --as admin
    provisioner user reset-password sato -t acme --as admin      # prints a new password once
    provisioner user department-add sales 営業部 -t acme --as admin
    provisioner user department sato sales -t acme --as admin
    provisioner tenant licences acme 10                          # the operator
"""

from __future__ import annotations

from typing import Any

import click

from provisioner.cli.output import State, emit, pass_state, table
from provisioner.cli.tenant_choice import tenant_option
from provisioner.services import actors, users

TENANT_REF = tenant_option()
AS_ADMIN = click.option(
    "--as", "login", required=True, metavar="LOGIN", help="an admin of the tenant"
)


def _user_text(row: dict[str, Any]) -> str:
    return (
        f"{row['login']}: {row['role']}{' (disabled)' if row['disabled'] else ''}"
        f"{', department ' + row['department'] if row['department'] else ''}"
    )


def register(cli: click.Group) -> None:
    user = cli.commands["user"]
    tenant = cli.commands["tenant"]
    assert isinstance(user, click.Group)
    assert isinstance(tenant, click.Group)

    @user.command("list")
    @TENANT_REF
    @AS_ADMIN
    @pass_state
    def user_list(state: State, tenant: str, login: str) -> None:
        """The tenant's users: role, disabled, department (admins)."""
        with state.transaction() as ctx:
            rows = users.list_users(ctx, actors.resolve(ctx, login, tenant))
        emit(
            state,
            rows,
            lambda: table(
                [
                    (
                        r["login"],
                        r["name"],
                        r["role"],
                        "yes" if r["disabled"] else "",
                        r["department"] or "",
                    )
                    for r in rows
                ],
                ["login", "name", "role", "disabled", "department"],
            ),
        )

    @user.command("role")
    @click.argument("user_login", metavar="USER")
    @click.argument("role")
    @TENANT_REF
    @AS_ADMIN
    @pass_state
    def user_role(state: State, user_login: str, role: str, tenant: str, login: str) -> None:
        """Give USER another role in the tenant (admins; the last admin stays admin)."""
        with state.transaction() as ctx:
            row = users.set_role(ctx, actors.resolve(ctx, login, tenant), user_login, role)
        emit(state, row, _user_text(row))

    @user.command("disable")
    @click.argument("user_login", metavar="USER")
    @TENANT_REF
    @AS_ADMIN
    @pass_state
    def user_disable(state: State, user_login: str, tenant: str, login: str) -> None:
        """USER can no longer log in to or act in the tenant (sessions end; data kept)."""
        with state.transaction() as ctx:
            row = users.disable(ctx, actors.resolve(ctx, login, tenant), user_login)
        emit(state, row, _user_text(row))

    @user.command("enable")
    @click.argument("user_login", metavar="USER")
    @TENANT_REF
    @AS_ADMIN
    @pass_state
    def user_enable(state: State, user_login: str, tenant: str, login: str) -> None:
        """Enable a disabled user again (within the licensed user count)."""
        with state.transaction() as ctx:
            row = users.enable(ctx, actors.resolve(ctx, login, tenant), user_login)
        emit(state, row, _user_text(row))

    @user.command("remove")
    @click.argument("user_login", metavar="USER")
    @TENANT_REF
    @AS_ADMIN
    @click.option("--yes", is_flag=True, required=True, help="confirm")
    @pass_state
    def user_remove(state: State, user_login: str, tenant: str, login: str, yes: bool) -> None:
        """Remove USER from the tenant (their login and other tenants stay)."""
        with state.transaction() as ctx:
            users.remove(ctx, actors.resolve(ctx, login, tenant), user_login)
        emit(
            state, {"removed": user_login, "tenant": tenant}, f"{user_login} removed from {tenant}"
        )

    @user.command("reset-password")
    @click.argument("user_login", metavar="USER")
    @TENANT_REF
    @AS_ADMIN
    @click.option(
        "--password-stdin",
        is_flag=True,
        help="read the new password from stdin instead of generating one",
    )
    @pass_state
    def user_reset_password(
        state: State, user_login: str, tenant: str, login: str, password_stdin: bool
    ) -> None:
        """Give USER a new password (shown once; their sessions end). Refused when the
        user also has tenants outside this one's group: the password is shared."""
        from provisioner.cli.provisioning import read_password

        given = read_password(True) if password_stdin else None
        with state.transaction() as ctx:
            password = users.reset_password(
                ctx, actors.resolve(ctx, login, tenant), user_login, new_password=given
            )
        data = {"login": user_login, "password": None if given else password}
        emit(
            state,
            data,
            f"new password of {user_login}: {password}"
            if given is None
            else f"password of {user_login} replaced",
        )

    @user.command("departments")
    @TENANT_REF
    @AS_ADMIN
    @pass_state
    def user_departments(state: State, tenant: str, login: str) -> None:
        """The user department master (admins)."""
        with state.transaction() as ctx:
            rows = users.departments(ctx, actors.resolve(ctx, login, tenant))
        emit(state, rows, lambda: table([(r["code"], r["name"]) for r in rows], ["code", "name"]))

    @user.command("department-add")
    @click.argument("code")
    @click.argument("name")
    @TENANT_REF
    @AS_ADMIN
    @pass_state
    def user_department_add(state: State, code: str, name: str, tenant: str, login: str) -> None:
        """Add a department to the user department master."""
        with state.transaction() as ctx:
            row = users.add_department(ctx, actors.resolve(ctx, login, tenant), code, name)
        emit(state, row, f"department {code} ({name}) added")

    @user.command("department")
    @click.argument("user_login", metavar="USER")
    @click.argument("code", required=False)
    @TENANT_REF
    @AS_ADMIN
    @pass_state
    def user_department(
        state: State, user_login: str, code: str | None, tenant: str, login: str
    ) -> None:
        """Set USER's department (a CODE of the master); without CODE, clear it."""
        with state.transaction() as ctx:
            row = users.set_department(ctx, actors.resolve(ctx, login, tenant), user_login, code)
        emit(state, row, _user_text(row))

    @tenant.command("licences")
    @click.argument("slug")
    @click.argument("count", type=click.IntRange(1), required=False)
    @click.option("--unlimited", is_flag=True, help="no limit")
    @pass_state
    def tenant_licences(state: State, slug: str, count: int | None, unlimited: bool) -> None:
        """Set how many users the tenant may register (the operator)."""
        if (count is None) == (not unlimited):
            raise click.UsageError("give COUNT or --unlimited")
        with state.transaction() as ctx:
            row = users.set_licensed_users(ctx, slug, None if unlimited else count, by="operator")
            used = users.enabled_users(ctx, row.id)
        emit(
            state,
            {"slug": slug, "licensed_users": row.licensed_users, "users": used},
            f"{slug}: {used} user(s), licensed for "
            f"{row.licensed_users if row.licensed_users is not None else 'any number'}",
        )
