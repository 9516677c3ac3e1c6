"""Data-aware transfers: the plan counts affected records; approval remaps, forces or refuses."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sqlalchemy import select

from provisioner.db.crm_models import CrmContact
from provisioner.db.models import AuditEvent
from provisioner.errors import DataInUse, ValidationFailed
from provisioner.services import transfers
from provisioner.services.crm import impact as data_impact
from provisioner.services.crm import records
from tests.crm.helpers import configured, make
from tests.crm.test_cli import Cli
from tests.support import World


def _without_gold(data: dict[str, Any]) -> dict[str, Any]:
    picklists = copy.deepcopy(data["picklists"])
    rank = next(p for p in picklists if p["code"] == "rank")
    rank["values"] = [v for v in rank["values"] if v["code"] != "gold"]
    boxes = [dict(c) for c in data["checkboxes"]]
    boxes[0]["label"] = "年賀状"
    return {"picklists": picklists, "checkboxes": boxes}


@pytest.fixture
def hq_to_branch(world: World) -> tuple[World, list[int]]:
    """hq removes rank 'gold' and relabels checkbox 1; branch has 3 gold customers."""
    configured(world, "hq")
    configured(world, "branch")
    configured(world, "other")
    world.set_config("hq", _without_gold(world.config("hq")))
    branch = world.actor("branch")
    gold = [
        make(
            world, branch, "contact", {"name": f"金 顧客{n}", "memo_2": "gold", "checkboxes": [1]}
        )["id"]
        for n in range(3)
    ]
    make(world, branch, "contact", {"name": "銀 顧客", "memo_2": "silver"})
    # another tenant's gold customers are none of this transfer's business
    make(world, world.actor("other"), "contact", {"name": "他社 顧客", "memo_2": "gold"})
    return world, gold


def _memo2(world: World, slug: str, ids: list[int]) -> list[str]:
    actor = world.actor(slug)
    with world.app.transaction() as ctx:
        return [records.show(ctx, actor, "contact", i)["memo_2"] for i in ids]


def _impact(world: World, transfer_id: int) -> dict[tuple[str, Any], tuple[int, bool]]:
    with world.app.transaction() as ctx:
        transfer, _ = transfers.get(ctx, "branch-admin", transfer_id)
        plan = transfers.preview(ctx, transfer)
    return {
        (i["kind"], i.get("value") or i.get("index")): (i["count"], i["blocking"])
        for i in plan["impact"]["items"]
    }


def test_plan_counts_the_records_a_change_affects(hq_to_branch: tuple[World, list[int]]) -> None:
    world, _ = hq_to_branch
    tid = world.send("hq", world.key("branch"))
    assert _impact(world, tid) == {
        ("picklist_value_removed", "gold"): (3, True),
        ("checkbox_relabelled", 1): (3, False),
    }
    assert world.transfer(tid).plan["impact"]["blocking"] == 1  # stored with the plan too


def test_approval_is_refused_while_removed_values_are_in_use(
    hq_to_branch: tuple[World, list[int]],
) -> None:
    world, gold = hq_to_branch
    tid = world.send("hq", world.key("branch"))
    before = world.version("branch")
    with pytest.raises(DataInUse, match="strand data") as refused:
        world.approve(tid, "branch-admin")
    assert any("'gold'" in p and "3 records" in p for p in refused.value.problems)
    assert "--remap" in (refused.value.hint or "")
    # nothing changed: configuration, transfer, records
    assert world.version("branch") == before
    assert world.transfer(tid).status == "pending"
    assert _memo2(world, "branch", gold) == ["gold"] * 3


def test_a_remap_must_name_a_removed_value_in_use(hq_to_branch: tuple[World, list[int]]) -> None:
    world, gold = hq_to_branch
    tid = world.send("hq", world.key("branch"))
    with pytest.raises(DataInUse, match=r"rank\.gld") as typo:
        world.approve(tid, "branch-admin", remaps={"rank.gld": "silver"})
    assert "rank.gold (3 records)" in (typo.value.hint or "")
    with pytest.raises(ValidationFailed, match="remap is not valid"):  # gold is gone
        world.approve(tid, "branch-admin", remaps={"rank.gold": "gold"})
    with pytest.raises(ValidationFailed, match="remap is not valid"):  # inactive value
        world.approve(tid, "branch-admin", remaps={"rank.gold": "old"})
    assert world.transfer(tid).status == "pending"
    assert _memo2(world, "branch", gold) == ["gold"] * 3


def test_remap_rewrites_records_in_the_same_transaction(
    hq_to_branch: tuple[World, list[int]],
) -> None:
    world, gold = hq_to_branch
    tid = world.send("hq", world.key("branch"))
    decision = world.approve(tid, "branch-admin", remaps={"rank.gold": "silver"})
    assert decision.outcome == "applied"
    assert decision.remapped == {"rank.gold": 3}
    assert _memo2(world, "branch", gold) == ["silver"] * 3
    other, branch = world.tenant_row("other").id, world.tenant_row("branch").id
    with world.app.transaction() as ctx:  # the other tenant's gold customer is untouched
        ctx.enter_tenant(other)
        assert ctx.session.scalars(
            select(CrmContact.memo_2).where(CrmContact.tenant_id == other)
        ).all() == ["gold"]
        ctx.enter_tenant(branch)  # the event is the receiver's
        event = ctx.session.query(AuditEvent).filter_by(action="transfer:approved").one()
    assert event.details["remapped"] == {"rank.gold": 3}
    assert any("gold" in line for line in event.details["impact"])


def test_force_applies_and_keeps_the_records(hq_to_branch: tuple[World, list[int]]) -> None:
    world, gold = hq_to_branch
    tid = world.send("hq", world.key("branch"))
    decision = world.approve(tid, "branch-admin", force=True)
    assert decision.outcome == "applied"
    assert decision.forced
    assert "gold" in decision.forced[0]
    assert _memo2(world, "branch", gold) == ["gold"] * 3


def test_impact_is_counted_again_at_approval(world: World) -> None:
    configured(world, "hq")
    configured(world, "branch")
    world.set_config("hq", _without_gold(world.config("hq")))
    tid = world.send("hq", world.key("branch"))
    assert _impact(world, tid) == {}  # no records yet
    make(world, world.actor("branch"), "contact", {"name": "後から", "memo_2": "gold"})
    assert _impact(world, tid) == {("picklist_value_removed", "gold"): (1, True)}
    with pytest.raises(DataInUse):
        world.approve(tid, "branch-admin")


def test_cli_shows_the_impact_and_approves_with_a_remap(
    hq_to_branch: tuple[World, list[int]], run: Cli
) -> None:
    world, gold = hq_to_branch
    tid = str(world.send("hq", world.key("branch")))
    shown = run.run("inbox", "show", tid, "--as", "branch-admin").stdout
    assert "records affected (1 blocking the approval)" in shown
    assert "value 'gold' of picklist 'rank' is removed but 3 records hold it" in shown
    assert run.json("inbox", "show", tid, "--as", "branch-admin")["plan"]["impact"]["blocking"] == 1
    refused = run.run("inbox", "approve", tid, "--as", "branch-admin", code=1)
    assert "would strand data" in refused.stderr
    assert "--remap" in refused.stderr
    bad = run.run("inbox", "approve", tid, "--as", "branch-admin", "--remap", "gold", code=1)
    assert "PICKLIST.VALUE=NEWVALUE" in bad.stderr
    done = run.json("inbox", "approve", tid, "--as", "branch-admin", "--remap", "rank.gold=silver")
    assert done["outcome"] == "applied"
    assert done["remapped"] == {"rank.gold": 3}
    assert _memo2(world, "branch", gold) == ["silver"] * 3


def _flows(label: str) -> list[dict[str, Any]]:
    def flow(
        code: str, when: list[dict[str, Any]], event: str = "created", **trigger: Any
    ) -> dict[str, Any]:
        return {
            "code": code,
            "label": label if code == "tweaked" else code,
            "active": True,
            "object": "contact",
            "trigger": {"event": event, "field": None, **trigger},
            "conditions": {"match": "all", "rules": when},
            "actions": [{"type": "set_checkbox", "index": 7, "checked": True}],
        }

    gold = [{"field": "contact.memo_2", "op": "eq", "value": "gold"}]
    return [
        flow("vip", gold),
        flow("same", gold),
        flow("tweaked", [{"field": "contact.memo_2", "op": "not_empty"}]),
        flow("dated", [], "date", field="contact.birthday", days=3),
    ]


@pytest.fixture
def rules_to_branch(world: World) -> tuple[World, int]:
    """hq sends four rules: vip (new), same (branch has it as is), tweaked (branch has it
    with another label), dated (new, a date trigger: counted record by record)."""
    configured(world, "hq")
    configured(world, "branch")
    configured(world, "other")
    world.set_config("hq", {"workflows": _flows("改")})
    world.set_config(
        "branch", {"workflows": [f for f in _flows("旧") if f["code"] in ("same", "tweaked")]}
    )
    branch = world.actor("branch")
    for n in range(3):
        make(
            world,
            branch,
            "contact",
            {
                "name": f"金 顧客{n}",
                "memo_2": "gold",
                "birthday": "1980-01-0" + str(n + 1) if n else "",
            },
        )
    make(world, branch, "contact", {"name": "銀 顧客", "memo_2": "silver"})
    make(world, branch, "contact", {"name": "無印 顧客"})
    make(world, world.actor("other"), "contact", {"name": "他社 顧客", "memo_2": "gold"})
    return world, world.send("hq", world.key("branch"))


def test_plan_counts_the_records_each_incoming_rule_matches(
    rules_to_branch: tuple[World, int],
) -> None:
    world, tid = rules_to_branch
    expected = [
        ("vip", "new", "paused", 3, 5),
        ("tweaked", "changed", "active", 4, 5),
        ("dated", "new", "paused", 2, 5),
    ]

    def seen(plan: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [
            (w["workflow"], w["change"], w["state"], w["count"], w["examined"])
            for w in plan["impact"]["workflows"]
        ]

    assert seen(world.transfer(tid).plan) == expected  # at receipt
    base = world.config("branch")
    with world.app.transaction() as ctx:
        transfer, _ = transfers.get(ctx, "branch-admin", tid)
        plan = transfers.preview(ctx, transfer, mode="merge")  # the target's rules first
        assert sorted(seen(plan)) == sorted(expected)
        result = transfers.combine(
            base, transfers.incoming_config(ctx.session, transfer), mode="replace"
        )
        fast = data_impact.workflow_matches(ctx, transfer.tenant_id, base, result)
        slow = data_impact.workflow_matches(ctx, transfer.tenant_id, base, result, fast=False)
    assert fast == slow
    make(world, world.actor("branch"), "contact", {"name": "新 金", "memo_2": "gold"})
    with world.app.transaction() as ctx:  # counted again: the records changed meanwhile
        transfer, _ = transfers.get(ctx, "branch-admin", tid)
        assert seen(transfers.preview(ctx, transfer))[0] == ("vip", "new", "paused", 4, 6)


def test_cli_shows_the_incoming_rules_matches(rules_to_branch: tuple[World, int], run: Cli) -> None:
    _world, tid = rules_to_branch
    shown = run.run("inbox", "show", str(tid), "--as", "branch-admin").stdout
    assert "incoming workflows (records their conditions match now):" in shown
    assert (
        "workflow vip (new, paused; contact created): its conditions match 3 of 5 "
        "contact records now"
    ) in shown
    assert "workflow same" not in shown  # unchanged: not listed
    flows = run.json("inbox", "show", str(tid), "--as", "branch-admin")["plan"]["impact"][
        "workflows"
    ]
    assert [(w["workflow"], w["count"]) for w in flows] == [
        ("vip", 3),
        ("tweaked", 4),
        ("dated", 2),
    ]
