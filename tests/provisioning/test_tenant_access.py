"""A cancelled tenant is unreachable by every command, its data kept; ``-t`` everywhere."""

from __future__ import annotations

import json

import pytest

from provisioner.cli import tenant_choice
from tests.provisioning.conftest import Cli

PASSWORD = "pass-word-1\n"


def _label_file(run: Cli, label: str) -> str:
    data = run.json("config", "show", "-t", "t1")
    data["checkboxes"][0]["label"] = label
    path = run.tmp / f"{label}.json"
    path.write_text(json.dumps({"checkboxes": data["checkboxes"]}), encoding="utf-8")
    return str(path)


def test_cancelled_tenant_is_refused_by_every_command_and_its_data_kept(run: Cli) -> None:
    for slug in ("t1", "t2", "hq"):
        run.run("tenant", "create", slug, "--name", f"{slug} 株式会社")
    run.run("group", "create", "g", "--name", "G")
    run.run(
        "user",
        "add",
        "boss",
        "--tenant",
        "t1",
        "--role",
        "admin",
        "--password-stdin",
        input=PASSWORD,
    )
    run.run("user", "add", "boss", "--tenant", "t2", "--role", "admin")
    run.run("user", "add", "hq-admin", "--tenant", "hq", "--role", "admin")
    # t1 holds data: a second configuration version, a pending transfer, a call
    run.run("config", "set", "-t", "t1", "--as", "boss", _label_file(run, "本番"))
    to_t1 = run.json("key", "generate", "-t", "t1", "--as", "boss")["key"]
    transfer = run.json("send", "-t", "t2", "--as", "boss", "--key", to_t1)["id"]
    unused_t1_key = run.json("key", "generate", "-t", "t1", "--as", "boss")["key"]
    to_t2 = run.json("key", "generate", "-t", "t2", "--as", "boss")["key"]
    call = run.json("calls", "record", "-t", "t1", "--as", "boss", "03-1234-5678")["call"]
    bundle = str(run.tmp / "t2.bundle")
    run.run("bundle", "export", "-t", "t2", "--as", "boss", "-o", bundle, "--key", unused_t1_key)
    hq_bundle = str(run.tmp / "hq.bundle")
    run.run("bundle", "export", "-t", "hq", "--as", "hq-admin", "-o", hq_bundle)
    pem = run.tmp / "hq.pem"
    pem.write_text(run.run("tenant", "public-key", "hq").stdout)
    change = _label_file(run, "変更")
    before = run.json("tenant", "show", "t1")
    assert before["status"] == "active"

    cancelled = run.json("tenant", "cancel", "t1")
    assert cancelled["status"] == "cancelled"

    t1 = ("-t", "t1", "--as", "boss")
    refused = [
        ("config", "show", "-t", "t1"),
        ("config", "show", *t1),
        ("config", "set", *t1, change),
        ("config", "history", *t1),
        ("config", "diff", *t1, "1", "2"),
        ("config", "rollback", *t1, "--to", "1"),
        ("key", "generate", *t1),
        ("key", "list", *t1),
        ("key", "revoke", *t1, "1"),
        ("bundle", "export", *t1, "-o", str(run.tmp / "x.bundle")),
        ("send", *t1, "--key", to_t2),
        ("send", "-t", "t2", "--as", "boss", "--key", unused_t1_key),  # to the cancelled one
        ("receive", *t1, bundle),
        ("inbox", "list", *t1),
        ("inbox", "show", str(transfer), "--as", "boss"),
        ("inbox", "approve", str(transfer), "--as", "boss"),
        ("inbox", "reject", str(transfer), "--as", "boss"),
        ("inbox", "rollback", str(transfer), "--as", "boss"),
        ("publisher", "trust", *t1, str(pem), "--label", "HQ"),
        ("publisher", "list", *t1),
        ("audit", *t1),
        ("tenant", "public-key", "t1"),
        ("tenant", "update", "t1", "--no-integrations"),
        ("tenant", "addon", "t1", "--disk-gb", "1"),
        ("tenant", "usage", "t1"),
        ("tenant", "create-sandbox", "t1-sandbox", "--from", "t1"),
        ("tenant", "cancel", "t1"),
        ("user", "add", "newbie", "--tenant", "t1", "--role", "general"),
        ("group", "add-tenant", "g", "t1"),
        ("calls", "record", *t1, "03-1234-5678"),
        ("calls", "note", *t1, str(call), "メモ"),
        ("calls", "number", *t1, "03-9999-0000", "--kind", "nuisance"),
        ("calls", "hours", *t1, "--day", "mon=09:00-18:00"),
        ("calls", "holiday", *t1, "2026-12-31"),
        ("calls", "statement", *t1, "--month", "2026-11"),
        (
            "calls",
            "contract",
            "t1",
            "--start",
            "2026-11-01",
            "--maintenance",
            "1000",
            "--seat-fee",
            "100",
            "--seats",
            "1",
        ),
        ("rollout", *t1, "--bundle", hq_bundle, "--targets", "t2"),
        ("search", *t1),
        ("lookup", *t1, "03-1234-5678"),
        ("record", "create", "contact", *t1, "--data", '{"name": "田中 太郎"}'),
        ("import", "customers", *t1, bundle),
        ("export", "customers", *t1, "-o", str(run.tmp / "out.csv")),
        ("seed-data", "-t", "t1", "--contacts", "1"),
        ("access-log", *t1),
        ("login", "boss", "-t", "t1", "--password-stdin"),
    ]
    for argv in refused:
        result = run.run(*argv, code=1, input=PASSWORD if argv[0] == "login" else None)
        reason = result.stderr.lower()
        assert any(
            word in reason
            for word in (
                "cancelled",
                "no tenant",
                "visible to",
                "no longer exists",
                "not in your list",
            )
        ), (argv, result.stderr)

    # an HQ rollout skips it like a tenant that does not exist
    run.run(
        "publisher",
        "trust",
        "-t",
        "t2",
        "--as",
        "boss",
        str(pem),
        "--label",
        "HQ",
        "--policy",
        "auto",
    )
    out = json.loads(
        run.run(
            "rollout",
            "-t",
            "hq",
            "--as",
            "hq-admin",
            "--bundle",
            hq_bundle,
            "--targets",
            "t1,t2",
            code=1,
            as_json=True,
        ).stdout
    )
    assert [(t["tenant"], t["status"]) for t in out["targets"]] == [
        ("t1", "rejected"),
        ("t2", "applied"),
    ]
    # the user's list no longer has it: -t 1 is now t2, and login lists t2 only
    login = run.json("login", "boss", "--password-stdin", input=PASSWORD)
    assert [t["slug"] for t in login["tenants"]] == ["t2"]
    assert (
        run.json("key", "list", "-t", "1", "--as", "boss")
        == run.json("key", "list", "-t", "t2", "--as", "boss")
        != []
    )
    # nothing of t1 was lost or changed
    after = run.json("tenant", "show", "t1")
    assert after["status"] == "cancelled"
    assert after["cancelled_at"]
    assert {k: after[k] for k in ("config_version", "used_bytes", "users")} == {
        k: before[k] for k in ("config_version", "used_bytes", "users")
    }
    assert after["config_version"] == 2
    assert "t1" in run.run("tenant", "list").stdout  # the operator still sees it, cancelled


