"""Exports, print layouts and the screen pop show labels; codes with an option (issue 12)."""

from __future__ import annotations

import csv
import io

from provisioner.services.crm import csvio, printing
from provisioner.services.crm.search import Query
from provisioner.services.provisioning import metering
from tests.crm.helpers import configured, make
from tests.support import World


def _customers(world: World) -> int:
    configured(world)
    admin = world.actor("acme")
    contact = make(
        world,
        admin,
        "contact",
        {
            "name": "山田 花子",
            "phone": "03-5555-0001",
            "sex": "female",
            "memo_2": "gold",
            "classifications": ["supplier", "agency"],
        },
    )["id"]
    make(
        world,
        admin,
        "activity",
        {"contact_id": contact, "date": "2026-11-01", "kind": "visit", "content": "訪問"},
    )
    make(
        world,
        admin,
        "purchase",
        {
            "contact_id": contact,
            "date": "2026-11-02",
            "product_class": "software",
            "product_name": "会計",
            "quantity": 1,
            "unit_price": 100,
            "amount": 100,
            "payment_method": "cash",
            "media": "web",
        },
    )
    return contact


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def test_exports_show_labels_and_codes_on_request(world: World) -> None:
    _customers(world)
    admin = world.actor("acme")
    columns = ["name", "sex", "memo_2", "classifications"]
    with world.app.transaction() as ctx:
        shown = csvio.export(ctx, admin, "customers", Query(), columns=columns)
        coded = csvio.export(ctx, admin, "customers", Query(), columns=columns, codes=True)
        acts = csvio.export(ctx, admin, "activities", Query(), columns=["kind"])
        buys = csvio.export(
            ctx, admin, "purchases", Query(), columns=["product_class", "payment_method", "media"]
        )
    assert _rows(shown)[1] == ["山田 花子", "女性", "ゴールド", "仕入先;代理店"]
    assert _rows(coded)[1] == ["山田 花子", "female", "gold", "supplier;agency"]
    assert _rows(acts)[1:] == [["訪問"]]
    assert _rows(buys)[1:] == [["ソフトウェア", "現金", "Web"]]


def test_a_labelled_export_imports_back_as_codes(world: World) -> None:
    _customers(world)
    configured(world, "beta")
    with world.app.transaction() as ctx:
        data = csvio.export(
            ctx,
            world.actor("acme"),
            "customers",
            Query(),
            columns=["name", "sex", "memo_2", "classifications"],
            encoding="cp932",
        )
    with world.app.transaction() as ctx:
        report = csvio.import_customers(ctx, world.actor("beta"), data)
    assert report.created == 1
    with world.app.transaction() as ctx:
        back = csvio.export(
            ctx,
            world.actor("beta"),
            "customers",
            Query(),
            columns=["sex", "memo_2", "classifications"],
            codes=True,
        )
    assert _rows(back)[1] == ["female", "gold", "supplier;agency"]


def test_the_print_list_shows_classification_labels(world: World) -> None:
    _customers(world)
    admin = world.actor("acme")
    with world.app.transaction() as ctx:
        page = printing.print_customers(ctx, admin, Query())
        coded = printing.print_customers(ctx, admin, Query(), codes=True)
    assert "仕入先、代理店" in page
    assert "supplier" not in page
    assert "supplier、agency" in coded


def test_the_screen_pop_shows_labels_and_codes_on_request(world: World) -> None:
    _customers(world)
    admin = world.actor("acme")
    with world.app.transaction() as ctx:
        card = metering.screen_pop(ctx, admin, "03-5555-0001", call_ref="c1")
        coded = metering.screen_pop(ctx, admin, "03-5555-0001", call_ref="c1", codes=True)
    contact = card["contact"]
    assert (contact["sex"], contact["memo_2"], contact["classifications"]) == (
        "女性",
        "ゴールド",
        ["仕入先", "代理店"],
    )
    assert card["activities"][0]["kind"] == "訪問"
    assert (card["purchases"][0]["payment_method"], card["purchases"][0]["product_class"]) == (
        "現金",
        "ソフトウェア",
    )
    assert (coded["contact"]["sex"], coded["contact"]["classifications"]) == (
        "female",
        ["supplier", "agency"],
    )
    assert coded["activities"][0]["kind"] == "visit"
    assert coded["call"]["id"] == card["call"]["id"]  # one call, recorded once
