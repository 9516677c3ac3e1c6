"""CSV import (encodings, headers by label or key, dry run, all-or-nothing) and export."""

from __future__ import annotations

import csv
import io

import pytest

from provisioner.errors import PermissionDenied, ValidationFailed
from provisioner.services.crm import csvio, records, search
from provisioner.services.crm.search import Query
from tests.crm.helpers import configured
from tests.support import World

GOOD = ("氏名,フリガナ,会社名,電話番号,ランク,DM送付,classifications\r\n"
        "田中 太郎,タナカ タロウ,(株)山田商事,０３－１２３４－５６７８,gold,1,agency\r\n"
        "鈴木 花子,スズキ ハナコ,株式会社山田商事,090-1111-2222,,0,\r\n")


def _import(world: World, raw: bytes, login: str | None = None,
            **kw: bool) -> csvio.ImportReport:
    actor = world.actor("acme", login)
    with world.app.transaction() as ctx:
        return csvio.import_customers(ctx, actor, raw, **kw)


@pytest.mark.parametrize(("encoding", "detected"), [("cp932", "cp932"),
                                                   ("utf-8-sig", "utf-8-sig"),
                                                   ("utf-8", "utf-8")])
def test_import_detects_the_encoding(world: World, encoding: str, detected: str) -> None:
    configured(world)
    report = _import(world, GOOD.encode(encoding))
    assert (report.encoding, report.created, report.companies_created) == (detected, 2, 1)
    admin = world.actor("acme")
    with world.app.transaction() as ctx:
        result = search.search(ctx, admin, Query(q="山田商事", sort="id"))
        assert [i["name"] for i in result.items] == ["田中 太郎", "鈴木 花子"]
        first = records.show(ctx, admin, "contact", result.items[0]["id"])
        assert first["phone"] == "03-1234-5678"
        assert (first["memo_2"], first["checkboxes"], first["classifications"]) == (
            "gold", [1], ["agency"])
        assert search.lookup(ctx, admin, "0312345678")["contact"]["id"] == first["id"]
        log = records.access_log(ctx, admin)
    assert log[0]["kind"] == "import"


def test_dry_run_reports_every_bad_row_and_writes_nothing(world: World) -> None:
    configured(world)
    bad = GOOD + ("佐藤,サトウ,,03-0000-0000,platinum,yes,\r\n"
                  ",ナシ,,,,,\r\n"
                  "高橋,タカハシ,,,silver,maybe,vip\r\n")
    for dry_run in (True, False):
        with pytest.raises(ValidationFailed) as exc:
            _import(world, bad.encode("cp932"), dry_run=dry_run)
        problems = exc.value.problems
        assert "3 of 5 rows are not valid" in exc.value.message
        assert any(p.startswith("row 4, ランク: 'platinum'") for p in problems), problems
        assert any(p.startswith("row 5, 氏名: required") for p in problems), problems
        assert any(p.startswith("row 6, DM送付: 'maybe'") for p in problems), problems
        assert any(p.startswith("row 6, classifications: 'vip'") for p in problems), problems
    with world.app.transaction() as ctx:
        assert search.search(ctx, world.actor("acme"), Query()).total == 0
    report = _import(world, GOOD.encode("utf-8"), dry_run=True)
    assert (report.rows, report.created) == (2, 0)


def test_import_headers_by_key_and_unknown_headers(world: World) -> None:
    configured(world)
    report = _import(world, b"name,kana,memo_1,checkbox_3\nA,a,x,1\n")
    assert report.created == 1
    with pytest.raises(ValidationFailed) as exc:
        _import(world, "氏名,靴のサイズ\nA,27\n".encode())
    assert "row 1, 靴のサイズ: unknown column" in exc.value.problems[0]
    with pytest.raises(ValidationFailed):
        _import(world, b"kana\nA\n")


def test_import_is_for_admins(world: World) -> None:
    configured(world)
    with pytest.raises(PermissionDenied):
        _import(world, GOOD.encode(), login="acme-gen")


def test_export_columns_order_filter_and_encodings(world: World) -> None:
    configured(world)
    _import(world, GOOD.encode())
    gen = world.actor("acme", "acme-gen")
    with world.app.transaction() as ctx:
        data = csvio.export(ctx, gen, "customers", Query(q="田中"),
                            columns=["phone", "name", "memo_2", "checkbox_1"])
        sjis = csvio.export(ctx, gen, "customers", Query(), encoding="cp932")
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows == [["電話番号", "氏名", "ランク", "DM送付"],
                    ["03-1234-5678", "田中 太郎", "gold", "1"]]
    assert list(csv.reader(io.StringIO(sjis.decode("cp932"))))[2][1] == "鈴木 花子"
    with world.app.transaction() as ctx:
        log = records.access_log(ctx, world.actor("acme"))
    assert [(e["actor"], e["kind"], e["details"]["rows"]) for e in log[:2]] == [
        ("acme-gen", "export", 2), ("acme-gen", "export", 1)]


def test_export_is_refused_without_the_export_permission(world: World) -> None:
    configured(world)
    for login in ("acme-noexp", "acme-ro"):
        actor = world.actor("acme", login)
        with world.app.transaction() as ctx, pytest.raises(PermissionDenied) as exc:
            csvio.export(ctx, actor, "customers", Query())
        assert "'export'" in exc.value.diagnostics()


def test_export_history(world: World) -> None:
    configured(world)
    _import(world, GOOD.encode())
    admin = world.actor("acme")
    with world.app.transaction() as ctx:
        tanaka = search.search(ctx, admin, Query(q="田中")).items[0]["id"]
        records.create(ctx, admin, "purchase", {"contact_id": tanaka, "date": "2026-01-02",
                                                "product_name": "ソフト", "quantity": 3,
                                                "unit_price": 100})
        data = csvio.export(ctx, admin, "purchases", Query(q="山田"),
                            columns=["contact_name", "product_name", "amount"])
    assert data.decode("utf-8-sig").splitlines()[1] == "田中 太郎,ソフト,300"
