"""Disk usage per tenant against its quota (REQUIREMENTS B: 1 GB per tenant plus add-ons).

    quotas.add_disk(ctx, "acme", gb=1, by="operator")
    quotas.require_room(ctx, tenant, incoming=len(raw), what="this configuration")

How usage is measured (the same number on SQLite and PostgreSQL, and what the
bill is about): the bytes of what the tenant stores, not database pages --

* every configuration version: the UTF-8 bytes of its canonical JSON document;
* every received transfer: the bytes of its bundle file (the signed envelope);
* every recorded call: :data:`CALL_RECORD_BYTES` plus the UTF-8 bytes of its note.
  The calls are not summed per check: every write of call records keeps the tenant's
  figures (``call_bytes``, :mod:`provisioner.services.provisioning.call_usage`);
* every CRM record (a row of any table of ``CRM_TENANT_TABLES``: companies,
  contacts, activities, purchases, change history...): :data:`CRM_RECORD_BYTES`.
  The records are not counted per check: every write path keeps a per-tenant
  count (``crm_tallies``, :mod:`provisioner.services.crm.tally`) in the same
  transaction, so a check reads one row however many records the tenant has.

Writes that would take a tenant over its quota (``included_disk_bytes`` of the
price book + 1 GiB per add-on GB) are refused BEFORE anything is written, with
QuotaExceeded, so nothing already stored is lost or truncated. Checked:
every new configuration version (``config set``, rollback, approve:
:mod:`provisioner.services.configs`), every received bundle (``send`` /
``receive``: :mod:`provisioner.services.transfers`), every rollout delivery,
CTI call records and contact history, CSV imports and sample data
(:func:`require_room_for_records`), and every single CRM record created
(:func:`provisioner.services.crm.records.create`: the record and its change-log
row). Updates, deletes and reads are never refused (deleting is how a tenant
makes room).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Integer,
    Select,
    bindparam,
    func,
    select,
)

from provisioner.db.crm_models import CrmTally
from provisioner.db.models import ConfigVersion, Tenant, Transfer
from provisioner.db.provisioning_models import CallBytes, DiskAddon, PriceBook
from provisioner.errors import QuotaExceeded, ValidationFailed
from provisioner.services import audit
from provisioner.services.actors import get_tenant
from provisioner.services.provisioning.billing import GIB, price_book, prices_of
from provisioner.services.provisioning.call_usage import CALL_RECORD_BYTES as CALL_RECORD_BYTES
from provisioner.services.transaction import Context

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
        return {
            "used_bytes": self.used_bytes,
            "quota_bytes": self.quota_bytes,
            "free_bytes": self.free_bytes,
        }


def _usage_columns() -> tuple[Any, ...]:
    """The columns of :func:`usage`'s statement (parameter: tenant_id), each a scalar
    subquery of one row or one sum: the tenant's stored sizes, its call records' maintained
    figures, its add-on GB, its CRM records' maintained count and the price book."""
    tenant_id = bindparam("tenant_id", type_=Integer)
    docs = (
        select(func.coalesce(func.sum(ConfigVersion.size_bytes), 0))
        .where(ConfigVersion.tenant_id == tenant_id)
        .scalar_subquery()
    )
    bundles = (
        select(func.coalesce(func.sum(Transfer.envelope_bytes), 0))
        .where(Transfer.tenant_id == tenant_id)
        .scalar_subquery()
    )
    calls = (
        select(CallBytes.calls * CALL_RECORD_BYTES + CallBytes.note_bytes)
        .where(CallBytes.tenant_id == tenant_id)
        .scalar_subquery()
    )
    addons = (
        select(func.coalesce(func.sum(DiskAddon.gb), 0))
        .where(DiskAddon.tenant_id == tenant_id)
        .scalar_subquery()
    )
    records = (
        select(func.coalesce(func.sum(CrmTally.n), 0))
        .where(CrmTally.tenant_id == tenant_id, CrmTally.name == "records", CrmTally.value == "")
        .scalar_subquery()
    )
    # the price book (billing.price_book) in the same round trip
    prices = select(PriceBook.data).where(PriceBook.name == "default").scalar_subquery()
    return (
        docs.label("used_docs"),
        bundles.label("used_bundles"),
        func.coalesce(calls, 0).label("used_calls"),
        addons.label("addon_gb"),
        records.label("crm_records"),
        prices.label("price_book"),
    )


#: the columns of :func:`usage`'s statement, for statements that read more in the same
#: round trip (metering.record_call); :func:`usage_of` reads them from a row
USAGE_COLUMNS: tuple[Any, ...] = _usage_columns()
#: the statement of :func:`usage` (parameter: tenant_id)
USAGE: Select[Any] = select(*USAGE_COLUMNS)


def usage_of(row: Any) -> Usage:
    """The usage in a row that has :data:`USAGE_COLUMNS` (by their labels)."""
    included = prices_of(row.price_book)["included_disk_bytes"]
    return Usage(
        int(row.used_docs)
        + int(row.used_bundles)
        + int(row.used_calls)
        + int(row.crm_records) * CRM_RECORD_BYTES,
        included + int(row.addon_gb) * GIB,
    )


