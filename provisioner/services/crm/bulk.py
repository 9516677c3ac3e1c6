"""Bulk operations over a search result: update company/checkboxes, delete (admin).

    n = bulk_update(ctx, actor, Query(q="渋谷"), checkboxes={5: True}, company_id=12,
                    purpose="展示会フォロー")
    n = bulk_delete(ctx, actor, Query(checkboxes={48: True}))    # 'bulk_delete' permission

Both write one change-log row per record and one access-log row for the operation.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select

from provisioner.db.crm_models import CrmContact
from provisioner.errors import ValidationFailed
from provisioner.services import audit
from provisioner.services.actors import Actor
from provisioner.services.crm import records, scope
from provisioner.services.crm.search import Query, matching_ids
from provisioner.services.transaction import Context

_CHUNK = 500


def bulk_update(
    ctx: Context,
    actor: Actor,
    query: Query,
    *,
    checkboxes: Mapping[int, bool] | None = None,
    company_id: int | None = None,
    purpose: str | None = None,
) -> int:
    """Set checkboxes and/or the company of every contact the search finds."""
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "bulk_update", "bulk-update customers")
    data: dict[str, object] = {}
    if checkboxes:
        data["checkboxes"] = {str(k): v for k, v in checkboxes.items()}
    if company_id is not None:
        data["company_id"] = company_id
    if not data:
        raise ValidationFailed("nothing to update", hint="give checkboxes and/or a company")
    ids = matching_ids(ctx, actor, query)
    for start in range(0, len(ids), _CHUNK):
        for row_id in ids[start : start + _CHUNK]:
            records.update(ctx, actor, "contact", row_id, data, purpose=purpose)
    records.log_access(
        ctx,
        actor,
        "bulk_update",
        f"{len(ids)} contacts",
        fields=sorted(data),
        purpose=purpose or "",
    )
    return len(ids)


def bulk_delete(ctx: Context, actor: Actor, query: Query, *, purpose: str | None = None) -> int:
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "bulk_delete", "bulk-delete customers")
    ids = matching_ids(ctx, actor, query)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        rows = ctx.session.scalars(
            select(CrmContact).where(
                CrmContact.tenant_id == actor.tenant_id, CrmContact.id.in_(chunk)
            )
        )
        for row in rows:
            records.delete_record(ctx, actor, "contact", row.id, purpose=purpose)
    records.log_access(ctx, actor, "bulk_delete", f"{len(ids)} contacts", purpose=purpose or "")
    audit.record(
        ctx,
        tenant_id=actor.tenant_id,
        actor=actor.login,
        action="crm:bulk_deleted",
        subject=f"{len(ids)} contacts",
    )
    return len(ids)
