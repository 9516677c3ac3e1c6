"""Audit events: who did what, when, to which subject, with details.

Written in the same transaction as the change they describe, so an event
exists exactly when the change does. Actions are ``subject:verb`` tags
(``transfer:approved``, ``copy_key:generated``).

:func:`record` writes one event; :func:`record_many` writes many with one
multi-row INSERT (a rollout batch). Both build the row with :func:`event`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select

from provisioner.db.models import AuditEvent
from provisioner.services.transaction import Context


def event(
    ctx: Context, *, tenant_id: int | None, actor: str, action: str, subject: str, **details: Any
) -> dict[str, Any]:
    """The row of one event (stamped now by ``ctx.clock``), for :func:`record_many`."""
    return {
        "tenant_id": tenant_id,
        "at": ctx.clock.now(),
        "actor": actor,
        "action": action,
        "subject": subject,
        "details": details,
    }


def record(
    ctx: Context, *, tenant_id: int | None, actor: str, action: str, subject: str, **details: Any
) -> AuditEvent:
    row = AuditEvent(
        **event(ctx, tenant_id=tenant_id, actor=actor, action=action, subject=subject, **details)
    )
    if ctx.operator_mode == "write" or (tenant_id is not None and tenant_id == ctx.scoped_tenant):
        ctx.session.add(row)  # written with the transaction's next flush, in this scope
        return row
    if tenant_id is None:  # the deployment's event (no tenant's): written as the operator, now
        with ctx.operator("write"):
            ctx.session.add(row)
            ctx.session.flush()
        return row
    with ctx.of_tenant(tenant_id):  # another tenant's event: written in its scope, now
        ctx.session.add(row)
        ctx.session.flush()
    return row


def record_many(ctx: Context, events: Sequence[dict[str, Any]]) -> None:
    """Write the events (rows made by :func:`event`) in the order given, in one statement."""
    if events:
        ctx.session.execute(insert(AuditEvent), list(events))


def events(ctx: Context, tenant_id: int, *, limit: int = 100) -> list[AuditEvent]:
    with ctx.of_tenant(tenant_id):  # the tenant's rows (row-level security)
        rows = ctx.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.tenant_id == tenant_id)
            .order_by(AuditEvent.id.desc())
            .limit(limit)
        )
        return list(rows)
