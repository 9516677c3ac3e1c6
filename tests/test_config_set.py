"""``config set`` (:func:`configs.set_sections`) against its reference: the whole result
validated as model objects (``document_from_data``), on both backends."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sqlalchemy import select

from provisioner.canonical import canonical_bytes
from provisioner.config import diff as config_diff
from provisioner.config.memo import IdentityMemo
from provisioner.config.merge import combine
from provisioner.config.validate import document_from_data, sections_from_data
from provisioner.db.models import AuditEvent
from provisioner.errors import ValidationFailed
from provisioner.services import actors, configs
from provisioner.services.context import Provisioner
from tests.support import World, labelled

RANKS = {
    "code": "rank",
    "label": "ランク",
    "values": [
        {"code": "gold", "label": "金", "active": True},
        {"code": "silver", "label": "銀", "active": True},
    ],
}


def _blueprint(picklist: str) -> dict[str, Any]:
    return {
        "code": "progress",
        "label": "進捗",
        "object": "contact",
        "picklist": picklist,
        "initial_state": "gold",
        "states": [{"code": "gold", "label": "金"}],
        "transitions": [],
    }


def _reference(head: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """What ``config set`` of ``data`` on ``head`` must give (the model path)."""
    sections = sections_from_data(copy.deepcopy(data), what="file")
    result = combine(head, sections.to_data(), mode="replace", arriving=False)
    return document_from_data(result, what="resulting configuration").to_data()


def _set(app: Provisioner, slug: str, data: dict[str, Any], memo: IdentityMemo | None) -> None:
    with app.transaction() as ctx:
        actor = actors.resolve(ctx, f"{slug}-admin", slug)
        configs.set_sections(ctx, actor, actors.get_tenant(ctx, slug), data, memo=memo)


def _last_summary(app: Provisioner, slug: str) -> Any:
    with app.transaction() as ctx, ctx.operator("read"):
        tenant = actors.get_tenant(ctx, slug)
        event = ctx.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.tenant_id == tenant.id, AuditEvent.action == "config:set")
            .order_by(AuditEvent.id.desc())
        ).first()
        assert event is not None
        return event.details["summary"], event.details["sections"]


@pytest.mark.parametrize("shared_memo", [False, True])
def test_config_set_stores_what_the_model_path_gives(
    app: Provisioner, world: World, shared_memo: bool
) -> None:
    memo = IdentityMemo() if shared_memo else None
    edits: list[dict[str, Any]] = [
        {"picklists": [RANKS], "blueprints": [_blueprint("rank")]},
        {"schema_version": 1, "mode": "individual", "settings": {"recent_customers": 20}},
        {"checkboxes": None},  # filled in below: a relabel of the current checkboxes
    ]
    for slug in ("a-shop", "b-shop"):  # two tenants: the memo carries from one to the next
        world.tenant(slug)
    for edit in edits:
        for slug in ("a-shop", "b-shop"):
            head = world.config(slug)
            data = labelled(head, 2, f"{slug}の会員") if "checkboxes" in edit else edit
            expected = _reference(head, data)
            _set(app, slug, data, memo)
            assert canonical_bytes(world.config(slug)) == canonical_bytes(expected)
            changes = config_diff.diff(head, expected)
            present = list(sections_from_data(data).present())
            assert _last_summary(app, slug) == (config_diff.summarize(changes), present)
    whole = world.config("a-shop")  # a whole document, every section present
    whole["roles"] = []
    expected = _reference(world.config("b-shop"), whole)
    _set(app, "b-shop", whole, memo)
    assert world.config("b-shop") == expected
    if memo is not None:
        assert memo.hits > 0


@pytest.mark.parametrize("shared_memo", [False, True])
def test_config_set_refuses_what_the_model_path_refuses(
    app: Provisioner, world: World, shared_memo: bool
) -> None:
    memo = IdentityMemo() if shared_memo else None
    world.tenant("shop")
    _set(app, "shop", {"picklists": [RANKS]}, memo)  # the memo has seen this document
    head, version = world.config("shop"), world.version("shop")
    too_few = {"checkboxes": head["checkboxes"][:-1]}
    wrong_type = {"checkboxes": [{**head["checkboxes"][0], "enabled": "yes"}]}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"blueprints": [_blueprint("nosuch")]}, "resulting configuration is inconsistent"),
        (too_few, "not have valid configuration sections"),
        (wrong_type, "not have valid configuration sections"),
        ({"schema_version": 1}, "contains no configuration section"),
        ({}, "contains no configuration section"),
    ]
    for data, message in cases:
        with pytest.raises(ValidationFailed, match=message) as fast:
            _set(app, "shop", data, memo)
        with pytest.raises(ValidationFailed) as reference:
            _reference(head, data)
        assert fast.value.problems == reference.value.problems
        assert world.version("shop") == version
        assert world.config("shop") == head  # neither the row nor its cached parse changed
