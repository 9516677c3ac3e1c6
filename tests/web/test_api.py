"""The API over every resource, and every route against outsiders and the wrong role."""

from __future__ import annotations

import copy
import io
import re
from typing import Any

from provisioner.services.crm import records
from tests.support import labelled
from tests.web.conftest import Site

RANK = {
    "code": "rank",
    "label": "ランク",
    "values": [{"code": "gold", "label": "ゴールド"}, {"code": "silver", "label": "シルバー"}],
}


def _rank_config(site: Site, slug: str, *, gold: bool) -> None:
    data = site.world.config(slug)
    memos = copy.deepcopy(data["memo_fields"])
    memos[1] = {"index": 2, "label": "ランク", "type": "picklist", "picklist": "rank"}
    rank = copy.deepcopy(RANK)
    if not gold:
        rank["values"] = [v for v in rank["values"] if v["code"] != "gold"]
    boxes = copy.deepcopy(data["checkboxes"])
    boxes[0]["label"] = "年賀状"
    sections: dict[str, Any] = {"memo_fields": memos, "picklists": [*data["picklists"], rank]}
    if not gold:
        sections["checkboxes"] = boxes
    site.world.set_config(slug, sections)


def _pending_from_beta(site: Site) -> int:
    key = site.call("POST", "/api/tenants/acme/keys", "acme-admin").json()["key"]
    r = site.call("POST", "/api/tenants/beta/send", "beta-admin", json={"key": key})
    assert r.status_code == 201, r.text
    assert r.json()["target"] == "acme"
    transfer_id: int = r.json()["id"]
    return transfer_id


