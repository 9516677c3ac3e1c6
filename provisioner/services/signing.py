"""Tenant signing keys and trusted (pinned) publishers.

Each tenant gets an Ed25519 key when it is created; its private half is kept
sealed by the deployment's master key (:mod:`provisioner.security.keystore`).
A tenant's admin may pin publishers: once any publisher is pinned, the tenant
accepts bundles signed by pinned keys only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Select, bindparam, select

from provisioner.bundles.envelope import KeyResolver
from provisioner.bundles.signing import (
    generate_private_key,
    key_id,
    load_public_pem,
    private_from_raw,
    private_raw,
    public_from_raw,
    public_pem,
    raw_public,
)
from provisioner.db.models import SigningKey, Tenant, TrustedPublisher
from provisioner.errors import AlreadyExists, NotFound, ValidationFailed
from provisioner.security.keystore import Sealed
from provisioner.services import audit
from provisioner.services.actors import Actor, require_admin
from provisioner.services.transaction import Context

POLICIES = ("manual", "auto")


def _aad(tenant_id: int, kid: str) -> bytes:
    return f"tenant:{tenant_id}|key:{kid}".encode()


def create_key(ctx: Context, tenant: Tenant) -> SigningKey:
    private = generate_private_key()
    kid = key_id(private.public_key())
    sealed = ctx.master_key.seal(private_raw(private), aad=_aad(tenant.id, kid))
    row = SigningKey(
        tenant_id=tenant.id,
        key_id=kid,
        public_key=raw_public(private.public_key()),
        wrapped_key=sealed.wrapped_key,
        ciphertext=sealed.ciphertext,
        created_at=ctx.clock.now(),
    )
    ctx.session.add(row)
    return row


def _active_key(ctx: Context, tenant_id: int) -> SigningKey:
    with ctx.of_tenant(tenant_id):
        row = ctx.session.scalar(
            select(SigningKey)
            .where(SigningKey.tenant_id == tenant_id, SigningKey.retired_at.is_(None))
            .order_by(SigningKey.id.desc())
            .limit(1)
        )
    if row is None:
        raise NotFound("this tenant has no signing key")
    return row


def signer(ctx: Context, tenant_id: int) -> Ed25519PrivateKey:
    return signer_with_id(ctx, tenant_id)[1]


def signer_with_id(ctx: Context, tenant_id: int) -> tuple[str, Ed25519PrivateKey]:
    """The tenant's active key id and private key (one read of the key row)."""
    row = _active_key(ctx, tenant_id)
    raw = ctx.master_key.open(
        Sealed(row.wrapped_key, row.ciphertext), aad=_aad(tenant_id, row.key_id)
    )
    return row.key_id, private_from_raw(raw)


def public_key(ctx: Context, tenant_id: int) -> Ed25519PublicKey:
    return public_from_raw(_active_key(ctx, tenant_id).public_key)


def key_id_of(ctx: Context, tenant_id: int) -> str:
    """The key id the tenant signs with now."""
    return _active_key(ctx, tenant_id).key_id


def owner_of(ctx: Context, kid: str) -> Tenant | None:
    """The tenant of this deployment that signs with key ``kid``, if any."""
    ctx.present(signing_key=kid)  # a public key is reached by its key id
    row = ctx.session.scalar(select(SigningKey).where(SigningKey.key_id == kid))
    return ctx.session.get(Tenant, row.tenant_id) if row else None


def public_key_pem(ctx: Context, tenant_id: int) -> str:
    return public_pem(public_key(ctx, tenant_id))


def pinned(ctx: Context, tenant_id: int) -> list[TrustedPublisher]:
    return list(
        ctx.session.scalars(
            select(TrustedPublisher)
            .where(TrustedPublisher.tenant_id == tenant_id)
            .order_by(TrustedPublisher.id)
        )
    )


