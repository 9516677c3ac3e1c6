"""CRM test helpers: a tenant configured with picklist memos, classifications, a custom db."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, text

from provisioner.db.engine import make_engine
from provisioner.services.actors import Actor
from provisioner.services.context import Provisioner
from provisioner.services.crm import records
from tests.support import World

USERS = {
    "gen": "general",
    "noexp": "general_no_export",
    "noprint": "general_no_print",
    "ro": "read_only",
}


def configured(world: World, slug: str = "acme") -> str:
    """A tenant whose memo_2 is a picklist 'rank', with classifications and a custom db."""
    world.tenant(slug, users={f"{slug}-{k}": v for k, v in USERS.items()})
    data = world.config(slug)
    memos = [dict(m) for m in data["memo_fields"]]
    memos[1] = {"index": 2, "label": "ランク", "type": "picklist", "picklist": "rank"}
    boxes = [dict(c) for c in data["checkboxes"]]
    boxes[0]["label"] = "DM送付"
    boxes[47]["enabled"] = False
    world.set_config(
        slug,
        {
            "memo_fields": memos,
            "checkboxes": boxes,
            "picklists": [
                *data["picklists"],
                {
                    "code": "rank",
                    "label": "ランク",
                    "values": [
                        {"code": "gold", "label": "ゴールド"},
                        {"code": "silver", "label": "シルバー"},
                        {"code": "old", "label": "旧", "active": False},
                    ],
                },
            ],
            "classifications": {
                "customer": [
                    {"code": "supplier", "label": "仕入先"},
                    {"code": "agency", "label": "代理店"},
                ],
                "product": [{"code": "software", "label": "ソフトウェア"}],
            },
            "custom_databases": [
                {
                    "code": "visits",
                    "label": "訪問",
                    "attached_to": "contact",
                    "fields": [
                        {"key": "count", "label": "回数", "type": "integer", "required": True},
                        {
                            "key": "place",
                            "label": "場所",
                            "type": "choice",
                            "options": [{"code": "office", "label": "事務所"}],
                        },
                    ],
                }
            ],
            "roles": [
                {
                    "code": "viewer_export",
                    "label": "閲覧+出力",
                    "permissions": ["records.read", "export"],
                }
            ],
            "settings": {
                **data["settings"],
                "external_systems": [{"code": "erp", "label": "基幹"}],
            },
        },
    )
    return slug


def make(world: World, actor: Actor, type_name: str, data: dict[str, Any]) -> dict[str, Any]:
    with world.app.transaction() as ctx:
        return records.create(ctx, actor, type_name, data).record


def one_of_each(world: World, actor: Actor) -> dict[str, int]:
    """One record of every type in the actor's tenant: type -> id."""
    company = make(world, actor, "company", {"name": "株式会社テスト"})
    department = make(world, actor, "department", {"company_id": company["id"], "name": "営業部"})
    contact = make(
        world,
        actor,
        "contact",
        {"name": "山田 花子", "company_id": company["id"], "phone": "03-1111-2222"},
    )
    cid = contact["id"]
    ids = {"company": company["id"], "department": department["id"], "contact": cid}
    for type_name, data in {
        "family": {"contact_id": cid, "name": "山田 一郎"},
        "card_exchange": {"contact_id": cid, "employee": "sato", "date": "2026-11-01"},
        "secret_note": {"contact_id": cid, "body": "秘密"},
        "activity": {"contact_id": cid, "date": "2026-11-02", "content": "電話"},
        "purchase": {
            "contact_id": cid,
            "date": "2026-11-03",
            "product_name": "X",
            "quantity": 2,
            "unit_price": 500,
        },
        "product": {"code": "P-1", "name": "製品"},
        "custom_record": {"database": "visits", "owner_id": cid, "data": {"count": 3}},
        "external_link": {"contact_id": cid, "system": "erp", "external_id": "E-1"},
        "job": {
            "contact_id": cid,
            "company_name": "前の会社",
            "date_from": "2010-04-01",
            "date_to": "2019-03-31",
        },
    }.items():
        ids[type_name] = make(world, actor, type_name, data)["id"]
    return ids


@contextmanager
def owner_engine(world: World, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """An engine connected as the schema's owner, for what only it may do (migrations,
    DDL): on PostgreSQL the test database's owner, on SQLite the world's own engine.
    The services run as the runtime role (``world.app``), under row-level security."""
    if world.app.engine.dialect.name != "postgresql":
        yield world.app.engine
        return
    engine = make_engine(request.getfixturevalue("postgres_owner_url"))
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def runtime_app(world: World) -> Iterator[Provisioner]:
    """The world's services, checked to be connected as a plain role that row-level
    security binds: neither superuser nor BYPASSRLS nor the tables' owner (the suite's
    runtime role, see tests/conftest.py)."""
    with world.app.engine.connect() as conn:
        superuser, bypass, owns = conn.execute(
            text(
                "SELECT r.rolsuper, r.rolbypassrls, (SELECT tableowner FROM pg_tables "
                "WHERE tablename = 'crm_contacts') = current_user "
                "FROM pg_roles r WHERE r.rolname = current_user"
            )
        ).one()
    assert (superuser, bypass, owns) == (False, False, False)
    yield world.app
