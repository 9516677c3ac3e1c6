"""Tenant groups: one contract holding several tenants (REQUIREMENTS B).

    groups.create(ctx, "acme-group", name="ACME グループ")
    groups.add_tenant(ctx, "acme-group", "acme-tokyo")   # effective immediately
    groups.cancel_tenant(ctx, "acme-osaka")              # same day; data kept, unreachable

Rules: only standard-plan tenants are in a group (REQUIREMENTS B: "available on the
standard plan"); a tenant belongs to at most one
group and can never be removed from it (only cancelled); sandboxes are not
group tenants (they are not billed as environments).
"""

from __future__ import annotations

from sqlalchemy import select

from provisioner.db.models import Tenant
from provisioner.db.provisioning_models import TenantGroup
from provisioner.errors import (
    AlreadyExists,
    NotFound,
    PermissionDenied,
    PlanConflict,
    ValidationFailed,
)
from provisioner.identifiers import OPERATOR, SLUG
from provisioner.services import audit
from provisioner.services.actors import get_tenant
from provisioner.services.transaction import Context

#: REQUIREMENTS B: groups are "available on the standard plan, not on the light plans"
GROUP_PLANS = frozenset({"standard"})


def create(ctx: Context, code: str, *, name: str, by: str = OPERATOR) -> TenantGroup:
    if not SLUG.match(code):
        raise ValidationFailed(
            f"invalid group code {code!r}", hint="use lowercase letters, digits and hyphens"
        )
    if not name.strip():
        raise ValidationFailed("a group needs a name", hint="--name 'ACME グループ'")
    if ctx.session.scalar(select(TenantGroup.id).where(TenantGroup.code == code)) is not None:
        raise AlreadyExists(f"group {code!r} already exists")
    group = TenantGroup(code=code, name=name.strip(), created_at=ctx.clock.now(), created_by=by)
    ctx.session.add(group)
    ctx.session.flush()
    with ctx.operator("write"):  # an operator's event of no tenant
        audit.record(
            ctx, tenant_id=None, actor=by, action="group:created", subject=code, name=group.name
        )
    return group


def get(ctx: Context, code: str) -> TenantGroup:
    group = ctx.session.scalar(select(TenantGroup).where(TenantGroup.code == code))
    if group is None:
        raise NotFound(f"no group {code!r}", hint="'provisioner group list' shows the groups")
    return group


def list_all(ctx: Context) -> list[TenantGroup]:
    return list(ctx.session.scalars(select(TenantGroup).order_by(TenantGroup.id)))


def tenants_of(
    ctx: Context, group: TenantGroup, *, include_cancelled: bool = False
) -> list[Tenant]:
    """The group's tenants in a stable order (the order they joined: tenant id)."""
    query = select(Tenant).where(Tenant.group_id == group.id)
    if not include_cancelled:
        query = query.where(Tenant.status != "cancelled")
    return list(ctx.session.scalars(query.order_by(Tenant.id)))


def add_tenant(ctx: Context, code: str, slug: str, *, by: str = OPERATOR) -> Tenant:
    group = get(ctx, code)
    tenant = get_tenant(ctx, slug)
    if tenant.plan not in GROUP_PLANS:
        raise PermissionDenied(
            f"tenant {slug!r} is on the {tenant.plan!r} plan, which cannot use tenant groups "
            "(only the standard plan can)",
            hint=f"move it to the standard plan first: provisioner tenant update {slug} "
            "--plan standard",
        )
    if tenant.is_sandbox:
        raise ValidationFailed(f"tenant {slug!r} is a sandbox; sandboxes are not group tenants")
    if tenant.group_id == group.id:
        return tenant
    if tenant.group_id is not None:
        other = ctx.session.get(TenantGroup, tenant.group_id)
        raise PermissionDenied(
            f"tenant {slug!r} already belongs to group {other.code if other else '?'!r}; "
            "a tenant can not leave or change its group",
            hint=f"cancel it instead (provisioner tenant cancel {slug}) and create a new tenant",
        )
    tenant.group_id = group.id
    audit.record(
        ctx, tenant_id=tenant.id, actor=by, action="group:tenant_added", subject=slug, group=code
    )
    return tenant


def remove_tenant(ctx: Context, code: str, slug: str, *, by: str = OPERATOR) -> None:
    """Always refused: REQUIREMENTS B says a tenant can not be removed from its group."""
    get(ctx, code)
    get_tenant(ctx, slug, include_cancelled=True)
    raise PermissionDenied(
        f"tenant {slug!r} can not be removed from group {code!r}: a group tenant can only be "
        "cancelled",
        hint=f"provisioner tenant cancel {slug} (effective today; its data is kept)",
    )


def cancel_tenant(ctx: Context, slug: str, *, by: str = OPERATOR) -> Tenant:
    """Cancel a tenant, effective now (the same day): nobody can reach it; data is kept."""
    tenant = get_tenant(ctx, slug, include_cancelled=True)
    if tenant.status == "cancelled":
        raise PlanConflict(f"tenant {slug!r} is already cancelled")
    tenant.status = "cancelled"
    tenant.cancelled_at = ctx.clock.now()
    audit.record(ctx, tenant_id=tenant.id, actor=by, action="tenant:cancelled", subject=slug)
    return tenant
