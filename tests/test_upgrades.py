"""Template lineage and three-way upgrades (issue 13), through the services and the CLI.

A partner sends its template; the client takes it, makes some of it its own;
the partner improves the template and sends it again. The second copy is an
upgrade: the client's own changes stay, the partner's improvements arrive,
conflicts are shown and must be resolved. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from provisioner.bundles.payload import read_bundle
from provisioner.bundles.signing import key_id
from provisioner.canonical import canonical_bytes, digest
from provisioner.cli.main import cli
from provisioner.db.models import AuditEvent, LineageEntry
from provisioner.errors import PlanConflict, UnresolvedConflicts, ValidationFailed
from provisioner.services import actors, configs, lineage, signing, transfers
from provisioner.services.context import Provisioner
from provisioner.services.provisioning import rollout
from provisioner.services.provisioning.rollout import Target
from tests.support import World, checkbox_rule, labelled


def _memo(data: dict[str, Any], index: int, label: str) -> dict[str, Any]:
    memos = [dict(m) for m in data["memo_fields"]]
    memos[index - 1]["label"] = label
    return {"memo_fields": memos}


def _taken_once(world: World) -> int:
    """partner's template v1 applied to client; returns the first transfer."""
    world.tenant("partner")
    world.tenant("client")
    world.set_config("partner", labelled(world.config("partner"), 1, "年賀状"))
    first = world.send("partner", world.key("client"))
    assert world.approve(first, "client-admin").outcome == "applied"
    return first


def _actor(world: World, slug: str = "client") -> actors.Actor:
    return world.actor(slug)


def _preview(world: World, transfer_id: int, **kw: Any) -> dict[str, Any]:
    with world.app.transaction() as ctx:
        return transfers.preview(ctx, transfers.get(ctx, "client-admin", transfer_id)[0], **kw)


def test_the_client_keeps_its_own_labels_and_takes_the_partners_improvements(world: World) -> None:
    """The story of the issue: a merge reverted checkbox 13 and memo 3; an upgrade keeps them."""
    _taken_once(world)
    world.set_config("client", labelled(world.config("client"), 13, "ギフト会員"))
    world.set_config("client", _memo(world.config("client"), 3, "初回購入日"))
    world.set_config("partner", labelled(world.config("partner"), 2, "暑中見舞い"))
    world.set_config("partner", _memo(world.config("partner"), 6, "解約理由"))
    second = world.send("partner", world.key("client"))

    plan = world.transfer(second).plan  # planned three-way at receipt already
    assert plan["mode"] == "upgrade"
    assert plan["upgrade"]["source"] == "tenant:partner"
    assert plan["upgrade"]["taken"] == ["memo_fields.6.label", "checkboxes.2.label"]
    assert plan["upgrade"]["kept"] == ["memo_fields.3.label", "checkboxes.13.label"]
    assert plan["upgrade"]["conflicts"] == []

    decision = world.approve(second, "client-admin")  # upgrade: the default with a base
    assert decision.outcome == "applied"
    doc = world.config("client")
    assert doc["checkboxes"][12]["label"] == "ギフト会員"
    assert doc["memo_fields"][2]["label"] == "初回購入日"
    assert doc["checkboxes"][1]["label"] == "暑中見舞い"
    assert doc["memo_fields"][5]["label"] == "解約理由"
    assert doc["checkboxes"][0]["label"] == "年賀状"

    # the older modes stay available: replace takes the partner's sections as they are
    world.set_config("partner", labelled(world.config("partner"), 3, "お中元"))
    third = world.send("partner", world.key("client"))
    world.approve(third, "client-admin", mode="replace")
    assert world.config("client")["checkboxes"][12]["label"] == "チェック13"


