"""Lineage: where a tenant's configuration came from, and the base of its next upgrade.

Every applied transfer records its source (``tenant:<slug>`` for a source this
deployment verified, ``key:<key id>`` for a pinned publisher or a tenant of
another deployment), the source's configuration version and digest, the bundle
digest and the sections whose base moved. The source's document *as it
arrived* is the transfer's incoming document (``incoming_digest``, stored once
per distinct content in ``config_documents``): the lineage row points at it
through its transfer, the megabyte is not stored twice.

The base of a section, for a source, is that section as it arrived with the
latest *applied* transfer from the source that moved it. A rolled-back
transfer no longer counts, so rolling back restores the previous base.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select

from provisioner.config.document import SECTION_NAMES
from provisioner.config.merge3 import merge3
from provisioner.db.models import LineageEntry, Transfer
from provisioner.services import documents as docstore
from provisioner.services.transaction import Context


def source_of(transfer: Transfer) -> str:
    """The lineage source of a transfer: its tenant when verified here, else its signing key."""
    signer = (transfer.plan or {}).get("signer") or {}
    if signer.get("verified_source"):
        return f"tenant:{transfer.source_tenant}"
    return f"key:{transfer.signer_key_id}"


def source_of_bundle(source_tenant: str, key_id: str, *, verified_source: bool) -> str:
    return f"tenant:{source_tenant}" if verified_source else f"key:{key_id}"


@dataclass
class Base:
    """The sections a tenant last took from one source, as they arrived."""

    source: str
    sections: dict[str, Any] = field(default_factory=dict)
    #: section -> the transfer whose arrival is that section's base
    transfers: dict[str, int] = field(default_factory=dict)
    source_version: int | None = None  # of the latest entry
    transfer_id: int | None = None  # the latest entry's transfer

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "source_version": self.source_version,
            "transfer": self.transfer_id,
            "sections": sorted(self.sections, key=SECTION_NAMES.index),
        }


def _entries(ctx: Context, tenant_id: int, source: str | None = None) -> list[Any]:
    query = (
        select(LineageEntry, Transfer.status)
        .join(Transfer, Transfer.id == LineageEntry.transfer_id)
        .where(LineageEntry.tenant_id == tenant_id, Transfer.status == "applied")
        .order_by(LineageEntry.id.desc())
    )
    if source is not None:
        query = query.where(LineageEntry.source == source)
    return [entry for entry, _ in ctx.session.execute(query)]


def base(
    ctx: Context, tenant_id: int, source: str, sections: Iterable[str] | None = None
) -> Base | None:
    """The base for an upgrade from ``source`` (None: the tenant never took from it)."""
    with ctx.of_tenant(tenant_id):  # the tenant's rows (PostgreSQL row-level security)
        return _base(ctx, tenant_id, source, sections)


def _base(ctx: Context, tenant_id: int, source: str, sections: Iterable[str] | None) -> Base | None:
    entries = _entries(ctx, tenant_id, source)
    if not entries:
        return None
    wanted = set(SECTION_NAMES if sections is None else sections)
    found = Base(
        source, source_version=entries[0].source_version, transfer_id=entries[0].transfer_id
    )
    owner: dict[str, int] = {}
    for entry in entries:  # newest first: the first entry naming a section is its base
        for name in entry.sections:
            if name in wanted and name not in owner:
                owner[name] = entry.transfer_id
    # the sections as they arrived: stored documents, parsed once per process and shared
    # (read-only: the three-way merge reads its base, never changes it)
    incoming = {
        tid: docstore.parsed(ctx.session, digest)
        for tid, digest in ctx.session.execute(
            select(Transfer.id, Transfer.incoming_digest).where(
                Transfer.id.in_(set(owner.values()))
            )
        )
    }
    for name, tid in owner.items():
        value = incoming[tid].get(name)
        if value is not None:
            found.sections[name] = value
            found.transfers[name] = tid
    return found


def base_keys(
    ctx: Context, tenant_ids: Sequence[int], source: str
) -> dict[int, tuple[tuple[tuple[str, tuple[str, ...]], ...], int]]:
    """Per tenant with a base from ``source``: what its base is made of, and the transfer
    of its latest entry (:attr:`Base.transfer_id`), in one query.

    The key lists (bundle digest, sections) of the entries that count, so tenants
    that took the same bundles have equal keys and the same base sections: a rollout
    plans them once (and names each tenant's own transfer in its plan).
    """
    keys: dict[int, tuple[tuple[str, tuple[str, ...]], ...]] = {}
    latest: dict[int, int] = {}
    rows = ctx.session.execute(
        select(
            LineageEntry.tenant_id,
            LineageEntry.bundle_digest,
            LineageEntry.sections,
            LineageEntry.transfer_id,
        )
        .join(Transfer, Transfer.id == LineageEntry.transfer_id)
        .where(
            LineageEntry.tenant_id.in_(list(tenant_ids)),
            LineageEntry.source == source,
            Transfer.status == "applied",
        )
        .order_by(LineageEntry.tenant_id, LineageEntry.id)
    )
    for tenant_id, digest, sections, transfer_id in rows:
        keys[tenant_id] = (*keys.get(tenant_id, ()), (digest, tuple(sections)))
        latest[tenant_id] = transfer_id
    return {tenant_id: (key, latest[tenant_id]) for tenant_id, key in keys.items()}


def record(
    ctx: Context, transfer: Transfer, sections: Sequence[str], applied_version: int | None
) -> None:
    """Note an applied transfer: its sections' base from its source moves to what arrived."""
    record_many(
        ctx,
        [
            dict(
                tenant_id=transfer.tenant_id,
                source=source_of(transfer),
                transfer_id=transfer.id,
                source_version=transfer.source_version,
                source_digest=transfer.source_digest,
                bundle_digest=transfer.payload_digest,
                sections=list(sections),
                applied_version=applied_version,
            )
        ],
    )


def record_many(ctx: Context, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert lineage rows (``created_at`` is now) in one statement."""
    if rows:
        now = ctx.clock.now()
        ctx.session.execute(insert(LineageEntry), [{**row, "created_at": now} for row in rows])


def describe(ctx: Context, tenant_id: int, current: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per source: the latest version taken, its sections, and the local changes since.

    ``current``: the tenant's current document.
    """
    with ctx.of_tenant(tenant_id):  # the tenant's rows (PostgreSQL row-level security)
        return _describe(ctx, tenant_id, current)


def _describe(ctx: Context, tenant_id: int, current: Mapping[str, Any]) -> list[dict[str, Any]]:
    seen: list[str] = []
    for entry in _entries(ctx, tenant_id):
        if entry.source not in seen:
            seen.append(entry.source)
    out = []
    for source in seen:
        found = _base(ctx, tenant_id, source, None)
        assert found is not None
        entries = _entries(ctx, tenant_id, source)
        latest = entries[0]
        local = merge3(
            {**current, **found.sections},
            current,
            {**current, **found.sections},
            sections=list(found.sections),
        )
        out.append(
            {
                "source": source,
                "source_version": latest.source_version,
                "source_digest": latest.source_digest,
                "bundle_digest": latest.bundle_digest,
                "transfer": latest.transfer_id,
                "applied_version": latest.applied_version,
                "taken_at": latest.created_at.isoformat(),
                "sections": sorted(found.sections, key=SECTION_NAMES.index),
                "transfers": [e.transfer_id for e in entries],
                "local_changes": local.kept,
            }
        )
    return out
