"""config/merge.py: taking incoming sections onto a document (replace, merge, only).

Pure functions over plain data. ``replace`` gives exactly the incoming
sections; ``merge`` adds and changes but never deletes.
"""

from __future__ import annotations

from typing import Any

import pytest

from provisioner.config.document import SECTION_NAMES
from provisioner.config.merge import combine, parse_only
from provisioner.errors import ValidationFailed


def _pl(code: str, *values: tuple[str, str]) -> dict[str, Any]:
    return {
        "code": code,
        "label": code,
        "values": [{"code": c, "label": label, "active": True} for c, label in values],
    }


BASE: dict[str, Any] = {
    "mode": "corporate",
    "labels": {"contact.name": "氏名", "contact.kana": "フリガナ"},
    "picklists": [_pl("rank", ("gold", "金"), ("silver", "銀")), _pl("area", ("east", "東"))],
    "classifications": {"customer": [{"code": "a", "label": "A", "parent": None}], "product": []},
}
INCOMING: dict[str, Any] = {
    "mode": "individual",
    "labels": {"contact.name": "お名前"},
    "picklists": [_pl("rank", ("gold", "ゴールド"), ("bronze", "銅")), _pl("size", ("s", "S"))],
    "classifications": {
        "customer": [{"code": "b", "label": "B", "parent": None}],
        "product": [{"code": "p", "label": "P", "parent": None}],
    },
}


def test_replace_takes_the_incoming_sections_as_they_are() -> None:
    result = combine(BASE, INCOMING, mode="replace")
    for name in ("mode", "labels", "picklists", "classifications"):
        assert result[name] == INCOMING[name]


def test_merge_adds_and_changes_but_never_deletes() -> None:
    result = combine(BASE, INCOMING, mode="merge")
    assert result["mode"] == "individual"
    assert result["labels"] == {"contact.name": "お名前", "contact.kana": "フリガナ"}
    rank, area, size = result["picklists"]  # base order, then the new items
    assert [rank["code"], area["code"], size["code"]] == ["rank", "area", "size"]
    assert [(v["code"], v["label"]) for v in rank["values"]] == [
        ("gold", "ゴールド"),
        ("silver", "銀"),
        ("bronze", "銅"),
    ]
    assert area == BASE["picklists"][1]
    assert [n["code"] for n in result["classifications"]["customer"]] == ["a", "b"]
    assert [n["code"] for n in result["classifications"]["product"]] == ["p"]


def test_only_limits_either_mode_to_the_named_sections() -> None:
    for mode in ("replace", "merge"):
        result = combine(BASE, INCOMING, mode=mode, only=["mode"])
        assert result["mode"] == "individual"
        assert result["picklists"] == BASE["picklists"]
        assert result["labels"] == BASE["labels"]


def test_absent_sections_stay_and_the_inputs_are_not_changed() -> None:
    base = {**BASE, "roles": [{"code": "sales"}]}
    before = repr(base), repr(INCOMING)
    result = combine(base, {"mode": "individual"}, mode="merge")
    assert result["roles"] == [{"code": "sales"}]
    assert result["picklists"] == BASE["picklists"]
    assert (repr(base), repr(INCOMING)) == before


def test_a_section_new_to_the_base_is_taken_in_merge_mode() -> None:
    result = combine({"mode": "corporate"}, {"roles": [{"code": "sales"}]}, mode="merge")
    assert result["roles"] == [{"code": "sales"}]


def test_parse_only_checks_the_section_names() -> None:
    assert parse_only(None) is None
    assert parse_only([" checkboxes", "picklists", "checkboxes", ""]) == ("checkboxes", "picklists")
    with pytest.raises(ValidationFailed, match="unknown section"):
        parse_only(["checkboxes", "nope"])
    with pytest.raises(ValidationFailed, match="names no section"):
        parse_only([" ", ""])
    assert set(parse_only(SECTION_NAMES) or ()) == set(SECTION_NAMES)