def test_conflicts_refuse_the_approval_until_resolved(world: World) -> None:
    _taken_once(world)
    world.set_config("client", labelled(world.config("client"), 1, "年賀状(個人)"))
    world.set_config("partner", labelled(world.config("partner"), 1, "年賀状(法人)"))
    second = world.send("partner", world.key("client"))
    conflicts = world.transfer(second).plan["upgrade"]["conflicts"]
    assert conflicts == [
        {
            "address": "checkboxes.1.label",
            "kind": "changed",
            "base": "年賀状",
            "ours": "年賀状(個人)",
            "theirs": "年賀状(法人)",
        }
    ]
    with pytest.raises(UnresolvedConflicts) as refused:
        world.approve(second, "client-admin")
    assert refused.value.problems == [
        "checkboxes.1.label: base 年賀状, ours 年賀状(個人), theirs 年賀状(法人)"
    ]
    assert world.transfer(second).status == "pending"
    with pytest.raises(ValidationFailed, match=r"no conflict at checkboxes\.2"):
        world.approve(second, "client-admin", keep=["checkboxes.2"])
    with pytest.raises(ValidationFailed, match="resolve the conflicts of an upgrade"):
        world.approve(second, "client-admin", mode="merge", prefer="ours")

    decision = world.approve(second, "client-admin", take=["checkboxes.1"])
    assert decision.outcome == "applied"
    assert world.config("client")["checkboxes"][0]["label"] == "年賀状(法人)"
    with world.app.transaction() as ctx, ctx.operator("read"):  # the test inspects
        event = ctx.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "transfer:approved")
            .order_by(AuditEvent.id.desc())
        ).first()
        assert event is not None
        assert event.details["mode"] == "upgrade"
        assert event.details["resolved"] == {"checkboxes.1.label": "theirs"}


def test_prefer_ours_resolves_every_conflict_as_ours(world: World) -> None:
    _taken_once(world)
    world.set_config("client", labelled(world.config("client"), 1, "A"))
    world.set_config("partner", labelled(world.config("partner"), 1, "B"))
    second = world.send("partner", world.key("client"))
    assert world.approve(second, "client-admin", prefer="ours").outcome == "unchanged"
    assert world.config("client")["checkboxes"][0]["label"] == "A"


def test_lineage_records_the_source_document_as_it_arrived(world: World) -> None:
    first = _taken_once(world)
    digest = world.transfer(first).payload_digest
    client = world.tenant_row("client")
    with world.app.transaction() as ctx, ctx.operator("read"):  # the test inspects
        entry = ctx.session.scalar(select(LineageEntry))
        assert entry is not None
        assert (entry.source, entry.transfer_id, entry.source_version) == (
            "tenant:partner",
            first,
            2,
        )
        assert entry.bundle_digest == digest
        assert entry.applied_version == 2
        base = lineage.base(ctx, client.id, "tenant:partner")
        assert base is not None
        assert base.sections["checkboxes"][0]["label"] == "年賀状"
    world.set_config("client", labelled(world.config("client"), 4, "お歳暮"))
    with world.app.transaction() as ctx:
        tenant = actors.get_tenant(ctx, "client")
        described = lineage.describe(ctx, tenant.id, configs.current(ctx, tenant).data)
    assert [(d["source"], d["source_version"], d["transfer"]) for d in described] == [
        ("tenant:partner", 2, first)
    ]
    assert described[0]["local_changes"] == ["checkboxes.4.label"]


def test_a_rolled_back_upgrade_restores_the_previous_base(world: World) -> None:
    _taken_once(world)
    world.set_config("partner", labelled(world.config("partner"), 2, "暑中見舞い"))
    second = world.send("partner", world.key("client"))
    world.approve(second, "client-admin")
    admin = _actor(world)
    with world.app.transaction() as ctx:
        assert transfers.rollback(ctx, admin, second) is not None
    assert world.config("client")["checkboxes"][1]["label"] == "チェック2"
    third = world.send("partner", world.key("client"))
    # planned against the first version's base again: checkbox 2 is the partner's change
    assert world.transfer(third).plan["upgrade"]["taken"] == ["checkboxes.2.label"]


