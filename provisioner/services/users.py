"""A tenant's users, administered by the tenant's admins (REQUIREMENTS C: masters, roles).

    users.list_users(ctx, admin)                       # everyone with a membership
    users.set_role(ctx, admin, "sato", "general_no_export")
    users.disable(ctx, admin, "sato"); users.enable(ctx, admin, "sato")
    users.remove(ctx, admin, "sato")                   # the membership; the login stays
    temporary = users.reset_password(ctx, admin, "sato")   # shown once
    users.add_department(ctx, admin, "sales", "営業部")
    users.set_department(ctx, admin, "sato", "sales")

Rules:

* every function is for the tenant's admins (``PermissionDenied`` otherwise);
* a tenant keeps at least one enabled admin: the last one cannot be demoted,
  disabled or removed (nor can an admin disable or remove themself);
* a disabled user keeps the membership but can neither log in to the tenant nor
  act in it (``actors.resolve``, the login's tenant list and every API session
  check skip disabled memberships); enabling counts against the licence again;
* the licensed user count (``tenants.licensed_users``, set by the operator; none:
  no limit) caps the enabled memberships of the tenant: adding or enabling a user
  beyond it is refused (``QuotaExceeded``);
* the password is the login's, shared by all its tenants (REQUIREMENTS B): an
  admin may reset it only when every tenant of the user is this tenant or one of
  its group; the user's sessions end, and the new password is shown once;
* the user department master is per tenant (code, name); a user's department is
  one of its codes, or none.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import func, or_, select, update

from provisioner.clock import as_utc, format_instant
from provisioner.config.document import ConfigDocument
from provisioner.db.models import Membership, Tenant, User, UserDepartment
from provisioner.db.provisioning_models import LoginSession
from provisioner.errors import (
    AlreadyExists,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    ValidationFailed,
)
from provisioner.services import audit, configs
from provisioner.services.actors import ROLES, Actor, get_tenant, require_admin
from provisioner.services.provisioning import auth
from provisioner.services.transaction import Context


def _enter(ctx: Context, actor: Actor) -> None:
    """Scope the transaction to the actor's tenant: its memberships, departments and
    sessions are that tenant's rows (PostgreSQL row-level security)."""
    ctx.enter_tenant(actor.tenant_id)


def _membership(ctx: Context, actor: Actor, login: str) -> tuple[User, Membership]:
    row = ctx.session.execute(
        select(User, Membership)
        .join(Membership, Membership.user_id == User.id)
        .where(User.login == login, Membership.tenant_id == actor.tenant_id)
    ).first()
    if row is None:
        raise NotFound(
            f"no user {login!r} in tenant {actor.tenant_slug!r}",
            hint="'provisioner user list' shows the tenant's users",
        )
    return row[0], row[1]


def _enabled_admins(ctx: Context, tenant_id: int) -> int:
    ctx.enter_tenant(tenant_id)  # the tenant's memberships
    return int(
        ctx.session.scalar(
            select(func.count())
            .select_from(Membership)
            .where(
                Membership.tenant_id == tenant_id,
                Membership.role == "admin",
                Membership.disabled_at.is_(None),
            )
        )
        or 0
    )


def _keep_an_admin(
    ctx: Context, actor: Actor, login: str, membership: Membership, what: str
) -> None:
    if login == actor.login:
        raise PermissionDenied(f"you cannot {what} yourself", hint="ask another admin")
    if (
        membership.role == "admin"
        and membership.disabled_at is None
        and _enabled_admins(ctx, actor.tenant_id) <= 1
    ):
        raise PermissionDenied(
            f"{login!r} is the tenant's last admin and cannot be {what}d",
            hint="make another user admin first",
        )


def enabled_users(ctx: Context, tenant_id: int) -> int:
    with ctx.of_tenant(tenant_id):  # the tenant's memberships
        count = ctx.session.scalar(
            select(func.count())
            .select_from(Membership)
            .where(Membership.tenant_id == tenant_id, Membership.disabled_at.is_(None))
        )
    return int(count or 0)


def require_licence(ctx: Context, tenant: Tenant, *, adding: int = 1) -> None:
    """Refuse a user beyond the tenant's licensed user count."""
    if tenant.licensed_users is None:
        return
    used = enabled_users(ctx, tenant.id)
    if used + adding > tenant.licensed_users:
        raise QuotaExceeded(
            f"tenant {tenant.slug!r} is licensed for {tenant.licensed_users} user(s) and has "
            f"{used}",
            hint="disable or remove a user, or license more users",
        )


