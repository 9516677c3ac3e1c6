"""The dry run's SQL fast path gives exactly the reference (Python, record by record)."""

from __future__ import annotations

import random
from typing import Any

from provisioner.services import workflows
from tests.crm.helpers import make
from tests.support import World
from tests.workflows.helpers import rule, with_rules

FIELDS = [
    "contact.memo_1",
    "contact.title",
    "contact.phone",
    "contact.birthday",
    "contact.checkbox_1",
    "contact.checkbox_2",
    "contact.classification",
    "contact.email",
]
OPS = ["eq", "ne", "contains", "empty", "not_empty", "gt", "lt"]
VALUES: list[Any] = [
    "",
    "abc",
    "ABC",
    "01",
    "1",
    1,
    0,
    -5,
    True,
    False,
    None,
    "03",
    "1980-01-01",
    "supplier",
    "agency",
    "部長",
    "ab",
    "b",
]
MEMOS = ["", "abc", "ABC", "01", "1", "xabcx", "10", "-5", "部長さん", " 1"]
TITLES = ["", "部長", "課長", "1", "abc"]


def _contacts(world: World) -> None:
    rng = random.Random(7)
    admin = world.actor("acme")
    with_rules(world, slug="other")
    other = world.actor("other")
    for n in range(40):
        if n % 10 == 5:  # another tenant's rows inside acme's range of ids
            make(world, other, "contact", {"name": f"他社{n}", "memo_1": "abc", "checkboxes": [1]})
        make(
            world,
            admin,
            "contact",
            {
                "name": f"顧客{n}",
                "memo_1": rng.choice(MEMOS),
                "title": rng.choice(TITLES),
                "phone": rng.choice(["", "03-1111-2222", "090-1234-5678"]),
                "birthday": rng.choice(["", "1980-01-01", "1999-12-31", "1975-06-15"]),
                "email": rng.choice(["", "a@example.jp"]),
                "checkboxes": rng.sample([1, 2, 3], rng.randint(0, 3)),
                "classifications": rng.sample(["supplier", "agency"], rng.randint(0, 2)),
            },
        )


def _rule(rng: random.Random, n: int) -> dict[str, Any]:
    conditions = [
        {"field": rng.choice(FIELDS), "op": rng.choice(OPS), "value": rng.choice(VALUES)}
        for _ in range(rng.randint(0, 3))
    ]
    actions = rng.sample(
        [
            {"type": "set_checkbox", "index": rng.randint(1, 3), "checked": rng.random() < 0.7},
            {"type": "set_field", "field": "contact.memo_3", "value": rng.choice(["済", "", "A"])},
            {"type": "set_field", "field": "contact.memo_4", "value": rng.choice(["x", "y"])},
            {"type": "add_classification", "classification": rng.choice(["supplier", "agency"])},
            {"type": "notify", "role": "admin", "message": "確認"},
        ],
        rng.randint(1, 3),
    )
    return rule(
        f"r{n}",
        "contact",
        "created",
        actions,
        when=conditions,
        match=rng.choice(["all", "any"]),
        active=False,
    )


def test_fast_dry_run_equals_the_reference(world: World) -> None:
    with_rules(world)
    _contacts(world)
    admin = world.actor("acme")
    rng = random.Random(11)
    fast_counted = 0
    for n in range(60):
        flow = _rule(rng, n)
        world.set_config("acme", {"workflows": [flow]})
        for sample in (None, 15):
            with world.app.transaction() as ctx:
                doc = world.document("acme")
                plan = workflows._DryPlan(
                    ctx, admin.tenant_id, doc, doc.workflows[0], sample, admin
                )
                probe = workflows.DryRun("", "", "", "")
                fast_counted += plan.counted_in_sql(probe)
                fast = workflows.dry_run(ctx, admin, flow["code"], sample=sample).to_dict()
                slow = workflows.dry_run(
                    ctx, admin, flow["code"], sample=sample, fast=False
                ).to_dict()
                if sample is None:  # a plan's count of an incoming rule: the same answer
                    counted = workflows.count_matches(ctx, admin.tenant_id, doc, doc.workflows[0])
                    reference = workflows.count_matches(
                        ctx, admin.tenant_id, doc, doc.workflows[0], fast=False
                    )
                    assert counted == reference == (slow["examined"], slow["matched"]), flow
            assert fast == slow, (flow, sample)
            assert fast["examined"] == (15 if sample else 40)
    assert fast_counted >= 40  # many take the fast path (the comparison is not vacuous)
