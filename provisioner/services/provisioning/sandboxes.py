"""Sandboxes and tenants made from a template bundle (REQUIREMENTS A, provisioning side).

    sandboxes.create_sandbox(ctx, "acme-sandbox", source="acme")
    sandboxes.create_from_bundle(ctx, "new-clinic", name="新クリニック", raw=template_bytes)

A sandbox starts with the source's current configuration and no data; the
source's admins become its admins. It can send (with a copy key) but never
receive (:func:`provisioner.services.eligibility.require_can_receive`), so admins
try changes there and then send them to production.

A template tenant's configuration comes from a verified bundle (a partner's
industry template): signature by a tenant key of this deployment or a key given
explicitly, strict parsing, expiry, and the resulting document is validated --
all before the tenant exists; one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import func, select

from provisioner.bundles.payload import VerifiedBundle, read_bundle
from provisioner.bundles.signing import key_id
from provisioner.clock import as_utc, format_instant
from provisioner.config.defaults import default_document
from provisioner.config.merge import combine
from provisioner.config.validate import document_from_data
from provisioner.db.models import Membership, Tenant
from provisioner.db.provisioning_models import DiskAddon, TenantGroup
from provisioner.errors import BundleRejected
from provisioner.identifiers import OPERATOR
from provisioner.services import audit, configs, signing, tenants
from provisioner.services.actors import get_tenant
from provisioner.services.provisioning import groups, quotas
from provisioner.services.transaction import Context


def describe(ctx: Context, slug: str) -> dict[str, Any]:
    """What ``tenant show`` prints: the tenant, its group, its disk (cancelled ones too)."""
    tenant = get_tenant(ctx, slug, include_cancelled=True)
    ctx.enter_tenant(tenant.id)  # an operator command on this tenant's rows
    group = ctx.session.get(TenantGroup, tenant.group_id) if tenant.group_id else None
    room = quotas.usage(ctx, tenant)
    addon_gb = (
        ctx.session.scalar(
            select(func.coalesce(func.sum(DiskAddon.gb), 0)).where(DiskAddon.tenant_id == tenant.id)
        )
        or 0
    )
    users = (
        ctx.session.scalar(
            select(func.count()).select_from(Membership).where(Membership.tenant_id == tenant.id)
        )
        or 0
    )
    return {
        "slug": tenant.slug,
        "id": tenant.id,
        "name": tenant.name,
        "plan": tenant.plan,
        "status": tenant.status,
        "sandbox": tenant.is_sandbox,
        "integrations": tenant.integrations_active,
        "group": group.code if group else None,
        "config_version": tenant.config_version,
        "users": int(users),
        "created_at": format_instant(as_utc(tenant.created_at)),
        "cancelled_at": format_instant(as_utc(tenant.cancelled_at))
        if tenant.cancelled_at
        else None,
        "disk_addon_gb": int(addon_gb),
        **room.to_dict(),
    }


def create_sandbox(
    ctx: Context, slug: str, *, source: str, name: str | None = None, by: str = OPERATOR
) -> Tenant:
    origin = get_tenant(ctx, source)
    if origin.is_sandbox:
        raise BundleRejected(
            f"{source!r} is itself a sandbox", hint="make the sandbox from the production tenant"
        )
    head = configs.current(ctx, origin)
    doc = document_from_data(head.data, what=f"configuration of {source}")
    sandbox = tenants.create(
        ctx,
        slug,
        name=name or f"{origin.name}（サンドボックス）",
        plan=origin.plan,
        sandbox=True,
        document=doc,
        origin=f"sandbox-of:{source}@{head.version}",
        by=by,
    )
    with ctx.of_tenant(origin.id):  # the source's memberships; then the sandbox's scope again
        admins = list(
            ctx.session.scalars(
                select(Membership).where(
                    Membership.tenant_id == origin.id, Membership.role == "admin"
                )
            )
        )
    for member in admins:
        ctx.session.add(
            Membership(
                tenant_id=sandbox.id,
                user_id=member.user_id,
                role="admin",
                created_at=ctx.clock.now(),
            )
        )
    audit.record(
        ctx,
        tenant_id=sandbox.id,
        actor=by,
        action="sandbox:created",
        subject=slug,
        source=source,
        source_version=head.version,
    )
    return sandbox


def verify_template(
    ctx: Context, raw: bytes, extra_keys: Iterable[Ed25519PublicKey] = ()
) -> VerifiedBundle:
    explicit = {key_id(k): k for k in extra_keys}

    def resolve(kid: str) -> Ed25519PublicKey | None:
        return explicit[kid] if kid in explicit else signing.any_tenant_key(ctx, kid)

    bundle = read_bundle(raw, resolve)
    if ctx.clock.now() >= bundle.expires_at:
        raise BundleRejected(
            f"bundle expired at {bundle.payload.expires_at}",
            hint="ask the publisher for a fresh template bundle",
        )
    if bundle.payload.audience is not None:
        raise BundleRejected(
            "this bundle is bound to a copy key of another tenant and is not a template",
            hint="use a bundle exported without --key",
        )
    return bundle


def create_from_bundle(
    ctx: Context,
    slug: str,
    *,
    name: str,
    raw: bytes,
    plan: str = "standard",
    group: str | None = None,
    extra_keys: Iterable[Ed25519PublicKey] = (),
    by: str = OPERATOR,
) -> Tenant:
    bundle = verify_template(ctx, raw, extra_keys)
    data = combine(default_document().to_data(), bundle.config, mode="replace")
    doc = document_from_data(data, what="configuration from the template")
    tenant = tenants.create(
        ctx,
        slug,
        name=name,
        plan=plan,
        document=doc,
        origin=f"bundle:{bundle.payload.bundle_id}",
        by=by,
    )
    if group is not None:
        groups.add_tenant(ctx, group, slug, by=by)
    audit.record(
        ctx,
        tenant_id=tenant.id,
        actor=by,
        action="tenant:created_from_bundle",
        subject=slug,
        bundle_id=bundle.payload.bundle_id,
        bundle_digest=bundle.digest,
        signer_key_id=bundle.key_id,
        source_tenant=bundle.payload.source.tenant,
        sections=list(bundle.sections),
    )
    return tenant
