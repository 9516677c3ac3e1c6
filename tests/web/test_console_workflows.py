"""The console's automation pages: workflows, dry run, activation, notifications, and the
blueprint buttons of the customer page."""

from __future__ import annotations

from tests.web.conftest import Site, build_site
from tests.web.test_console import _csrf, _login, _text
from tests.workflows.helpers import rule
from tests.workflows.test_services import PIPELINE, STAGES

VIP = rule(
    "vip",
    "contact",
    "created",
    [
        {"type": "set_checkbox", "index": 7, "checked": True},
        {"type": "notify", "role": "admin", "message": "社長が登録されました"},
    ],
    when=[{"field": "contact.title", "op": "eq", "value": "社長"}],
    active=False,
)


def test_workflow_page_dry_run_activate_and_the_inbox_badge(site: Site) -> None:
    site.world.set_config("acme", {"workflows": [VIP]})
    admin = _login(site, "acme-admin")
    page = admin.get("/workflows")
    assert page.status_code == 200
    assert "停止中" in _text(page.text)
    dry = admin.get("/workflows/vip/dry-run")
    assert "1 件中 0 件が条件に一致します" in _text(dry.text)
    assert "何も書き込まれていません" in _text(dry.text)
    r = admin.post("/workflows/vip/state", data={"csrf": _csrf(page.text), "state": "active"})
    assert r.status_code == 200
    assert "ワークフローを有効にしました" in _text(r.text)
    assert site.world.config("acme")["workflows"][0]["active"] is True
    site.call(
        "POST",
        "/api/tenants/acme/records/contact",
        "acme-admin",
        json={"name": "社長さん", "title": "社長"},
    )
    page = admin.get("/workflows")
    assert 'class="badge">1' in page.text  # the unread notification, on every page
    inbox = admin.get("/notifications")
    assert "社長が登録されました" in _text(inbox.text)
    r = admin.post("/notifications/read", data={"csrf": _csrf(inbox.text)})
    assert 'class="badge"' not in r.text
    # a general user sees the list and the dry run, not the switch; the server refuses it
    other = build_site(site.app, site.clock)
    user = _login(site, "acme-gen", other.client)
    listing = user.get("/workflows")
    assert "/workflows/vip/state" not in listing.text
    refused = user.post(
        "/workflows/vip/state", data={"csrf": _csrf(listing.text), "state": "paused"}
    )
    assert refused.status_code == 403


def test_customer_page_offers_the_allowed_transitions(site: Site) -> None:
    site.world.set_config(
        "acme",
        {"blueprints": [PIPELINE], "picklists": [*site.world.config("acme")["picklists"], STAGES]},
    )
    contact = site.ids["contact"]
    site.call(
        "PATCH",
        f"/api/tenants/acme/records/contact/{contact}",
        "acme-admin",
        json={"email": "yamada@example.jp"},
    )
    admin = _login(site, "acme-admin")
    page = admin.get(f"/customers/{contact}")
    assert "商談: 見込み" in _text(page.text)
    assert "提案する → 提案" in _text(page.text)
    r = admin.post(
        f"/customers/{contact}/transition",
        data={"csrf": _csrf(page.text), "blueprint": "deal", "to": "proposal"},
    )
    assert r.status_code == 200
    assert "商談: 提案" in _text(r.text)
    assert "受注 → 受注" in _text(r.text)  # 'close' is allowed to admins
    refused = admin.post(
        f"/customers/{contact}/transition",
        data={"csrf": _csrf(r.text), "blueprint": "deal", "to": "lead"},
    )
    assert refused.status_code == 422


def test_transfer_plan_says_how_many_records_each_incoming_rule_matches(site: Site) -> None:
    site.world.set_config("beta", {"workflows": [VIP]})
    site.call(
        "POST",
        "/api/tenants/acme/records/contact",
        "acme-admin",
        json={"name": "社長さん", "title": "社長"},
    )
    key = site.call("POST", "/api/tenants/acme/keys", "acme-admin").json()["key"]
    sent = site.call("POST", "/api/tenants/beta/send", "beta-admin", json={"key": key})
    assert sent.status_code == 201, sent.text
    transfer_id = sent.json()["id"]
    shown = site.call("GET", f"/api/tenants/acme/inbox/{transfer_id}", "acme-admin").json()
    flows = shown["plan"]["impact"]["workflows"]
    assert [(w["workflow"], w["change"], w["state"], w["count"], w["examined"]) for w in flows] == [
        ("vip", "new", "paused", 1, 2)
    ]
    admin = _login(site, "acme-admin")
    page = _text(admin.get(f"/inbox/{transfer_id}").text)
    assert "受け取るワークフローが今のデータで該当する件数" in page
    assert (
        "ワークフロー vip（vip、新規、停止中）: 条件に該当する contact は現在 2 件中 1 件"
    ) in page
