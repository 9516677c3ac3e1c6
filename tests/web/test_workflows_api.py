"""Automation over HTTP: workflows, dry runs, the log, notifications, transitions; and the
date scheduler a server runs."""

from __future__ import annotations

from datetime import date

from provisioner.clock import FrozenClock
from provisioner.services.context import Provisioner
from provisioner.web.scheduler import DueScheduler
from tests.support import World
from tests.web.conftest import Site
from tests.workflows.helpers import rule
from tests.workflows.test_services import PIPELINE, STAGES

VIP = rule(
    "vip",
    "contact",
    "created",
    [
        {"type": "set_checkbox", "index": 7, "checked": True},
        {"type": "notify", "role": "general", "message": "社長が登録されました"},
    ],
    when=[{"field": "contact.title", "op": "eq", "value": "社長"}],
    active=False,
)


def test_workflow_routes(site: Site) -> None:
    site.world.set_config(
        "acme",
        {
            "workflows": [VIP],
            "blueprints": [PIPELINE],
            "picklists": [*site.world.config("acme")["picklists"], STAGES],
        },
    )
    listed = site.call("GET", "/api/tenants/acme/workflows", "acme-ro")
    assert listed.status_code == 200, listed.text
    assert [(w["code"], w["state"]) for w in listed.json()] == [("vip", "paused")]
    # only admins change a workflow's state; an outsider cannot see the tenant at all
    assert (
        site.call(
            "PUT", "/api/tenants/acme/workflows/vip/state", "acme-gen", json={"state": "active"}
        ).status_code
        == 403
    )
    assert site.call("GET", "/api/tenants/acme/workflows", "beta-admin").status_code == 403
    assert site.call("GET", "/api/tenants/acme/workflows").status_code == 401
    dry = site.call("POST", "/api/tenants/acme/workflows/vip/dry-run", "acme-admin")
    assert dry.json()["matched"] == 0
    r = site.call(
        "PUT", "/api/tenants/acme/workflows/vip/state", "acme-admin", json={"state": "active"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "active"
    assert (
        site.call(
            "PUT", "/api/tenants/acme/workflows/nope/state", "acme-admin", json={"state": "active"}
        ).status_code
        == 404
    )
    made = site.call(
        "POST",
        "/api/tenants/acme/records/contact",
        "acme-admin",
        json={"name": "社長さん", "title": "社長", "email": "boss@example.jp"},
    )
    cid = made.json()["record"]["id"]
    assert 7 in made.json()["record"]["checkboxes"]
    log = site.call(
        "GET", f"/api/tenants/acme/workflow-log?record_type=contact&record_id={cid}", "acme-ro"
    ).json()
    assert [e["workflow"] for e in log] == ["vip"]
    inbox = site.call("GET", "/api/tenants/acme/notifications?unread=true", "acme-gen").json()
    assert [n["message"] for n in inbox] == ["社長が登録されました"]
    assert site.call(
        "POST", "/api/tenants/acme/notifications/read", "acme-gen", json={"ids": None}
    ).json() == {"marked": 1}
    status = site.call(
        "GET", f"/api/tenants/acme/records/contact/{cid}/blueprints", "acme-gen"
    ).json()
    assert [t["to"] for t in status[0]["transitions"]] == ["proposal"]
    moved = site.call(
        "POST",
        f"/api/tenants/acme/records/contact/{cid}/transition",
        "acme-gen",
        json={"to": "proposal"},
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["from"] == "lead"
    refused = site.call(
        "POST",
        f"/api/tenants/acme/records/contact/{cid}/transition",
        "acme-gen",
        json={"to": "won"},
    )
    assert refused.status_code == 403  # 'close' is for admins
    assert (
        site.call(
            "POST",
            f"/api/tenants/beta/records/contact/{cid}/transition",
            "beta-admin",
            json={"to": "won"},
        ).status_code
        == 404
    )


def test_the_server_scheduler_fires_due_rules_once(
    app: Provisioner, clock: FrozenClock, world: World
) -> None:
    from tests.crm.helpers import make
    from tests.workflows.helpers import with_rules

    with_rules(
        world,
        rule(
            "follow",
            "activity",
            "date",
            [{"type": "create_activity", "kind": "phone", "content": "3日後フォロー"}],
            field="activity.date",
            days=3,
        ),
    )
    admin = world.actor("acme")
    contact = make(world, admin, "contact", {"name": "苦情"})
    make(
        world,
        admin,
        "activity",
        {"contact_id": contact["id"], "date": "2026-11-20", "kind": "other", "content": "苦情"},
    )
    assert clock.now().date() == date(2026, 11, 23)  # 3 days later: due today
    first, second = DueScheduler(app, interval=60), DueScheduler(app, interval=60)
    reports = [first.run_once(), second.run_once()]  # two servers, one database
    assert [(r.fired, r.already) for r in reports if r is not None] == [(1, 0), (0, 1)]
