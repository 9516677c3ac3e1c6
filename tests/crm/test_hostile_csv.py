"""Hostile CSV files (issue 11): formula-safe export, bounded cells and error bodies, NUL
characters refused alike on SQLite and PostgreSQL, files mixing encodings refused."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from provisioner.errors import ValidationFailed
from provisioner.services.crm import csvio, records
from provisioner.services.crm.search import Query
from provisioner.services.crm.text import FORMULA_START
from tests.crm.helpers import configured
from tests.crm.test_cli import Cli
from tests.support import World


def _import(world: World, raw: bytes, **kw: bool) -> csvio.ImportReport:
    actor = world.actor("acme")
    with world.app.transaction() as ctx:
        return csvio.import_customers(ctx, actor, raw, **kw)


def _export(world: World, columns: list[str]) -> list[list[str]]:
    actor = world.actor("acme")
    with world.app.transaction() as ctx:
        data = csvio.export(ctx, actor, "customers", Query(sort="id"), columns=columns)
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def _contacts(world: World) -> int:
    return len(_export(world, ["name"])) - 1


# --------------------------------------------------------------------------- formulas


def test_export_neutralises_formulas_and_keeps_numbers(world: World) -> None:
    """Threat: a customer named ``=HYPERLINK(...)`` runs as a formula in Excel (CSV injection).
    Width normalisation stores ``＝1+1`` as ``=1+1``: it is neutralised too."""
    configured(world)
    names = [
        "=1+1",
        "＝1+1",
        "+81 3-1234-5678",
        "@SUM(A1)",
        "-1+2",
        "\tTAB",
        "田中",
        "-5",
        "+5",
        "-0.5",
        "1e3",
    ]
    actor = world.actor("acme")
    with world.app.transaction() as ctx:
        for name in names:
            records.create(ctx, actor, "contact", {"name": name, "title": name})
    rows = _export(world, ["name", "title"])
    assert rows[0] == ["氏名", "役職"]
    exported = {(r[0], r[1]) for r in rows[1:]}
    assert exported == {
        ("'=1+1", "'=1+1"),  # stored width-normalised, written neutralised
        ("'=1+1", "'=1+1"),
        ("'+81 3-1234-5678", "'+81 3-1234-5678"),
        ("'@SUM(A1)", "'@SUM(A1)"),
        ("'-1+2", "'-1+2"),
        ("TAB", "TAB"),
        ("田中", "田中"),
        ("-5", "-5"),
        ("+5", "+5"),
        ("-0.5", "-0.5"),
        ("1e3", "1e3"),
    }, exported
    for name, title in exported:  # no cell a spreadsheet would evaluate
        for cell in (name, title):
            assert not cell.startswith(FORMULA_START) or cell in ("-5", "+5", "-0.5"), cell


def test_formula_safe_rules() -> None:
    """The OWASP list: = + - @ TAB CR, also as fullwidth characters; numbers stay numbers."""
    safe = csvio.formula_safe
    assert [safe(c) for c in ["=1", "+1+1", "-A1", "@x", "\tx", "\rx", "＝1+1", "＋1", "＠x"]] == [
        "'=1",
        "'+1+1",
        "'-A1",
        "'@x",
        "'\tx",
        "'\rx",
        "'＝1+1",
        "'＋1",
        "'＠x",
    ]
    assert [safe(c) for c in ["-5", "+5", "-5.25", "3", "", "a=b", "'=1"]] == [
        "-5",
        "+5",
        "-5.25",
        "3",
        "",
        "a=b",
        "'=1",
    ]


# --------------------------------------------------------------------------- cell limits


@pytest.mark.parametrize("length", [20_001, 131_073, 1_000_000])
def test_oversize_cell_is_refused_with_row_and_column(world: World, length: int) -> None:
    """Threat: a cell over the csv module's 131,072-character limit was an internal error."""
    configured(world)
    raw = ("氏名,備考\r\n田中,短い\r\n鈴木," + "長" * length + "\r\n").encode()
    with pytest.raises(ValidationFailed) as info:
        _import(world, raw)
    assert info.value.problems == [
        f"row 3, column '備考': {length:,} characters, more than the 20,000 a cell may hold"
    ]
    assert _contacts(world) == 0


def test_cell_at_the_limit_is_read(world: World) -> None:
    """Control: a 20,000-character note is imported."""
    configured(world)
    raw = ("氏名,備考\r\n田中," + "x" * 20_000 + "\r\n").encode()
    assert _import(world, raw).created == 1