def test_dash_t_number_slug_and_choice_in_core_commands(
    run: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    for slug in ("tokyo", "osaka"):
        run.run("tenant", "create", slug, "--name", slug)
        run.run("user", "add", "sato", "--tenant", slug, "--role", "admin")
    run.run("user", "add", "solo", "--tenant", "osaka", "--role", "admin")
    # a number is the position in the user's list (the order login shows)
    key = run.json("key", "generate", "-t", "2", "--as", "sato")
    assert run.json("key", "list", "-t", "osaka", "--as", "sato")[0]["id"] == key["id"]
    assert run.json("key", "list", "-t", "1", "--as", "sato") == []
    assert run.json("config", "history", "-t", "2", "--as", "sato")[0]["version"] == 1
    run.json("audit", "-t", "1", "--as", "sato")
    missing = run.run("inbox", "list", "-t", "3", "--as", "sato", code=1)
    assert "no tenant '3' in your list" in missing.stderr
    assert "1=tokyo, 2=osaka" in missing.stderr
    # a number needs the user whose list it is
    assert "give --as LOGIN" in run.run("config", "show", "-t", "1", code=2).stderr
    # omitted, no terminal: the numbered list, exit 2
    monkeypatch.setattr(tenant_choice, "is_interactive", lambda: False)
    for argv in (
        ("key", "generate", "--as", "sato"),
        ("inbox", "list", "--as", "sato"),
        ("config", "history", "--as", "sato"),
        ("audit", "--as", "sato"),
    ):
        asked = run.run(*argv, code=2)
        assert "sato has 2 tenants; choose one with -t NUMBER or -t SLUG" in asked.stderr
        assert "1  tokyo" in asked.stderr
        assert "2  osaka" in asked.stderr
    # omitted, a terminal: the list and a prompt (the first is the default)
    monkeypatch.setattr(tenant_choice, "is_interactive", lambda: True)
    chosen = run.json("key", "generate", "--as", "sato", input="2\n")
    assert len(run.json("key", "list", "-t", "osaka", "--as", "sato")) == 2
    assert chosen["key"]
    run.json("key", "generate", "--as", "sato", input="\n")
    assert len(run.json("key", "list", "-t", "tokyo", "--as", "sato")) == 1
    # a user with one tenant is never asked
    monkeypatch.setattr(tenant_choice, "is_interactive", lambda: False)
    assert run.json("config", "history", "--as", "solo")[0]["version"] == 1
