"""Seed rules of the CRM records (issue 12): export order, purchase amounts."""

from __future__ import annotations

import csv
import io

import pytest

from provisioner.errors import ValidationFailed
from provisioner.services.crm import csvio, records, search
from provisioner.services.crm.search import Query
from tests.crm.helpers import configured, make
from tests.support import World


def _export_ids(world: World, kind: str, sort: str, column: str = "id") -> list[str]:
    with world.app.transaction() as ctx:
        data = csvio.export(ctx, world.actor("acme"), kind, Query(sort=sort), columns=[column])
    return [row[0] for row in csv.reader(io.StringIO(data.decode("utf-8-sig")))][1:]


def test_export_follows_the_sort_option(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    ids = {
        kana: make(world, admin, "contact", {"name": name, "kana": kana})["id"]
        for name, kana in (("佐藤", "サトウ"), ("井上", "イノウエ"), ("田中", "タナカ"))
    }
    assert _export_ids(world, "customers", "kana", "kana") == ["イノウエ", "サトウ", "タナカ"]
    assert _export_ids(world, "customers", "-kana", "kana") == ["タナカ", "サトウ", "イノウエ"]
    assert _export_ids(world, "customers", "-id") == [
        str(i) for i in sorted(ids.values(), reverse=True)
    ]
    for kana, contact in ids.items():
        make(
            world, admin, "activity", {"contact_id": contact, "date": "2026-11-01", "content": kana}
        )
    assert _export_ids(world, "activities", "kana", "content") == ["イノウエ", "サトウ", "タナカ"]
    with pytest.raises(ValidationFailed, match="cannot sort by"):
        _export_ids(world, "customers", "shoe_size")


def test_purchase_amount_must_be_quantity_times_unit_price(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    contact = make(world, admin, "contact", {"name": "山田"})["id"]
    base = {"contact_id": contact, "date": "2026-11-03", "product_name": "X"}
    with pytest.raises(ValidationFailed) as bad:
        make(world, admin, "purchase", base | {"quantity": 2, "unit_price": 500, "amount": 900})
    assert bad.value.problems == ["amount: 900 is not quantity x unit price (2 x 500 = 1000)"]
    made = make(world, admin, "purchase", base | {"quantity": 2, "unit_price": 500, "amount": 1000})
    assert (
        make(world, admin, "purchase", base | {"quantity": 3, "unit_price": 100})["amount"] == 300
    )
    with world.app.transaction() as ctx:
        with pytest.raises(ValidationFailed) as bad:
            records.update(ctx, admin, "purchase", made["id"], {"amount": 999})
        assert "(2 x 500 = 1000)" in bad.value.problems[0]
        # changing the quantity alone recomputes the amount
        assert (
            records.update(ctx, admin, "purchase", made["id"], {"quantity": 4}).record["amount"]
            == 2000
        )
        with pytest.raises(ValidationFailed) as bad:
            records.update(ctx, admin, "purchase", made["id"], {"unit_price": 600, "amount": 2000})
        assert "(4 x 600 = 2400)" in bad.value.problems[0]


def test_postal_code_fills_an_empty_address(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    contact = make(world, admin, "contact", {"name": "山田", "postal_code": "１５０-０００１"})
    assert contact["address"] == "東京都渋谷区神宮前"
    typed = make(
        world,
        admin,
        "contact",
        {"name": "田中", "postal_code": "150-0001", "address": "渋谷区神宮前1-1"},
    )
    assert typed["address"] == "渋谷区神宮前1-1"  # what the user typed stays
    company = make(world, admin, "company", {"name": "丸の内商事", "postal_code": "1000005"})
    assert company["address"] == "東京都千代田区丸の内"
    with world.app.transaction() as ctx:  # a new code on an update fills a cleared address
        moved = records.update(
            ctx, admin, "contact", contact["id"], {"postal_code": "100-0005", "address": ""}
        ).record
    assert moved["address"] == "東京都千代田区丸の内"
    # an unknown code: accepted as typed, unless the input rules ask for a check
    assert (
        make(world, admin, "contact", {"name": "不明", "postal_code": "000-0000"})["address"] == ""
    )
    rules = world.config("acme")["input_rules"]
    world.set_config("acme", {"input_rules": {**rules, "postal_code_check": True}})
    with pytest.raises(ValidationFailed) as bad:
        make(world, admin, "contact", {"name": "不明", "postal_code": "000-0000"})
    assert bad.value.problems == [
        "postal_code: '000-0000' is not a Japanese postal code (7 digits, e.g. 150-0001)"
    ]


def test_activity_content_fields_1_to_10_are_labelled_searchable_and_exported(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    labels = world.config("acme")["labels"]
    world.set_config("acme", {"labels": {**labels, "activity.content_3": "商談ランク"}})
    contact = make(world, admin, "contact", {"name": "山田"})["id"]
    made = make(
        world,
        admin,
        "activity",
        {
            "contact_id": contact,
            "date": "2026-11-02",
            "content": "電話",
            "content_3": "Aランク見込み",
        },
    )
    assert (made["content_3"], made["content_10"]) == ("Aランク見込み", "")
    make(world, admin, "contact", {"name": "他"})
    with world.app.transaction() as ctx:
        found = search.search(ctx, admin, Query(activity_text="ランク見込"))
        data = csvio.export(
            ctx, admin, "activities", Query(), columns=["contact_name", "content_3"]
        )
    assert [i["id"] for i in found.items] == [contact]
    assert data.decode("utf-8-sig").splitlines() == [
        "contact_name,商談ランク",
        "山田,Aランク見込み",
    ]
