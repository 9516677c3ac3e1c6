"""RuleSet.batch_runner (a bulk write's rules, worked out once per shape of row) gives
exactly what RuleSet.run gives row by row: the same firings, the same row."""

from __future__ import annotations

import copy
import random
from dataclasses import asdict
from typing import Any

from provisioner.config.document import Workflow
from provisioner.config.rules import RuleSet
from tests.workflows.helpers import rule

FIELDS = [
    "contact.memo_1",
    "contact.memo_3",
    "contact.title",
    "contact.checkbox_1",
    "contact.checkbox_2",
    "contact.classification",
    "company.name",
]
OPS = ["eq", "ne", "contains", "empty", "not_empty", "gt", "lt"]
VALUES: list[Any] = ["", "abc", "01", "1", 1, True, False, None, "済", "supplier"]


def _actions(rng: random.Random) -> list[dict[str, Any]]:
    return rng.sample(
        [
            {"type": "set_checkbox", "index": rng.randint(1, 2), "checked": rng.random() < 0.7},
            {
                "type": "set_field",
                "field": "contact.memo_3",
                "value": rng.choice(["済", "", "abc"]),
            },
            {"type": "set_field", "field": "contact.title", "value": rng.choice(["部長", "1"])},
            {"type": "add_classification", "classification": rng.choice(["supplier", "agency"])},
            {"type": "notify", "role": "admin", "message": "確認"},
        ],
        rng.randint(1, 2),
    )


def _rules(rng: random.Random) -> RuleSet:
    flows = []
    for n in range(rng.randint(1, 6)):
        event = rng.choice(["created", "created", "updated", "field_changed"])
        when = [
            {"field": rng.choice(FIELDS), "op": rng.choice(OPS), "value": rng.choice(VALUES)}
            for _ in range(rng.randint(0, 2))
        ]
        flows.append(
            Workflow.model_validate(
                rule(
                    f"r{n}",
                    "contact",
                    event,
                    _actions(rng),
                    when=when,
                    match=rng.choice(["all", "any"]),
                    field=rng.choice(["contact.memo_3", "contact.title", "contact.checkbox_1"])
                    if event == "field_changed"
                    else None,
                )
            )
        )
    return RuleSet(flows)


def _row(rng: random.Random, n: int) -> dict[str, Any]:
    return {
        "id": n,
        "name": f"顧客{n}",
        "memo_1": rng.choice(["", "abc", "01", "1", "xyz"]),
        "memo_3": rng.choice(["", "済", "abc"]),
        "title": rng.choice(["", "部長", "1"]),
        "checkboxes": rng.randint(0, 3),
        "classifications": rng.choice(["", ",supplier,", ",agency,supplier,"]),
    }


def test_batch_runner_equals_run_row_by_row() -> None:
    rng = random.Random(5)
    fields = ["name", "memo_1", "memo_3", "title", "checkboxes", "classifications"]
    shared = 0
    for _ in range(150):
        rules = _rules(rng)
        batch = rules.batch_runner("contact", "created", fields, limit=rng.choice([2, 4096]))
        rows = [_row(rng, n) for n in range(40)]
        seen: set[int] = set()
        kept = []  # (alive: ids stay unique)
        for row in rows:
            alone = copy.deepcopy(row)
            expected = rules.run("contact", "created", alone, fields)
            got = batch(row)
            assert [asdict(f) for f in got] == [asdict(f) for f in expected], row
            assert row == alone
            if id(got) in seen:
                shared += 1
                assert not any(f.effects for f in got)  # carried out per row: never shared
            seen.add(id(got))
            kept.append(got)
    assert shared > 1000  # most rows replay a shape (the comparison is not vacuous)