def set_licensed_users(ctx: Context, slug: str, count: int | None, *, by: str) -> Tenant:
    """The operator sets how many users a tenant may register (None: no limit)."""
    tenant = get_tenant(ctx, slug)
    if count is not None and count < 1:
        raise ValidationFailed("a tenant is licensed for at least 1 user")
    old, tenant.licensed_users = tenant.licensed_users, count
    audit.record(
        ctx,
        tenant_id=tenant.id,
        actor=by,
        action="tenant:licensed_users",
        subject=slug,
        old=old,
        new=count,
    )
    return tenant


def _user_dict(user: User, membership: Membership, departments: dict[int, str]) -> dict[str, Any]:
    return {
        "login": user.login,
        "name": user.display_name,
        "role": membership.role,
        "disabled": membership.disabled_at is not None,
        "department": departments.get(membership.department_id or 0),
        "member_since": format_instant(as_utc(membership.created_at)),
    }


def _department_codes(ctx: Context, tenant_id: int) -> dict[int, str]:
    return dict(
        ctx.session.execute(
            select(UserDepartment.id, UserDepartment.code).where(
                UserDepartment.tenant_id == tenant_id
            )
        ).all()
    )


def list_users(ctx: Context, actor: Actor) -> list[dict[str, Any]]:
    _enter(ctx, actor)
    require_admin(actor, "list the tenant's users")
    departments = _department_codes(ctx, actor.tenant_id)
    rows = ctx.session.execute(
        select(User, Membership)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.tenant_id == actor.tenant_id)
        .order_by(User.login)
    ).all()
    return [_user_dict(u, m, departments) for u, m in rows]


def show(ctx: Context, actor: Actor, login: str) -> dict[str, Any]:
    _enter(ctx, actor)
    user, membership = _membership(ctx, actor, login)
    return _user_dict(user, membership, _department_codes(ctx, actor.tenant_id))


def set_role(ctx: Context, actor: Actor, login: str, role: str) -> dict[str, Any]:
    _enter(ctx, actor)
    require_admin(actor, "change users' roles")
    tenant = get_tenant(ctx, actor.tenant_slug)
    custom = {
        r.code for r in ConfigDocument.model_validate(configs.current(ctx, tenant).data).roles
    }
    if role not in ROLES and role not in custom:
        raise ValidationFailed(
            f"unknown role {role!r}", hint="roles: " + ", ".join((*ROLES, *sorted(custom)))
        )
    _, membership = _membership(ctx, actor, login)
    if membership.role != role:
        if membership.role == "admin":
            _keep_an_admin(ctx, actor, login, membership, "demote")
        audit.record(
            ctx,
            tenant_id=actor.tenant_id,
            actor=actor.login,
            action="membership:role_changed",
            subject=login,
            old=membership.role,
            new=role,
        )
        membership.role = role
    return show(ctx, actor, login)


def _end_sessions(ctx: Context, user_id: int, tenant_id: int | None) -> None:
    query = update(LoginSession).where(
        LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None)
    )
    if tenant_id is not None:
        query = query.where(LoginSession.tenant_id == tenant_id)
        ctx.session.execute(query.values(revoked_at=ctx.clock.now()))
        return
    with ctx.operator("write"):  # the user's sessions in every tenant (a password reset)
        ctx.session.execute(query.values(revoked_at=ctx.clock.now()))


def disable(ctx: Context, actor: Actor, login: str) -> dict[str, Any]:
    _enter(ctx, actor)
    require_admin(actor, "disable users")
    user, membership = _membership(ctx, actor, login)
    if membership.disabled_at is None:
        _keep_an_admin(ctx, actor, login, membership, "disable")
        membership.disabled_at = ctx.clock.now()
        _end_sessions(ctx, user.id, actor.tenant_id)
        audit.record(
            ctx,
            tenant_id=actor.tenant_id,
            actor=actor.login,
            action="membership:disabled",
            subject=login,
        )
    return show(ctx, actor, login)


def enable(ctx: Context, actor: Actor, login: str) -> dict[str, Any]:
    _enter(ctx, actor)
    require_admin(actor, "enable users")
    _, membership = _membership(ctx, actor, login)
    if membership.disabled_at is not None:
        require_licence(ctx, get_tenant(ctx, actor.tenant_slug))
        membership.disabled_at = None
        audit.record(
            ctx,
            tenant_id=actor.tenant_id,
            actor=actor.login,
            action="membership:enabled",
            subject=login,
        )
    return show(ctx, actor, login)