def test_only_moves_the_base_of_the_sections_taken(world: World) -> None:
    _taken_once(world)
    world.set_config("partner", labelled(world.config("partner"), 2, "暑中見舞い"))
    world.set_config("partner", _memo(world.config("partner"), 1, "担当"))
    second = world.send("partner", world.key("client"))
    world.approve(second, "client-admin", only=["memo_fields"])
    doc = world.config("client")
    assert doc["memo_fields"][0]["label"] == "担当"
    assert doc["checkboxes"][1]["label"] == "チェック2"
    client = world.tenant_row("client")
    with world.app.transaction() as ctx:
        base = lineage.base(ctx, client.id, "tenant:partner")
        assert base is not None
        assert base.transfers["memo_fields"] == second
        assert base.transfers["checkboxes"] != second
    third = world.send("partner", world.key("client"))
    assert world.transfer(third).plan["upgrade"]["taken"] == ["checkboxes.2.label"]


def test_an_upgrade_needs_a_base(world: World) -> None:
    world.tenant("partner")
    world.tenant("client")
    first = world.send("partner", world.key("client"))
    assert world.transfer(first).plan["mode"] == "replace"
    with pytest.raises(PlanConflict, match="no base to upgrade from"):
        world.approve(first, "client-admin", mode="upgrade")


def test_copied_workflows_land_paused_and_the_targets_own_keep_their_state(world: World) -> None:
    """Safe activation (issue 10) on every copy path: replace, merge and upgrade."""
    world.tenant("partner")
    world.tenant("client")
    world.set_config(
        "partner", {"workflows": [checkbox_rule("vip", 7, active=True, label="VIP判定")]}
    )
    first = world.send("partner", world.key("client"))
    assert "incoming_digest" not in world.transfer(first).plan  # not the source's bytes
    world.approve(first, "client-admin")
    assert [w["active"] for w in world.config("client")["workflows"]] == [False]

    world.set_config(
        "client", {"workflows": [checkbox_rule("vip", 7, active=True, label="VIP判定")]}
    )  # turned on
    world.set_config(
        "partner",
        {
            "workflows": [
                {**checkbox_rule("vip", 7, active=False, label="VIP判定"), "label": "VIP判定(改)"},
                checkbox_rule("birthday", 7, active=True, label="VIP判定"),
            ]
        },
    )
    second = world.send("partner", world.key("client"))
    world.approve(second, "client-admin")
    assert [(w["code"], w["label"], w["active"]) for w in world.config("client")["workflows"]] == [
        ("vip", "VIP判定(改)", True),
        ("birthday", "VIP判定", False),
    ]
    admin = _actor(world)
    with world.app.transaction() as ctx:  # rolling back restores the rules and their states
        transfers.rollback(ctx, admin, second)
    assert [(w["code"], w["active"]) for w in world.config("client")["workflows"]] == [
        ("vip", True)
    ]


def test_the_services_check_the_tenant_themselves(world: World) -> None:
    _taken_once(world)
    world.set_config("partner", labelled(world.config("partner"), 2, "暑中見舞い"))
    second = world.send("partner", world.key("client"))
    outsider = world.actor("partner")
    for call in (transfers.approve, transfers.reject, transfers.rollback):
        with world.app.transaction() as ctx, pytest.raises(Exception, match="no transfer"):
            call(ctx, outsider, second)  # type: ignore[operator]
    assert world.transfer(second).status == "pending"


# --------------------------------------------------------------------------- rollout


def _trust(app: Provisioner, target: str, source: str) -> None:
    with app.transaction() as ctx:
        actor = actors.resolve(ctx, f"{target}-admin", target)
        pem = signing.public_key_pem(ctx, actors.get_tenant(ctx, source).id).encode()
        signing.trust(ctx, actor, pem, label=f"{source} HQ", policy="auto")


def _rollout(app: Provisioner, world: World, targets: list[str], **kw: Any) -> dict[str, Any]:
    raw = world.export("hq")
    with app.transaction() as ctx:
        run_id = rollout.start(
            ctx, actors.resolve(ctx, "hq-admin", "hq"), raw, [Target(t) for t in targets]
        ).id
    rollout.process(app, "hq-admin", run_id, **kw)
    with app.transaction() as ctx:
        return rollout.summary(ctx, actors.resolve(ctx, "hq-admin", "hq"), run_id)