def usage(ctx: Context, tenant: Tenant) -> Usage:
    """Bytes stored by the tenant and its quota (one query, the price book included).

    PostgreSQL: read in the tenant's scope (row-level security), which is the
    transaction's already when a write of the tenant checks its room."""
    with ctx.of_tenant(tenant.id):
        row = ctx.session.execute(USAGE, {"tenant_id": tenant.id}).one()
    return usage_of(row)


def _records_of(ids: list[int]) -> Any:
    return select(CrmTally.tenant_id, CrmTally.n).where(
        CrmTally.tenant_id.in_(ids), CrmTally.name == "records", CrmTally.value == ""
    )


def crm_records(ctx: Context, tenant_ids: Sequence[int]) -> dict[int, int]:
    """The number of CRM records of each tenant, over every CRM table (maintained counts).

    On PostgreSQL the counts have row-level security keyed on the transaction's
    ``provisioner.tenant_id`` (like the records): the one tenant the transaction is
    scoped to is read as it is; several tenants (or another one) are read in one
    query in operator read mode (the cross-tenant count is what the caller asked for).
    """
    ids = list(tenant_ids)
    out = dict.fromkeys(ids, 0)
    if not ids:
        return out
    with _across(ctx, ids):
        for tenant_id, count in ctx.session.execute(_records_of(ids)).all():
            out[tenant_id] = int(count)
    return out


def _across(ctx: Context, ids: Sequence[int]) -> AbstractContextManager[None]:
    """Read the rows of ``ids``: as the transaction is when it is scoped to the one
    tenant asked about, else in operator read mode (PostgreSQL row-level security)."""
    if len(ids) == 1 and ctx.scoped_tenant == ids[0]:
        return nullcontext()
    return ctx.operator("read")


def quota(ctx: Context, tenant: Tenant) -> int:
    return usage(ctx, tenant).quota_bytes


def require_room(ctx: Context, tenant: Tenant, incoming: int, *, what: str) -> None:
    check_room(tenant, incoming, usage(ctx, tenant), what=what)


def check_room(tenant: Tenant | str, incoming: int, current: Usage, *, what: str) -> None:
    """Refuse (QuotaExceeded) a write of ``incoming`` bytes that does not fit in ``current``
    (the tenant's :func:`usage`; ``tenant``: it or its slug)."""
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
    ctx.enter_tenant(tenant.id)  # an operator command on this tenant's rows
    row = DiskAddon(tenant_id=tenant.id, gb=gb, added_at=ctx.clock.now(), added_by=by)
    ctx.session.add(row)
    audit.record(
        ctx, tenant_id=tenant.id, actor=by, action="tenant:disk_added", subject=slug, gb=gb
    )
    return row


def over_quota(tenant: Tenant | str, incoming: int, current: Usage, *, what: str) -> QuotaExceeded:
    """The refusal of a write of ``incoming`` bytes that does not fit (nothing is written)."""
    slug = tenant if isinstance(tenant, str) else tenant.slug
    return QuotaExceeded(
        f"tenant {slug!r} is out of disk space: {what} needs {incoming:,} bytes, "
        f"{current.free_bytes:,} of {current.quota_bytes:,} are free; nothing was written",
        hint=f"add disk (provisioner tenant addon {slug} --disk-gb 1) or remove data",
    )


def usage_many(
    ctx: Context, tenant_ids: Sequence[int], *, records: Mapping[int, int] | None = None
) -> dict[int, Usage]:
    """:func:`usage` of many tenants with one query per kind of stored data.

    ``records``: the tenants' :func:`crm_records`, when the caller already counted them.
    """
    if not tenant_ids:
        return {}
    ids = list(tenant_ids)
    with _across(ctx, ids):  # the tenants' rows (PostgreSQL row-level security)
        return _usage_many(ctx, ids, records)


def _usage_many(
    ctx: Context, ids: list[int], records: Mapping[int, int] | None
) -> dict[int, Usage]:
    used: dict[int, int] = dict.fromkeys(ids, 0)
    for query in (
        select(ConfigVersion.tenant_id, func.sum(ConfigVersion.size_bytes))
        .where(ConfigVersion.tenant_id.in_(ids))
        .group_by(ConfigVersion.tenant_id),
        select(Transfer.tenant_id, func.sum(Transfer.envelope_bytes))
        .where(Transfer.tenant_id.in_(ids))
        .group_by(Transfer.tenant_id),
        select(
            CallBytes.tenant_id, CallBytes.calls * CALL_RECORD_BYTES + CallBytes.note_bytes
        ).where(CallBytes.tenant_id.in_(ids)),
    ):
        for tenant_id, n in ctx.session.execute(query):
            used[tenant_id] += int(n or 0)
    for tenant_id, count in (records if records is not None else crm_records(ctx, ids)).items():
        used[tenant_id] += count * CRM_RECORD_BYTES
    addons = dict(
        ctx.session.execute(
            select(DiskAddon.tenant_id, func.sum(DiskAddon.gb))
            .where(DiskAddon.tenant_id.in_(ids))
            .group_by(DiskAddon.tenant_id)
        ).all()
    )
    included = price_book(ctx)["included_disk_bytes"]
    return {tid: Usage(used[tid], included + int(addons.get(tid) or 0) * GIB) for tid in ids}
