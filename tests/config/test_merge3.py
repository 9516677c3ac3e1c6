"""Three-way upgrades (config.merge3) and safe activation (config.merge), on plain data.

The examples read as the rules of issue 13; the property tests generate a base
document and two independent lines of edits (ours, theirs) and check the
merge's promises on each.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner.config import delta as config_delta
from provisioner.config import references
from provisioner.config.defaults import default_document
from provisioner.config.diff import COLLECTIONS, NESTED
from provisioner.config.memo import IdentityMemo
from provisioner.config.merge import combine, paused_arrivals
from provisioner.config.merge3 import MISSING, merge3
from provisioner.config.validate import document_from_data
from provisioner.errors import ValidationFailed
from tests.support import checkbox_rule


def _base() -> dict[str, Any]:
    data = copy.deepcopy(default_document().to_data())
    data["picklists"].append(
        {
            "code": "plan",
            "label": "プラン",
            "values": [
                {"code": "gold", "label": "ゴールド", "active": True},
                {"code": "silver", "label": "シルバー", "active": True},
            ],
        }
    )
    data["workflows"] = [checkbox_rule("vip_gold", 7)]
    data["roles"] = [{"code": "clerk", "label": "事務", "permissions": ["records.read"]}]
    return data


def _edit(data: dict[str, Any], fn: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    out = copy.deepcopy(data)
    fn(out)
    return out


# --------------------------------------------------------------------------- the rules


def test_a_change_only_theirs_made_is_taken_and_one_only_ours_made_is_kept() -> None:
    base = _base()
    ours = _edit(base, lambda d: d["checkboxes"][12].update(label="DM不要"))
    theirs = _edit(base, lambda d: d["memo_fields"][2].update(label="紹介者"))
    up = merge3(base, ours, theirs)
    assert up.result["checkboxes"][12]["label"] == "DM不要"
    assert up.result["memo_fields"][2]["label"] == "紹介者"
    assert up.kept == ["checkboxes.13.label"]
    assert up.taken == ["memo_fields.3.label"]
    assert up.conflicts == []


def test_attributes_of_one_item_merge_separately() -> None:
    base = _base()
    ours = _edit(base, lambda d: d["checkboxes"][1].update(label="年賀状"))
    theirs = _edit(base, lambda d: d["checkboxes"][1].update(enabled=False))
    up = merge3(base, ours, theirs)
    assert up.result["checkboxes"][1] == {"index": 2, "label": "年賀状", "enabled": False}
    assert up.taken == ["checkboxes.2.enabled"]
    assert up.kept == ["checkboxes.2.label"]


def test_the_same_change_on_both_sides_is_nothing_to_do() -> None:
    base = _base()
    both = _edit(base, lambda d: d["labels"].update({"contact.name": "お名前"}))
    up = merge3(base, both, copy.deepcopy(both))
    assert up.result == both
    assert not (up.taken)
    assert not (up.kept)
    assert not (up.conflicts)


def test_both_changing_an_attribute_differently_is_a_conflict_with_its_three_values() -> None:
    base = _base()
    ours = _edit(base, lambda d: d["checkboxes"][1].update(label="年賀状"))
    theirs = _edit(base, lambda d: d["checkboxes"][1].update(label="暑中見舞い"))
    up = merge3(base, ours, theirs)
    assert [c.to_dict() for c in up.conflicts] == [
        {
            "address": "checkboxes.2.label",
            "kind": "changed",
            "base": "チェック2",
            "ours": "年賀状",
            "theirs": "暑中見舞い",
        }
    ]
    assert up.result["checkboxes"][1]["label"] == "年賀状"  # unresolved: ours meanwhile
    assert (
        merge3(base, ours, theirs, take=["checkboxes.2"]).result["checkboxes"][1]["label"]
        == "暑中見舞い"
    )
    kept = merge3(base, ours, theirs, keep=["checkboxes.2.label"])
    assert kept.conflicts == []
    assert kept.resolved == {"checkboxes.2.label": "ours"}
    assert merge3(base, ours, theirs, prefer="theirs").resolved == {"checkboxes.2.label": "theirs"}


def test_picklist_values_are_items_of_their_own() -> None:
    base = _base()

    def ours_edit(d: dict[str, Any]) -> None:
        d["picklists"][-1]["values"][0]["label"] = "金"
        d["picklists"][-1]["values"].append({"code": "bronze", "label": "銅", "active": True})

    def theirs_edit(d: dict[str, Any]) -> None:
        d["picklists"][-1]["values"][0]["label"] = "GOLD"
        del d["picklists"][-1]["values"][1]

    up = merge3(base, _edit(base, ours_edit), _edit(base, theirs_edit))
    assert [c.address for c in up.conflicts] == ["picklists.plan.values.gold.label"]
    values = [v["code"] for v in up.result["picklists"][-1]["values"]]
    assert values == ["gold", "bronze"]  # silver removed by theirs, bronze added by ours
    assert "picklists.plan.values.silver" in up.taken
    assert "picklists.plan.values.bronze" in up.kept


def test_removed_by_one_side_and_changed_by_the_other_is_a_conflict() -> None:
    base = _base()
    ours = _edit(base, lambda d: d["workflows"][0].update(label="VIP 金"))
    theirs = _edit(base, lambda d: d.update(workflows=[]))
    up = merge3(base, ours, theirs)
    assert [(c.address, c.kind) for c in up.conflicts] == [("workflows.vip_gold", "removed")]
    assert merge3(base, ours, theirs, take=["workflows.vip_gold"]).result["workflows"] == []
    unchanged = merge3(base, base, theirs)  # removed by theirs, unchanged by ours: removed
    assert unchanged.result["workflows"] == []
    assert unchanged.taken == ["workflows.vip_gold"]


def test_a_resolution_that_names_no_conflict_is_refused() -> None:
    base = _base()
    with pytest.raises(ValidationFailed, match=r"no conflict at checkboxes\.9"):
        merge3(base, base, base, keep=["checkboxes.9"])


def test_taking_theirs_never_breaks_a_reference_the_section_stays_ours() -> None:
    base = _base()  # workflow vip_gold ticks checkbox 7
    theirs = _edit(
        base,
        lambda d: (
            d["checkboxes"][6].update(enabled=False),
            d["checkboxes"][0].update(label="新ラベル"),
            d.update(workflows=[]),
        ),
    )
    ours = _edit(base, lambda d: d["workflows"].append(checkbox_rule("mine", 7)))
    up = merge3(base, ours, theirs)
    assert references.check(up.result) == []
    assert [(c.address, c.kind) for c in up.conflicts] == [("checkboxes", "references")]
    assert "checkbox 7 is not enabled" in up.conflicts[0].describe()
    assert up.result["checkboxes"] == ours["checkboxes"]
    assert [w["code"] for w in up.result["workflows"]] == ["mine"]
    assert merge3(base, ours, theirs, keep=["checkboxes"]).conflicts == []
    assert merge3(base, ours, theirs, prefer="ours").conflicts == []
    assert merge3(base, ours, theirs, prefer="theirs").conflicts[0].kind == "references"


# --------------------------------------------------------------------------- safe activation


def test_a_copied_workflow_lands_paused_and_an_existing_one_keeps_its_state() -> None:
    target = _edit(_base(), lambda d: d["workflows"][0].update(active=False))
    source = _edit(_base(), lambda d: d["workflows"].append(checkbox_rule("birthday", 7)))
    for mode in ("replace", "merge"):
        result = combine(target, source, mode=mode)  # type: ignore[arg-type]
        assert {w["code"]: w["active"] for w in result["workflows"]} == {
            "vip_gold": False,
            "birthday": False,
        }
    running = _edit(_base(), lambda d: d["workflows"][0].update(active=True))
    paused_at_source = _edit(running, lambda d: d["workflows"][0].update(active=False))
    assert combine(running, paused_at_source)["workflows"][0]["active"] is True
    # a tenant's own edit (config set) is not an arrival: active is as written
    assert combine(target, source, arriving=False)["workflows"][1]["active"] is True


def test_an_upgrade_never_takes_active_from_theirs() -> None:
    base = _base()
    ours = _edit(base, lambda d: d["workflows"][0].update(active=False))  # paused here
    theirs = _edit(
        base,
        lambda d: (
            d["workflows"][0].update(label="VIP(新)"),
            d["workflows"].append(checkbox_rule("birthday", 7, active=True)),
        ),
    )
    up = merge3(base, ours, theirs)
    assert up.conflicts == []
    assert [(w["code"], w["label"], w["active"]) for w in up.result["workflows"]] == [
        ("vip_gold", "VIP(新)", False),
        ("birthday", "ルール", False),
    ]


def test_paused_arrivals_returns_its_input_when_nothing_changes() -> None:
    incoming = [checkbox_rule("a", 1, active=False)]
    assert paused_arrivals(incoming, []) is incoming


# --------------------------------------------------------------------------- properties

_TEXT = st.sampled_from(["顧客", "VIP", "休眠", "重要", "ラベル", "メモ"])
_CODES = st.sampled_from(["plan", "rank", "area", "tier"])
_VALUES = st.sampled_from(["gold", "silver", "bronze", "none"])
_WORKFLOWS = st.sampled_from(["vip_gold", "welcome", "dormant"])


def _apply(doc: dict[str, Any], edit: tuple[Any, ...]) -> dict[str, Any]:
    """One edit, when the document stays valid (otherwise the document as it was)."""
    kind, *args = edit
    out = copy.deepcopy(doc)
    picklists = {p["code"]: p for p in out["picklists"]}
    if kind == "checkbox_label":
        out["checkboxes"][args[0] - 1]["label"] = args[1]
    elif kind == "checkbox_enabled":
        out["checkboxes"][args[0] - 1]["enabled"] = not out["checkboxes"][args[0] - 1]["enabled"]
    elif kind == "memo_label":
        out["memo_fields"][args[0] - 1]["label"] = args[1]
    elif kind == "label":
        out["labels"][args[0]] = args[1]
    elif kind == "mode":
        out["mode"] = "individual" if out["mode"] == "corporate" else "corporate"
    elif kind == "phone":
        out["input_rules"]["phone_format"] = args[0]
    elif kind == "picklist_add" and args[0] not in picklists:
        out["picklists"].append({"code": args[0], "label": args[1], "values": []})
    elif kind == "picklist_remove" and args[0] in picklists:
        out["picklists"].remove(picklists[args[0]])
    elif kind == "value_add" and args[0] in picklists:
        values = picklists[args[0]]["values"]
        if args[1] not in {v["code"] for v in values}:
            values.append({"code": args[1], "label": args[2], "active": True})
    elif kind == "value_edit" and args[0] in picklists:
        for value in picklists[args[0]]["values"]:
            if value["code"] == args[1]:
                value["label"] = args[2]
    elif kind == "value_remove" and args[0] in picklists:
        picklists[args[0]]["values"] = [
            v for v in picklists[args[0]]["values"] if v["code"] != args[1]
        ]
    elif kind == "workflow_add" and args[0] not in {w["code"] for w in out["workflows"]}:
        out["workflows"].append(checkbox_rule(args[0], args[1], active=args[2]))
    elif kind == "workflow_edit":
        for wf in out["workflows"]:
            if wf["code"] == args[0]:
                wf["label"], wf["active"] = args[1], args[2]
    elif kind == "workflow_remove":
        out["workflows"] = [w for w in out["workflows"] if w["code"] != args[0]]
    elif kind == "memo_picklist":
        memo = out["memo_fields"][args[0] - 1]
        memo["type"], memo["picklist"] = (
            ("picklist", args[1]) if memo["type"] == "text" else ("text", None)
        )
    return out if references.check(out) == [] else doc


_EDIT = st.one_of(
    st.tuples(st.just("checkbox_label"), st.integers(1, 8), _TEXT),
    st.tuples(st.just("checkbox_enabled"), st.integers(1, 8)),
    st.tuples(st.just("memo_label"), st.integers(1, 4), _TEXT),
    st.tuples(st.just("label"), st.sampled_from(["contact.name", "company.name"]), _TEXT),
    st.tuples(st.just("mode")),
    st.tuples(st.just("phone"), st.sampled_from(["hyphen", "digits", "as_entered"])),
    st.tuples(st.just("picklist_add"), _CODES, _TEXT),
    st.tuples(st.just("picklist_remove"), _CODES),
    st.tuples(st.just("value_add"), _CODES, _VALUES, _TEXT),
    st.tuples(st.just("value_edit"), _CODES, _VALUES, _TEXT),
    st.tuples(st.just("value_remove"), _CODES, _VALUES),
    st.tuples(st.just("workflow_add"), _WORKFLOWS, st.integers(1, 8), st.booleans()),
    st.tuples(st.just("workflow_edit"), _WORKFLOWS, _TEXT, st.booleans()),
    st.tuples(st.just("workflow_remove"), _WORKFLOWS),
    st.tuples(st.just("memo_picklist"), st.integers(1, 4), _CODES),
)


@st.composite
def _documents(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    base = _base()
    for edit in draw(st.lists(_EDIT, max_size=6)):
        base = _apply(base, edit)
    ours, theirs = base, base
    for edit in draw(st.lists(_EDIT, max_size=8)):
        ours = _apply(ours, edit)
    for edit in draw(st.lists(_EDIT, max_size=8)):
        theirs = _apply(theirs, edit)
    return base, ours, theirs


def _leaves(doc: dict[str, Any]) -> dict[str, Any]:
    """Every merged address of a document and its value (the addresses merge3 reports)."""
    out: dict[str, Any] = {}

    def item(address: str, value: dict[str, Any]) -> None:
        for name, attr in value.items():
            if name in NESTED and isinstance(attr, list):
                for sub in attr:
                    item(f"{address}.{name}.{sub[NESTED[name]]}", sub)
            else:
                out[f"{address}.{name}"] = attr

    for section, key in COLLECTIONS.items():
        head, _, kind = section.partition(".")
        items = doc[head][kind] if kind else doc[head]
        for value in items:
            item(f"{section}.{value[key]}", value)
    for key, label in doc["labels"].items():
        out[f"labels.{key}"] = label
    for section in ("input_rules", "settings"):
        item(section, doc[section])
    out["mode"] = doc["mode"]
    return out


def _covered(address: str, chosen: dict[str, str], side: str) -> bool:
    return any(
        side == s and (address == a or address.startswith(a + ".")) for a, s in chosen.items()
    )


def _arrived(theirs: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    return {**theirs, "workflows": paused_arrivals(theirs["workflows"], ours["workflows"])}


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(_documents())
def test_property_ours_unchanged_gives_theirs(docs: tuple[dict[str, Any], ...]) -> None:
    base, _, theirs = docs
    up = merge3(base, base, theirs)
    assert up.conflicts == []
    assert up.kept == []
    assert up.result == _arrived(theirs, base)


@PROPERTY
@given(_documents())
def test_property_theirs_unchanged_gives_ours(docs: tuple[dict[str, Any], ...]) -> None:
    base, ours, _ = docs
    up = merge3(base, ours, base)
    assert up.result == ours
    assert up.conflicts == []
    assert up.taken == []


@PROPERTY
@given(_documents(), st.sampled_from([None, "ours", "theirs"]))
def test_property_no_local_change_is_lost_unless_resolved_as_theirs(
    docs: tuple[dict[str, Any], ...], prefer: Any
) -> None:
    base, ours, theirs = docs
    up = merge3(base, ours, theirs, prefer=prefer)
    before, mine, after = _leaves(base), _leaves(ours), _leaves(up.result)
    for address in set(before) | set(mine):
        if before.get(address, MISSING) == mine.get(address, MISSING):
            continue  # not a local change
        if _covered(address, up.resolved, "theirs"):
            continue
        assert after.get(address, MISSING) == mine.get(address, MISSING), address


@PROPERTY
@given(_documents(), st.sampled_from([None, "ours", "theirs"]))
def test_property_the_result_always_validates(
    docs: tuple[dict[str, Any], ...], prefer: Any
) -> None:
    base, ours, theirs = docs
    document_from_data(merge3(base, ours, theirs, prefer=prefer).result)


@PROPERTY
@given(_documents(), st.sampled_from(["ours", "theirs"]))
def test_property_the_same_upgrade_twice_changes_nothing_the_second_time(
    docs: tuple[dict[str, Any], ...], prefer: Any
) -> None:
    base, ours, theirs = docs
    first = merge3(base, ours, theirs, prefer=prefer)
    again = merge3(theirs, first.result, theirs)  # the base moved to what arrived
    assert again.result == first.result
    assert again.taken == []
    assert again.conflicts == []


@PROPERTY
@given(_documents(), st.lists(_EDIT, max_size=6), st.sampled_from([None, "ours", "theirs"]))
def test_property_a_memo_shared_by_many_tenants_changes_no_merge(
    docs: tuple[dict[str, Any], ...], other_edits: list[Any], prefer: Any
) -> None:
    """A rollout's memo (config.memo): tenants' documents share their untouched sections
    with the base by identity; each memoised merge equals the merge alone."""
    base, ours, theirs = docs
    other = base
    for edit in other_edits:
        other = _apply(other, edit)
    memo = IdentityMemo()
    for mine in (ours, other, ours, base):
        shared = config_delta.apply(base, config_delta.make(base, mine))
        alone = merge3(base, mine, theirs, prefer=prefer)
        remembered = merge3(base, shared, theirs, prefer=prefer, memo=memo)
        assert remembered.result == alone.result
        assert remembered.to_dict() == alone.to_dict()
        assert remembered.mixed == alone.mixed
