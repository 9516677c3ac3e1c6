"""CSV import (encodings, headers by label or key, dry run, all-or-nothing) and export."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import BinaryIO

import pytest

from provisioner.errors import PermissionDenied, ValidationFailed
from provisioner.services.crm import csvio, records, search
from provisioner.services.crm.search import Query
from tests.crm.helpers import configured, runtime_app
from tests.support import World

GOOD = (
    "氏名,フリガナ,会社名,電話番号,ランク,DM送付,classifications\r\n"
    "田中 太郎,タナカ タロウ,(株)山田商事,０３－１２３４－５６７８,gold,1,agency\r\n"
    "鈴木 花子,スズキ ハナコ,株式会社山田商事,090-1111-2222,,0,\r\n"
)


def _import(world: World, raw: bytes, login: str | None = None, **kw: bool) -> csvio.ImportReport:
    actor = world.actor("acme", login)
    with world.app.transaction() as ctx:
        return csvio.import_customers(ctx, actor, raw, **kw)


@pytest.mark.parametrize(
    ("encoding", "detected"), [("cp932", "cp932"), ("utf-8-sig", "utf-8-sig"), ("utf-8", "utf-8")]
)
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
            "gold",
            [1],
            ["agency"],
        )
        assert search.lookup(ctx, admin, "0312345678")["contact"]["id"] == first["id"]
        log = records.access_log(ctx, admin)
    assert log[0]["kind"] == "import"


def test_dry_run_reports_every_bad_row_and_writes_nothing(world: World) -> None:
    configured(world)
    bad = GOOD + (
        "佐藤,サトウ,,03-0000-0000,platinum,yes,\r\n"
        ",ナシ,,,,,\r\n"
        "高橋,タカハシ,,,silver,maybe,vip\r\n"
    )
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
        data = csvio.export(
            ctx,
            gen,
            "customers",
            Query(q="田中"),
            columns=["phone", "name", "memo_2", "checkbox_1"],
        )
        sjis = csvio.export(ctx, gen, "customers", Query(), encoding="cp932")
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows == [
        ["電話番号", "氏名", "ランク", "DM送付"],
        ["03-1234-5678", "田中 太郎", "ゴールド", "1"],
    ]  # the picklist's label
    assert list(csv.reader(io.StringIO(sjis.decode("cp932"))))[2][1] == "鈴木 花子"
    with world.app.transaction() as ctx:
        log = records.access_log(ctx, world.actor("acme"))
    assert [(e["actor"], e["kind"], e["details"]["rows"]) for e in log[:2]] == [
        ("acme-gen", "export", 2),
        ("acme-gen", "export", 1),
    ]


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
        records.create(
            ctx,
            admin,
            "purchase",
            {
                "contact_id": tanaka,
                "date": "2026-01-02",
                "product_name": "ソフト",
                "quantity": 3,
                "unit_price": 100,
            },
        )
        data = csvio.export(
            ctx,
            admin,
            "purchases",
            Query(q="山田"),
            columns=["contact_name", "product_name", "amount"],
        )
    assert data.decode("utf-8-sig").splitlines()[1] == "田中 太郎,ソフト,300"


# cells, good and bad, for every kind of column the column-by-column path shapes
_CELLS = {
    "name": ["田中 太郎", " ｻﾄｳ ﾊﾅｺ ", "", "　", "Ａ" * 201, "x" * 200],
    "kana": ["タナカ", "ｽｽﾞｷ", "", "ka na"],
    "title": ["部長", "", "ＣＥＯ"],
    "email": ["a@example.jp", "ＡＢ@ＥＸ.ＪＰ", "not-an-address", ""],
    "phone": ["０３－１２３４－５６７８", "+81 3 1234 5678", "03-1234-5678", "1" * 21, "", "abc"],
    "mobile": ["090-1111-2222", "", "09011112222"],
    "fax": ["03-0000-0000", "", "1" * 30],
    "birthday": ["1980-01-02", "１９８０－０１－０２", "", "1980/01/02"],
    "sex": ["", "male", "female", "nonsense"],
    "note": [" 全角ＡＢＣ ", "", "n" * 20001],
    "memo_1": ["ﾒﾓ", "", "100%"],
    "memo_2": ["gold", "silver", "old", "ｇｏｌｄ", "", "platinum"],
    "company": ["(株)山田商事", "", " 株式会社山田商事 "],
    "checkbox_1": ["1", "0", "", "✓", "はい", "maybe"],
    "checkbox_3": ["yes", "no", "TRUE"],
    "checkbox_48": ["", "0", "1"],
    "classifications": ["agency", "agency;supplier", "", "vip", "ａｇｅｎｃｙ, supplier"],
}


def _both_paths(world: World, header: list[str], body: list[list[str]]) -> int:
    """Shape ``body`` column by column and row by row; assert they agree; the rows accepted."""
    actor = world.actor("acme")
    numbered = list(enumerate(body, start=2))
    with world.app.transaction() as ctx:
        from provisioner.services.crm import scope

        scope.enter(ctx, actor)
        doc = scope.config(ctx, actor.tenant_id)
        keys, problems = csvio._header_map(doc, header)
        assert not problems
        shaped, found = csvio.shape_rows(doc, keys, header, numbered)
        slow: list[tuple[dict[str, object], str]] = []
        slow_found: list[csvio.Problem] = []
        for number, cells in numbered:
            done, row_problems = csvio.shape_row(ctx, actor, doc, keys, header, number, cells)
            if done is not None:
                slow.append(done)
            slow_found += row_problems
    assert shaped == slow
    assert sorted(found, key=lambda p: p.row) == slow_found
    return len(shaped)


def test_column_by_column_shaping_equals_the_row_by_row_path(world: World) -> None:
    """Column by column, every row is shaped exactly as ``records.shape`` shapes it and
    words exactly its problems; rows of the wrong width included."""
    import random

    configured(world)
    rng = random.Random(7)
    header = list(_CELLS)
    body = [[rng.choice(_CELLS[k]) for k in header] for _ in range(600)]
    body += [body[0][:5], [*body[1], "extra"]]
    assert _both_paths(world, header, body) >= 5  # (the others have a bad cell)


_RULES = [
    {
        "phone_format": "hyphen",
        "normalize_width": True,
        "postal_code_check": True,
        "company_suffix": "kabushiki_kaisha",
    },
    {
        "phone_format": "digits",
        "normalize_width": False,
        "postal_code_check": False,
        "company_suffix": "as_entered",
    },
]


@pytest.mark.parametrize("rules", range(len(_RULES)))
@pytest.mark.parametrize("mode", ["corporate", "individual"])
def test_generated_rows_shape_the_same_both_ways(world: World, rules: int, mode: str) -> None:
    """Generated rows (good, bad, short, long; any text) under other input rules and
    modes: the column-by-column path gives every row's values and problems exactly as the
    row-by-row path (``records.shape``)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    configured(world)
    data = world.config("acme")
    world.set_config(
        "acme", {"mode": mode, "input_rules": {**data["input_rules"], **_RULES[rules]}}
    )
    cells = {
        **_CELLS,
        "postal_code": ["150-0001", "１５００００１", "999-9999", "", "abc"],
        "address": ["", "東京都港区"],
    }
    header = list(cells)

    def cell(key: str) -> st.SearchStrategy[str]:
        return st.one_of(st.sampled_from(cells[key]), st.text(max_size=8))

    row = st.tuples(*(cell(k) for k in header), st.integers(-3, 1)).map(
        lambda r: (
            list(r[:-1])[: len(header) + r[-1]]
            if r[-1] < 0
            else [*r[:-1], "x"]
            if r[-1]
            else list(r[:-1])
        )
    )

    @settings(max_examples=25, deadline=None, derandomize=True)
    @given(st.lists(row, min_size=1, max_size=30))
    def check(body: list[list[str]]) -> None:
        _both_paths(world, header, body)

    check()