def remove(ctx: Context, actor: Actor, login: str) -> None:
    """End the user's membership of the tenant (their login and other tenants stay)."""
    _enter(ctx, actor)
    require_admin(actor, "remove users")
    user, membership = _membership(ctx, actor, login)
    _keep_an_admin(ctx, actor, login, membership, "remove")
    _end_sessions(ctx, user.id, actor.tenant_id)
    ctx.session.delete(membership)
    audit.record(
        ctx,
        tenant_id=actor.tenant_id,
        actor=actor.login,
        action="membership:removed",
        subject=login,
        role=membership.role,
    )


def reset_password(
    ctx: Context, actor: Actor, login: str, *, new_password: str | None = None
) -> str:
    """Give the user a new password (a random one unless given); returns it (shown once).

    The password is the login's, shared by all its tenants: allowed only when every
    tenant of the user is this tenant or in this tenant's group.
    """
    _enter(ctx, actor)
    require_admin(actor, "reset passwords")
    user, _ = _membership(ctx, actor, login)
    tenant = get_tenant(ctx, actor.tenant_slug)
    query = (
        select(Tenant.slug)
        .join(Membership, Membership.tenant_id == Tenant.id)
        .where(Membership.user_id == user.id, Tenant.id != tenant.id, Tenant.status == "active")
    )
    if tenant.group_id is not None:
        query = query.where(or_(Tenant.group_id.is_(None), Tenant.group_id != tenant.group_id))
    with ctx.operator("read"):  # the user's memberships in other tenants decide
        outside = ctx.session.scalars(query).all()
    if outside:
        raise PermissionDenied(
            f"{login!r} also uses tenant(s) outside {actor.tenant_slug!r} and its group "
            f"({', '.join(sorted(outside))}); the password is shared by all of them",
            hint="the operator resets it, or the user changes it with 'provisioner password'",
        )
    password = new_password if new_password is not None else secrets.token_urlsafe(12)
    auth.replace_password(ctx, user, password)
    _end_sessions(ctx, user.id, None)
    audit.record(
        ctx,
        tenant_id=actor.tenant_id,
        actor=actor.login,
        action="user:password_reset",
        subject=login,
    )
    return password


# --------------------------------------------------------------------------- departments


def departments(ctx: Context, actor: Actor) -> list[dict[str, str]]:
    _enter(ctx, actor)
    require_admin(actor, "read the user department master")
    return [
        {"code": d.code, "name": d.name}
        for d in ctx.session.scalars(
            select(UserDepartment)
            .where(UserDepartment.tenant_id == actor.tenant_id)
            .order_by(UserDepartment.code)
        )
    ]


def add_department(ctx: Context, actor: Actor, code: str, name: str) -> dict[str, str]:
    _enter(ctx, actor)
    require_admin(actor, "edit the user department master")
    code, name = code.strip(), name.strip()
    if not (1 <= len(code) <= 63 and code.replace("-", "").replace("_", "").isalnum()):
        raise ValidationFailed(
            f"invalid department code {code!r}", hint="letters, digits, - and _ (at most 63)"
        )
    if not 1 <= len(name) <= 200:
        raise ValidationFailed("a department needs a name (at most 200 characters)")
    if ctx.session.scalar(
        select(UserDepartment.id).where(
            UserDepartment.tenant_id == actor.tenant_id, UserDepartment.code == code
        )
    ):
        raise AlreadyExists(f"department {code!r} already exists")
    ctx.session.add(
        UserDepartment(tenant_id=actor.tenant_id, code=code, name=name, created_at=ctx.clock.now())
    )
    audit.record(
        ctx,
        tenant_id=actor.tenant_id,
        actor=actor.login,
        action="user_department:added",
        subject=code,
        name=name,
    )
    return {"code": code, "name": name}


def set_department(ctx: Context, actor: Actor, login: str, code: str | None) -> dict[str, Any]:
    """Set (or with None clear) a user's department, a code of the master."""
    _enter(ctx, actor)
    require_admin(actor, "set users' departments")
    _, membership = _membership(ctx, actor, login)
    department_id = None
    if code is not None:
        department_id = ctx.session.scalar(
            select(UserDepartment.id).where(
                UserDepartment.tenant_id == actor.tenant_id, UserDepartment.code == code
            )
        )
        if department_id is None:
            raise NotFound(
                f"no department {code!r} in tenant {actor.tenant_slug!r}",
                hint="'provisioner user departments' lists them",
            )
    membership.department_id = department_id
    audit.record(
        ctx,
        tenant_id=actor.tenant_id,
        actor=actor.login,
        action="membership:department_set",
        subject=login,
        department=code,
    )
    return show(ctx, actor, login)