@pytest.mark.parametrize("batch_size", [100, 1])
def test_a_rollout_upgrades_each_tenant_three_way_by_policy(
    app: Provisioner, world: World, batch_size: int
) -> None:
    world.tenant("hq")
    world.set_config("hq", labelled(world.config("hq"), 1, "本部指定"))
    shops = ["shop-1", "shop-2", "shop-3"]
    for shop in shops:
        world.tenant(shop)
        _trust(app, shop, "hq")
    first = _rollout(app, world, shops, batch_size=batch_size)
    assert [t["status"] for t in first["targets"]] == ["applied"] * 3
    world.set_config("shop-1", labelled(world.config("shop-1"), 5, "店舗独自"))  # own label
    world.set_config("shop-2", labelled(world.config("shop-2"), 2, "店舗版"))  # will conflict
    world.set_config("hq", labelled(world.config("hq"), 2, "本部版"))

    second = _rollout(app, world, shops, batch_size=batch_size)
    by_shop = {t["tenant"]: t for t in second["targets"]}
    assert by_shop["shop-1"]["status"] == "applied"
    assert by_shop["shop-2"]["status"] == "inbox"
    assert "with 1 conflict(s)" in by_shop["shop-2"]["reason"]
    assert by_shop["shop-3"]["status"] == "applied"
    assert world.config("shop-1")["checkboxes"][4]["label"] == "店舗独自"
    assert world.config("shop-1")["checkboxes"][1]["label"] == "本部版"
    assert world.config("shop-2")["checkboxes"][1]["label"] == "店舗版"

    world.set_config("hq", labelled(world.config("hq"), 3, "本部版3"))
    waiting = _rollout(
        app, world, ["shop-1", "shop-3"], batch_size=batch_size, upgrade_policy="wait"
    )
    assert [t["status"] for t in waiting["targets"]] == ["inbox", "inbox"]
    assert "policy wait" in waiting["targets"][0]["reason"]


