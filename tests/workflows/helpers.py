"""Workflow test helpers: a configured tenant plus rules and blueprints."""

from __future__ import annotations

from typing import Any

from tests.crm.helpers import configured
from tests.support import World


def rule(
    code: str,
    obj: str,
    event: str,
    actions: list[dict[str, Any]],
    *,
    field: str | None = None,
    when: list[dict[str, Any]] | None = None,
    match: str = "all",
    active: bool = True,
    **trigger: Any,
) -> dict[str, Any]:
    return {
        "code": code,
        "label": code,
        "active": active,
        "object": obj,
        "trigger": {"event": event, "field": field, **trigger},
        "conditions": {"match": match, "rules": when or []},
        "actions": actions,
    }


def with_rules(
    world: World,
    *workflows: dict[str, Any],
    slug: str = "acme",
    blueprints: list[dict[str, Any]] | None = None,
    picklists: list[dict[str, Any]] | None = None,
) -> str:
    """The CRM test tenant (tests.crm.helpers.configured) with these workflows."""
    configured(world, slug)
    data = world.config(slug)
    sections: dict[str, Any] = {"workflows": list(workflows)}
    if picklists:
        sections["picklists"] = [*data["picklists"], *picklists]
    if blueprints is not None:
        sections["blueprints"] = blueprints
    world.set_config(slug, sections)
    return slug


CHECK = {"type": "set_checkbox", "index": 7, "checked": True}
GOLD = {"field": "contact.memo_2", "op": "eq", "value": "gold"}
