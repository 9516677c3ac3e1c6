"""JSON shapes of service results, shared by the API and the console (no decisions here)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from provisioner.clock import as_utc, format_instant
from provisioner.db.models import ConfigVersion, CopyKeyRow, Tenant, Transfer
from provisioner.services import copykeys
from provisioner.services.provisioning.auth import LoginResult, TenantChoice


def instant(value: datetime | None) -> str | None:
    return None if value is None else format_instant(as_utc(value))


def choice(c: TenantChoice) -> dict[str, object]:
    return c.to_dict()


def login(result: LoginResult) -> dict[str, Any]:
    return {
        "token": result.token,
        "login": result.login,
        "selected": result.selected,
        "expires_at": instant(result.expires_at),
        "tenants": [choice(c) for c in result.tenants],
    }


def tenant(row: Tenant, *, role: str, group: str | None) -> dict[str, Any]:
    return {
        "slug": row.slug,
        "name": row.name,
        "plan": row.plan,
        "sandbox": row.is_sandbox,
        "integrations": row.integrations_active,
        "status": row.status,
        "config_version": row.config_version,
        "role": role,
        "group": group,
    }


def transfer(t: Transfer) -> dict[str, Any]:
    return {
        "id": t.id,
        "status": t.status,
        "source_tenant": t.source_tenant,
        "source_name": t.source_name,
        "source_version": t.source_version,
        "bundle_id": t.bundle_id,
        "bundle_digest": t.payload_digest,
        "signer_key_id": t.signer_key_id,
        "base_version": t.base_version,
        "received_at": instant(t.received_at),
        "received_by": t.received_by,
        "decided_by": t.decided_by,
        "applied_version": t.applied_version,
        "summary": t.plan.get("summary", {}),
    }


def key(row: CopyKeyRow, now: datetime) -> dict[str, Any]:
    return {
        "id": row.id,
        "selector": row.selector,
        "state": copykeys.state(row, now),
        "created_at": instant(row.created_at),
        "created_by": row.created_by,
        "expires_at": instant(row.expires_at),
        "used_by_transfer": row.used_by_transfer,
        "failed_attempts": row.failed_attempts,
    }


def version(v: ConfigVersion, current: int | None) -> dict[str, Any]:
    return {
        "version": v.version,
        "digest": v.digest,
        "created_at": instant(v.created_at),
        "created_by": v.created_by,
        "origin": v.origin,
        "current": v.version == current,
    }