def resolver_for(
    ctx: Context,
    tenant_id: int,
    extra: Iterable[Ed25519PublicKey] = (),
    *,
    pins: Sequence[TrustedPublisher] | None = None,
    owners: dict[str, KeyOwner | None] | None = None,
) -> KeyResolver:
    """Keys the tenant accepts signatures from.

    With pinned publishers: exactly those. Without: any tenant key of this
    deployment, plus keys given explicitly (``--public-key``).

    ``pins``: the tenant's :func:`pinned` publishers, when the caller already read
    them. ``owners``: filled with key id -> the tenant of this deployment owning
    the key (None: no tenant) for every key looked up in the database, read in
    the same query as the key (see :func:`tenant_key`).
    """
    pinned_keys = {
        p.key_id: public_from_raw(p.public_key)
        for p in (pinned(ctx, tenant_id) if pins is None else pins)
    }
    if pinned_keys:
        return pinned_keys.get
    explicit = {key_id(k): k for k in extra}

    def resolve(kid: str) -> Ed25519PublicKey | None:
        if kid in explicit:
            return explicit[kid]
        found = tenant_key(ctx, kid)
        if owners is not None:
            owners[kid] = found[1] if found else None
        return found[0] if found else None

    return resolve


def any_tenant_key(ctx: Context, kid: str) -> Ed25519PublicKey | None:
    """The public key of any tenant of this deployment with this key id."""
    ctx.present(signing_key=kid)  # a public key is reached by its key id
    row = ctx.session.scalar(select(SigningKey).where(SigningKey.key_id == kid))
    return public_from_raw(row.public_key) if row else None


@dataclass(frozen=True)
class KeyOwner:
    """The tenant of this deployment that owns a signing key."""

    id: int
    slug: str


_TENANT_KEY = (
    select(SigningKey.public_key, Tenant.id, Tenant.slug)
    .join(Tenant, Tenant.id == SigningKey.tenant_id)
    .where(SigningKey.key_id == bindparam("kid"))
)


def tenant_key(ctx: Context, kid: str) -> tuple[Ed25519PublicKey, KeyOwner] | None:
    """The public key of any tenant of this deployment with this key id, and that tenant.

    One round trip: key and tenant joined, and on PostgreSQL the key id presented (a
    public key is reached by its key id, see ``Context.present``) in the same pipeline.
    """
    values = {"kid": kid}
    row: Any
    if ctx.postgres:
        statement = cast("Select[Any]", _TENANT_KEY)
        (rows,) = ctx.run_pipelined([statement], values, credentials={"signing_key": kid})
        row = rows[0] if rows else None
    else:
        row = ctx.session.execute(_TENANT_KEY, values).first()
    return (public_from_raw(row.public_key), KeyOwner(row.id, row.slug)) if row else None


def trust(
    ctx: Context, actor: Actor, pem: bytes, *, label: str, policy: str = "manual"
) -> TrustedPublisher:
    require_admin(actor, "pin trusted publishers")
    ctx.enter_tenant(actor.tenant_id)  # the actor's tenant's rows (row-level security)
    if policy not in POLICIES:
        raise ValidationFailed(f"unknown policy {policy!r}", hint="use manual or auto")
    public = load_public_pem(pem)
    kid = key_id(public)
    existing = ctx.session.scalar(
        select(TrustedPublisher).where(
            TrustedPublisher.tenant_id == actor.tenant_id, TrustedPublisher.key_id == kid
        )
    )
    if existing is not None:
        raise AlreadyExists(f"publisher key {kid} is already trusted as {existing.label!r}")
    row = TrustedPublisher(
        tenant_id=actor.tenant_id,
        key_id=kid,
        public_key=raw_public(public),
        label=label,
        policy=policy,
        added_at=ctx.clock.now(),
        added_by=actor.login,
    )
    ctx.session.add(row)
    audit.record(
        ctx,
        tenant_id=actor.tenant_id,
        actor=actor.login,
        action="publisher:trusted",
        subject=kid,
        label=label,
        policy=policy,
    )
    return row


def untrust(ctx: Context, actor: Actor, kid: str) -> None:
    require_admin(actor, "remove trusted publishers")
    ctx.enter_tenant(actor.tenant_id)  # the actor's tenant's rows (row-level security)
    row = ctx.session.scalar(
        select(TrustedPublisher).where(
            TrustedPublisher.tenant_id == actor.tenant_id, TrustedPublisher.key_id == kid
        )
    )
    if row is None:
        raise NotFound(f"publisher key {kid} is not trusted by {actor.tenant_slug!r}")
    ctx.session.delete(row)
    audit.record(
        ctx, tenant_id=actor.tenant_id, actor=actor.login, action="publisher:untrusted", subject=kid
    )
