"""Configuration-time refusal of workflow chains that would run forever (rules.cycles)."""

from __future__ import annotations

from typing import Any

from provisioner.config import rules
from tests.workflows.helpers import rule

FOLLOW_UP = {"type": "create_activity", "kind": "phone", "content": "折り返し"}


def doc(*workflows: dict[str, Any]) -> dict[str, Any]:
    return {"workflows": list(workflows)}


def test_rules_that_create_records_in_a_cycle_are_refused() -> None:
    # a new activity ticks the customer's checkbox; the tick creates a new activity
    problems = rules.cycles(
        doc(
            rule(
                "log",
                "activity",
                "created",
                [{"type": "set_checkbox", "index": 3, "checked": True}],
            ),
            rule("call", "contact", "updated", [FOLLOW_UP]),
        )
    )
    assert len(problems) == 1
    assert "call, log create activities in a cycle" in problems[0]


def test_rules_that_set_one_field_to_different_values_in_turn_are_refused() -> None:
    problems = rules.cycles(
        doc(
            rule(
                "a",
                "contact",
                "updated",
                [{"type": "set_field", "field": "contact.title", "value": "部長"}],
            ),
            rule(
                "b",
                "contact",
                "updated",
                [{"type": "set_field", "field": "contact.title", "value": "課長"}],
            ),
        )
    )
    assert problems == [
        "workflows: a, b set contact.title to different values in a cycle; break the chain"
    ]


def test_a_converging_cycle_that_also_creates_an_activity_outside_it_is_allowed() -> None:
    # a and b fire each other on every update, but both set the same values (the second
    # round changes nothing); the activity a creates fires no rule of the cycle
    assert (
        rules.cycles(
            doc(
                rule(
                    "a",
                    "contact",
                    "updated",
                    [{"type": "set_checkbox", "index": 3, "checked": True}, FOLLOW_UP],
                ),
                rule(
                    "b",
                    "contact",
                    "updated",
                    [{"type": "set_field", "field": "contact.title", "value": "顧客"}],
                ),
            )
        )
        == []
    )


def test_paused_rules_form_no_cycle() -> None:
    assert (
        rules.cycles(
            doc(
                rule(
                    "log",
                    "activity",
                    "created",
                    [{"type": "set_checkbox", "index": 3, "checked": True}],
                    active=False,
                ),
                rule("call", "contact", "updated", [FOLLOW_UP]),
            )
        )
        == []
    )
