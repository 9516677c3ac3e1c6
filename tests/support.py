"""Test helpers: a small world of tenants and admins built through the services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import undefer

from provisioner.config.document import ConfigDocument
from provisioner.db.models import AuditEvent, Tenant, Transfer
from provisioner.services import actors, configs, copykeys, tenants, transfers
from provisioner.services.actors import Actor
from provisioner.services.context import Provisioner


@dataclass
class World:
    app: Provisioner

    def tenant(
        self,
        slug: str,
        *,
        plan: str = "standard",
        sandbox: bool = False,
        integrations: bool = False,
        users: dict[str, str] | None = None,
    ) -> str:
        """Create a tenant with an admin ``<slug>-admin`` (plus ``users``: login -> role)."""
        with self.app.transaction() as ctx:
            tenants.create(
                ctx,
                slug,
                name=f"{slug} 株式会社",
                plan=plan,
                sandbox=sandbox,
                integrations=integrations,
            )
            tenants.add_user(ctx, f"{slug}-admin", tenant_slug=slug, role="admin")
            for login, role in (users or {}).items():
                tenants.add_user(ctx, login, tenant_slug=slug, role=role)
        return slug

    def actor(self, slug: str, login: str | None = None) -> Actor:
        with self.app.transaction() as ctx:
            return actors.resolve(ctx, login or f"{slug}-admin", slug)

    def key(self, slug: str, login: str | None = None) -> str:
        with self.app.transaction() as ctx:
            actor = actors.resolve(ctx, login or f"{slug}-admin", slug)
            return copykeys.generate(ctx, actor, actors.get_tenant(ctx, slug)).text

    def send(self, source: str, key: str, login: str | None = None) -> int:
        with self.app.transaction() as ctx:
            actor = actors.resolve(ctx, login or f"{source}-admin", source)
            return transfers.send(ctx, actor, key).id

    def export(self, source: str, key: str | None = None, **kw: Any) -> bytes:
        with self.app.transaction() as ctx:
            actor = actors.resolve(ctx, f"{source}-admin", source)
            return transfers.export(ctx, actor, key_text=key, **kw)

    def receive(self, target: str, raw: bytes, **kw: Any) -> int:
        with self.app.transaction() as ctx:
            actor = actors.resolve(ctx, f"{target}-admin", target)
            return transfers.receive(ctx, actor, raw, **kw).id

    def approve(self, transfer_id: int, login: str, **kw: Any) -> transfers.Decision:
        with self.app.transaction() as ctx:
            return transfers.approve(
                ctx, transfers.get(ctx, login, transfer_id)[1], transfer_id, **kw
            )

    def set_config(self, slug: str, data: dict[str, Any]) -> int | None:
        with self.app.transaction() as ctx:
            actor = actors.resolve(ctx, f"{slug}-admin", slug)
            return configs.set_sections(ctx, actor, actors.get_tenant(ctx, slug), data)

    def config(self, slug: str) -> dict[str, Any]:
        with self.app.transaction() as ctx, ctx.operator("read"):  # the test inspects
            return configs.current(ctx, actors.get_tenant(ctx, slug)).data

    def document(self, slug: str) -> ConfigDocument:
        return ConfigDocument.model_validate(self.config(slug))

    def version(self, slug: str) -> int:
        with self.app.transaction() as ctx:
            version = actors.get_tenant(ctx, slug).config_version
            assert version is not None
            return version

    def transfer(self, transfer_id: int) -> Transfer:
        with self.app.transaction() as ctx, ctx.operator("read"):  # every column loaded
            row = ctx.session.get(Transfer, transfer_id, options=[undefer("*")])
            assert row is not None
            _ = row.plan  # its shared part read now, in the session: the row is used detached
            return row

    def tenant_row(self, slug: str) -> Tenant:
        with self.app.transaction() as ctx:
            return actors.get_tenant(ctx, slug)


def checkbox_rule(
    code: str, index: int, *, active: bool = True, label: str = "ルール"
) -> dict[str, Any]:
    """A workflow that checks checkbox ``index`` of every contact created."""
    return {
        "code": code,
        "label": label,
        "active": active,
        "object": "contact",
        "trigger": {"event": "created", "field": None},
        "conditions": {"match": "all", "rules": []},
        "actions": [{"type": "set_checkbox", "index": index, "checked": True}],
    }


def labelled(data: dict[str, Any], index: int, label: str) -> dict[str, Any]:
    """A copy of a document's checkboxes section with one checkbox relabelled."""
    boxes = [dict(c) for c in data["checkboxes"]]
    boxes[index - 1]["label"] = label
    return {"checkboxes": boxes}


def retried_batches(app: Provisioner) -> int:
    """Rollout batches retried one target at a time (their audit events, every tenant's)."""
    with app.transaction() as ctx, ctx.operator("read"):
        return int(
            ctx.session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == "rollout:batch_retried_one_by_one")
            )
            or 0
        )
