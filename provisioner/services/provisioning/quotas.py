"""Disk usage per tenant against its quota (REQUIREMENTS B: 1 GB per tenant plus add-ons).

    quotas.add_disk(ctx, "acme", gb=1, by="operator")
    quotas.require_room(ctx, tenant, incoming=len(raw), what="this configuration")

How usage is measured (the same number on SQLite and PostgreSQL, and what the
bill is about): the bytes of what the tenant stores, not database pages --

* every configuration version: the UTF-8 bytes of its canonical JSON document;
* every received transfer: the bytes of its bundle file (the signed envelope);
* every recorded call: :data:`CALL_RECORD_BYTES` plus the UTF-8 bytes of its note;
* every CRM record (a row of any table of ``CRM_TENANT_TABLES``: companies,
  contacts, activities, purchases, change history...): :data:`CRM_RECORD_BYTES`.

Writes that would take a tenant over its quota (``included_disk_bytes`` of the
price book + 1 GiB per add-on GB) are refused BEFORE anything is written, with
QuotaExceeded, so nothing already stored is lost or truncated. Checked:
every new configuration version (``config set``, rollback, approve:
:mod:`provisioner.services.configs`), every received bundle (``send`` /
``receive``: :mod:`provisioner.services.transfers`), every rollout delivery,
CTI call records and contact history, CSV imports and sample data
(:func:`require_room_for_records`). Single CRM record writes are not checked
yet (counting a large tenant's records on every write costs too much; a
maintained per-tenant counter would make it cheap).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    LargeBinary,
    bindparam,
    cast,
    func,
    select,
    text,
    union_all,
)

from provisioner.db.crm_models import CRM_TENANT_TABLES
from provisioner.db.models import Base, ConfigVersion, Tenant, Transfer
from provisioner.db.provisioning_models import CallRecord, DiskAddon
from provisioner.errors import QuotaExceeded, ValidationFailed
from provisioner.services import audit
from provisioner.services.actors import get_tenant
from provisioner.services.context import Context
from provisioner.services.provisioning.billing import GIB, price_book

CALL_RECORD_BYTES = 256
#: what one CRM record counts (a row with its share of the indexes; 1 GiB ~ 2 million records)
CRM_RECORD_BYTES = 512
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
    docs = select(func.coalesce(func.sum(ConfigVersion.size_bytes), 0)).where(
        ConfigVersion.tenant_id == tenant.id).scalar_subquery()
    bundles = select(func.coalesce(func.sum(Transfer.envelope_bytes), 0)).where(
        Transfer.tenant_id == tenant.id).scalar_subquery()
    calls = select(func.count(CallRecord.id) * CALL_RECORD_BYTES + func.coalesce(
        func.sum(_text_bytes(ctx, CallRecord.contact_note)), 0)).where(
        CallRecord.tenant_id == tenant.id).scalar_subquery()
    addons = select(func.coalesce(func.sum(DiskAddon.gb), 0)).where(
        DiskAddon.tenant_id == tenant.id).scalar_subquery()
    used_docs, used_bundles, used_calls, addon_gb = ctx.session.execute(
        select(docs, bundles, calls, addons)).one()
    quota_bytes = price_book(ctx)["included_disk_bytes"] + int(addon_gb) * GIB
    records = crm_records(ctx, [tenant.id])[tenant.id]
    return Usage(int(used_docs) + int(used_bundles) + int(used_calls)
                 + records * CRM_RECORD_BYTES, quota_bytes)


_ONE_TENANT: Any = None  # the per-tenant count statement, built once


def _count_one_tenant() -> Any:
    global _ONE_TENANT
    if _ONE_TENANT is None:
        tenant = bindparam("tenant_id", type_=Integer)
        counts = union_all(*(select(func.count().label("n")).select_from(t)
                             .where(t.c.tenant_id == tenant) for t in _crm_tables()))
        _ONE_TENANT = select(func.coalesce(func.sum(counts.subquery().c.n), 0))
    return _ONE_TENANT


def _crm_tables() -> list[Any]:
    return [Base.metadata.tables[name] for name in CRM_TENANT_TABLES]


def crm_records(ctx: Context, tenant_ids: Sequence[int]) -> dict[int, int]:
    """The number of CRM records of each tenant, over every CRM table.

    On PostgreSQL the CRM tables have row-level security keyed on the transaction's
    ``provisioner.tenant_id``: each tenant is counted in its own scope (one query per
    tenant), and the transaction's previous scope is restored afterwards -- unless
    the database role is exempt from row-level security (a superuser or BYPASSRLS
    role sees every row anyway). Otherwise, and on SQLite, one grouped query
    counts all the tenants.
    """
    ids = list(tenant_ids)
    out = dict.fromkeys(ids, 0)
    if not ids:
        return out
    postgres = ctx.session.get_bind().dialect.name == "postgresql"
    if not postgres or ctx.session.scalar(text(
            "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")):
        per_table = union_all(*(select(t.c.tenant_id.label("tenant_id"),
                                       func.count().label("n"))
                                .where(t.c.tenant_id.in_(ids)).group_by(t.c.tenant_id)
                                for t in _crm_tables())).subquery()
        for tenant_id, count in ctx.session.execute(
                select(per_table.c.tenant_id, func.sum(per_table.c.n))
                .group_by(per_table.c.tenant_id)).all():
            out[tenant_id] = int(count)
        return out
    scope = text("SELECT set_config('provisioner.tenant_id', :t, true)")
    previous = ctx.session.scalar(text("SELECT current_setting('provisioner.tenant_id', true)"))
    try:
        for tenant_id in ids:
            ctx.session.execute(scope, {"t": str(tenant_id)})
            out[tenant_id] = int(ctx.session.scalar(_count_one_tenant(),
                                                    {"tenant_id": tenant_id}) or 0)
    finally:
        ctx.session.execute(scope, {"t": previous or ""})
    return out


def quota(ctx: Context, tenant: Tenant) -> int:
    return usage(ctx, tenant).quota_bytes


def require_room(ctx: Context, tenant: Tenant, incoming: int, *, what: str) -> None:
    current = usage(ctx, tenant)
    if current.used_bytes + incoming > current.quota_bytes:
        raise over_quota(tenant, incoming, current, what=what)


def require_room_for_records(ctx: Context, tenant_id: int, records: int, *, what: str) -> None:
    """:func:`require_room` for ``records`` new CRM records (bulk writers: import, seed)."""
    tenant = ctx.session.get(Tenant, tenant_id)
    assert tenant is not None
    require_room(ctx, tenant, records * CRM_RECORD_BYTES, what=what)


def add_disk(ctx: Context, slug: str, *, gb: int, by: str) -> DiskAddon:
    if not 1 <= gb <= MAX_ADDON_GB:
        raise ValidationFailed(f"--disk-gb must be between 1 and {MAX_ADDON_GB}, not {gb}")
    tenant = get_tenant(ctx, slug)
    row = DiskAddon(tenant_id=tenant.id, gb=gb, added_at=ctx.clock.now(), added_by=by)
    ctx.session.add(row)
    audit.record(ctx, tenant_id=tenant.id, actor=by, action="tenant:disk_added", subject=slug,
                 gb=gb)
    return row


def over_quota(tenant: Tenant, incoming: int, current: Usage, *, what: str) -> QuotaExceeded:
    """The refusal of a write of ``incoming`` bytes that does not fit (nothing is written)."""
    return QuotaExceeded(
        f"tenant {tenant.slug!r} is out of disk space: {what} needs {incoming:,} bytes, "
        f"{current.free_bytes:,} of {current.quota_bytes:,} are free; nothing was written",
        hint=f"add disk (provisioner tenant addon {tenant.slug} --disk-gb 1) or remove data",
    )


def usage_many(ctx: Context, tenant_ids: Sequence[int], *,
               records: Mapping[int, int] | None = None) -> dict[int, Usage]:
    """:func:`usage` of many tenants with one query per kind of stored data.

    ``records``: the tenants' :func:`crm_records`, when the caller already counted them.
    """
    if not tenant_ids:
        return {}
    ids = list(tenant_ids)
    used: dict[int, int] = dict.fromkeys(ids, 0)
    for query in (
        select(ConfigVersion.tenant_id, func.sum(ConfigVersion.size_bytes))
        .where(ConfigVersion.tenant_id.in_(ids)).group_by(ConfigVersion.tenant_id),
        select(Transfer.tenant_id, func.sum(Transfer.envelope_bytes))
        .where(Transfer.tenant_id.in_(ids)).group_by(Transfer.tenant_id),
        select(CallRecord.tenant_id, func.count(CallRecord.id) * CALL_RECORD_BYTES
               + func.coalesce(func.sum(_text_bytes(ctx, CallRecord.contact_note)), 0))
        .where(CallRecord.tenant_id.in_(ids)).group_by(CallRecord.tenant_id),
    ):
        for tenant_id, n in ctx.session.execute(query):
            used[tenant_id] += int(n or 0)
    for tenant_id, count in (records if records is not None else crm_records(ctx, ids)).items():
        used[tenant_id] += count * CRM_RECORD_BYTES
    addons = dict(ctx.session.execute(
        select(DiskAddon.tenant_id, func.sum(DiskAddon.gb))
        .where(DiskAddon.tenant_id.in_(ids)).group_by(DiskAddon.tenant_id)).all())
    included = price_book(ctx)["included_disk_bytes"]
    return {tid: Usage(used[tid], included + int(addons.get(tid) or 0) * GIB) for tid in ids}
