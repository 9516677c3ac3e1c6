"""Maintained counts (``crm_tallies``): exact after every write path, and what impact reads.

Random sequences of creates, updates, deletes, bulk updates and deletes, CSV
imports, sample data and remaps; after each step the maintained counts of every
tenant equal a recount from the tables, and impact analysis from the counts
equals the scan (the reference) for random plans. Both databases.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from sqlalchemy import select, text

from provisioner.db import migrate
from provisioner.services.actors import Actor
from provisioner.services.crm import bulk, csvio, derived, impact, records, seed, tally
from provisioner.services.crm.search import Query
from tests.crm.helpers import configured, owner_engine
from tests.support import World

KINDS = ("phone", "email", "visit", "store", "other", "")
METHODS = ("cash", "bank_transfer", "credit_card", "cod", "")
MEDIA = ("phone", "fax", "web", "store", "")
SEXES = ("male", "female", "other", "")
RELATIONS = ("spouse", "child", "father", "mother", "other", "")
#: memo values: picklist codes, free text, code-like free text, empty
MEMO_TEXTS = ("gold", "silver", "old", "展示会で名刺交換", "DM希望", "vip", "ok", "Gold", "")
CUSTOMER = ("supplier", "agency")


def _both(world: World) -> list[Actor]:
    configured(world, "acme")
    configured(world, "other")
    return [world.actor("acme"), world.actor("other")]


def _scope(ctx: Any, tenant_id: int) -> None:
    if ctx.session.get_bind().dialect.name == "postgresql":
        ctx.session.execute(
            text("SELECT set_config('provisioner.tenant_id', :t, true)"), {"t": str(tenant_id)}
        )


def _assert_exact(world: World, actors: list[Actor]) -> None:
    with world.app.transaction() as ctx:
        for actor in actors:
            _scope(ctx, actor.tenant_id)
            conn = ctx.session.connection()
            assert tally.stored(conn, actor.tenant_id) == tally.recount(conn, actor.tenant_id)


def _ids(world: World, actor: Actor, type_name: str) -> list[int]:
    with world.app.transaction() as ctx:
        _scope(ctx, actor.tenant_id)
        model: Any = records.TYPES[type_name].model
        return sorted(
            ctx.session.scalars(select(model.id).where(model.tenant_id == actor.tenant_id))
        )


def _contact_data(rng: random.Random) -> dict[str, Any]:
    data: dict[str, Any] = {"name": f"顧客 {rng.randrange(1000)}"}
    if rng.random() < 0.7:
        data["memo_2"] = rng.choice(("gold", "silver", ""))
    for index in (1, 3, 7):
        if rng.random() < 0.5:
            data[f"memo_{index}"] = rng.choice(MEMO_TEXTS)
    if rng.random() < 0.6:
        data["checkboxes"] = rng.sample(range(1, 48), rng.randrange(0, 6))
    if rng.random() < 0.5:
        data["sex"] = rng.choice(SEXES)
    if rng.random() < 0.5:
        data["classifications"] = rng.sample(CUSTOMER, rng.randrange(0, 3))
    return data


def _child(rng: random.Random, type_name: str, contact_id: int) -> dict[str, Any]:
    day = f"2026-0{rng.randrange(1, 10)}-1{rng.randrange(10)}"
    return {
        "activity": {"contact_id": contact_id, "date": day, "kind": rng.choice(KINDS)},
        "purchase": {
            "contact_id": contact_id,
            "date": day,
            "payment_method": rng.choice(METHODS),
            "media": rng.choice(MEDIA),
            "product_class": rng.choice(("software", "")),
        },
        "family": {
            "contact_id": contact_id,
            "name": "家族",
            "relation": rng.choice(RELATIONS),
            "sex": rng.choice(SEXES),
        },
        "card_exchange": {"contact_id": contact_id, "employee": "sato", "date": day},
        "secret_note": {"contact_id": contact_id, "body": "秘密"},
        "custom_record": {
            "database": "visits",
            "owner_id": contact_id,
            "data": {
                "count": rng.randrange(0, 3),
                **({"place": "office"} if rng.random() < 0.5 else {}),
            },
        },
    }[type_name]


def _csv(rng: random.Random, n: int) -> bytes:
    lines = ["name,memo_2,memo_3,sex,checkbox_2,checkbox_5,classifications,company"]
    for i in range(n):
        lines.append(
            ",".join(
                (
                    f"取込 {i}",
                    rng.choice(("gold", "silver", "")),
                    rng.choice(("vip", "自由", "")),
                    rng.choice(SEXES),
                    rng.choice(("1", "")),
                    rng.choice(("1", "")),
                    rng.choice(("supplier", "agency;supplier", "")),
                    rng.choice(("株式会社取込", "")),
                )
            )
        )
    return ("\r\n".join(lines) + "\r\n").encode()


def _step(world: World, rng: random.Random, actor: Actor) -> str:
    """One random write through a service; returns what it did."""
    contacts = _ids(world, actor, "contact")
    op = rng.choice(
        (
            "create",
            "create",
            "child",
            "child",
            "update",
            "update_child",
            "delete",
            "delete_child",
            "company",
            "delete_company",
            "bulk_update",
            "bulk_delete",
            "import",
            "seed",
            "remap",
            "view",
        )
    )
    if not contacts and op not in ("import", "seed", "company"):
        op = "create"
    with world.app.transaction() as ctx:
        if op == "create":
            records.create(ctx, actor, "contact", _contact_data(rng))
        elif op == "child":
            type_name = rng.choice(
                ("activity", "purchase", "family", "card_exchange", "secret_note", "custom_record")
            )
            records.create(ctx, actor, type_name, _child(rng, type_name, rng.choice(contacts)))
        elif op == "update":
            data = _contact_data(rng)
            if rng.random() < 0.5:
                data["checkboxes"] = {
                    str(i): rng.random() < 0.5 for i in rng.sample(range(1, 48), 3)
                }
            records.update(ctx, actor, "contact", rng.choice(contacts), data)
        elif op == "update_child":
            type_name = rng.choice(("activity", "purchase", "family", "custom_record"))
            found = _ids(world, actor, type_name)
            if found:
                data = _child(rng, type_name, rng.choice(contacts))
                data.pop("contact_id", None)
                data.pop("owner_id", None)
                data.pop("database", None)
                records.update(ctx, actor, type_name, rng.choice(found), data)
        elif op == "delete":
            records.delete_record(ctx, actor, "contact", rng.choice(contacts))
        elif op == "delete_child":
            type_name = rng.choice(("activity", "purchase", "family", "custom_record"))
            found = _ids(world, actor, type_name)
            if found:
                records.delete_record(ctx, actor, type_name, rng.choice(found))
        elif op == "company":
            company = records.create(
                ctx,
                actor,
                "company",
                {
                    "name": f"株式会社{rng.randrange(100)}",
                    "classifications": rng.sample(CUSTOMER, rng.randrange(0, 3)),
                },
            ).record
            records.create(
                ctx, actor, "department", {"company_id": company["id"], "name": "営業部"}
            )
            if contacts:
                records.update(
                    ctx, actor, "contact", rng.choice(contacts), {"company_id": company["id"]}
                )
        elif op == "delete_company":
            companies = _ids(world, actor, "company")
            if companies:
                records.delete_record(ctx, actor, "company", rng.choice(companies))
        elif op == "bulk_update":
            bulk.bulk_update(
                ctx,
                actor,
                Query(checkboxes={2: rng.random() < 0.5}),
                checkboxes={rng.randrange(1, 48): rng.random() < 0.5},
            )
        elif op == "bulk_delete":
            bulk.bulk_delete(ctx, actor, Query(checkboxes={rng.randrange(1, 8): True}))
        elif op == "import":
            csvio.import_customers(ctx, actor, _csv(rng, rng.randrange(1, 12)))
        elif op == "seed":
            seed.seed_contacts(ctx, actor, rng.randrange(1, 8), seed=rng.randrange(100))
        elif op == "remap":
            data = world_config(ctx, actor)
            impact.apply_remap(ctx, actor.tenant_id, data, {"rank.gold": "silver"})
        else:
            records.show(ctx, actor, "contact", rng.choice(contacts))
            records.log_access(ctx, actor, "print", "contacts")
    return op


def world_config(ctx: Any, actor: Actor) -> dict[str, Any]:
    from provisioner.services.crm import scope

    scope.enter(ctx, actor)
    return scope.config(ctx, actor.tenant_id).model_dump(mode="json")


def _random_plan(rng: random.Random, base: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(base)
    for pl in new["picklists"]:
        pl["values"] = [v for v in pl["values"] if rng.random() < 0.6]
        for v in pl["values"]:
            if rng.random() < 0.2:
                v["active"] = False
    new["picklists"].append(
        {
            "code": "fresh",
            "label": "新",
            "values": [{"code": "vip", "label": "VIP"}, {"code": "gold", "label": "金"}],
        }
    )
    memos = new["memo_fields"]
    for memo in memos:
        r = rng.random()
        if r < 0.25:
            memo.update(type="picklist", picklist=rng.choice(("rank", "fresh")))
        elif r < 0.4:
            memo.update(type="text", picklist=None)
    for box in new["checkboxes"]:
        r = rng.random()
        if r < 0.3:
            box["enabled"] = False
        elif r < 0.6:
            box["label"] = box["label"] + "改"
    classes = new["classifications"]
    classes["customer"] = [c for c in classes["customer"] if rng.random() < 0.5]
    classes["product"] = [c for c in classes["product"] if rng.random() < 0.5]
    dbs = new["custom_databases"]
    if rng.random() < 0.3:
        new["custom_databases"] = []
    elif dbs:
        dbs[0]["fields"] = [f for f in dbs[0]["fields"] if rng.random() < 0.5 or f["required"]]
    return new


def _assert_impact_is_the_scan(world: World, rng: random.Random, actor: Actor) -> None:
    base = world.config("acme" if actor.tenant_slug == "acme" else "other")
    for _ in range(3):
        plan = _random_plan(rng, base)
        with world.app.transaction() as ctx:
            fast = impact.impact(ctx, actor.tenant_id, base, plan)
            reference = impact.impact(ctx, actor.tenant_id, base, plan, scan=True)
        assert fast == reference


def test_counts_stay_exact_over_random_writes(world: World) -> None:
    actors = _both(world)
    rng = random.Random(20261123)
    done: set[str] = set()
    _assert_exact(world, actors)
    for step in range(70):
        actor = actors[0] if step % 4 else actors[1]
        done.add(_step(world, rng, actor))
        _assert_exact(world, actors)
        if step % 10 == 9:
            _assert_impact_is_the_scan(world, rng, actors[0])
    assert len(done) >= 14, done  # the sequence exercised (nearly) every write path
    with world.app.transaction() as ctx:
        _scope(ctx, actors[0].tenant_id)
        counted = tally.stored(ctx.session.connection(), actors[0].tenant_id)
    assert counted[tally.RECORDS] > 50
    assert any(
        name.startswith("contact.memo_") and value == tally.OTHER  # free text
        for name, value in counted
    )


def test_a_failed_write_leaves_the_counts_as_they_were(world: World) -> None:
    actors = _both(world)
    admin = actors[0]
    with world.app.transaction() as ctx:
        contact = records.create(
            ctx, admin, "contact", {"name": "甲", "memo_2": "gold", "checkboxes": [1]}
        ).record
    try:
        with world.app.transaction() as ctx:
            records.update(ctx, admin, "contact", contact["id"], {"memo_2": "silver"})
            records.create(ctx, admin, "contact", {"name": "乙", "memo_2": "gold"})
            raise RuntimeError("abandoned")
    except RuntimeError:
        pass
    _assert_exact(world, actors)
    with world.app.transaction() as ctx:
        _scope(ctx, admin.tenant_id)
        counts = tally.counts(ctx.session.connection(), admin.tenant_id, ["contact.memo_2"])
    assert counts == {"contact.memo_2": {"gold": 1}}


def test_impact_from_counts_equals_the_scan_on_odd_data(world: World) -> None:
    """Values that are not codes (free text, invalid codes): counted apart, still exact."""
    actors = _both(world)
    admin = actors[0]
    rng = random.Random(7)
    for _ in range(25):
        with world.app.transaction() as ctx:
            records.create(ctx, admin, "contact", _contact_data(rng))
    base = world.config("acme")
    plan = copy.deepcopy(base)
    plan["picklists"].append(
        {
            "code": "fresh",
            "label": "新",
            "values": [{"code": "vip", "label": "VIP"}, {"code": "ok", "label": "OK"}],
        }
    )
    for memo in plan["memo_fields"]:
        if memo["index"] in (1, 3):
            memo.update(type="picklist", picklist="fresh")
        if memo["index"] == 7:
            memo.update(type="picklist", picklist="rank")
    with world.app.transaction() as ctx:
        fast = impact.impact(ctx, admin.tenant_id, base, plan)
        assert fast == impact.impact(ctx, admin.tenant_id, base, plan, scan=True)
    assert {i["kind"] for i in fast["items"]} >= {"memo_retyped", "memo_retyped_invalid"}
    # a (hand-made) plan naming values that are not codes is scanned, still exact
    odd = copy.deepcopy(plan)
    odd["picklists"][-1]["values"].append({"code": "Gold", "label": "x"})
    base_odd = copy.deepcopy(base)
    base_odd["memo_fields"][6] = {"index": 7, "label": "x", "type": "picklist", "picklist": "fresh"}
    base_odd["picklists"].append(odd["picklists"][-1])
    with world.app.transaction() as ctx:
        for before, after in ((base, odd), (base_odd, base)):
            assert impact.impact(ctx, admin.tenant_id, before, after) == impact.impact(
                ctx, admin.tenant_id, before, after, scan=True
            )


def test_the_migration_counts_existing_records(
    world: World, request: pytest.FixtureRequest
) -> None:
    from alembic import command

    actors = _both(world)
    rng = random.Random(3)
    for _ in range(12):
        _step(world, rng, actors[0])
    with world.app.transaction() as ctx:
        seed.seed_contacts(ctx, actors[1], 15, seed=2)
    with world.app.transaction() as ctx:
        before = {}
        for actor in actors:
            _scope(ctx, actor.tenant_id)
            before[actor.tenant_id] = tally.stored(ctx.session.connection(), actor.tenant_id)
    cfg = migrate.alembic_config()
    with owner_engine(world, request) as owner:  # migrations: as the schema's owner
        with owner.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0005_stored_sizes")
        assert "0006_crm_tallies" not in migrate.current(world.app.engine)
        # provisioner init: the migrations, then the derived data
        migrate.upgrade(owner, rebuild=derived.rebuild)
    _assert_exact(world, actors)
    with world.app.transaction() as ctx:
        for actor in actors:
            _scope(ctx, actor.tenant_id)
            assert (
                tally.stored(ctx.session.connection(), actor.tenant_id) == before[actor.tenant_id]
            )


def test_bulk_contact_keys_are_the_sum_of_each_rows_keys() -> None:
    """The column-wise count of bulk-inserted contacts equals :func:`tally.row_keys` of
    each row added up (its reference), on odd values: empty, None, missing, codes and
    not codes, repeated classifications, high checkbox bits."""
    from collections import Counter

    from provisioner.db.crm_models import CrmContact

    rng = random.Random(5)
    values = ["", "gold", "Gold!", "田中", "a-b_c", None, "x" * 70]
    stored = ["", ",a,", ",a,b,", ",a,a,", ",a,,", ",ゴールド,b,", None, ","]
    rows: list[dict[str, Any]] = []
    for _ in range(400):
        row: dict[str, Any] = {
            column: rng.choice(values) for column in ("sex", *records.MEMOS) if rng.random() < 0.8
        }
        if rng.random() < 0.9:
            row["checkboxes"] = rng.choice([0, None, 1, 5, 1 << 47, (1 << 49) - 1, 1 << 48])
        if rng.random() < 0.9:
            row["classifications"] = rng.choice(stored)
        rows.append(row)
    expected: Counter[tally.Key] = Counter()
    for row in rows:
        expected.update(tally.row_keys(CrmContact, row))
    found: Counter[tally.Key] = Counter()
    tally._contact_keys(rows, found)
    assert +found == +expected
    assert found  # the test has something to compare
