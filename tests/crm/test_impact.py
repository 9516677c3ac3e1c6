"""Data-aware plans: the impact of a configuration change on the tenant's records."""

from __future__ import annotations

import copy
import random
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
    new["memo_fields"][0] = {"index": 1, "label": "ランク2", "type": "picklist", "picklist": "rank"}
    new["classifications"]["customer"] = [{"code": "supplier", "label": "仕入先"}]
    new["custom_databases"][0]["fields"] = new["custom_databases"][0]["fields"][1:]
    return new


def test_impact_counts_and_remap(world: World) -> None:
    configured(world)
    configured(world, "other")
    admin = world.actor("acme")
    for n in range(3):
        c = make(
            world,
            admin,
            "contact",
            {
                "name": f"顧客{n}",
                "memo_2": "gold",
                "checkboxes": [1, 3],
                "memo_1": "自由記述" if n else "silver",
                "classifications": ["agency"],
            },
        )
    make(world, admin, "contact", {"name": "別", "memo_2": "silver"})
    make(world, admin, "activity", {"contact_id": c["id"], "date": "2026-01-01", "kind": "visit"})
    make(
        world,
        admin,
        "custom_record",
        {"database": "visits", "owner_id": c["id"], "data": {"count": 2}},
    )
    other = world.actor("other")
    make(world, other, "contact", {"name": "他社", "memo_2": "gold", "checkboxes": [1]})
    base = world.config("acme")
    with world.app.transaction() as ctx:
        report = impact.impact(ctx, admin.tenant_id, base, _changed(base))
    got = {
        (i["kind"], i.get("field") or i.get("index") or i.get("code")): (i["count"], i["blocking"])
        for i in report["items"]
    }
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
            "items": [],
            "blocking": 0,
        }


@pytest.mark.parametrize("contacts", [1, 7, 40])
def test_packed_counts_are_exact_for_every_checkbox(world: World, contacts: int) -> None:
    """Counts packed several to an aggregate never bleed into each other."""
    configured(world)
    configured(world, "other")
    admin, other = world.actor("acme"), world.actor("other")
    rng = random.Random(contacts)
    sets = [sorted(rng.sample(range(1, 48), rng.randint(0, 47))) for _ in range(contacts)]
    sets[0] = list(range(1, 48))  # every enabled box set at least once
    with world.app.transaction() as ctx:
        for n, boxes in enumerate(sets):
            records.create(
                ctx,
                admin,
                "contact",
                {
                    "name": f"顧客{n}",
                    "checkboxes": boxes,
                    "memo_2": rng.choice(["gold", ""]),
                    "classifications": rng.choice([["agency"], ["supplier", "agency"], []]),
                },
            )
        records.create(
            ctx,
            other,
            "contact",
            {"name": "他社", "checkboxes": list(range(1, 48)), "memo_2": "gold"},
        )
    base = world.config("acme")
    new = copy.deepcopy(base)
    for box in new["checkboxes"]:
        box["label"] = f"改{box['index']}"
    rank = next(p for p in new["picklists"] if p["code"] == "rank")
    rank["values"] = [v for v in rank["values"] if v["code"] != "gold"]
    new["classifications"]["customer"] = []
    with world.app.transaction() as ctx:
        report = impact.impact(ctx, admin.tenant_id, base, new)
    got = {
        (i["kind"], i.get("index") or i.get("value") or i.get("code")): i["count"]
        for i in report["items"]
    }
    with world.app.transaction() as ctx:
        rows = [
            records.show(ctx, admin, "contact", c["id"])
            for c in search.search(ctx, admin, Query(limit=100)).items
        ]
    expected: dict[tuple[str, int | str], int] = {
        ("checkbox_relabelled", i): sum(i in r["checkboxes"] for r in rows) for i in range(1, 48)
    }
    expected[("picklist_value_removed", "gold")] = sum(r["memo_2"] == "gold" for r in rows)
    for code in ("agency", "supplier"):
        expected[("classification_removed", code)] = sum(code in r["classifications"] for r in rows)
    assert got == {k: v for k, v in expected.items() if v}


def test_remap_is_recorded_in_the_change_log(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    ids = [
        make(world, admin, "contact", {"name": f"顧客{n}", "memo_2": "gold"})["id"]
        for n in range(2)
    ]
    base = world.config("acme")
    with world.app.transaction() as ctx:
        impact.apply_remap(
            ctx,
            admin.tenant_id,
            _changed(base),
            {"rank.gold": "silver"},
            actor="acme-admin",
            purpose="transfer 7",
        )
    with world.app.transaction() as ctx:
        for cid in ids:
            last = records.history(ctx, admin, "contact", cid)[-1]
            assert (last["actor"], last["changes"], last["purpose"]) == (
                "acme-admin",
                {"memo_2": ["gold", "silver"]},
                "transfer 7",
            )
            assert records.show(ctx, admin, "contact", cid)["updated_by"] == "acme-admin"


def test_fields_too_narrow_for_the_row_count_are_widened(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL starts with fields for 2M rows; a bigger tenant is counted again, wider."""
    configured(world)
    admin = world.actor("acme")
    for n in range(5):
        make(
            world,
            admin,
            "contact",
            {
                "name": f"顧客{n}",
                "checkboxes": [1, 2, 3][: n % 4],
                "memo_2": "gold" if n % 2 else "silver",
            },
        )
    base = world.config("acme")
    with world.app.transaction() as ctx:
        expected = impact.impact(ctx, admin.tenant_id, base, _changed(base))
    monkeypatch.setattr(impact, "PG_FIELD_BITS", 1)  # as if the tenant had > 2M contacts
    with world.app.transaction() as ctx:
        assert impact.impact(ctx, admin.tenant_id, base, _changed(base)) == expected
    assert {(i["kind"], i["count"]) for i in expected["items"]} >= {
        ("picklist_value_removed", 2),
        ("checkbox_relabelled", 3),
        ("checkbox_disabled", 1),
    }