@pytest.mark.parametrize("copy", [True, False])
def test_a_large_import_is_all_or_nothing_and_searchable(
    world: World, copy: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provisioner.db import bulk

    monkeypatch.setattr(bulk, "USE_COPY", copy)  # PostgreSQL: COPY or INSERT
    configured(world)
    lines = ["氏名,フリガナ,会社名,電話番号,ランク,DM送付"] + [
        f"田中 {i},タナカ {i},株式会社{i % 7}商事,03-{1000 + i}-{2000 + i},gold,{i % 2}"
        for i in range(3000)
    ]
    bad = [*lines, "山田,ヤマダ,,03-1,platinum,1"]
    with pytest.raises(ValidationFailed) as exc:
        _import(world, "\n".join(bad).encode())
    assert exc.value.problems == [
        "row 3002, ランク: 'platinum' is not an active value of picklist 'rank' (gold, silver)"
    ]
    admin = world.actor("acme")
    with world.app.transaction() as ctx:
        assert search.search(ctx, admin, Query()).total == 0
    report = _import(world, "\n".join(lines).encode())
    assert (report.created, report.companies_created) == (3000, 7)
    with world.app.transaction() as ctx:
        result = search.search(ctx, admin, Query(q="1234-2234"))
        assert [i["name"] for i in result.items] == ["田中 234"]
        assert search.search(ctx, admin, Query(q="3商事")).total == 3000 // 7 + 1
        history = records.history(ctx, admin, "contact", result.items[0]["id"])
        assert [(h["action"], h["changes"]) for h in history] == [("create", {"import": "upload"})]
        assert records.show(ctx, admin, "contact", result.items[0]["id"])["checkboxes"] == []


def test_an_import_as_a_role_under_row_level_security_inserts_instead_of_copying(
    world: World,
) -> None:
    """PostgreSQL refuses COPY FROM where row-level security applies: a plain login role
    (no superuser, no BYPASSRLS) imports through a staging table, with the same result."""
    if world.app.engine.dialect.name != "postgresql":
        pytest.skip("COPY and row-level security are PostgreSQL features")
    from provisioner.db import bulk

    configured(world)
    with runtime_app(world) as app:
        actor = world.actor("acme")
        with app.transaction() as ctx:
            assert bulk.copy_mode(ctx.session.connection(), "crm_contacts") == "staged"
            report = csvio.import_customers(ctx, actor, GOOD.encode())
        assert report.created == 2
        with app.transaction() as ctx:
            assert search.search(ctx, actor, Query(q="1234")).total == 1
    with world.app.transaction() as ctx:
        assert search.search(ctx, world.actor("acme"), Query(q="山田商事")).total == 2


# --------------------------------------------------------------------------- streaming


def _count(world: World) -> int:
    actor = world.actor("acme")
    with world.app.transaction() as ctx:
        return search.search(ctx, actor, Query()).total


def test_a_file_is_imported_block_by_block_all_or_nothing(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file (not its bytes) is read a block at a time; a bad row in a later block, after
    earlier blocks were written, still leaves nothing behind, and every bad row is named."""
    monkeypatch.setattr(csvio, "_BATCH", 40)
    configured(world)
    lines = ["氏名,電話番号,ランク"] + [f"田中 {i},03-{1000 + i}-0000,gold" for i in range(200)]
    lines[150] = "山田,03-1,platinum"
    lines[190] = ",,"  # blank: skipped, not renumbered
    lines[195] = ",03-1111-2222,"
    path = tmp_path / "customers.csv"
    path.write_bytes("\r\n".join(lines).encode("cp932"))
    for dry_run in (False, True):
        with path.open("rb") as raw, pytest.raises(ValidationFailed) as exc:
            _import_file(world, raw, dry_run)
        assert exc.value.message == "2 of 199 rows are not valid; nothing was imported"
        assert exc.value.problems == [
            "row 151, ランク: 'platinum' is not an active value of picklist 'rank' (gold, silver)",
            "row 196, 氏名: required",
        ]
    assert _count(world) == 0
    del lines[195], lines[150]
    path.write_bytes("\r\n".join(lines).encode("cp932"))
    with path.open("rb") as raw:
        report = _import_file(world, raw, False)
    assert (report.rows, report.created, report.encoding) == (197, 197, "cp932")
    assert _count(world) == 197


def _import_file(world: World, raw: BinaryIO, dry_run: bool) -> csvio.ImportReport:
    actor = world.actor("acme")
    with world.app.transaction() as ctx:
        return csvio.import_customers(ctx, actor, raw, dry_run=dry_run)


def test_a_refusal_lists_the_first_problems_and_counts_every_bad_row(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csvio, "MAX_PROBLEMS", 5)
    monkeypatch.setattr(csvio, "_BATCH", 7)
    configured(world)
    raw = "\r\n".join(["氏名,ランク"] + ["田中,platinum"] * 30).encode()
    with pytest.raises(ValidationFailed) as exc:
        _import(world, raw, dry_run=True)
    assert exc.value.message == "30 of 30 rows are not valid; nothing was imported"
    assert len(exc.value.problems) == 6
    assert exc.value.problems[0].startswith("row 2, ランク: 'platinum'")
    assert exc.value.problems[-1] == (
        "... 25 more problems (the first 5 are listed; fix them and run --dry-run again)"
    )


def test_export_to_a_file_writes_what_export_returns(world: World, tmp_path: Path) -> None:
    configured(world)
    _import(world, GOOD.encode())
    actor = world.actor("acme")
    for encoding in ("utf-8-sig", "cp932"):
        path = tmp_path / f"out-{encoding}.csv"
        with world.app.transaction() as ctx, path.open("wb") as out:
            rows = csvio.export_to(ctx, actor, "customers", Query(), out, encoding=encoding)
            data = csvio.export(ctx, actor, "customers", Query(), encoding=encoding)
        assert rows == 2
        assert path.read_bytes() == data


def test_an_imported_postal_code_fills_an_empty_address(world: World) -> None:
    """As a create does (the same rule): the column-by-column path once skipped it."""
    configured(world)
    _import(world, "氏名,郵便番号,住所\r\n田中,150-0001,\r\n鈴木,150-0001,大阪府\r\n".encode())
    actor = world.actor("acme")
    with world.app.transaction() as ctx:
        found = {r["name"]: r["address"] for r in search.search(ctx, actor, Query()).items}
    assert found == {"田中": "東京都渋谷区神宮前", "鈴木": "大阪府"}


def test_the_change_log_of_an_import_is_its_reference_rows(world: World) -> None:
    """The import writes its contacts' change-log rows with one INSERT ... SELECT a block:
    exactly :func:`csvio.change_rows` of the new contacts, in id order, and none for the
    contacts that were there before (another import of the same tenant)."""
    from sqlalchemy import Table, select

    from provisioner.db.crm_models import CrmChange, CrmContact

    configured(world)
    actor = world.actor("acme")
    _import(world, GOOD.encode())
    lines = ["氏名,電話番号"] + [f"田中 {i},03-{1000 + i}-0000" for i in range(120)]
    with world.app.transaction() as ctx:
        csvio.import_customers(ctx, actor, "\r\n".join(lines).encode(), source="second.csv")
    changes = CrmChange.__table__
    assert isinstance(changes, Table)
    with world.app.transaction() as ctx:
        ctx.enter_tenant(actor.tenant_id)
        ids = list(
            ctx.session.scalars(
                select(CrmContact.id)
                .where(CrmContact.tenant_id == actor.tenant_id, CrmContact.name.like("田中 %"))
                .where(CrmContact.name != "田中 太郎")
                .order_by(CrmContact.id)
            )
        )
        logged = [
            tuple(row)
            for row in ctx.session.execute(
                select(*(changes.c[c] for c in csvio._CHANGE_COLUMNS))
                .where(
                    changes.c.tenant_id == actor.tenant_id,
                    changes.c.record_type == "contact",
                    changes.c.changes["import"].as_string() == "second.csv",
                )
                .order_by(changes.c.id)
            )
        ]
    assert len(ids) == 120
    at = logged[0][1]
    assert logged == csvio.change_rows(actor, at, "second.csv", ids)


def test_derived_columns_column_by_column_equal_the_row_by_row_reference() -> None:
    """:func:`csvio.derive` (column by column) gives each row exactly what
    :func:`csvio.derive_row` (a create's rules, row by row) does, on odd values: full
    width, spaces, U+001F inside a field, +81 numbers, empty and None fields, a final
    sigma, repeated values, and blocks of pure ASCII phones."""
    import random

    rng = random.Random(16)
    names = ["田中 太郎", "ＴＡＮＡＫＡ　Ｔａｒｏ", "(株)山田", "a\x1fb", "ΟΔΥΣΣΕΥΣ", "x", " y "]
    phones = ["03-1234-5678", "０３（１２３４）５６７８", "+81 3 1234 5678", "", None, " 090 1 "]
    ascii_phones = ["03-1234-5678", "090-1111-2222", " 0120 00 ", "", None, "12a3"]
    texts = ["", None, "渋谷区 1-2", "ｶﾀｶﾅ", "a  b", "\u3000", "Σ", "e\u0301", "x\x1fy"]
    template = {k: "" for k in ("kana", "email", "address", *records.MEMOS)}
    for pool in (phones, ascii_phones):
        rows: list[dict[str, object]] = []
        companies: list[str] = []
        for _ in range(300):
            row = dict(template)
            row["name"] = rng.choice(names)
            row["phone"], row["mobile"] = rng.choice(pool), rng.choice(pool)
            for key in ("kana", "email", "address", "memo_1", "memo_7"):
                if rng.random() < 0.7:
                    row[key] = rng.choice(texts)
            rows.append(row)
            companies.append(rng.choice(["", "株式会社山田", "ACME", "a\x1fb"]))
        expected = [dict(r) for r in rows]
        for row, company in zip(expected, companies, strict=True):
            csvio.derive_row(row, company)
        found = [dict(r) for r in rows]
        csvio.derive(found, companies, {})
        assert found == expected
    empty = [{**template, "name": "", "phone": "", "mobile": ""}]
    csvio.derive(empty, [""])
    assert empty[0]["search_text"] == ""
