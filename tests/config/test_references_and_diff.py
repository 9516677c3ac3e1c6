"""Cross-reference checks and plan diffs on plain document data."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from provisioner.config import diff as config_diff
from provisioner.config import references
from provisioner.config.defaults import default_document


@pytest.fixture
def doc() -> dict[str, Any]:
    data = default_document().to_data()
    data["picklists"] = [
        {
            "code": "rank",
            "label": "ランク",
            "values": [
                {"code": "gold", "label": "金", "active": True},
                {"code": "silver", "label": "銀", "active": True},
            ],
        }
    ]
    data["custom_databases"] = [
        {
            "code": "visits",
            "label": "来店",
            "attached_to": "contact",
            "fields": [
                {
                    "key": "count",
                    "label": "回数",
                    "type": "integer",
                    "required": False,
                    "options": [],
                },
                {
                    "key": "kind",
                    "label": "種別",
                    "type": "choice",
                    "required": False,
                    "options": [{"code": "a", "label": "A"}, {"code": "b", "label": "B"}],
                },
            ],
        }
    ]
    data["blueprints"] = [
        {
            "code": "progress",
            "label": "進捗",
            "object": "contact",
            "picklist": "rank",
            "initial_state": "gold",
            "states": [{"code": "gold", "label": "金"}],
            "transitions": [],
        }
    ]
    data["workflows"] = [
        {
            "code": "wf",
            "label": "WF",
            "active": True,
            "object": "contact",
            "trigger": {"event": "field_changed", "field": "contact.visits.count"},
            "conditions": {
                "match": "all",
                "rules": [{"field": "contact.progress", "op": "not_empty", "value": None}],
            },
            "actions": [{"type": "set_field", "field": "contact.memo_1", "value": "x"}],
        }
    ]
    return data


def test_a_consistent_document_has_no_problem(doc: dict[str, Any]) -> None:
    assert references.check(doc) == []


def test_custom_database_fields_and_blueprints_are_known_field_paths(doc: dict[str, Any]) -> None:
    fields = references.known_fields(doc)
    assert {
        "contact.visits.count",
        "contact.visits.kind",
        "contact.progress",
        "company.memo_10",
        "contact.checkbox_48",
        "department.classification",
        "activity.content_10",
    } <= fields
    assert "company.visits.count" not in fields


def test_duplicates_inside_items_are_reported(doc: dict[str, Any]) -> None:
    doc["picklists"][0]["values"].append({"code": "gold", "label": "金2", "active": True})
    fields = doc["custom_databases"][0]["fields"]
    fields.append(copy.deepcopy(fields[0]))
    fields[1]["options"].append({"code": "a", "label": "A2"})
    assert references.check(doc) == [
        "picklists.rank: value code 'gold' is used more than once",
        "custom_databases.visits: field key 'count' is used more than once",
        "custom_databases.visits.kind: option 'a' is used more than once",
    ]


def test_a_choice_without_options_and_unknown_paths_are_reported(doc: dict[str, Any]) -> None:
    doc["custom_databases"][0]["fields"][1]["options"] = []
    doc["workflows"][0]["trigger"]["field"] = "contact.visits.nothing"
    doc["blueprints"][0]["code"] = "stage"  # contact.progress no longer exists
    assert references.check(doc) == [
        "custom_databases.visits: field 'kind' is a choice without options",
        "workflows.wf: field 'contact.visits.nothing' does not exist",
        "workflows.wf: field 'contact.progress' does not exist",
    ]


def test_plan_changes_describe_and_serialise(doc: dict[str, Any]) -> None:
    before = default_document().to_data()
    after = copy.deepcopy(before)
    after["checkboxes"][0]["label"] = "年賀状"
    after["picklists"] = before["picklists"] + doc["picklists"]
    after["mode"] = "individual"
    changes = config_diff.diff(before, after)
    assert [c.describe() for c in changes] == [
        "mode: changed corporate -> individual",
        f"checkboxes[1]: changed label: {before['checkboxes'][0]['label']} -> 年賀状",
        "picklists[rank]: added ランク",
    ]
    assert [c.to_dict() for c in changes][1:] == [
        {
            "section": "checkboxes",
            "key": "1",
            "op": "changed",
            "before": {"label": before["checkboxes"][0]["label"]},
            "after": {"label": "年賀状"},
            "details": [f"label: {before['checkboxes'][0]['label']} -> 年賀状"],
        },
        {
            "section": "picklists",
            "key": "rank",
            "op": "added",
            "before": None,
            "after": {"label": "ランク"},
            "details": [],
        },
    ]
    assert config_diff.summarize(changes) == {
        "mode": {"added": 0, "changed": 1, "removed": 0},
        "checkboxes": {"added": 0, "changed": 1, "removed": 0},
        "picklists": {"added": 1, "changed": 0, "removed": 0},
    }
    removed = config_diff.diff(after, before, ["picklists"])
    assert removed == [
        config_diff.Change("picklists", "rank", "removed", before=doc["picklists"][0])
    ]
