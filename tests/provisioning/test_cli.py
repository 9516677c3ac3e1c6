"""The provisioning CLI contract: groups, login, -t choice, billing, rollout, templates."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from provisioner.cli import tenant_choice
from tests.provisioning.conftest import Cli


def _group(run: Cli) -> None:
    run.run("group", "create", "crmate", "--name", "コールセンター")
    for n in (1, 2, 3):
        data = run.json(
            "tenant",
            "create",
            f"center-{n}",
            "--name",
            f"第{n}センター",
            "--plan",
            "standard",
            "--group",
            "crmate",
        )
        assert data["group"] == "crmate"
    run.run(
        "user",
        "add",
        "kanri",
        "--tenant",
        "center-1",
        "--role",
        "admin",
        "--password-stdin",
        input="pass-word-1\n",
    )
    run.run("user", "add", "kanri", "--tenant", "center-2", "--role", "admin")
    run.run("user", "add", "kanri", "--tenant", "center-3", "--role", "general")
    for login, slug in (
        ("op-a", "center-1"),
        ("op-a", "center-3"),
        ("op-b", "center-2"),
        ("op-c", "center-3"),
    ):
        run.run("user", "add", login, "--tenant", slug, "--role", "general")
    run.run("tenant", "addon", "center-3", "--disk-gb", "1")


def test_group_login_billing_and_rules(run: Cli) -> None:
    _group(run)
    login = run.json("login", "kanri", "--password-stdin", input="pass-word-1\n")
    assert [(t["number"], t["slug"], t["role"]) for t in login["tenants"]] == [
        (1, "center-1", "admin"),
        (2, "center-2", "admin"),
        (3, "center-3", "general"),
    ]
    assert login["selected"] == "center-1"
    assert login["token"]
    assert (
        run.json("login", "kanri", "-t", "2", "--password-stdin", input="pass-word-1\n")["selected"]
        == "center-2"
    )
    run.run("login", "kanri", "--password-stdin", input="wrong-password\n", code=1)
    month = datetime.now(UTC).strftime("%Y-%m")  # the CLI runs on the real clock
    bill = run.json("billing", "show", "-g", "crmate", "--month", month)
    assert bill["total"] == 137_000
    assert [line["amount"] for line in bill["lines"]] == [22_000, 50_000, 50_000, 15_000]
    assert "137,000 JPY" in run.run("billing", "show", "-g", "crmate", "--month", month).stdout
    removed = run.run("group", "remove-tenant", "crmate", "center-2", code=1)
    assert "can not be removed" in removed.stderr
    assert "tenant cancel center-2" in removed.stderr
    light = run.run(
        "tenant", "create", "tiny", "--name", "小", "--plan", "light", "--group", "crmate", code=1
    )
    assert "cannot use tenant groups" in light.stderr
    assert "tiny" not in run.run("tenant", "list").stdout  # nothing half-created
    # switching tenant in the same session, and the shared password changed in center-3
    switched = run.json("switch", "3", "--token-stdin", input=login["token"] + "\n")
    assert (switched["selected"], switched["role"]) == ("center-3", "general")
    run.run(
        "password",
        "kanri",
        "-t",
        "center-3",
        "--password-stdin",
        input="pass-word-1\nnew-pass-2026\n",
    )
    run.run("switch", "1", "--token-stdin", input=login["token"] + "\n", code=1)  # ended
    run.run("login", "kanri", "--password-stdin", input="pass-word-1\n", code=1)
    again = run.json(
        "login", "kanri", "-t", "center-1", "--password-stdin", input="new-pass-2026\n"
    )
    assert again["selected"] == "center-1"
    run.run("tenant", "cancel", "center-2")
    after = run.json("login", "kanri", "--password-stdin", input="new-pass-2026\n")
    assert [t["slug"] for t in after["tenants"]] == ["center-1", "center-3"]


def test_dash_t_takes_a_number_or_a_slug_and_asks_when_omitted(
    run: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    _group(run)
    first = run.json("calls", "record", "--as", "kanri", "-t", "2", "03-1234-5678")
    assert first["tenant"] == "center-2"
    assert (
        run.json("calls", "record", "--as", "kanri", "-t", "center-3", "03-1234-5678")["tenant"]
        == "center-3"
    )
    # no terminal: the numbered list and exit 2, nothing recorded
    monkeypatch.setattr(tenant_choice, "is_interactive", lambda: False)
    asked = run.run("calls", "record", "--as", "kanri", "03-1234-5678", code=2)
    assert "choose one with -t NUMBER or -t SLUG" in asked.stderr
    assert "1  center-1" in asked.stderr
    assert "3  center-3" in asked.stderr
    # a terminal: the list and a prompt; the first is the default
    monkeypatch.setattr(tenant_choice, "is_interactive", lambda: True)
    chosen = run.json("calls", "record", "--as", "kanri", "03-1234-5678", input="3\n")
    assert chosen["tenant"] == "center-3"
    default = run.json("calls", "record", "--as", "kanri", "03-1234-5678", input="\n")
    assert default["tenant"] == "center-1"
    # a user with one tenant is never asked
    monkeypatch.setattr(tenant_choice, "is_interactive", lambda: False)
    assert run.json("calls", "record", "--as", "op-b", "03-1234-5678")["tenant"] == "center-2"
    run.run("calls", "record", "--as", "kanri", "-t", "9", "03-1234-5678", code=1)


def test_rollout_cli_json_table_and_sandbox(run: Cli) -> None:
    run.run("tenant", "create", "hq", "--name", "本部")
    run.run("user", "add", "hq-admin", "--tenant", "hq", "--role", "admin")
    bundle = str(run.tmp / "hq.bundle")
    run.run("bundle", "export", "-t", "hq", "--as", "hq-admin", "-o", bundle)
    pem = run.tmp / "hq.pem"
    pem.write_text(run.run("tenant", "public-key", "hq").stdout)
    for slug in ("shop-1", "shop-2"):
        run.run("tenant", "create", slug, "--name", slug)
        run.run("user", "add", f"{slug}-admin", "--tenant", slug, "--role", "admin")
        run.run(
            "publisher",
            "trust",
            "-t",
            slug,
            "--as",
            f"{slug}-admin",
            str(pem),
            "--label",
            "本部",
            "--policy",
            "auto",
        )
    run.run("tenant", "create-sandbox", "shop-1-sandbox", "--from", "shop-1")
    result = run.run(
        "rollout",
        "-t",
        "hq",
        "--as",
        "hq-admin",
        "--bundle",
        bundle,
        "--targets",
        "shop-1,shop-1-sandbox,shop-2",
        as_json=True,
        code=1,
    )
    summary = json.loads(result.stdout)
    assert [(t["tenant"], t["status"]) for t in summary["targets"]] == [
        ("shop-1", "applied"),
        ("shop-1-sandbox", "rejected"),
        ("shop-2", "applied"),
    ]
    assert "1 of 3 targets were not delivered" in result.stderr
    shown = run.run(
        "rollout", "-t", "hq", "--as", "hq-admin", "--status", str(summary["run"])
    ).stdout
    assert "sandbox" in shown
    assert "finished" in shown
    # a template: a new tenant from the bundle, in one step
    made = run.json("tenant", "create", "shop-3", "--name", "三号店", "--from-bundle", bundle)
    assert made["config_version"] == 1
    usage = run.json("tenant", "usage", "shop-3")
    assert 0 < usage["used_bytes"] < usage["quota_bytes"] == 1024**3


def test_template_signed_in_another_deployment_needs_its_public_key(run: Cli) -> None:
    partner = Cli(f"sqlite:///{run.tmp / 'partner-deployment.db'}", run.tmp)
    partner.run("init")
    partner.run("tenant", "create", "partner", "--name", "パートナー")
    partner.run("user", "add", "p-admin", "--tenant", "partner", "--role", "admin")
    bundle = str(run.tmp / "template.json")
    partner.run("bundle", "export", "-t", "partner", "--as", "p-admin", "-o", bundle)
    pem = run.tmp / "partner.pem"
    pem.write_text(partner.run("tenant", "public-key", "partner").stdout)
    refused = run.run(
        "tenant", "create", "client", "--name", "顧客", "--from-bundle", bundle, code=1
    )
    assert "key" in refused.stderr
    assert all(t["slug"] != "client" for t in run.json("tenant", "list"))
    made = run.json(
        "tenant",
        "create",
        "client",
        "--name",
        "顧客",
        "--from-bundle",
        bundle,
        "--public-key",
        str(pem),
    )
    assert made["config_version"] == 1
    run.run(
        "tenant",
        "create",
        "other",
        "--name",
        "x",
        "--from-bundle",
        bundle,
        "--public-key",
        str(run.tmp / "missing.pem"),
        code=2,
    )