@pytest.mark.parametrize("kept", [rollout.SHARED_PLANS, 1], ids=["plans-kept", "one-plan-kept"])
def test_a_rollout_plans_each_tenant_as_the_tenant_alone_would(
    app: Provisioner, world: World, kept: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch remembers section merges and checks by identity across tenants
    (config.memo); every stored plan and version equals the one-tenant computation,
    also when the run keeps fewer plans than the documents its targets are at."""
    monkeypatch.setattr(rollout, "SHARED_PLANS", kept)
    world.tenant("hq")
    world.set_config(
        "hq",
        {
            **labelled(world.config("hq"), 1, "本部指定"),
            "workflows": [checkbox_rule("vip", 7, active=True, label="VIP判定")],
        },
    )
    shops = [f"shop-{n}" for n in range(1, 6)]
    for shop in shops:
        world.tenant(shop)
        _trust(app, shop, "hq")
    assert {t["status"] for t in _rollout(app, world, shops)["targets"]} == {"applied"}
    world.set_config("shop-1", labelled(world.config("shop-1"), 5, "店舗独自"))
    world.set_config("shop-2", labelled(world.config("shop-2"), 2, "店舗版"))  # conflicts
    boxes = [dict(c) for c in world.config("shop-3")["checkboxes"]]
    boxes[7]["enabled"] = False  # HQ's new rule sets checkbox 8: a references conflict
    world.set_config("shop-3", {"checkboxes": boxes})
    world.set_config("shop-5", labelled(world.config("shop-5"), 5, "五号店"))
    hq = world.config("hq")
    eight = {
        **checkbox_rule("vip8", 7, active=True, label="VIP判定"),
        "actions": [{"type": "set_checkbox", "index": 8, "checked": True}],
    }
    world.set_config("hq", {**labelled(hq, 2, "本部版"), "workflows": [*hq["workflows"], eight]})
    with app.transaction() as ctx:  # the configuration as the rollout's bundle carries it
        public = signing.public_key(ctx, actors.get_tenant(ctx, "hq").id)
    incoming = read_bundle(world.export("hq"), {key_id(public): public}.get).config
    expected = {}
    with app.transaction() as ctx, ctx.operator("read"):  # each tenant alone, no memo
        for shop in shops:
            tenant = actors.get_tenant(ctx, shop)
            ancestor = lineage.base(ctx, tenant.id, "tenant:hq")
            assert ancestor is not None
            expected[shop] = transfers.upgrade_plan(
                configs.current(ctx, tenant), incoming, ancestor
            )

    summary = _rollout(app, world, shops)
    by_shop = {t["tenant"]: t for t in summary["targets"]}
    assert [by_shop[s]["status"] for s in shops] == [
        "applied",
        "inbox",
        "inbox",
        "applied",
        "applied",
    ]
    assert [c["kind"] for c in expected["shop-3"][1]["upgrade"]["conflicts"]] == ["references"]
    for shop in shops:
        result, plan, _ = expected[shop]
        stored = world.transfer(by_shop[shop]["transfer"]).plan
        for part in ("mode", "sections", "summary", "changes", "upgrade"):
            assert stored[part] == plan[part], (shop, part)
        if by_shop[shop]["status"] == "applied":
            assert world.config(shop) == result, shop
            with app.transaction() as ctx, ctx.operator("read"):
                row = configs.current_text(ctx, actors.get_tenant(ctx, shop))
            assert row[2] == canonical_bytes(result), shop
            assert row[1] == digest(result), shop


# --------------------------------------------------------------------------- CLI


def test_cli_inbox_show_lists_conflicts_and_approve_resolves_them(
    db_url: str, env: None, tmp_path: Path, app_engines: None
) -> None:
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Any:
        result = runner.invoke(cli, ["--db", db_url, *args], catch_exceptions=True)
        assert result.exit_code == code, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr
        return result

    run("init")
    for slug in ("partner", "client"):
        run("tenant", "create", slug, "--name", f"{slug} 株式会社")
        run("user", "add", f"{slug}-admin", "--tenant", slug, "--role", "admin")

    def send() -> int:
        key = json.loads(
            run("--json", "key", "generate", "-t", "client", "--as", "client-admin").stdout
        )["key"]
        out = json.loads(
            run("--json", "send", "-t", "partner", "--as", "partner-admin", "--key", key).stdout
        )
        return int(out["id"])

    def relabel(slug: str, label: str) -> None:
        doc = json.loads(run("--json", "config", "show", "-t", slug).stdout)
        path = tmp_path / f"{slug}.json"
        path.write_text(json.dumps(labelled(doc, 1, label)), encoding="utf-8")
        run("config", "set", "-t", slug, "--as", f"{slug}-admin", str(path))

    relabel("partner", "年賀状")
    first = send()
    run("inbox", "approve", str(first), "--as", "client-admin")
    relabel("client", "年賀状(個人)")
    relabel("partner", "年賀状(法人)")
    second = send()

    shown = json.loads(run("--json", "inbox", "show", str(second), "--as", "client-admin").stdout)
    assert shown["plan"]["mode"] == "upgrade"
    assert shown["conflicts"] == [
        {
            "address": "checkboxes.1.label",
            "kind": "changed",
            "base": "年賀状",
            "ours": "年賀状(個人)",
            "theirs": "年賀状(法人)",
        }
    ]
    text = run("inbox", "show", str(second), "--as", "client-admin").stdout
    assert "conflicts: 1" in text
    assert "! checkboxes.1.label: base 年賀状 | ours 年賀状(個人) | theirs 年賀状(法人)" in text

    refused = run("--json", "inbox", "approve", str(second), "--as", "client-admin", code=1)
    error = json.loads(refused.stderr)["error"]
    assert error["code"] == "unresolved_conflicts"
    assert error["problems"] == [
        "checkboxes.1.label: base 年賀状, ours 年賀状(個人), theirs 年賀状(法人)"
    ]
    run("inbox", "approve", str(second), "--as", "client-admin", "--keep", "checkboxes.1")
    doc = json.loads(run("--json", "config", "show", "-t", "client").stdout)
    assert doc["checkboxes"][0]["label"] == "年賀状(個人)"

    described = json.loads(run("--json", "config", "lineage", "-t", "client").stdout)
    assert [(d["source"], d["transfer"]) for d in described] == [("tenant:partner", second)]
    assert described[0]["local_changes"] == ["checkboxes.1.label"]
    assert "local changes since: 1" in run("config", "lineage", "-t", "client").stdout
