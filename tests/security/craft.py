"""Helpers for the attack tests: forge, tamper and re-sign bundles by hand.

Malicious payloads are built as bytes and signed with a *real* tenant key of
the deployment (``signing.signer``), so a test reaches strict parsing after a
VALID signature instead of stopping at signature verification.

    raw = world.export("partner", key)               # a genuine bundle
    data = payload_of(raw)                           # its payload, as data
    data["format_version"] = 2
    forged = resign(world, "partner", canonical_bytes(data))
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from provisioner.bundles.envelope import PAYLOAD_TYPE, sign_envelope
from provisioner.db.models import AuditEvent, ConfigVersion, CopyKeyRow, Transfer
from provisioner.services import actors, signing
from tests.support import World


def envelope_of(raw: bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(raw)
    return data


def payload_bytes(raw: bytes) -> bytes:
    return base64.b64decode(envelope_of(raw)["payload"])


def payload_of(raw: bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(payload_bytes(raw))
    return data


def rewrap(envelope: dict[str, Any]) -> bytes:
    """An envelope dict back to file bytes (no re-signing)."""
    return json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode() + b"\n"


def signer_of(world: World, slug: str) -> Ed25519PrivateKey:
    with world.app.transaction() as ctx:
        return signing.signer(ctx, actors.get_tenant(ctx, slug).id)


def resign(world: World, slug: str, payload: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """``payload`` (exact bytes) signed with tenant ``slug``'s real signing key."""
    return sign_envelope(payload, signer_of(world, slug), payload_type)


def key_id_of(world: World, slug: str) -> str:
    from provisioner.bundles.signing import key_id

    with world.app.transaction() as ctx:
        return key_id(signing.public_key(ctx, actors.get_tenant(ctx, slug).id))


def pem_of(world: World, slug: str) -> bytes:
    with world.app.transaction() as ctx:
        return signing.public_key_pem(ctx, actors.get_tenant(ctx, slug).id).encode()


def counts(world: World, slug: str) -> dict[str, Any]:
    """What a refused delivery must leave untouched in tenant ``slug``."""
    with world.app.transaction() as ctx, ctx.operator("read"):  # the test inspects
        tenant = actors.get_tenant(ctx, slug)
        session = ctx.session
        return {
            "config_version": tenant.config_version,
            "versions": session.scalar(
                select(func.count())
                .select_from(ConfigVersion)
                .where(ConfigVersion.tenant_id == tenant.id)
            ),
            "transfers": session.scalar(
                select(func.count()).select_from(Transfer).where(Transfer.tenant_id == tenant.id)
            ),
            "used_keys": session.scalar(
                select(func.count())
                .select_from(CopyKeyRow)
                .where(CopyKeyRow.tenant_id == tenant.id, CopyKeyRow.used_at.is_not(None))
            ),
        }


def audit_count(world: World, slug: str, action: str) -> int:
    with world.app.transaction() as ctx, ctx.operator("read"):  # the test inspects
        tenant = actors.get_tenant(ctx, slug)
        return int(
            ctx.session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.tenant_id == tenant.id, AuditEvent.action == action)
            )
            or 0
        )


def key_row(world: World, selector: str) -> CopyKeyRow:
    with world.app.transaction() as ctx, ctx.operator("read"):  # the test inspects
        row = ctx.session.scalar(select(CopyKeyRow).where(CopyKeyRow.selector == selector))
        assert row is not None
        return row
