"""Audit events: who did what, when, to which subject, with details.

Written in the same transaction as the change they describe, so an event
exists exactly when the change does. Actions are ``subject:verb`` tags
(``transfer:approved``, ``copy_key:generated``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from provisioner.db.models import AuditEvent
from provisioner.services.transaction import Context


def record(ctx: Context, *, tenant_id: int | None, actor: str, action: str, subject: str,
           **details: Any) -> AuditEvent:
    event = AuditEvent(tenant_id=tenant_id, at=ctx.clock.now(), actor=actor, action=action,
                       subject=subject, details=details)
    ctx.session.add(event)
    return event


def events(ctx: Context, tenant_id: int, *, limit: int = 100) -> list[AuditEvent]:
    rows = ctx.session.scalars(
        select(AuditEvent).where(AuditEvent.tenant_id == tenant_id)
        .order_by(AuditEvent.id.desc()).limit(limit)
    )
    return list(rows)
