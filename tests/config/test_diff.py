"""config/diff.py: what changed between two documents, item by item, by stable key.

Pure functions over plain data: no database, no models.
"""

from __future__ import annotations

from typing import Any

from provisioner.config.defaults import default_document
from provisioner.config.diff import PLAN_SECTIONS, Change, diff, diff_section, summarize


def _picklist(code: str, *values: str, label: str = "種別") -> dict[str, Any]:
    return {
        "code": code,
        "label": label,
        "values": [{"code": v, "label": v.upper(), "active": True} for v in values],
    }


def test_equal_documents_have_no_changes() -> None:
    doc = default_document().to_data()
    assert diff(doc, doc) == []
    assert summarize([]) == {}


def test_items_are_matched_by_key_not_position() -> None:
    old = [_picklist("rank", "gold", "silver"), _picklist("area", "east")]
    assert diff_section("picklists", old, list(reversed(old))) == []


def test_added_removed_and_changed_items() -> None:
    old = [_picklist("rank", "gold", "silver"), _picklist("area", "east")]
    new = [_picklist("rank", "gold", "bronze", label="ランク"), _picklist("size", "s")]
    changes = diff_section("picklists", old, new)
    assert [(c.key, c.op) for c in changes] == [
        ("area", "removed"),
        ("rank", "changed"),
        ("size", "added"),
    ]
    rank = changes[1]
    assert rank.details == ("label: 種別 -> ランク", "values +bronze -silver")
    assert rank.describe() == (
        "picklists[rank]: changed label: 種別 -> ランク; values +bronze -silver"
    )
    assert changes[0].describe() == "picklists[area]: removed 種別"
    assert changes[2].describe() == "picklists[size]: added 種別"


def test_a_nested_item_changed_in_place_and_a_reorder() -> None:
    old = [_picklist("rank", "gold", "silver")]
    relabelled = [
        {**old[0], "values": [{"code": "gold", "label": "金", "active": True}, old[0]["values"][1]]}
    ]
    reordered = [{**old[0], "values": list(reversed(old[0]["values"]))}]
    assert diff_section("picklists", old, relabelled)[0].details == ("values ~gold",)
    assert diff_section("picklists", old, reordered)[0].details == ("values reordered",)


def test_plain_values_and_mappings() -> None:
    assert diff_section("mode", "corporate", "individual") == [
        Change("mode", "", "changed", "corporate", "individual")
    ]
    labels = diff_section("labels", {"a": "x", "b": "y"}, {"b": "z", "c": "w"})
    assert [(c.key, c.op, c.before, c.after) for c in labels] == [
        ("a", "removed", "x", None),
        ("b", "changed", "y", "z"),
        ("c", "added", None, "w"),
    ]


def test_diff_limited_to_sections_and_summarised() -> None:
    old = default_document().to_data()
    new = {**old, "mode": "individual", "picklists": [*old["picklists"], _picklist("rank", "gold")]}
    everything = diff(old, new)
    assert summarize(everything) == {
        "mode": {"added": 0, "changed": 1, "removed": 0},
        "picklists": {"added": 1, "changed": 0, "removed": 0},
    }
    assert [c.section for c in diff(old, new, ["picklists"])] == ["picklists"]


def test_classifications_are_two_plan_sections() -> None:
    assert "classifications.customer" in PLAN_SECTIONS
    assert "classifications.product" in PLAN_SECTIONS
    assert "classifications" not in PLAN_SECTIONS
    old = default_document().to_data()
    node = {"code": "vip", "label": "VIP", "parent": None}
    new = {
        **old,
        "classifications": {
            **old["classifications"],
            "customer": [*old["classifications"]["customer"], node],
        },
    }
    assert [(c.section, c.key, c.op) for c in diff(old, new)] == [
        ("classifications.customer", "vip", "added")
    ]


def test_a_stored_plan_keeps_labels_not_whole_items() -> None:
    change = diff_section("picklists", [], [_picklist("rank", "gold")])[0]
    assert change.to_dict() == {
        "section": "picklists",
        "key": "rank",
        "op": "added",
        "before": None,
        "after": {"label": "種別"},
        "details": [],
    }
    listed = Change("settings", "link_buttons", "changed", [1, 2], [1])
    assert listed.to_dict()["before"] == "2 item(s)"


def test_long_values_are_shortened_in_descriptions() -> None:
    text = diff_section("mode", "a" * 100, "b")[0].describe()
    assert text == "mode: changed " + "a" * 59 + "… -> b"
