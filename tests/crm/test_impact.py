"""Data-aware plans: the impact of a configuration change on the tenant's records."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from provisioner.errors import ValidationFailed
from provisioner.services.crm import impact, records, search
from provisioner.services.crm.search import Query
from tests.crm.helpers import configured, make
from tests.support import World


def _changed(data: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(data)
    rank = next(p for p in new["picklists"] if p["code"] == "rank")
    rank["values"] = [v for v in rank["values"] if v["code"] != "gold"]
    kinds = next(p for p in new["picklists"] if p["code"] == "activity_kind")
    kinds["values"] = [v for v in kinds["values"] if v["code"] != "visit"]
    new["checkboxes"][0]["label"] = "年賀状"
    new["checkboxes"][2]["enabled"] = False
    new["checkboxes"][3]["label"] = "未使用の改名"
    new["memo_fields"][0] = {"index": 1, "label": "ランク2", "type": "picklist",
                             "picklist": "rank"}
    new["classifications"]["customer"] = [{"code": "supplier", "label": "仕入先"}]
    new["custom_databases"][0]["fields"] = new["custom_databases"][0]["fields"][1:]
    return new


def test_impact_counts_and_remap(world: World) -> None:
    configured(world)
    configured(world, "other")
    admin = world.actor("acme")
    for n in range(3):
        c = make(world, admin, "contact", {"name": f"顧客{n}", "memo_2": "gold",
                                           "checkboxes": [1, 3], "memo_1": "自由記述" if n
                                           else "silver", "classifications": ["agency"]})
    make(world, admin, "contact", {"name": "別", "memo_2": "silver"})
    make(world, admin, "activity", {"contact_id": c["id"], "date": "2026-01-01",
                                    "kind": "visit"})
    make(world, admin, "custom_record", {"database": "visits", "owner_id": c["id"],
                                         "data": {"count": 2}})
    other = world.actor("other")
    make(world, other, "contact", {"name": "他社", "memo_2": "gold", "checkboxes": [1]})
    base = world.config("acme")
    with world.app.transaction() as ctx:
        report = impact.impact(ctx, admin.tenant_id, base, _changed(base))
    got = {(i["kind"], i.get("field") or i.get("index") or i.get("code")): (i["count"],
                                                                           i["blocking"])
           for i in report["items"]}
    assert got == {
        ("picklist_value_removed", "contact.memo_2"): (3, True),
        ("picklist_value_removed", "activity.kind"): (1, True),
        ("memo_retyped", "contact.memo_1"): (3, False),
        ("memo_retyped_invalid", "contact.memo_1"): (2, True),
        ("checkbox_relabelled", 1): (3, False),
        ("checkbox_disabled", 3): (3, False),
        ("classification_removed", "agency"): (3, True),
        ("custom_field_removed", "count"): (1, True),
    }
    assert report["blocking"] == 5
    remaps = impact.parse_remaps(["rank.gold=silver", "activity_kind.visit=phone"])
    left = impact.unresolved(report, remaps=remaps)
    assert [line.split(" ")[0] for line in left] == ["contact.memo_1", "customer", "custom"]
    assert impact.unresolved(report, force=True) == []
    with world.app.transaction() as ctx:
        changed = impact.apply_remap(ctx, admin.tenant_id, _changed(base), remaps)
    assert changed == {"rank.gold": 3, "activity_kind.visit": 1}
    with world.app.transaction() as ctx:
        assert search.search(ctx, admin, Query(fields={"memo_2": "silver"})).total == 4
        assert search.search(ctx, admin, Query(q="gold")).total == 0
        theirs = search.search(ctx, other, Query()).items[0]["id"]
        assert records.show(ctx, other, "contact", theirs)["memo_2"] == "gold"


def test_remap_must_name_an_active_value(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    base = world.config("acme")
    with pytest.raises(ValidationFailed):
        impact.parse_remaps(["gold=silver"])
    with world.app.transaction() as ctx, pytest.raises(ValidationFailed):
        impact.apply_remap(ctx, admin.tenant_id, _changed(base), {"rank.gold": "old"})


def test_no_records_no_impact(world: World) -> None:
    configured(world)
    base = world.config("acme")
    admin = world.actor("acme")
    with world.app.transaction() as ctx:
        assert impact.impact(ctx, admin.tenant_id, base, _changed(base)) == {
            "items": [], "blocking": 0}