def test_send_plan_with_impact_and_approve_with_a_remap(site: Site) -> None:
    _rank_config(site, "acme", gold=True)
    _rank_config(site, "beta", gold=False)
    contact = site.ids["contact"]
    r = site.call(
        "PATCH",
        f"/api/tenants/acme/records/contact/{contact}",
        "acme-admin",
        json={"memo_2": "gold"},
    )
    assert r.status_code == 200, r.text
    transfer_id = _pending_from_beta(site)
    inbox = site.call("GET", "/api/tenants/acme/inbox?status=pending", "acme-admin").json()
    assert [t["id"] for t in inbox] == [transfer_id]
    shown = site.call("GET", f"/api/tenants/acme/inbox/{transfer_id}", "acme-admin").json()
    assert shown["source_tenant"] == "beta"
    changes = {(c["section"], c["key"], c["op"]) for c in shown["plan"]["changes"]}
    assert ("checkboxes", "1", "changed") in changes
    items = shown["plan"]["impact"]["items"]
    removed = [i for i in items if i["kind"] == "picklist_value_removed"]
    assert removed == [
        {
            "kind": "picklist_value_removed",
            "field": "contact.memo_2",
            "picklist": "rank",
            "value": "gold",
            "blocking": True,
            "count": 1,
        }
    ]
    # without a remap the approval is refused and nothing changes
    r = site.call("POST", f"/api/tenants/acme/inbox/{transfer_id}/approve", "acme-admin", json={})
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "data_in_use"
    r = site.call(
        "POST",
        f"/api/tenants/acme/inbox/{transfer_id}/approve",
        "acme-admin",
        json={"mode": "replace", "remaps": {"rank.gold": "silver"}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "applied"
    assert r.json()["remapped"] == {"rank.gold": 1}
    card = site.call("GET", f"/api/tenants/acme/records/contact/{contact}", "acme-admin").json()
    assert card["memo_2"] == "silver"
    doc = site.call("GET", "/api/tenants/acme/config", "acme-admin").json()["document"]
    assert doc["checkboxes"][0]["label"] == "年賀状"
    # the copy can be undone
    r = site.call("POST", f"/api/tenants/acme/inbox/{transfer_id}/rollback", "acme-admin")
    assert r.status_code == 200
    doc = site.call("GET", "/api/tenants/acme/config", "acme-admin").json()["document"]
    assert doc["checkboxes"][0]["label"] == "チェック1"


def test_receive_an_uploaded_bundle_and_reject_it(site: Site) -> None:
    key = site.call("POST", "/api/tenants/acme/keys", "acme-admin").json()["key"]
    raw = site.world.export("beta", key)
    r = site.call(
        "POST",
        "/api/tenants/acme/receive",
        "acme-admin",
        files={"bundle": ("beta.bundle.json", io.BytesIO(raw), "application/json")},
    )
    assert r.status_code == 201, r.text
    transfer_id = r.json()["id"]
    assert r.json()["status"] == "pending"
    r = site.call(
        "POST",
        "/api/tenants/acme/receive",
        "acme-admin",
        files={"bundle": ("x", io.BytesIO(b'{"payload": 1}'), "application/json")},
    )
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "bundle_rejected"
    version = site.world.version("acme")
    r = site.call(
        "POST",
        f"/api/tenants/acme/inbox/{transfer_id}/reject",
        "acme-admin",
        json={"reason": "not now"},
    )
    assert r.status_code == 200
    assert r.json()["status"] == "rejected"
    assert site.world.version("acme") == version
    r = site.call("POST", f"/api/tenants/acme/inbox/{transfer_id}/approve", "acme-admin")
    assert r.status_code == 409
    assert r.json()["error"] == {
        "code": "plan_conflict",
        "message": f"transfer {transfer_id} is already rejected",
        "request_id": r.headers["X-Request-ID"],
    }


def test_configuration_set_history_diff_rollback(site: Site) -> None:
    r = site.call(
        "PUT",
        "/api/tenants/acme/config",
        "acme-admin",
        json={"labels": {**site.world.config("acme")["labels"], "contact.name": "お客様名"}},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"version": 2, "changed": True}
    history = site.call("GET", "/api/tenants/acme/config/history", "acme-admin").json()
    assert [(v["version"], v["current"]) for v in history] == [(1, False), (2, True)]
    diff = site.call("GET", "/api/tenants/acme/config/diff?from=1&to=2", "acme-admin").json()
    assert diff["summary"] == {"labels": {"added": 0, "changed": 1, "removed": 0}}
    old = site.call("GET", "/api/tenants/acme/config?version=1", "acme-admin").json()
    assert old["document"]["labels"]["contact.name"] == "氏名"
    r = site.call("POST", "/api/tenants/acme/config/rollback", "acme-admin", json={"to": 1})
    assert r.json() == {"version": 3, "restored": 1, "changed": True}
    r = site.call(
        "PUT",
        "/api/tenants/acme/config",
        "acme-admin",
        json={"checkboxes": [{"index": 1, "label": ""}]},
    )
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "validation_failed"
    assert r.json()["error"]["problems"]


def test_copy_keys_generate_list_revoke(site: Site) -> None:
    made = site.call("POST", "/api/tenants/acme/keys", "acme-admin")
    assert made.status_code == 201
    body = made.json()
    assert body["expires_at"] == "2026-11-24T09:00:00Z"
    listed = site.call("GET", "/api/tenants/acme/keys", "acme-admin").json()
    assert [(k["id"], k["state"]) for k in listed] == [(body["id"], "active")]
    assert "key" not in listed[0]  # shown once, at generation only
    r = site.call("POST", f"/api/tenants/acme/keys/{body['id']}/revoke", "acme-admin")
    assert r.json()["state"] == "revoked"
    r = site.call("POST", "/api/tenants/beta/send", "beta-admin", json={"key": body["key"]})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "key_rejected"


def test_failed_redemptions_are_rate_limited(site: Site) -> None:
    key = site.call("POST", "/api/tenants/acme/keys", "acme-admin").json()["key"]
    # keys are case-insensitive: change the last two characters to other ones
    mistyped = key[:-2] + ("aa" if not key.lower().endswith("aa") else "bb")  # fails its checksum
    codes = [
        site.call(
            "POST", "/api/tenants/beta/send", "beta-admin", json={"key": mistyped}
        ).status_code
        for _ in range(11)
    ]
    # the server's limit: 10 failed redemptions per client address in 15 minutes
    assert codes == [403] * 10 + [429]
    r = site.call("POST", "/api/tenants/acme-tokyo/send", "acme-admin", json={"key": key})
    assert r.status_code == 429  # the right key too, from any tenant of that client
    assert 0 < int(r.headers["retry-after"]) <= 900
    site.clock.advance(minutes=15)
    r = site.call("POST", "/api/tenants/beta/send", "beta-admin", json={"key": key})
    assert r.status_code == 201, r.text


def test_records_search_lookup_children(site: Site) -> None:
    r = site.call(
        "POST",
        "/api/tenants/acme/records/contact",
        "acme-gen",
        json={"name": "田中 花子", "kana": "タナカ ハナコ", "phone": "06-1111-2222"},
        params={"purpose": "新規"},
    )
    assert r.status_code == 201, r.text
    new_id = r.json()["record"]["id"]
    found = site.call("GET", "/api/tenants/acme/search", "acme-ro", params={"q": "田中"}).json()
    assert found["total"] == 1
    assert found["items"][0]["id"] == new_id
    found = site.call(
        "GET", "/api/tenants/acme/search", "acme-ro", params={"checked": [1, 3], "unchecked": [2]}
    ).json()
    assert [i["id"] for i in found["items"]] == [site.ids["contact"]]
    card = site.call(
        "GET", "/api/tenants/acme/lookup", "acme-ro", params={"phone": "+81 3 1234 5678"}
    )
    assert card.status_code == 200
    assert card.json()["contact"]["name"] == "山田 太郎"
    assert card.json()["activities"][0]["content"] == "見積依頼"
    assert card.json()["activities"][0]["kind"] == "電話"  # labels; codes on request:
    coded = site.call(
        "GET",
        "/api/tenants/acme/lookup",
        "acme-ro",
        params={"phone": "+81 3 1234 5678", "codes": "true"},
    ).json()
    assert coded["activities"][0]["kind"] == "phone"
    r = site.call("GET", "/api/tenants/acme/lookup", "acme-ro", params={"phone": "０９０"})
    assert r.status_code == 404
    kids = site.call(
        "GET", f"/api/tenants/acme/contacts/{site.ids['contact']}/activity", "acme-ro"
    ).json()
    assert [k["kind"] for k in kids] == ["phone"]
    r = site.call("DELETE", f"/api/tenants/acme/records/contact/{new_id}", "acme-gen")
    assert r.status_code == 200
    assert (
        site.call("GET", f"/api/tenants/acme/records/contact/{new_id}", "acme-gen").status_code
        == 404
    )
    r = site.call("GET", "/api/tenants/acme/search", "acme-ro", params={"limit": 5000})
    assert r.status_code == 422


def test_csv_import_and_export(site: Site) -> None:
    csv_text = "氏名,フリガナ,電話番号\n佐藤 一郎,サトウ イチロウ,045-000-1111\n"
    raw = csv_text.encode("cp932")
    r = site.call(
        "POST",
        "/api/tenants/acme/import/customers",
        "acme-admin",
        files={"file": ("c.csv", io.BytesIO(raw), "text/csv")},
        data={"dry_run": "true"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "rows": 1,
        "created": 0,
        "encoding": "cp932",
        "companies_created": 0,
        "dry_run": True,
    }
    r = site.call(
        "POST",
        "/api/tenants/acme/import/customers",
        "acme-admin",
        files={"file": ("c.csv", io.BytesIO(raw), "text/csv")},
    )
    assert r.json()["created"] == 1
    r = site.call(
        "GET",
        "/api/tenants/acme/export/customers",
        "acme-gen",
        params={"columns": "name,phone", "q": "佐藤"},
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert r.content.decode("utf-8-sig").splitlines() == ["氏名,電話番号", "佐藤 一郎,045-000-1111"]
    bad = "氏名,ランク\n鈴木,???\n".encode()
    r = site.call(
        "POST",
        "/api/tenants/acme/import/customers",
        "acme-admin",
        files={"file": ("bad.csv", io.BytesIO(bad), "text/csv")},
    )
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "validation_failed"


def test_billing_of_the_tenant_group(site: Site) -> None:
    r = site.call("GET", "/api/tenants/acme/billing?month=2026-11", "acme-admin")
    assert r.status_code == 200, r.text
    bill = r.json()
    assert bill["group"] == "acme-group"
    # distinct users of acme and acme-tokyo: acme-admin (in both), acme-ro, acme-gen,
    # acme-tokyo-admin; plus one additional tenant
    assert bill["total"] == 4 * 5_500 + 50_000
    assert [line["quantity"] for line in bill["lines"]] == [4, 1]
    r = site.call("GET", "/api/tenants/beta/billing?month=2026-11", "beta-admin")
    assert r.status_code == 404
    r = site.call("GET", "/api/tenants/acme/billing?month=2026-13", "acme-admin")
    assert r.status_code == 422


def test_tenants(site: Site) -> None:
    listed = site.call("GET", "/api/tenants", "acme-admin").json()
    assert [(t["number"], t["slug"], t["role"]) for t in listed] == [
        (1, "acme", "admin"),
        (2, "acme-tokyo", "admin"),
    ]
    shown = site.call("GET", "/api/tenants/2", "acme-admin").json()
    assert shown["slug"] == "acme-tokyo"
    assert shown["group"] == "acme-group"


# --------------------------------------------------------------------------- the matrix

#: (method, path, request kwargs, who in acme may call it: "reader" | "writer" | "admin")
MATRIX: list[tuple[str, str, dict[str, Any], str]] = [
    ("GET", "/api/tenants/{t}", {}, "reader"),
    ("GET", "/api/tenants/{t}/config", {}, "reader"),
    ("PUT", "/api/tenants/{t}/config", {"json": {"mode": "individual"}}, "admin"),
    ("GET", "/api/tenants/{t}/config/history", {}, "reader"),
    ("GET", "/api/tenants/{t}/config/diff", {"params": {"from": 1, "to": 1}}, "reader"),
    ("POST", "/api/tenants/{t}/config/rollback", {"json": {"to": 1}}, "admin"),
    ("GET", "/api/tenants/{t}/keys", {}, "admin"),
    ("POST", "/api/tenants/{t}/keys", {}, "admin"),
    ("POST", "/api/tenants/{t}/keys/{key_id}/revoke", {}, "admin"),
    ("POST", "/api/tenants/{t}/send", {"json": {"key": "{key}"}}, "admin"),
    (
        "POST",
        "/api/tenants/{t}/receive",
        {"files": {"bundle": ("b", b"{}", "application/json")}},
        "admin",
    ),
    ("GET", "/api/tenants/{t}/inbox", {}, "admin"),
    ("GET", "/api/tenants/{t}/inbox/{transfer_id}", {}, "admin"),
    ("POST", "/api/tenants/{t}/inbox/{transfer_id}/approve", {"json": {}}, "admin"),
    ("POST", "/api/tenants/{t}/inbox/{transfer_id}/reject", {"json": {}}, "admin"),
    ("POST", "/api/tenants/{t}/inbox/{applied_id}/rollback", {}, "admin"),
    ("POST", "/api/tenants/{t}/records/{type_name}", {"json": {"name": "侵入 者"}}, "writer"),
    ("GET", "/api/tenants/{t}/records/{type_name}/{record_id}", {}, "reader"),
    (
        "PATCH",
        "/api/tenants/{t}/records/{type_name}/{record_id}",
        {"json": {"title": "x"}},
        "writer",
    ),
    ("DELETE", "/api/tenants/{t}/records/{type_name}/{record_id}", {}, "writer"),
    ("GET", "/api/tenants/{t}/contacts/{record_id}/{type_name}", {}, "reader"),
    ("GET", "/api/tenants/{t}/search", {"params": {"q": "山田"}}, "reader"),
    ("GET", "/api/tenants/{t}/companies/search", {"params": {"q": "株式"}}, "reader"),
    ("GET", "/api/tenants/{t}/lookup", {"params": {"phone": "0312345678"}}, "reader"),
    ("POST", "/api/tenants/{t}/calls/{call_ref}/note", {"json": {"note": "侵入"}}, "writer"),
    (
        "POST",
        "/api/tenants/{t}/import/customers",
        {"files": {"file": ("c.csv", "氏名\n侵入 者\n".encode(), "text/csv")}},
        "admin",
    ),
    (
        "POST",
        "/api/tenants/{t}/import/inquiries",
        {
            "files": {
                "file": (
                    "i.csv",
                    "phone,date,content\n0312345678,2026-11-01,侵入\n".encode(),
                    "text/csv",
                )
            }
        },
        "admin",
    ),
    ("GET", "/api/tenants/{t}/export/{kind}", {}, "writer"),
    ("GET", "/api/tenants/{t}/billing", {"params": {"month": "2026-11"}}, "admin"),
    ("GET", "/api/tenants/{t}/workflows", {}, "reader"),
    ("PUT", "/api/tenants/{t}/workflows/{code}/state", {"json": {"state": "active"}}, "admin"),
    ("POST", "/api/tenants/{t}/workflows/{code}/dry-run", {}, "reader"),
    ("GET", "/api/tenants/{t}/workflow-log", {}, "reader"),
    ("GET", "/api/tenants/{t}/notifications", {}, "reader"),
    ("POST", "/api/tenants/{t}/notifications/read", {"json": {"ids": None}}, "reader"),
    ("GET", "/api/tenants/{t}/records/{type_name}/{record_id}/blueprints", {}, "reader"),
    (
        "POST",
        "/api/tenants/{t}/records/{type_name}/{record_id}/transition",
        {"json": {"to": "won"}},
        "writer",
    ),
    ("GET", "/api/tenants/{t}/users", {}, "admin"),
    ("PUT", "/api/tenants/{t}/users/{login}/role", {"json": {"role": "admin"}}, "admin"),
    ("POST", "/api/tenants/{t}/users/{login}/disable", {}, "admin"),
    ("POST", "/api/tenants/{t}/users/{login}/enable", {}, "admin"),
    ("DELETE", "/api/tenants/{t}/users/{login}", {}, "admin"),
    ("POST", "/api/tenants/{t}/users/{login}/password-reset", {}, "admin"),
    ("PUT", "/api/tenants/{t}/users/{login}/department", {"json": {"code": None}}, "admin"),
    ("GET", "/api/tenants/{t}/user-departments", {}, "admin"),
    ("POST", "/api/tenants/{t}/user-departments", {"json": {"code": "x", "name": "X"}}, "admin"),
]
#: routes that are not tenant-scoped (the session's own)
UNSCOPED = {
    ("POST", "/api/login"),
    ("POST", "/api/logout"),
    ("GET", "/api/session"),
    ("POST", "/api/session/tenant"),
    ("GET", "/api/tenants"),
}


def _path(template: str, values: dict[str, Any], route: str) -> str:
    type_name = "activity" if route.endswith("/contacts/{record_id}/{type_name}") else "contact"
    return template.format(type_name=type_name, kind="customers", code="vip", **values)


def test_the_matrix_covers_every_api_route(site: Site) -> None:
    """(Each record type has its own operations, made by one function: the matrix calls
    the contact's and, under a contact, the activities'.)"""
    spec = site.client.get("/openapi.json").json()
    types = "|".join(records.TYPES)
    per_type = re.compile(rf"(/records|/contacts/{{record_id}})/({types})\b")
    routes = {
        (m.upper(), per_type.sub(r"\1/{type_name}", path))
        for path, ops in spec["paths"].items()
        for m in ops
    }
    covered = {
        (m, p.replace("{t}", "{tenant}").replace("{applied_id}", "{transfer_id}"))
        for m, p, _, _ in MATRIX
    } | UNSCOPED
    assert routes == covered


def test_outsiders_and_the_wrong_role_get_no_data(site: Site) -> None:
    """For every tenant-scoped route: another tenant's admin gets 403/404 and nothing of
    acme's data, by naming acme or by naming acme's ids in its own tenant; a user without
    the right role gets 403; acme's data is unchanged by all of it."""
    site.world.set_config("beta", labelled(site.world.config("beta"), 2, "お中元"))
    applied = _pending_from_beta(site)
    r = site.call("POST", f"/api/tenants/acme/inbox/{applied}/approve", "acme-admin")
    assert r.json()["outcome"] == "applied"
    site.world.set_config(
        "acme",
        {
            "workflows": [  # a paused rule: the workflow routes' object
                {
                    "code": "vip",
                    "label": "VIP",
                    "active": False,
                    "object": "contact",
                    "trigger": {"event": "created", "field": None},
                    "actions": [{"type": "set_checkbox", "index": 7, "checked": True}],
                }
            ]
        },
    )
    transfer_id = _pending_from_beta(site)
    key = site.call("POST", "/api/tenants/acme/keys", "acme-admin").json()
    secrets_of_acme = [
        "山田",
        "ヤマダ",
        "1234-5678",
        key["selector"],
        "見積依頼",
        site.world.transfer(transfer_id).bundle_id,
    ]
    before = {
        p: site.call("GET", p, "acme-admin").json()
        for p in (
            "/api/tenants/acme/config",
            "/api/tenants/acme/keys",
            "/api/tenants/acme/inbox",
            f"/api/tenants/acme/records/contact/{site.ids['contact']}",
        )
    }
    popped = site.call(
        "GET",
        "/api/tenants/acme/lookup",
        "acme-gen",
        params={"phone": "0312345678", "call_id": "pbx-acme"},
    )
    assert popped.status_code == 200, popped.text
    values = {
        "transfer_id": transfer_id,
        "key_id": key["id"],
        "record_id": site.ids["contact"],
        "applied_id": applied,
        "call_ref": "pbx-acme",
        "login": "acme-gen",
    }
    beta_key = site.call("POST", "/api/tenants/beta/keys", "beta-admin").json()["key"]

    def kwargs(raw: dict[str, Any], send_key: str) -> dict[str, Any]:
        out = copy.deepcopy(raw)
        if "json" in out and out["json"].get("key") == "{key}":
            out["json"]["key"] = send_key
        return out

    failures = []
    for method, template, raw, who in MATRIX:
        route = template
        # 1. beta's admin names acme
        path = _path(template, {"t": "acme", **values}, route)
        r = site.call(method, path, "beta-admin", **kwargs(raw, beta_key))
        if (
            r.status_code not in (403, 404)
            or set(r.json()) != {"error"}
            or any(s in r.text for s in secrets_of_acme)
        ):
            failures.append(f"outsider {method} {path}: {r.status_code} {r.text[:200]}")
        # 2. beta's admin names acme's ids inside beta
        if any(f"{{{k}}}" in template for k in values):
            path = _path(template, {"t": "beta", **values}, route)
            r = site.call(method, path, "beta-admin", **kwargs(raw, beta_key))
            if r.status_code != 404 or any(s in r.text for s in secrets_of_acme):
                failures.append(f"outsider ids {method} {path}: {r.status_code} {r.text[:200]}")
        # 3. acme's read-only user on routes that need more
        if who != "reader":
            path = _path(template, {"t": "acme", **values}, route)
            r = site.call(method, path, "acme-ro", **kwargs(raw, beta_key))
            if r.status_code != 403 or r.json()["error"]["code"] != "permission_denied":
                failures.append(f"read_only {method} {path}: {r.status_code} {r.text[:200]}")
        # 4. a general user on admin routes
        if who == "admin":
            path = _path(template, {"t": "acme", **values}, route)
            r = site.call(method, path, "acme-gen", **kwargs(raw, beta_key))
            if r.status_code != 403:
                failures.append(f"general {method} {path}: {r.status_code} {r.text[:200]}")
        # 5. and the reader may read
        if who == "reader":
            path = _path(template, {"t": "acme", **values}, route)
            r = site.call(method, path, "acme-ro", **kwargs(raw, beta_key))
            if r.status_code != 200:
                failures.append(f"reader {method} {path}: {r.status_code} {r.text[:200]}")
    assert failures == [], "\n".join(failures)
    after = {p: site.call("GET", p, "acme-admin").json() for p in before}
    assert after == before


def test_text_the_database_cannot_store_is_a_422_not_a_server_error(site: Site) -> None:
    """A NUL character is refused alike on every backend (SQLite used to store it)."""
    r = site.call(
        "POST", "/api/tenants/acme/records/contact", "acme-admin", json={"name": "NUL\x00文字"}
    )
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    error.pop("request_id", None)
    assert error == {
        "code": "validation_failed",
        "message": "the contact: name contains a NUL character (U+0000)",
        "hint": "remove the NUL characters: no text field can hold one",
    }


def test_an_upgrade_through_the_api(site: Site) -> None:
    """Issue 13: the plan carries the conflicts; the approval resolves them (keep/take/prefer)."""
    w = site.world
    w.set_config("beta", labelled(w.config("beta"), 1, "年賀状"))
    w.approve(w.send("beta", w.key("acme")), "acme-admin")
    w.set_config("acme", labelled(w.config("acme"), 1, "A"))
    w.set_config("beta", labelled(w.config("beta"), 1, "B"))
    second = w.send("beta", w.key("acme"))
    plan = site.call("GET", f"/api/tenants/acme/inbox/{second}", "acme-admin").json()["plan"]
    assert plan["mode"] == "upgrade"
    assert [c["address"] for c in plan["upgrade"]["conflicts"]] == ["checkboxes.1.label"]
    refused = site.call("POST", f"/api/tenants/acme/inbox/{second}/approve", "acme-admin", json={})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "unresolved_conflicts"
    outsider = site.call(
        "POST", f"/api/tenants/beta/inbox/{second}/approve", "beta-admin", json={"prefer": "theirs"}
    )
    assert outsider.status_code == 404  # the service checks the tenant itself
    done = site.call(
        "POST",
        f"/api/tenants/acme/inbox/{second}/approve",
        "acme-admin",
        json={"take": ["checkboxes.1"]},
    )
    assert done.status_code == 200, done.text
    assert w.config("acme")["checkboxes"][0]["label"] == "B"


def test_jobs_entered_by_hand_through_the_api(site: Site) -> None:
    contact = site.ids["contact"]
    r = site.call(
        "POST",
        "/api/tenants/acme/records/job",
        "acme-gen",
        json={
            "contact_id": contact,
            "kind": "concurrent",
            "company_name": "協会",
            "title": "理事",
            "date_from": "2024-04-01",
        },
    )
    assert r.status_code == 201, r.text
    job = r.json()["record"]
    assert (job["kind"], job["date_to"]) == ("concurrent", "")
    listed = site.call("GET", f"/api/tenants/acme/contacts/{contact}/job", "acme-ro").json()
    assert [j["id"] for j in listed] == [job["id"]]
    shown = site.call("GET", f"/api/tenants/acme/records/contact/{contact}", "acme-ro").json()
    assert [j["company_name"] for j in shown["jobs"]] == ["協会"]
    r = site.call(
        "PATCH",
        f"/api/tenants/acme/records/job/{job['id']}",
        "acme-gen",
        json={"date_to": "2020-01-01"},
    )
    assert r.status_code == 422
    assert "before date_from" in r.text


def test_company_search_through_the_api(site: Site) -> None:
    for name in ("渋谷商事", "新宿物産"):
        r = site.call(
            "POST",
            "/api/tenants/acme/records/company",
            "acme-gen",
            json={"name": name, "address": "東京都" + name[:2] + "区"},
        )
        assert r.status_code == 201, r.text
    found = site.call(
        "GET",
        "/api/tenants/acme/companies/search",
        "acme-ro",
        params={"q": "渋谷 新宿", "match": "any", "sort": "-id"},
    ).json()
    assert [i["name"] for i in found["items"]] == ["新宿物産", "渋谷商事"]
    assert found["total"] == 2
    r = site.call(
        "GET", "/api/tenants/acme/companies/search", "acme-ro", params={"sort": "capital"}
    )
    assert r.status_code == 422
