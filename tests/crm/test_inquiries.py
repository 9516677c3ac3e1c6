"""Inquiry (contact-history) CSV import (issue 12, REQUIREMENTS B): ``-t`` and the tenant
list like the customer import; each row created as one activity by ``records.create``."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.errors import PermissionDenied, ValidationFailed
from provisioner.services.crm import inquiries, records
from tests.crm.helpers import configured, make
from tests.crm.test_cli import Cli
from tests.support import World

GOOD = (
    "電話番号,対応日,対応種別,内容\r\n"
    "03-1111-2222,2026-11-01,phone,見積の依頼\r\n"
    "\r\n"  # a blank line: skipped, and the line numbers below still count it
    "０９０１１１１２２２２,2026-11-02,email,納期の確認\r\n"
)


def _import(
    world: World, raw: bytes, login: str | None = None, **kw: bool
) -> inquiries.InquiryReport:
    actor = world.actor("acme", login)
    with world.app.transaction() as ctx:
        return inquiries.import_inquiries(ctx, actor, raw, **kw)


def _history(world: World, contact: int) -> list[tuple[str, str, str]]:
    admin = world.actor("acme")
    with world.app.transaction() as ctx:
        return [
            (a["date"], a["kind"], a["content"])
            for a in records.list_children(ctx, admin, "activity", contact)
        ]


@pytest.mark.parametrize("encoding", ["cp932", "utf-8-sig", "utf-8"])
def test_inquiries_become_the_customers_activities(world: World, encoding: str) -> None:
    configured(world)
    admin = world.actor("acme")
    tanaka = make(world, admin, "contact", {"name": "田中", "phone": "03-1111-2222"})["id"]
    sato = make(world, admin, "contact", {"name": "佐藤", "mobile": "090-1111-2222"})["id"]
    report = _import(world, GOOD.encode(encoding))
    assert (report.rows, report.created, report.encoding) == (2, 2, encoding)
    assert _history(world, tanaka) == [("2026-11-01", "phone", "見積の依頼")]
    assert _history(world, sato) == [("2026-11-02", "email", "納期の確認")]
    with world.app.transaction() as ctx:
        change = records.history(
            ctx, admin, "activity", records.list_children(ctx, admin, "activity", tanaka)[0]["id"]
        )[0]
        log = records.access_log(ctx, admin)
    assert change["purpose"] == "inquiry import (upload)"
    assert (log[0]["kind"], log[0]["subject"]) == ("import", "inquiries")
    by_id = f"contact_id,date,content\n{tanaka},2026-11-03,再見積\n".encode()
    assert _import(world, by_id).created == 1


def test_every_bad_row_is_reported_by_line_and_nothing_is_kept(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    tanaka = make(world, admin, "contact", {"name": "田中", "phone": "03-1111-2222"})["id"]
    make(world, admin, "contact", {"name": "佐藤", "mobile": "090-1111-2222"})
    bad = GOOD + (
        "06-0000-0000,2026-11-03,phone,誰\r\n"  # line 5: no such customer
        "03-1111-2222,昨日,phone,日付\r\n"  # line 6: not a date
        "03-1111-2222,2026-11-04,fax,種別\r\n"
    )  # line 7: not a kind
    for dry_run in (True, False):
        with pytest.raises(ValidationFailed) as exc:
            _import(world, bad.encode("cp932"), dry_run=dry_run)
        problems = exc.value.problems
        assert "3 of 5 rows are not valid" in exc.value.message
        assert problems[0] == "row 5, 電話番号: no customer with 06-0000-0000"
        assert any(p.startswith("row 6, 対応日: expected a date") for p in problems), problems
        assert any(p.startswith("row 7, 対応種別: 'fax'") for p in problems), problems
    assert _history(world, tanaka) == []
    report = _import(world, GOOD.encode(), dry_run=True)
    assert (report.rows, report.created) == (2, 0)
    assert _history(world, tanaka) == []
    with pytest.raises(ValidationFailed, match="header"):
        _import(world, "内容\nx\n".encode())


def test_inquiry_import_is_for_importers(world: World) -> None:
    configured(world)
    with pytest.raises(PermissionDenied):
        _import(world, GOOD.encode(), login="acme-gen")


def test_cli_import_inquiries_takes_dash_t_or_lists_the_tenants(run: Cli, tmp_path: Path) -> None:
    run.run("tenant", "create", "acme", "--name", "ACME")
    run.run("tenant", "create", "beta", "--name", "BETA")
    run.run("user", "add", "sato", "--tenant", "acme", "--role", "admin")
    run.run("user", "add", "sato", "--tenant", "beta", "--role", "admin")
    run.run(
        "record",
        "create",
        "contact",
        "-t",
        "beta",
        "--as",
        "sato",
        "--data",
        '{"name": "田中", "phone": "03-1111-2222"}',
    )
    path = tmp_path / "calls.csv"
    path.write_bytes(GOOD.replace("０９０１１１１２２２２", "03-1111-2222").encode("cp932"))
    listing = run.run("import", "inquiries", str(path), "--as", "sato", code=2)
    assert "1" in listing.stderr
    assert "beta" in listing.stderr
    done = run.json("import", "inquiries", str(path), "-t", "2", "--as", "sato")
    assert (done["tenant"], done["created"]) == ("beta", 2)
    run.run("import", "inquiries", str(path), "-t", "acme", "--as", "sato", code=1)