# --------------------------------------------------------------------------- NUL


def test_nul_in_csv_is_refused_alike_on_every_backend(world: World) -> None:
    """Threat: NUL was stored on SQLite and an internal error on PostgreSQL."""
    configured(world)
    raw = "氏名,電話番号\r\n田中,03-1234-5678\r\n鈴\x00木,\r\n".encode()
    with pytest.raises(ValidationFailed) as info:
        _import(world, raw)
    assert info.value.message == "line 3 contains a NUL character (U+0000)"
    assert _contacts(world) == 0


@pytest.mark.parametrize("field", ["name", "note", "memo_1"])
def test_nul_in_a_record_write_is_refused_alike_on_every_backend(world: World, field: str) -> None:
    configured(world)
    actor = world.actor("acme")
    with world.app.transaction() as ctx:
        saved = records.create(ctx, actor, "contact", {"name": "田中"})
    with world.app.transaction() as ctx, pytest.raises(ValidationFailed) as info:
        records.create(ctx, actor, "contact", {"name": "鈴木", field: "a\x00b"})
    assert info.value.message == f"the contact: {field} contains a NUL character (U+0000)"
    with world.app.transaction() as ctx, pytest.raises(ValidationFailed):
        records.update(ctx, actor, "contact", saved.record["id"], {field: "\x00"})
    assert _contacts(world) == 1


# --------------------------------------------------------------------------- huge headers


def test_huge_header_error_is_bounded(world: World) -> None:
    """Threat: a 1,000,000-column header produced a 100 MB error body."""
    configured(world)
    raw = (",".join(f"c{i}" for i in range(1_000_000)) + "\r\n").encode()
    with pytest.raises(ValidationFailed) as info:
        _import(world, raw)
    assert info.value.message == "the header has 1,000,000 columns; at most 500 are allowed"
    assert len(json.dumps(info.value.to_dict())) < 4096


def test_many_unknown_columns_error_lists_the_first_and_a_count(world: World) -> None:
    configured(world)
    raw = ("氏名," + ",".join(f"x{i}" for i in range(400)) + "\r\n").encode()
    with pytest.raises(ValidationFailed) as info:
        _import(world, raw)
    body = info.value.to_dict()
    assert len(body["problems"]) == 20
    assert body["problems_total"] == 400
    assert len(json.dumps(body, ensure_ascii=False).encode()) < 8192
    assert info.value.diagnostics().endswith("... and 380 more")


def test_huge_header_error_is_bounded_in_the_cli(run: Cli, tmp_path: Path) -> None:
    run.run("init")
    run.run("tenant", "create", "acme", "--name", "ACME", "--plan", "standard")
    run.run("user", "add", "sato", "--tenant", "acme", "--role", "admin")
    for columns in (1_000_000, 400):
        path = tmp_path / "wide.csv"
        path.write_bytes(("氏名," + ",".join(f"x{i}" for i in range(columns))).encode())
        for as_json in (False, True):
            result = run.run(
                "import",
                "customers",
                str(path),
                "-t",
                "acme",
                "--as",
                "sato",
                code=1,
                as_json=as_json,
            )
            assert len(result.stderr.encode()) < 8192, len(result.stderr)
            if as_json and columns == 400:
                assert json.loads(result.stderr)["error"]["problems_total"] == 400


# --------------------------------------------------------------------------- encodings


def test_file_mixing_utf8_and_cp932_is_refused_naming_the_lines(world: World) -> None:
    """Threat: a file with UTF-8 and CP932 lines was imported as mojibake without a word."""
    configured(world)
    raw = (
        "氏名,電話番号\r\n".encode()
        + "田中,03-1234-5678\r\n".encode()
        + "鈴木,03-1234-0000\r\n".encode("cp932")
    )
    with pytest.raises(ValidationFailed) as info:
        _import(world, raw)
    assert info.value.message == (
        "the file mixes encodings: line 1 is UTF-8, line 3 is CP932 (Shift_JIS)"
    )
    assert _contacts(world) == 0


def test_all_cp932_file_is_still_read(world: World) -> None:
    """Control: a whole CP932 file (Excel's 'CSV (comma separated)') is imported."""
    configured(world)
    raw = "氏名,電話番号\r\n田中,03-1234-5678\r\n鈴木,03-1234-0000\r\n".encode("cp932")
    assert _import(world, raw).created == 2
