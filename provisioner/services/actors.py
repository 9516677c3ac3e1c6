"""Who is acting: a user, in a tenant, with a role. Permission checks live here.

actor = actors.resolve(ctx, "sato", "acme")   # raises if sato is not in acme
actors.require_admin(actor, "generate copy keys")
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from provisioner.config.document import BUILTIN_ROLES
from provisioner.db.models import Membership, Tenant, User
from provisioner.errors import NotFound, PermissionDenied
from provisioner.services.transaction import Context

ROLES = BUILTIN_ROLES


@dataclass(frozen=True)
class Actor:
    login: str
    user_id: int
    tenant_id: int
    tenant_slug: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def get_tenant(ctx: Context, slug: str, *, include_cancelled: bool = False) -> Tenant:
    tenant = ctx.session.scalar(select(Tenant).where(Tenant.slug == slug))
    require_tenant(slug, tenant.status if tenant is not None else None, include_cancelled)
    assert tenant is not None
    return tenant


def require_tenant(slug: str, status: str | None, include_cancelled: bool = False) -> None:
    """NotFound unless a tenant of that status can be worked on (``status`` None: no
    such tenant; a cancelled one only with ``include_cancelled``)."""
    if status is None or (status == "cancelled" and not include_cancelled):
        raise NotFound(f"no tenant {slug!r}", hint="'provisioner tenant list' shows the tenants")


def get_user(ctx: Context, login: str) -> User:
    user = ctx.session.scalar(select(User).where(User.login == login))
    if user is None:
        raise NotFound(f"no user {login!r}")
    return user


def resolve(ctx: Context, login: str, tenant_slug: str) -> Actor:
    """The acting user in a tenant. Unknown users and non-members look the same."""
    ctx.enter_tenant_named(tenant_slug)  # the memberships are the tenant's rows
    row = ctx.session.execute(
        select(User, Tenant, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .join(Tenant, Tenant.id == Membership.tenant_id)
        .where(
            User.login == login, Tenant.slug == tenant_slug, Membership.disabled_at.is_(None)
        )  # a disabled user cannot act
    ).first()
    if row is None:
        raise PermissionDenied(f"user {login!r} has no access to tenant {tenant_slug!r}")
    user, tenant, role = row
    if tenant.status == "cancelled":
        raise PermissionDenied(f"tenant {tenant_slug!r} is cancelled")
    return Actor(
        login=user.login, user_id=user.id, tenant_id=tenant.id, tenant_slug=tenant.slug, role=role
    )


def resolve_for_tenant_id(ctx: Context, login: str, tenant_id: int, *, what: str) -> Actor:
    """The acting user in the tenant that owns ``what``; non-members get NotFound."""
    ctx.enter_tenant(tenant_id)  # the memberships are the tenant's rows
    row = ctx.session.execute(
        select(User, Tenant, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .join(Tenant, Tenant.id == Membership.tenant_id)
        .where(User.login == login, Tenant.id == tenant_id, Membership.disabled_at.is_(None))
    ).first()
    if row is None or row[1].status == "cancelled":  # a cancelled tenant is unreachable
        raise NotFound(f"no {what} visible to user {login!r}")
    user, tenant, role = row
    return Actor(
        login=user.login, user_id=user.id, tenant_id=tenant.id, tenant_slug=tenant.slug, role=role
    )


def require_admin(actor: Actor, action: str) -> None:
    if not actor.is_admin:
        raise PermissionDenied(
            f"only an admin of {actor.tenant_slug!r} may {action}; {actor.login!r} is "
            f"{actor.role!r}",
            hint="ask a tenant admin",
        )
