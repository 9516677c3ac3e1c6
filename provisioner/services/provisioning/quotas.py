"""Disk usage per tenant against its quota (REQUIREMENTS B: 1 GB per tenant plus add-ons).

    quotas.add_disk(ctx, "acme", gb=1, by="operator")
    quotas.require_room(ctx, tenant, incoming=len(raw), what="this configuration")

How usage is measured (the same number on SQLite and PostgreSQL, and what the
bill is about): the bytes of what the tenant stores, not database pages --

* every configuration version: the UTF-8 bytes of its canonical JSON document;
* every received transfer: the bytes of its bundle file (the signed envelope);
* every recorded call: :data:`CALL_RECORD_BYTES` plus the UTF-8 bytes of its note.

Writes that would take a tenant over its quota (``included_disk_bytes`` of the
price book + 1 GiB per add-on GB) are refused BEFORE anything is written, with
QuotaExceeded, so nothing already stored is lost or truncated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, LargeBinary, cast, func, select

from provisioner.db.models import ConfigVersion, Tenant, Transfer
from provisioner.db.provisioning_models import CallRecord, DiskAddon
from provisioner.errors import QuotaExceeded, ValidationFailed
from provisioner.services import audit
from provisioner.services.actors import get_tenant
from provisioner.services.context import Context
from provisioner.services.provisioning.billing import GIB, price_book

CALL_RECORD_BYTES = 256
MAX_ADDON_GB = 1000


@dataclass(frozen=True)
class Usage:
    used_bytes: int
    quota_bytes: int

    @property
    def free_bytes(self) -> int:
        return max(0, self.quota_bytes - self.used_bytes)

    def to_dict(self) -> dict[str, int]:
        return {"used_bytes": self.used_bytes, "quota_bytes": self.quota_bytes,
                "free_bytes": self.free_bytes}


def _text_bytes(ctx: Context, column: Any) -> ColumnElement[Any]:
    if ctx.session.get_bind().dialect.name == "postgresql":
        return func.octet_length(column)
    return func.length(cast(column, LargeBinary))  # SQLite: length of a BLOB is in bytes


def usage(ctx: Context, tenant: Tenant) -> Usage:
    """Bytes stored by the tenant and its quota, in one round trip."""
    docs = select(func.coalesce(func.sum(_text_bytes(ctx, ConfigVersion.document)), 0)).where(
        ConfigVersion.tenant_id == tenant.id).scalar_subquery()
    bundles = select(func.coalesce(func.sum(func.length(Transfer.envelope)), 0)).where(
        Transfer.tenant_id == tenant.id).scalar_subquery()
    calls = select(func.count(CallRecord.id) * CALL_RECORD_BYTES + func.coalesce(
        func.sum(_text_bytes(ctx, CallRecord.contact_note)), 0)).where(
        CallRecord.tenant_id == tenant.id).scalar_subquery()
    addons = select(func.coalesce(func.sum(DiskAddon.gb), 0)).where(
        DiskAddon.tenant_id == tenant.id).scalar_subquery()
    used_docs, used_bundles, used_calls, addon_gb = ctx.session.execute(
        select(docs, bundles, calls, addons)).one()
    quota_bytes = price_book(ctx)["included_disk_bytes"] + int(addon_gb) * GIB
    return Usage(int(used_docs) + int(used_bundles) + int(used_calls), quota_bytes)


def quota(ctx: Context, tenant: Tenant) -> int:
    return usage(ctx, tenant).quota_bytes


def require_room(ctx: Context, tenant: Tenant, incoming: int, *, what: str) -> None:
    current = usage(ctx, tenant)
    if current.used_bytes + incoming > current.quota_bytes:
        raise QuotaExceeded(
            f"tenant {tenant.slug!r} is out of disk space: {what} needs {incoming:,} bytes, "
            f"{current.free_bytes:,} of {current.quota_bytes:,} are free; nothing was written",
            hint=f"add disk (provisioner tenant addon {tenant.slug} --disk-gb 1) or remove data",
        )


def add_disk(ctx: Context, slug: str, *, gb: int, by: str) -> DiskAddon:
    if not 1 <= gb <= MAX_ADDON_GB:
        raise ValidationFailed(f"--disk-gb must be between 1 and {MAX_ADDON_GB}, not {gb}")
    tenant = get_tenant(ctx, slug)
    row = DiskAddon(tenant_id=tenant.id, gb=gb, added_at=ctx.clock.now(), added_by=by)
    ctx.session.add(row)
    audit.record(ctx, tenant_id=tenant.id, actor=by, action="tenant:disk_added", subject=slug,
                 gb=gb)
    return row
