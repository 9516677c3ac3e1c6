"""The search conditions of issue 12 (birth date, registration date and age ranges, title,
postal code, department; purchase shipped / paid / payment method; ``match any`` over every
condition), compared with the same rules evaluated in Python over the stored rows, with the
``q`` terms answered by the n-gram index."""

from __future__ import annotations

import random
from datetime import date
from typing import Any

import pytest
from sqlalchemy import select

from provisioner.clock import as_utc
from provisioner.db.crm_models import CrmContact, CrmDepartment, CrmPurchase
from provisioner.errors import ValidationFailed
from provisioner.services.crm import records, search
from provisioner.services.crm.search import Query
from provisioner.services.crm.text import search_key
from tests.crm.helpers import configured
from tests.support import World

TITLES = ["部長", "課長", "主任", "営業部長", ""]
DEPARTMENTS = ["営業部", "開発部", "総務部"]
TODAY = date(2026, 11, 23)  # the tests' clock, in Japan (2026-11-23T09:00Z is 18:00 JST)


def _world(world: World, rng: random.Random) -> None:
    configured(world)
    admin = world.actor("acme")
    with world.app.transaction() as ctx:
        company = records.create(ctx, admin, "company", {"name": "検索商事"}).record["id"]
        depts = [
            records.create(ctx, admin, "department", {"company_id": company, "name": n}).record[
                "id"
            ]
            for n in DEPARTMENTS
        ]
    for n in range(60):
        world.app.clock.advance(days=rng.randint(0, 9))  # registration dates vary
        data: dict[str, Any] = {
            "name": rng.choice(["田中", "佐藤", "鈴木"]) + f" {n}",
            "title": rng.choice(TITLES),
            "postal_code": rng.choice(["150-0001", "100-0005", "530-0001", ""]),
            "checkboxes": rng.sample(range(1, 6), rng.randint(0, 3)),
            "birthday": rng.choice(
                [
                    "",
                    "1960-11-24",
                    "1966-11-23",
                    "1990-02-28",
                    "2000-01-01",
                    "2008-11-23",
                    "1985-06-15",
                ]
            ),
        }
        if rng.random() < 0.7:
            data["department_id"] = rng.choice(depts)
        with world.app.transaction() as ctx:
            contact = records.create(ctx, admin, "contact", data).record["id"]
            for _ in range(rng.randint(0, 2)):
                records.create(
                    ctx,
                    admin,
                    "purchase",
                    {
                        "contact_id": contact,
                        "date": "2026-10-01",
                        "product_name": "X",
                        "shipped": rng.random() < 0.5,
                        "paid": rng.random() < 0.5,
                        "payment_method": rng.choice(["cash", "credit_card", ""]),
                    },
                )
    world.app.clock.set(as_utc(world.app.clock.now()).replace(year=2026, month=11, day=23))


def _rows(world: World) -> tuple[list[Any], dict[int, str], dict[int, list[Any]]]:
    with world.app.transaction() as ctx, ctx.operator("read"):  # the one tenant's rows
        contacts = list(ctx.session.scalars(select(CrmContact).order_by(CrmContact.id)))
        depts = dict(ctx.session.execute(select(CrmDepartment.id, CrmDepartment.name)).all())
        buys: dict[int, list[Any]] = {}
        for p in ctx.session.scalars(select(CrmPurchase)):
            buys.setdefault(p.contact_id, []).append(p)
    return contacts, depts, buys


def _age(birthday: str) -> int:
    born = date.fromisoformat(birthday)
    return TODAY.year - born.year - ((TODAY.month, TODAY.day) < (born.month, born.day))


def _expected(
    query: Query, contacts: list[Any], depts: dict[int, str], buys: dict[int, list[Any]]
) -> list[int]:
    out = []
    for c in contacts:
        conds: list[bool] = [search_key(t) in c.search_text for t in query.q.split()]
        for key, value in query.fields.items():
            if key == "title":
                conds.append(value in c.title)
            elif key == "postal_code":
                conds.append(value.replace("-", "") in c.postal_code.replace("-", ""))
            elif key == "department":
                conds.append(c.department_id is not None and value in depts[c.department_id])
        conds += [bool(c.checkboxes >> (i - 1) & 1) == on for i, on in query.checkboxes.items()]
        if query.created_from or query.created_to:
            day = as_utc(c.created_at).date()
            conds.append(
                (not query.created_from or day >= date.fromisoformat(query.created_from))
                and (not query.created_to or day <= date.fromisoformat(query.created_to))
            )
        if query.age_from is not None or query.age_to is not None:
            conds.append(
                bool(c.birthday)
                and (query.age_from is None or _age(c.birthday) >= query.age_from)
                and (query.age_to is None or _age(c.birthday) <= query.age_to)
            )
        if query.birthday_from:
            conds.append(bool(c.birthday) and c.birthday >= query.birthday_from)
        if (
            query.purchase_shipped is not None
            or query.purchase_paid is not None
            or query.purchase_payment_method
        ):
            conds.append(
                any(
                    (query.purchase_shipped is None or p.shipped == query.purchase_shipped)
                    and (query.purchase_paid is None or p.paid == query.purchase_paid)
                    and (
                        not query.purchase_payment_method
                        or p.payment_method == query.purchase_payment_method
                    )
                    for p in buys.get(c.id, [])
                )
            )
        if conds and (all(conds) if query.match == "all" else any(conds)):
            out.append(c.id)
    return out


