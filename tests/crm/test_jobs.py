"""Previous and concurrent jobs entered by hand, beside the automatic career history (issue 12)."""

from __future__ import annotations

import json

import pytest

from provisioner.errors import ValidationFailed
from provisioner.services.crm import records
from tests.crm.helpers import configured, make
from tests.crm.test_cli import Cli
from tests.support import World


def test_jobs_are_entered_by_hand_and_shown_on_the_contact(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    company = make(world, admin, "company", {"name": "今の会社"})["id"]
    contact = make(
        world, admin, "contact", {"name": "転職 太郎", "company_id": company, "title": "主任"}
    )["id"]
    old = make(
        world,
        admin,
        "job",
        {
            "contact_id": contact,
            "company_name": "前の商事",
            "department_name": "営業部",
            "title": "課長",
            "date_from": "2015-04-01",
            "date_to": "2020-03-31",
        },
    )
    side = make(
        world,
        admin,
        "job",
        {
            "contact_id": contact,
            "kind": "concurrent",
            "company_name": "地域協会",
            "title": "理事",
            "date_from": "2022-06-01",
        },
    )
    assert old["kind"] == "previous"
    with world.app.transaction() as ctx:  # the automatic history goes on beside them
        records.update(ctx, admin, "contact", contact, {"title": "係長"})
    with world.app.transaction() as ctx:
        shown = records.show(ctx, admin, "contact", contact)
    assert [(j["id"], j["kind"], j["company_name"], j["date_to"]) for j in shown["jobs"]] == [
        (side["id"], "concurrent", "地域協会", ""),
        (old["id"], "previous", "前の商事", "2020-03-31"),
    ]
    assert [c["title"] for c in shown["careers"]] == ["主任"]
    with world.app.transaction() as ctx:
        records.update(ctx, admin, "job", old["id"], {"title": "部長"})
        history = records.history(ctx, admin, "job", old["id"])
    assert [h["action"] for h in history] == ["create", "update"]
    with world.app.transaction() as ctx:
        records.delete_record(ctx, admin, "contact", contact)
    with world.app.transaction() as ctx, pytest.raises(Exception, match="job"):
        records.show(ctx, admin, "job", side["id"])


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"kind": "hobby"}, "kind: 'hobby' is not a job kind (previous, concurrent)"),
        (
            {"date_from": "2020-01-01", "date_to": "2019-12-31"},
            "date_to: 2019-12-31 is before date_from 2020-01-01",
        ),
        ({"date_from": "2020/01/01"}, "date_from: expected a date YYYY-MM-DD, got '2020/01/01'"),
    ],
)
def test_a_bad_job_is_refused_with_the_reason(
    world: World, data: dict[str, str], problem: str
) -> None:
    configured(world)
    admin = world.actor("acme")
    contact = make(world, admin, "contact", {"name": "山田"})["id"]
    with pytest.raises(ValidationFailed) as bad:
        make(world, admin, "job", {"contact_id": contact, "company_name": "A社", **data})
    assert problem in bad.value.problems


def test_an_update_keeps_the_period_in_order(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    contact = make(world, admin, "contact", {"name": "山田"})["id"]
    job = make(
        world,
        admin,
        "job",
        {"contact_id": contact, "company_name": "A社", "date_from": "2020-01-01"},
    )
    with world.app.transaction() as ctx, pytest.raises(ValidationFailed, match=r"not valid|before"):
        records.update(ctx, admin, "job", job["id"], {"date_to": "2019-01-01"})


def test_cli_jobs(run: Cli) -> None:
    run.run("init")
    run.run("tenant", "create", "acme", "--name", "ACME", "--plan", "standard")
    run.run("user", "add", "sato", "--tenant", "acme", "--role", "admin")
    cid = run.json(
        "record",
        "create",
        "contact",
        "-t",
        "acme",
        "--as",
        "sato",
        "--data",
        json.dumps({"name": "兼務 花子"}),
    )["record"]["id"]
    run.json(
        "record",
        "create",
        "job",
        "-t",
        "acme",
        "--as",
        "sato",
        "--data",
        json.dumps(
            {
                "contact_id": cid,
                "kind": "concurrent",
                "company_name": "B社",
                "department_name": "開発部",
                "title": "顧問",
                "date_from": "2024-04-01",
            }
        ),
    )
    shown = run.run("record", "show", "contact", str(cid), "-t", "acme", "--as", "sato").stdout
    assert "jobs (entered):" in shown
    assert "concurrent  2024-04-01 -   B社 開発部 顧問" in shown
    assert (
        run.json("record", "show", "contact", str(cid), "-t", "acme", "--as", "sato")["jobs"][0][
            "company_name"
        ]
        == "B社"
    )
