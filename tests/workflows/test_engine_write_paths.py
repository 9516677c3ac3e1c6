"""Rules run on the record-write path: each exactly once per write, in its transaction."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from provisioner.db.workflow_models import Notification, WfExecution
from provisioner.services import workflows
from provisioner.services.crm import automation, bulk, csvio, records, search
from provisioner.services.crm.search import Query
from tests.crm.helpers import make
from tests.support import World
from tests.workflows.helpers import CHECK, GOLD, rule, with_rules


def executions(world: World) -> list[tuple[str, str, int, str]]:
    """(rule, record type, record id, trigger) of each firing logged, in order (a bulk
    write's row naming several records: one per record, as ``workflow log`` shows it);
    every tenant's, as an operator reads them."""
    with world.app.transaction() as ctx, ctx.operator("read"):
        return [
            (e.workflow, e.record_type, record_id, e.trigger)
            for e in ctx.session.scalars(select(WfExecution).order_by(WfExecution.id))
            for record_id in automation.record_ids(e.record_id, e.record_ids)
        ]


def test_created_rule_ticks_the_checkbox_when_its_condition_holds(world: World) -> None:
    with_rules(world, rule("vip_gold", "contact", "created", [CHECK], when=[GOLD]))
    admin = world.actor("acme")
    gold = make(world, admin, "contact", {"name": "金 太郎", "memo_2": "gold"})
    plain = make(world, admin, "contact", {"name": "銀 次郎", "memo_2": "silver"})
    assert 7 in gold["checkboxes"]
    assert 7 not in plain["checkboxes"]
    assert executions(world) == [("vip_gold", "contact", gold["id"], "created")]
    with world.app.transaction() as ctx:
        history = records.history(ctx, admin, "contact", gold["id"])
    assert [h["purpose"] for h in history] == ["", "workflow:vip_gold"]
    assert history[1]["changes"] == {"checkboxes": [[], [7]]}


def test_field_changed_fires_only_when_the_value_changes(world: World) -> None:
    with_rules(world, rule("to_gold", "contact", "field_changed", [CHECK], field="contact.memo_2"))
    admin = world.actor("acme")
    contact = make(world, admin, "contact", {"name": "金 太郎"})
    with world.app.transaction() as ctx:
        records.update(ctx, admin, "contact", contact["id"], {"title": "部長"})
    assert executions(world) == []
    with world.app.transaction() as ctx:
        saved = records.update(ctx, admin, "contact", contact["id"], {"memo_2": "gold"})
    assert 7 in saved.record["checkboxes"]
    with world.app.transaction() as ctx:  # the same value again: no change, no firing
        records.update(ctx, admin, "contact", contact["id"], {"memo_2": "gold"})
    assert len(executions(world)) == 1


def test_paused_rule_does_not_run(world: World) -> None:
    with_rules(world, rule("vip_gold", "contact", "created", [CHECK], when=[GOLD], active=False))
    contact = make(world, world.actor("acme"), "contact", {"name": "金", "memo_2": "gold"})
    assert contact["checkboxes"] == []
    assert executions(world) == []


def test_activity_rule_acts_on_its_contact_and_notifies_the_role(world: World) -> None:
    with_rules(
        world,
        rule(
            "complaint",
            "activity",
            "created",
            [
                {"type": "set_checkbox", "index": 12, "checked": True},
                {"type": "notify", "role": "admin", "message": "クレームです"},
                {
                    "type": "create_activity",
                    "kind": "phone",
                    "content": "折り返し",
                    "due_in_days": 3,
                },
            ],
            when=[{"field": "activity.kind", "op": "eq", "value": "other"}],
        ),
    )
    admin = world.actor("acme")
    contact = make(world, admin, "contact", {"name": "山田"})
    make(
        world,
        admin,
        "activity",
        {"contact_id": contact["id"], "date": "2026-11-23", "kind": "other", "content": "遅配"},
    )
    with world.app.transaction() as ctx:
        shown = records.show(ctx, admin, "contact", contact["id"])
        activities = records.list_children(ctx, admin, "activity", contact["id"])
        notes = ctx.session.scalar(select(func.count()).select_from(Notification))
    assert 12 in shown["checkboxes"]
    # the follow-up, dated three days after the firing (Japan's calendar)
    assert [(a["kind"], a["date"]) for a in activities] == [
        ("phone", "2026-11-26"),
        ("other", "2026-11-23"),
    ]
    assert notes == 1


def test_cascade_across_rules_and_a_cycle_is_cut(world: World) -> None:
    with_rules(
        world,
        rule(
            "a",
            "contact",
            "created",
            [{"type": "set_field", "field": "contact.title", "value": "顧客"}],
        ),
        rule("b", "contact", "field_changed", [CHECK], field="contact.title"),
    )
    contact = make(world, world.actor("acme"), "contact", {"name": "連鎖"})
    assert contact["title"] == "顧客"
    assert 7 in contact["checkboxes"]
    assert [e[0] for e in executions(world)] == ["a", "b"]


def test_bulk_update_runs_rules_once_per_record(world: World) -> None:
    with_rules(
        world,
        rule(
            "mark",
            "contact",
            "field_changed",
            [{"type": "set_field", "field": "contact.title", "value": "DM済"}],
            field="contact.checkbox_1",
        ),
    )
    admin = world.actor("acme")
    ids = [make(world, admin, "contact", {"name": f"顧客{i}"})["id"] for i in range(3)]
    with world.app.transaction() as ctx:
        assert bulk.bulk_update(ctx, admin, Query(), checkboxes={1: True}) == 3
    assert sorted(e[2] for e in executions(world)) == sorted(ids)
    with world.app.transaction() as ctx:
        assert {records.show(ctx, admin, "contact", i)["title"] for i in ids} == {"DM済"}


def test_a_failing_action_is_logged_and_the_write_stands(world: World) -> None:
    with_rules(
        world,
        rule(
            "bad",
            "contact",
            "created",
            [{"type": "set_field", "field": "contact.memo_2", "value": "old"}, CHECK],
        ),
    )
    contact = make(world, world.actor("acme"), "contact", {"name": "失敗"})
    assert contact["memo_2"] == ""  # 'old' is an inactive picklist value: refused
    assert 7 in contact["checkboxes"]  # the rule's other action ran
    acme = world.tenant_row("acme").id
    with world.app.transaction() as ctx:
        ctx.enter_tenant(acme)
        error = ctx.session.scalar(select(WfExecution.error))
    assert error is not None
    assert "memo_2" in error
    assert "old" in error


@pytest.mark.parametrize("event", ["created"])
def test_rules_never_touch_another_tenant(world: World, event: str) -> None:
    with_rules(world, rule("vip_gold", "contact", event, [CHECK], when=[GOLD]))
    with_rules(world, slug="other")
    mine = make(world, world.actor("acme"), "contact", {"name": "金", "memo_2": "gold"})
    theirs = make(world, world.actor("other"), "contact", {"name": "金", "memo_2": "gold"})
    assert 7 in mine["checkboxes"]
    assert theirs["checkboxes"] == []


def _csv(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def test_csv_import_runs_created_rules_once_per_row(world: World) -> None:
    with_rules(
        world,
        rule(
            "vip_gold",
            "contact",
            "created",
            [
                CHECK,
                {"type": "set_field", "field": "contact.memo_3", "value": "VIP"},
                {"type": "notify", "role": "admin", "message": "VIP登録"},
            ],
            when=[GOLD],
        ),
    )
    admin = world.actor("acme")
    with world.app.transaction() as ctx:
        report = csvio.import_customers(
            ctx, admin, _csv("name,memo_2", "金 一郎,gold", "銀 二郎,silver", "金 三郎,gold")
        )
    assert report.created == 3
    with world.app.transaction() as ctx:
        found = {c["name"]: c for c in search.search(ctx, admin, Query()).items}
        assert 7 in found["金 一郎"]["checkboxes"]
        assert records.show(ctx, admin, "contact", found["金 三郎"]["id"])["memo_3"] == "VIP"
        assert found["銀 二郎"]["checkboxes"] == []
        history = records.history(ctx, admin, "contact", found["金 一郎"]["id"])
        notes = ctx.session.scalar(select(func.count()).select_from(Notification))
        # the rule's change is searchable and counted like any other value
        assert [c["name"] for c in search.search(ctx, admin, Query(q="VIP")).items] == [
            "金 一郎",
            "金 三郎",
        ]
    assert [h["purpose"] for h in history] == ["CSV import", "workflow:vip_gold"]
    assert notes == 2
    assert sorted(e[2] for e in executions(world)) == sorted(
        [found["金 一郎"]["id"], found["金 三郎"]["id"]]
    )


def test_csv_import_and_single_create_give_the_same_record(world: World) -> None:
    with_rules(
        world,
        rule(
            "vip_gold",
            "contact",
            "created",
            [
                CHECK,
                {"type": "set_field", "field": "contact.phone", "value": "０３１２３４５６７８"},
            ],
            when=[GOLD],
        ),
    )
    admin = world.actor("acme")
    single = make(world, admin, "contact", {"name": "金 一郎", "memo_2": "gold"})
    with world.app.transaction() as ctx:
        csvio.import_customers(ctx, admin, _csv("name,memo_2", "金 二郎,gold"))
        imported = next(c for c in search.search(ctx, admin, Query(q="二郎")).items)
    assert imported["phone"] == single["phone"]
    assert imported["checkboxes"] == single["checkboxes"]


def test_remap_on_approval_fires_the_field_changed_rules(world: World) -> None:
    from tests.crm.test_transfer_impact import _without_gold  # the hq -> branch change

    with_rules(world, slug="hq")
    with_rules(
        world,
        rule("rank_moved", "contact", "field_changed", [CHECK], field="contact.memo_2"),
        slug="branch",
    )
    world.set_config("hq", _without_gold(world.config("hq")))
    branch = world.actor("branch")
    gold = [
        make(world, branch, "contact", {"name": f"金 {n}", "memo_2": "gold"})["id"]
        for n in range(2)
    ]
    silver = make(world, branch, "contact", {"name": "銀", "memo_2": "silver"})["id"]
    tid = world.send("hq", world.key("branch"))
    world.approve(
        tid, "branch-admin", remaps={"rank.gold": "silver"}, only=["picklists", "checkboxes"]
    )
    with world.app.transaction() as ctx:
        boxes = {i: records.show(ctx, branch, "contact", i)["checkboxes"] for i in [*gold, silver]}
    assert boxes == {gold[0]: [7], gold[1]: [7], silver: []}
    assert sorted(e[2] for e in executions(world)) == sorted(gold)


@pytest.mark.postgres
def test_rules_run_under_row_level_security_as_a_plain_role(world: World) -> None:
    """As a role that row-level security binds: the rules, their log and notifications
    stay in the tenant (every new table is under forced RLS)."""
    if world.app.engine.dialect.name != "postgresql":
        pytest.skip("row-level security is a PostgreSQL feature")
    from tests.crm.helpers import runtime_app

    with_rules(
        world,
        rule(
            "vip_gold",
            "contact",
            "created",
            [CHECK, {"type": "notify", "role": "admin", "message": "VIP"}],
            when=[GOLD],
        ),
    )
    with_rules(world, slug="other")
    with runtime_app(world) as app:
        with app.transaction() as ctx:
            saved = records.create(
                ctx, world.actor("acme"), "contact", {"name": "金", "memo_2": "gold"}
            )
        assert 7 in saved.record["checkboxes"]
        with app.transaction() as ctx:  # another tenant's scope sees none of it
            ctx.enter_tenant(world.tenant_row("other").id)
            assert ctx.session.scalar(select(func.count()).select_from(WfExecution)) == 0
            assert ctx.session.scalar(select(func.count()).select_from(Notification)) == 0
        with app.transaction() as ctx:
            ctx.enter_tenant(world.tenant_row("acme").id)
            assert ctx.session.scalar(select(func.count()).select_from(WfExecution)) == 1


def test_a_call_note_runs_the_activity_rules(world: World) -> None:
    """CTI: a note typed during a call is an activity created through the write path."""
    from provisioner.clock import parse_instant
    from provisioner.services.provisioning import metering

    with_rules(
        world,
        rule(
            "called",
            "activity",
            "created",
            [{"type": "set_checkbox", "index": 3, "checked": True}],
            when=[{"field": "activity.kind", "op": "eq", "value": "phone"}],
        ),
    )
    admin = world.actor("acme")
    customer = make(world, admin, "contact", {"name": "電話 太郎", "phone": "03-1111-1111"})
    with world.app.transaction() as ctx:
        metering.screen_pop(
            ctx, admin, "03-1111-1111", call_ref="pbx-1", at=parse_instant("2026-11-24T01:00:00Z")
        )
    with world.app.transaction() as ctx:
        metering.add_contact_history(ctx, admin, None, "納期の問い合わせ", call_ref="pbx-1")
    with world.app.transaction() as ctx:
        assert 3 in records.show(ctx, admin, "contact", customer["id"])["checkboxes"]
    assert [e[0] for e in executions(world)] == ["called"]


def test_csv_import_of_many_alike_rows_logs_each_as_a_single_create(world: World) -> None:
    """Rows sharing their firings get their change-log rows from one INSERT ... SELECT
    and one execution-log row per rule naming all of them: the same change log and,
    record by record, the same execution log as the row-by-row path and a single
    create."""
    with_rules(
        world,
        rule(
            "vip_gold",
            "contact",
            "created",
            [CHECK, {"type": "set_field", "field": "contact.memo_3", "value": "VIP"}],
            when=[GOLD],
        ),
        rule("dm", "contact", "created", [{"type": "set_checkbox", "index": 2, "checked": True}]),
    )
    admin = world.actor("acme")
    single = make(world, admin, "contact", {"name": "単 一郎", "memo_2": "gold"})
    lines = [f"金 {n}郎,gold" if n % 3 else f"銀 {n}郎,silver" for n in range(40)]
    with world.app.transaction() as ctx:
        csvio.import_customers(ctx, admin, _csv("name,memo_2", *lines))
        found = {c["name"]: c for c in search.search(ctx, admin, Query(limit=100)).items}
        history = {
            name: records.history(ctx, admin, "contact", c["id"]) for name, c in found.items()
        }
        logged = [
            (record_id, e.workflow, e.changes, e.error, e.config_version)
            for e in ctx.session.scalars(select(WfExecution))
            for record_id in automation.record_ids(e.record_id, e.record_ids)
        ]
        rows = ctx.session.scalar(select(func.count()).select_from(WfExecution))
    gold = [n for n in found if n.startswith("金") or n == "単 一郎"]
    assert len(gold) == 27
    for name in gold:
        assert history[name][-1]["changes"] == history["単 一郎"][-1]["changes"], name
        assert history[name][-1]["purpose"] == "workflow:vip_gold,dm"
        assert found[name]["checkboxes"] == single["checkboxes"] == [2, 7]
    assert history["銀 0郎"][-1]["purpose"] == "workflow:dm"
    by_record: dict[int, list[Any]] = {}
    for record_id, *rest in logged:
        by_record.setdefault(record_id, []).append(tuple(str(v) for v in rest))
    assert len(by_record) == 41
    for name in gold:
        assert sorted(by_record[found[name]["id"]]) == sorted(by_record[single["id"]])
    # the single create: a row per rule; the import: a row per rule and shape of row
    assert rows == 2 + 2 + 1
    with world.app.transaction() as ctx:
        one = found["金 1郎"]["id"]
        shown = workflows.execution_log(ctx, admin, record_type="contact", record_id=one)
        alone = workflows.execution_log(ctx, admin, record_type="contact", record_id=single["id"])
        newest = workflows.execution_log(ctx, admin, limit=3)
        listed = {w["code"]: w["firings"] for w in workflows.list_workflows(ctx, admin)}
    assert [{**e, "record_id": 0} for e in shown] == [{**e, "record_id": 0} for e in alone]
    assert [e["workflow"] for e in shown] == ["dm", "vip_gold"]
    # newest first: the last row written (dm on the gold rows), its records highest first
    assert [(e["workflow"], e["record_id"]) for e in newest] == [
        ("dm", found[name]["id"]) for name in ("金 38郎", "金 37郎", "金 35郎")
    ]
    assert listed == {"vip_gold": 27, "dm": 41}
