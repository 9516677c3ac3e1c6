"""Tenants and their users (the minimal core; provisioning builds on it)."""

from __future__ import annotations

from sqlalchemy import select

from provisioner.config.document import ConfigDocument
from provisioner.db.models import Membership, Tenant, User
from provisioner.errors import AlreadyExists, PermissionDenied, ValidationFailed
from provisioner.identifiers import LOGIN, OPERATOR, SLUG
from provisioner.services import audit, configs, signing
from provisioner.services.actors import ROLES, get_tenant
from provisioner.services.eligibility import PLANS
from provisioner.services.transaction import Context

__all__ = ["LOGIN", "OPERATOR", "SLUG", "add_user", "create", "list_all", "update_flags"]


def create(
    ctx: Context,
    slug: str,
    *,
    name: str,
    plan: str = "standard",
    sandbox: bool = False,
    integrations: bool = False,
    document: ConfigDocument | None = None,
    origin: str = "initial",
    by: str = OPERATOR,
) -> Tenant:
    """A tenant with its default configuration (version 1) and its signing key."""
    if not SLUG.match(slug):
        raise ValidationFailed(
            f"invalid tenant slug {slug!r}",
            hint="use lowercase letters, digits and hyphens (e.g. tokyo-branch)",
        )
    if plan not in PLANS:
        raise ValidationFailed(f"unknown plan {plan!r}", hint="plans: " + ", ".join(PLANS))
    if not name.strip():
        raise ValidationFailed("a tenant needs a name", hint="--name '株式会社サンプル'")
    if ctx.session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
        raise AlreadyExists(f"tenant {slug!r} already exists")
    tenant = Tenant(
        slug=slug,
        name=name.strip(),
        plan=plan,
        is_sandbox=sandbox,
        integrations_active=integrations,
        created_at=ctx.clock.now(),
    )
    ctx.session.add(tenant)
    ctx.session.flush()
    ctx.enter_tenant(tenant.id)  # what follows is the new tenant's rows
    configs.initialise(ctx, tenant, author=by, doc=document, origin=origin)
    key = signing.create_key(ctx, tenant)
    audit.record(
        ctx,
        tenant_id=tenant.id,
        actor=by,
        action="tenant:created",
        subject=slug,
        plan=plan,
        sandbox=sandbox,
        integrations=integrations,
        key_id=key.key_id,
    )
    return tenant


def list_all(ctx: Context) -> list[Tenant]:
    return list(ctx.session.scalars(select(Tenant).order_by(Tenant.id)))


def update_flags(
    ctx: Context,
    slug: str,
    *,
    integrations: bool | None = None,
    plan: str | None = None,
    by: str = OPERATOR,
) -> Tenant:
    tenant = get_tenant(ctx, slug)
    ctx.enter_tenant(tenant.id)  # an operator command on this tenant's rows
    changes: dict[str, list[object]] = {}
    if integrations is not None and integrations != tenant.integrations_active:
        changes["integrations"] = [tenant.integrations_active, integrations]
        tenant.integrations_active = integrations
    if plan is not None and plan != tenant.plan:
        if plan not in PLANS:
            raise ValidationFailed(f"unknown plan {plan!r}", hint="plans: " + ", ".join(PLANS))
        if plan != "standard" and tenant.group_id is not None:  # REQUIREMENTS B
            raise PermissionDenied(
                f"tenant {slug!r} is in a tenant group, and the {plan} plan "
                "cannot use tenant groups (only the standard plan can)",
                hint="keep the standard plan, or cancel the tenant",
            )
        changes["plan"] = [tenant.plan, plan]
        tenant.plan = plan
    if changes:
        audit.record(
            ctx,
            tenant_id=tenant.id,
            actor=by,
            action="tenant:updated",
            subject=slug,
            changes=changes,
        )
    return tenant


def add_user(
    ctx: Context,
    login: str,
    *,
    tenant_slug: str,
    role: str,
    display_name: str = "",
    by: str = OPERATOR,
) -> Membership:
    """Create the user if new, and give them ``role`` in the tenant."""
    if not LOGIN.match(login):
        raise ValidationFailed(
            f"invalid login id {login!r}", hint="letters, digits and . _ @ + - (at most 100)"
        )
    tenant = get_tenant(ctx, tenant_slug)
    ctx.enter_tenant(tenant.id)  # an operator command on this tenant's rows
    custom = {
        r.code for r in ConfigDocument.model_validate(configs.current(ctx, tenant).data).roles
    }
    if role not in ROLES and role not in custom:
        raise ValidationFailed(
            f"unknown role {role!r}", hint="roles: " + ", ".join((*ROLES, *sorted(custom)))
        )
    user = ctx.session.scalar(select(User).where(User.login == login))
    if user is None:
        user = User(login=login, display_name=display_name or login, created_at=ctx.clock.now())
        ctx.session.add(user)
        ctx.session.flush()
    existing = ctx.session.scalar(
        select(Membership).where(Membership.tenant_id == tenant.id, Membership.user_id == user.id)
    )
    if existing is not None:
        if existing.role == role:
            return existing
        audit.record(
            ctx,
            tenant_id=tenant.id,
            actor=by,
            action="membership:role_changed",
            subject=login,
            old=existing.role,
            new=role,
        )
        existing.role = role
        return existing
    from provisioner.services import users  # (users imports this module's callers)

    users.require_licence(ctx, tenant)  # the licensed user count
    membership = Membership(
        tenant_id=tenant.id, user_id=user.id, role=role, created_at=ctx.clock.now()
    )
    ctx.session.add(membership)
    audit.record(
        ctx, tenant_id=tenant.id, actor=by, action="membership:added", subject=login, role=role
    )
    return membership