def _random_query(rng: random.Random) -> Query:
    fields = {}
    if rng.random() < 0.4:
        fields["title"] = rng.choice(["部長", "課長", "主任"])
    if rng.random() < 0.3:
        fields["postal_code"] = rng.choice(["150", "0001", "100-0005"])
    if rng.random() < 0.3:
        fields["department"] = rng.choice(["営業", "開発部", "部"])
    low = rng.choice([None, 18, 40, 60])
    return Query(
        q=rng.choice(["", "田中", "佐藤 鈴木", "1"]),
        match=rng.choice(["all", "any"]),
        fields=fields,
        checkboxes={i: rng.random() < 0.5 for i in rng.sample(range(1, 6), rng.randint(0, 2))},
        created_from=rng.choice([None, "2026-12-15"]),
        created_to=rng.choice([None, "2027-01-31"]),
        age_from=low,
        age_to=rng.choice([None, 59, 60]) if low is None or low <= 59 else None,
        birthday_from=rng.choice([None, "1990-01-01"]),
        purchase_shipped=rng.choice([None, True, False]),
        purchase_paid=rng.choice([None, True]),
        purchase_payment_method=rng.choice([None, "cash"]),
        limit=1000,
    )


def test_every_condition_and_match_any_equal_the_rules(world: World) -> None:
    rng = random.Random(12)
    _world(world, rng)
    contacts, depts, buys = _rows(world)
    admin = world.actor("acme")
    seen = set()
    for _ in range(60):
        query = _random_query(rng)
        expected = _expected(query, contacts, depts, buys)
        with world.app.transaction() as ctx:
            result = search.search(ctx, admin, query)
        assert [i["id"] for i in result.items] == expected, query
        assert result.total == len(expected)
        seen.add((query.match, bool(expected)))
    assert {m for m, _ in seen} == {"all", "any"}
    assert {found for _, found in seen} == {True, False}


def test_the_age_range_counts_whole_years_on_the_birthday(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    born = {"1966-11-23": 60, "1966-11-24": 59, "2008-11-23": 18, "2008-11-24": 17}
    with world.app.transaction() as ctx:
        ids = {
            b: records.create(ctx, admin, "contact", {"name": b, "birthday": b}).record["id"]
            for b in born
        }
        records.create(ctx, admin, "contact", {"name": "no birthday"})

    def found(**kw: Any) -> set[str]:
        with world.app.transaction() as ctx:
            items = search.search(ctx, admin, Query(**kw)).items
        return {i["name"] for i in items}

    assert found(age_from=60) == {"1966-11-23"}
    assert found(age_to=17) == {"2008-11-24"}
    assert found(age_from=18, age_to=59) == {"1966-11-24", "2008-11-23"}
    with pytest.raises(ValidationFailed, match="age range"):
        found(age_from=30, age_to=20)
    assert len(ids) == 4


def test_match_any_covers_checkboxes_and_history(world: World) -> None:
    """Before issue 12, ``match any`` applied to text only: checkboxes were still ANDed."""
    configured(world)
    admin = world.actor("acme")
    with world.app.transaction() as ctx:
        boxed = records.create(ctx, admin, "contact", {"name": "箱", "checkboxes": [2]})
        named = records.create(ctx, admin, "contact", {"name": "名前"})
        bought = records.create(ctx, admin, "contact", {"name": "購入"})
        records.create(
            ctx,
            admin,
            "purchase",
            {"contact_id": bought.record["id"], "date": "2026-01-01", "shipped": True},
        )
        records.create(ctx, admin, "contact", {"name": "他"})
        result = search.search(
            ctx, admin, Query(q="名前", checkboxes={2: True}, purchase_shipped=True, match="any")
        )
    assert [i["id"] for i in result.items] == [
        boxed.record["id"],
        named.record["id"],
        bought.record["id"],
    ]


def test_cli_search_options(run: Any) -> None:
    run.run("tenant", "create", "acme", "--name", "ACME")
    run.run("user", "add", "sato", "--tenant", "acme", "--role", "admin")
    for name, title in (("田中", "営業部長"), ("佐藤", "主任")):
        run.run(
            "record",
            "create",
            "contact",
            "-t",
            "acme",
            "--as",
            "sato",
            "--data",
            f'{{"name": "{name}", "title": "{title}", "postal_code": "150-0001"}}',
        )
    found = run.json(
        "search", "-t", "acme", "--as", "sato", "--title", "部長", "--postal-code", "1500001"
    )
    assert [i["name"] for i in found["items"]] == ["田中"]
    anyof = run.json(
        "search", "-t", "acme", "--as", "sato", "--title", "部長", "--q", "佐藤", "--match", "any"
    )
    assert anyof["total"] == 2
    # the CLI runs on the real clock: registered today
    assert (
        run.json("search", "-t", "acme", "--as", "sato", "--created-from", "2099-01-01")["total"]
        == 0
    )
    assert (
        run.json(
            "search", "-t", "acme", "--as", "sato", "--created-to", "2000-01-01", "--title", "主任"
        )["total"]
        == 0
    )
