"""The CRM command line: seed-data, search, lookup, import/export, records, -t by number."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from provisioner.cli.main import cli


class Cli:
    def __init__(self, db_url: str) -> None:
        self.db_url, self.runner = db_url, CliRunner()

    def run(self, *args: str, code: int = 0, as_json: bool = False) -> Result:
        argv = ["--db", self.db_url, *(["--json"] if as_json else []), *args]
        result = self.runner.invoke(cli, argv, catch_exceptions=True)
        shown = f"{argv}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        assert result.exit_code == code, shown
        assert "Traceback" not in result.stdout + result.stderr, shown
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"uncaught {result.exception!r}\n{shown}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, as_json=True).stdout)


@pytest.fixture
def run(db_url: str, env: None, app_engines: None) -> Cli:
    return Cli(db_url)


def test_crm_cli_contract(run: Cli, tmp_path: Path) -> None:
    run.run("init")
    run.run("tenant", "create", "acme", "--name", "ACME", "--plan", "standard")
    run.run("tenant", "create", "beta", "--name", "BETA", "--plan", "standard")
    run.run("user", "add", "sato", "--tenant", "acme", "--role", "admin")
    run.run("user", "add", "sato", "--tenant", "beta", "--role", "general_no_export")
    assert run.json("seed-data", "-t", "acme", "--contacts", "60", "--seed", "3") == {
        "tenant": "acme",
        "contacts": 60,
    }
    found = run.json("search", "-t", "acme", "--as", "sato", "--q", "田", "--limit", "5")
    assert found["items"]
    assert found["total"] >= len(found["items"])
    assert {"id", "name", "phone"} <= set(found["items"][0])
    # -t by number: sato's 1st tenant is acme
    assert run.json("search", "-t", "1", "--as", "sato", "--q", "田")["total"] == found["total"]
    # several tenants and no -t, no terminal: the numbered list, exit 2
    listing = run.run("search", "--as", "sato", code=2)
    assert "acme" in listing.stderr
    assert "beta" in listing.stderr
    created = run.json(
        "record",
        "create",
        "contact",
        "-t",
        "acme",
        "--as",
        "sato",
        "--data",
        json.dumps({"name": "架電 太郎", "phone": "03-9999-0000"}),
    )
    cid = created["record"]["id"]
    run.run(
        "record",
        "create",
        "activity",
        "-t",
        "acme",
        "--as",
        "sato",
        "--data",
        json.dumps(
            {"contact_id": cid, "date": "2026-11-01", "content": "問い合わせ", "kind": "phone"}
        ),
    )
    card = run.json("lookup", "-t", "acme", "--as", "sato", "+81 3 9999 0000")
    assert card["contact"]["id"] == cid
    assert [a["content"] for a in card["activities"]] == ["問い合わせ"]
    assert [a["kind"] for a in card["activities"]] == ["電話"]  # the label; --codes: the code
    assert [
        a["kind"]
        for a in run.json("lookup", "-t", "acme", "--as", "sato", "--codes", "0399990000")[
            "activities"
        ]
    ] == ["phone"]
    assert card["purchases"] == []
    assert "架電 太郎" in run.run("lookup", "-t", "acme", "--as", "sato", "0399990000").stdout
    run.run("lookup", "-t", "acme", "--as", "sato", "0300000001", code=1)
    run.run(
        "record",
        "update",
        "contact",
        str(cid),
        "-t",
        "acme",
        "--as",
        "sato",
        "--data",
        '{"title": "課長"}',
        "--purpose",
        "昇格",
    )
    history = run.json("record", "history", "contact", str(cid), "-t", "acme", "--as", "sato")
    assert history[-1]["purpose"] == "昇格"
    csv_file = tmp_path / "in.csv"
    csv_file.write_bytes("氏名,電話番号\r\n取込 一郎,06-1234-5678\r\n".encode("cp932"))
    dry = run.json("import", "customers", str(csv_file), "-t", "acme", "--as", "sato", "--dry-run")
    assert (dry["rows"], dry["created"], dry["encoding"]) == (1, 0, "cp932")
    done = run.json("import", "customers", str(csv_file), "-t", "acme", "--as", "sato")
    assert done["created"] == 1
    bad = tmp_path / "bad.csv"
    bad.write_bytes("氏名,電話番号\r\n,06\r\n".encode())
    error = run.run("import", "customers", str(bad), "-t", "acme", "--as", "sato", code=1)
    assert "row 2, 氏名: required" in error.stderr
    out = tmp_path / "out.csv"
    run.run(
        "export",
        "customers",
        "-t",
        "acme",
        "--as",
        "sato",
        "-o",
        str(out),
        "--encoding",
        "cp932",
        "--columns",
        "name,phone",
        "--q",
        "取込",
    )
    assert out.read_bytes().decode("cp932").splitlines() == [
        "氏名,電話番号",
        "取込 一郎,06-1234-5678",
    ]
    refused = run.run("export", "customers", "-t", "beta", "--as", "sato", "-o", str(out), code=1)
    assert "export" in refused.stderr
    run.run("record", "delete", "contact", str(cid), "-t", "acme", "--as", "sato")
    run.run("record", "show", "contact", str(cid), "-t", "acme", "--as", "sato", code=1)
    log = run.json("access-log", "-t", "acme", "--as", "sato")
    assert [e["kind"] for e in log][:2] == ["export", "import"]


def test_crm_cli_print_duplicates_and_tenant_prompt(
    run: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run.run("init")
    run.run("tenant", "create", "acme", "--name", "ACME", "--plan", "standard")
    run.run("tenant", "create", "beta", "--name", "BETA", "--plan", "standard")
    run.run("user", "add", "sato", "--tenant", "acme", "--role", "admin")
    run.run("user", "add", "sato", "--tenant", "beta", "--role", "general_no_print")
    first = run.json(
        "record",
        "create",
        "contact",
        "-t",
        "acme",
        "--as",
        "sato",
        "--data",
        json.dumps({"name": "田中 太郎", "postal_code": "100-0001", "address": "東京都千代田区"}),
    )
    again = run.run(
        "record",
        "create",
        "contact",
        "-t",
        "acme",
        "--as",
        "sato",
        "--data",
        json.dumps({"name": "田中　太郎"}),
    )
    assert f"possible duplicates (same name): {first['record']['id']} 田中 太郎" in again.stdout
    as_json = run.json(
        "record",
        "create",
        "contact",
        "-t",
        "acme",
        "--as",
        "sato",
        "--data",
        json.dumps({"name": "田中太郎"}),
    )
    assert len(as_json["duplicates"]) == 2
    page = tmp_path / "labels.html"
    run.run(
        "print",
        "customers",
        "-t",
        "acme",
        "--as",
        "sato",
        "-o",
        str(page),
        "--layout",
        "labels",
        "--q",
        "田中",
    )
    assert page.read_text(encoding="utf-8").count("様</div>") == 3
    refused = run.run("print", "customers", "-t", "beta", "--as", "sato", "-o", str(page), code=1)
    assert "print" in refused.stderr
    assert "Traceback" not in refused.stderr
    log = run.json("access-log", "-t", "acme", "--as", "sato")
    assert [(e["kind"], e["details"]["layout"]) for e in log if e["kind"] == "print"] == [
        ("print", "labels")
    ]
    # no -t on a terminal: the numbered list and a prompt; 2 picks beta
    monkeypatch.setattr("provisioner.cli.tenant_choice.is_interactive", lambda: True)
    argv = ["--db", run.db_url, "--json", "search", "--as", "sato"]
    picked = run.runner.invoke(cli, argv, input="2\n")
    assert picked.exit_code == 0, picked.output
    assert "1  acme" in picked.stderr
    assert "2  beta" in picked.stderr
    assert json.loads(picked.stdout)["total"] == 0  # beta has no customers
    default = run.runner.invoke(cli, argv, input="\n")  # the first is the default
    assert json.loads(default.stdout)["total"] == 3
    run.run("search", "-t", "3", "--as", "sato", code=1)  # no 3rd tenant
