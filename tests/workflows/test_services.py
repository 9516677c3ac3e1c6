"""Managing automation: activate/pause, dry runs, the log, due dates, inboxes, blueprints."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from provisioner.db.crm_models import CrmContact
from provisioner.db.models import AuditEvent
from provisioner.db.workflow_models import WfExecution
from provisioner.errors import NotFound, PermissionDenied, ValidationFailed
from provisioner.services import workflows
from provisioner.services.crm import records
from tests.crm.helpers import make
from tests.crm.test_cli import Cli
from tests.support import World
from tests.workflows.helpers import CHECK, GOLD, rule, with_rules


def test_activate_and_pause_are_admin_only_audited_and_versioned(world: World) -> None:
    with_rules(world, rule("vip_gold", "contact", "created", [CHECK], when=[GOLD], active=False))
    admin, general = world.actor("acme"), world.actor("acme", "acme-gen")
    before = world.version("acme")
    with world.app.transaction() as ctx, pytest.raises(PermissionDenied):
        workflows.set_active(ctx, general, "vip_gold", True)
    with world.app.transaction() as ctx:
        assert workflows.set_active(ctx, admin, "vip_gold", True) == before + 1
        assert workflows.set_active(ctx, admin, "vip_gold", True) is None  # already active
        listing = workflows.list_workflows(ctx, general)
    assert [(w["code"], w["state"]) for w in listing] == [("vip_gold", "active")]
    assert 7 in make(world, admin, "contact", {"name": "金", "memo_2": "gold"})["checkboxes"]
    with world.app.transaction() as ctx:
        workflows.set_active(ctx, admin, "vip_gold", False)
        events = ctx.session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.action.like("workflow:%"))
            .order_by(AuditEvent.id)
        ).all()
        with pytest.raises(NotFound, match="nope"):
            workflows.set_active(ctx, admin, "nope", True)
    assert events == ["workflow:activated", "workflow:paused"]
    assert make(world, admin, "contact", {"name": "金2", "memo_2": "gold"})["checkboxes"] == []


def test_dry_run_counts_and_describes_without_writing(world: World) -> None:
    with_rules(
        world,
        rule(
            "vip_gold",
            "contact",
            "created",
            [CHECK, {"type": "notify", "role": "admin", "message": "VIP"}],
            when=[GOLD],
            active=False,
        ),
    )
    admin = world.actor("acme")
    for n in range(5):
        make(
            world,
            admin,
            "contact",
            {"name": f"顧客{n}", "memo_2": "gold" if n % 2 == 0 else "silver"},
        )
    with world.app.transaction() as ctx:
        changes_before = ctx.session.scalar(select(func.sum(CrmContact.checkboxes)))
        report = workflows.dry_run(ctx, admin, "vip_gold").to_dict()
        sampled = workflows.dry_run(ctx, admin, "vip_gold", sample=2).to_dict()
    assert (report["examined"], report["matched"]) == (5, 3)
    assert report["changes"] == {"checkbox_7 -> checked": 3}
    assert report["effects"] == {"notify admin: VIP": 3}
    assert report["state"] == "paused"
    assert (sampled["examined"], sampled["matched"]) == (2, 1)
    with world.app.transaction() as ctx:  # nothing written: no checkbox, no log, no inbox
        assert ctx.session.scalar(select(func.sum(CrmContact.checkboxes))) == changes_before
        assert ctx.session.scalar(select(func.count()).select_from(WfExecution)) == 0
        assert workflows.notifications(ctx, admin) == []


def test_date_rule_fires_once_per_due_date_across_runs(world: World) -> None:
    with_rules(
        world,
        rule(
            "birthday",
            "contact",
            "date",
            [
                {
                    "type": "create_activity",
                    "kind": "email",
                    "content": "誕生日カード送付",
                    "due_in_days": 0,
                }
            ],
            field="contact.birthday",
            days=-3,
            yearly=True,
        ),
    )
    admin = world.actor("acme")
    soon = make(world, admin, "contact", {"name": "誕生", "birthday": "1980-11-26"})
    make(world, admin, "contact", {"name": "先", "birthday": "1980-12-25"})
    today = date(2026, 11, 23)
    with world.app.transaction() as ctx:
        first = workflows.run_due(ctx, today=today)
    with world.app.transaction() as ctx:  # again (another process, a restart): nothing new
        second = workflows.run_due(ctx, today=today)
    assert (first.fired, second.fired, second.already) == (1, 0, 1)
    with world.app.transaction() as ctx:
        activities = records.list_children(ctx, admin, "activity", soon["id"])
        log = workflows.execution_log(ctx, admin, record_type="contact", record_id=soon["id"])
    assert [a["content"] for a in activities] == ["誕生日カード送付"]
    assert [(e["workflow"], e["trigger"]) for e in log] == [("birthday", "date")]


def test_notifications_reach_the_role_and_can_be_marked_read(world: World) -> None:
    with_rules(
        world,
        rule(
            "tell",
            "contact",
            "created",
            [{"type": "notify", "role": "general", "message": "新規顧客"}],
        ),
    )
    general, admin = world.actor("acme", "acme-gen"), world.actor("acme")
    make(world, admin, "contact", {"name": "新規"})
    with world.app.transaction() as ctx:
        assert workflows.unread_count(ctx, general) == 1
        assert workflows.unread_count(ctx, admin) == 0  # notified by role
        (note,) = workflows.notifications(ctx, general)
        assert note["message"] == "新規顧客"
        assert workflows.mark_read(ctx, general) == 1
        assert workflows.unread_count(ctx, general) == 0


STAGES = {
    "code": "stage",
    "label": "商談段階",
    "values": [
        {"code": "lead", "label": "見込み"},
        {"code": "proposal", "label": "提案"},
        {"code": "won", "label": "受注"},
    ],
}
PIPELINE = {
    "code": "deal",
    "label": "商談",
    "object": "contact",
    "picklist": "stage",
    "initial_state": "lead",
    "states": [
        {"code": "lead", "label": "見込み"},
        {"code": "proposal", "label": "提案"},
        {"code": "won", "label": "受注"},
    ],
    "transitions": [
        {
            "code": "propose",
            "label": "提案する",
            "from_state": "lead",
            "to_state": "proposal",
            "allowed_roles": [],
            "required_fields": ["contact.email"],
        },
        {
            "code": "close",
            "label": "受注",
            "from_state": "proposal",
            "to_state": "won",
            "allowed_roles": ["admin"],
            "required_fields": [],
        },
    ],
}


def test_blueprint_moves_only_along_transitions(world: World) -> None:
    with_rules(
        world,
        rule("on_won", "contact", "field_changed", [CHECK], field="contact.deal"),
        blueprints=[PIPELINE],
        picklists=[STAGES],
    )
    admin, general = world.actor("acme"), world.actor("acme", "acme-gen")
    contact = make(world, admin, "contact", {"name": "商談先"})
    cid = contact["id"]
    with world.app.transaction() as ctx:
        assert records.show(ctx, admin, "contact", cid)["states"] == {"deal": "lead"}
        with pytest.raises(ValidationFailed) as edited:
            records.update(ctx, admin, "contact", cid, {"deal": "won"})
        assert "moves only by a transition" in str(edited.value.problems)
        assert "propose (lead -> proposal)" in str(edited.value.problems)
        with pytest.raises(ValidationFailed, match="cannot move from 'lead' to 'won'"):
            workflows.transition(ctx, general, "contact", cid, "won")
        with pytest.raises(ValidationFailed, match="needs these fields") as missing:
            workflows.transition(ctx, general, "contact", cid, "proposal")
    assert missing.value.problems == ["contact.email: required for 提案する"]
    with world.app.transaction() as ctx:
        records.update(ctx, general, "contact", cid, {"email": "a@example.jp"})
        moved = workflows.transition(ctx, general, "contact", cid, "proposal")
        assert workflows.blueprint_status(ctx, general, "contact", cid)[0]["transitions"] == []
        with pytest.raises(PermissionDenied, match="close"):
            workflows.transition(ctx, general, "contact", cid, "won")
    assert (moved["from"], moved["to"]) == ("lead", "proposal")
    with world.app.transaction() as ctx:
        workflows.transition(ctx, admin, "contact", cid, "won", purpose="契約締結")
        shown = records.show(ctx, admin, "contact", cid)
        history = records.history(ctx, admin, "contact", cid)
    assert shown["states"] == {"deal": "won"}
    assert 7 in shown["checkboxes"]  # the rule watching the state field fired on each move
    assert [(h["changes"], h["purpose"]) for h in history if h["action"] == "transition"] == [
        ({"deal": ["lead", "proposal"]}, "blueprint:deal:propose"),
        ({"deal": ["proposal", "won"]}, "契約締結"),
    ]


def test_workflow_cli(db_url: str, env: None, app_engines: None, tmp_path: Path) -> None:
    run = Cli(db_url)
    run.run("init")
    run.run("tenant", "create", "acme", "--name", "ACME", "--plan", "standard")
    run.run("user", "add", "sato", "--tenant", "acme", "--role", "admin")
    config = tmp_path / "rules.json"
    config.write_text(
        '{"workflows": ['
        + __import__("json").dumps(
            rule(
                "vip",
                "contact",
                "created",
                [CHECK],
                active=False,
                when=[{"field": "contact.title", "op": "eq", "value": "社長"}],
            )
        )
        + "]}",
        encoding="utf-8",
    )
    run.run("config", "set", "-t", "acme", "--as", "sato", str(config))
    run.run(
        "record",
        "create",
        "contact",
        "-t",
        "acme",
        "--as",
        "sato",
        "--data",
        '{"name": "山田", "title": "社長"}',
    )
    assert run.json("workflow", "list", "-t", "acme", "--as", "sato")[0]["state"] == "paused"
    report = run.json("workflow", "dry-run", "vip", "-t", "acme", "--as", "sato")
    assert (report["matched"], report["changes"]) == (1, {"checkbox_7 -> checked": 1})
    assert (
        "nothing was written"
        in run.run("workflow", "dry-run", "vip", "-t", "acme", "--as", "sato").stdout
    )
    run.run("workflow", "activate", "vip", "-t", "acme", "--as", "sato")
    made = run.json(
        "record",
        "create",
        "contact",
        "-t",
        "acme",
        "--as",
        "sato",
        "--data",
        '{"name": "佐藤", "title": "社長"}',
    )
    assert 7 in made["record"]["checkboxes"]
    log = run.json(
        "workflow",
        "log",
        "-t",
        "acme",
        "--as",
        "sato",
        "--record",
        "contact",
        str(made["record"]["id"]),
    )
    assert [e["workflow"] for e in log] == ["vip"]
    run.run("workflow", "activate", "nope", "-t", "acme", "--as", "sato", code=1)
    assert run.json("workflow", "run-due", "--today", "2026-11-23")["fired"] == 0
    run.run("workflow", "run-due", "--today", "2026-02-30", code=1)
    assert run.json("notifications", "-t", "acme", "--as", "sato") == []
