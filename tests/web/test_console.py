"""The console's pages and forms, through the real app (server-rendered HTML)."""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient

from tests.web.conftest import PASSWORD, Site, build_site
from tests.web.test_api import _rank_config


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


def _login(site: Site, login: str, client: TestClient | None = None) -> TestClient:
    client = client or site.client
    page = client.get("/login")
    r = client.post("/login", data={"login": login, "password": PASSWORD, "csrf": _csrf(page.text)})
    assert r.status_code == 200, r.text
    return client


def _text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_login_tenant_selection_home_and_switch(site: Site) -> None:
    client = site.client
    page = client.get("/login")
    assert "ログインID" in page.text  # Japanese by default
    r = client.post(
        "/login",
        data={"login": "acme-admin", "password": "wrong-password", "csrf": _csrf(page.text)},
    )
    assert r.status_code == 403
    assert "ログインIDまたはパスワードが違います" in r.text  # the server's message, translated
    assert "login id or password is wrong" not in r.text
    r = client.post(
        "/login", data={"login": "acme-admin", "password": PASSWORD, "csrf": _csrf(r.text)}
    )
    assert r.url.path == "/tenants"  # two tenants: choose, the first preselected
    checked = re.findall(r'value="([a-z-]+)" checked', r.text)
    assert checked == ["acme"]
    r = client.post("/switch", data={"csrf": _csrf(r.text), "tenant": "acme-tokyo", "next": "/"})
    assert r.url.path == "/"
    assert "acme-tokyo 株式会社" in r.text
    assert re.search(r'class="tenant selected"\s+data-tenant="acme-tokyo"', r.text)
    # one click in the header, from any page, back to acme
    r = client.post("/switch", data={"csrf": _csrf(r.text), "tenant": "acme", "next": "/keys"})
    assert r.url.path == "/keys"
    assert re.search(r'class="tenant selected"\s+data-tenant="acme"', r.text)
    # English
    r = client.get("/lang/en?next=/keys")
    assert "Generate a copy key" in r.text
    r = client.post("/logout", data={"csrf": _csrf(r.text)})
    assert r.url.path == "/login"
    assert client.get("/", follow_redirects=False).status_code == 303


def test_open_redirects_are_refused(site: Site) -> None:
    client = _login(site, "beta-admin")
    r = client.post(
        "/switch",
        data={"csrf": _csrf(client.get("/").text), "tenant": "beta", "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/"


def test_key_shown_once_then_send_then_approve_with_a_remap(site: Site) -> None:
    _rank_config(site, "acme", gold=True)
    _rank_config(site, "beta", gold=False)
    contact = site.ids["contact"]
    site.call(
        "PATCH",
        f"/api/tenants/acme/records/contact/{contact}",
        "acme-admin",
        json={"memo_2": "gold"},
    )
    admin = _login(site, "acme-admin")
    r = admin.post("/keys", data={"csrf": _csrf(admin.get("/keys").text)})
    key = re.search(r'<code id="new-key">([^<]+)</code>', r.text)
    assert key
    assert "2026-11-24T09:00:00Z" in r.text
    listing = admin.get("/keys")
    assert key.group(1) not in listing.text  # shown once
    assert "active" in listing.text
    # beta's admin sends, in a browser of their own
    other = build_site(site.app, site.clock)
    beta = _login(site, "beta-admin", other.client)
    r = beta.post("/send", data={"csrf": _csrf(beta.get("/send").text), "key": "WRONG-KEY"})
    assert r.status_code in (403, 422)
    r = beta.post("/send", data={"csrf": _csrf(r.text), "key": key.group(1)})
    assert r.status_code == 200, r.text
    assert 'id="sent"' in r.text
    inbox = admin.get("/inbox")
    transfer_id = re.search(r'href="/inbox/(\d+)"', inbox.text)
    assert transfer_id
    plan = admin.get(f"/inbox/{transfer_id.group(1)}")
    text = _text(plan.text)
    assert "チェック項目" in text  # the section, in the page's language
    assert "年賀状" in text
    assert (
        "選択リスト「rank」の値「gold」が削除されますが、1 件のレコードがこの値を使っています"
    ) in text
    assert 'name="remap:rank.gold"' in plan.text
    # approve asks first, saying what will change; nothing is applied yet
    ask = admin.post(
        f"/inbox/{transfer_id.group(1)}/approve",
        data={"csrf": _csrf(plan.text), "mode": "replace", "remap:rank.gold": "silver"},
    )
    assert ask.status_code == 200
    assert "承認の確認" in ask.text
    counts = re.search(r'<table class="counts" id="plan-counts">.*?</table>', ask.text, re.S)
    assert counts
    assert "チェック項目" in counts.group(0)
    # one customer holds gold and has checkbox 1 set: two impact lines, counted per line
    assert re.search(r'id="records-touched">2 件<', ask.text)
    assert 'name="remap:rank.gold" value="silver"' in ask.text  # carried to the real post
    assert site.world.transfer(int(transfer_id.group(1))).status == "pending"
    # approving without a remap is refused, with the reason, and changes nothing
    r = admin.post(
        f"/inbox/{transfer_id.group(1)}/approve",
        data={"csrf": _csrf(plan.text), "mode": "replace", "confirmed": "yes"},
    )
    assert r.status_code == 409
    assert "data_in_use" in r.text
    assert "置換先を選ぶか、強制適用にチェックしてください" in r.text  # not the CLI's flags
    r = admin.post(
        f"/inbox/{transfer_id.group(1)}/approve",
        data={
            "csrf": _csrf(plan.text),
            "mode": "replace",
            "confirmed": "yes",
            "remap:rank.gold": "silver",
        },
    )
    assert r.status_code == 200, r.text
    assert "適用しました" in r.text
    assert 'data-status="applied">適用済み<' in r.text
    page = admin.get(f"/customers/{contact}")
    assert "年賀状" in page.text  # the new label of checkbox 1, which the customer has
    assert "シルバー" in page.text  # memo_2 remapped, shown by its picklist label


def test_reject_from_the_inbox(site: Site) -> None:
    site.world.set_config("beta", {"mode": "individual"})
    key = site.call("POST", "/api/tenants/acme/keys", "acme-admin").json()["key"]
    transfer_id = site.call(
        "POST", "/api/tenants/beta/send", "beta-admin", json={"key": key}
    ).json()["id"]
    admin = _login(site, "acme-admin")
    page = admin.get(f"/inbox/{transfer_id}?mode=merge")
    assert page.status_code == 200
    r = admin.post(
        f"/inbox/{transfer_id}/reject", data={"csrf": _csrf(page.text), "reason": "不要"}
    )
    assert "却下の確認" in r.text  # asks first
    assert site.world.transfer(transfer_id).status == "pending"
    r = admin.post(
        f"/inbox/{transfer_id}/reject",
        data={"csrf": _csrf(page.text), "reason": "不要", "confirmed": "yes"},
    )
    assert "却下しました" in r.text
    assert site.world.transfer(transfer_id).status == "rejected"


def test_configuration_editor_sections(site: Site) -> None:
    admin = _login(site, "acme-admin")
    page = admin.get("/config")
    assert page.text.count('name="cb-') == 48 * 2
    csrf = _csrf(page.text)
    labels = {f"label:{k}": v for k, v in site.world.config("acme")["labels"].items()}
    r = admin.post(
        "/config/labels", data={**labels, "label:contact.name": "お客様名", "csrf": csrf}
    )
    assert "保存しました" in r.text
    boxes = {f"cb-{i}-label": f"チェック{i}" for i in range(1, 49)}
    boxes |= {f"cb-{i}-enabled": "on" for i in range(1, 48)}  # 48 disabled
    boxes["cb-1-label"] = "VIP"
    admin.post("/config/checkboxes", data={**boxes, "csrf": csrf})
    memos = {f"memo-{i}-label": f"メモ{i}" for i in range(1, 11)}
    memos |= {f"memo-{i}-type": "text" for i in range(1, 11)}
    memos |= {"memo-3-label": "ランク", "memo-3-type": "picklist", "memo-3-picklist": "sex"}
    admin.post("/config/memo_fields", data={**memos, "csrf": csrf})
    r = admin.post(
        "/config/picklists",
        data={
            "csrf": csrf,
            "pl-1-code": "activity_kind",
            "pl-1-label": "対応種別",
            "pl-1-n": "1",
            "pv1-1-code": "phone",
            "pv1-1-label": "電話",
            "pv1-1-active": "on",
            "pv1-2-code": "complaint",
            "pv1-2-label": "クレーム",
            "pv1-2-active": "on",
            "pl-2-code": "sex",
            "pl-2-label": "性別",
            "pl-2-n": "2",
            "pv2-1-code": "male",
            "pv2-1-label": "男性",
            "pv2-1-active": "on",
            "pv2-2-code": "female",
            "pv2-2-label": "女性",
            "pl-3-code": "rank",
            "pl-3-label": "ランク",
            "pl-3-n": "3",
            "pv3-1-code": "gold",
            "pv3-1-label": "ゴールド",
            "pv3-1-active": "on",
        },
    )
    assert r.status_code == 200, r.text
    admin.post(
        "/config/classifications",
        data={
            "csrf": csrf,
            "customer-1-code": "supplier",
            "customer-1-label": "仕入先",
            "customer-2-code": "agency",
            "customer-2-label": "代理店",
            "customer-2-parent": "supplier",
            "product-1-code": "",
            "product-1-label": "x",
        },
    )
    doc = site.world.config("acme")
    assert doc["labels"]["contact.name"] == "お客様名"
    assert doc["checkboxes"][0]["label"] == "VIP"
    assert doc["checkboxes"][47]["enabled"] is False
    assert doc["memo_fields"][2] == {
        "index": 3,
        "label": "ランク",
        "type": "picklist",
        "picklist": "sex",
    }
    kinds = next(p for p in doc["picklists"] if p["code"] == "activity_kind")
    assert [v["code"] for v in kinds["values"]] == ["phone", "complaint"]
    sex = next(p for p in doc["picklists"] if p["code"] == "sex")
    assert sex["values"][1] == {"code": "female", "label": "女性", "active": False}
    assert [p["code"] for p in doc["picklists"]] == ["activity_kind", "sex", "rank"]
    assert doc["classifications"]["customer"][1] == {
        "code": "agency",
        "label": "代理店",
        "parent": "supplier",
    }
    assert doc["classifications"]["product"] == []
    # an invalid change is refused with the reason, and nothing is saved
    version = site.world.version("acme")
    r = admin.post(
        "/config/memo_fields", data={**memos, "memo-3-picklist": "nothing", "csrf": csrf}
    )
    assert r.status_code == 422
    assert site.world.version("acme") == version
    # history, diff and rollback
    hist = admin.get("/config/history")
    assert f"v{version}" in hist.text
    diff = admin.get("/config/history?diff_from=1&diff_to=2")
    assert "contact.name" in _text(diff.text)
    assert "お客様名" in _text(diff.text)
    r = admin.post("/config/rollback", data={"csrf": _csrf(hist.text), "to": "1"})
    assert "元に戻しました" in r.text
    assert site.world.config("acme")["labels"]["contact.name"] == "氏名"


def test_read_only_user_cannot_change_the_configuration(site: Site) -> None:
    reader = _login(site, "acme-ro")
    page = reader.get("/config")
    assert page.status_code == 200
    r = reader.post("/config/labels", data={"csrf": _csrf(page.text), "label:contact.name": "x"})
    assert r.status_code == 403
    assert "管理者だけが行えます" in r.text
    assert reader.get("/keys").status_code == 403


def test_customer_search_page_and_screen_pop_use_the_labels(site: Site) -> None:
    site.world.set_config(
        "acme",
        {
            "labels": {**site.world.config("acme")["labels"], "contact.phone": "ご連絡先"},
            "memo_fields": [
                {"index": i, "label": "担当メモ" if i == 1 else f"メモ{i}"} for i in range(1, 11)
            ],
        },
    )
    user = _login(site, "acme-gen")
    r = user.get("/customers?q=ヤマダ")
    assert "1 件" in _text(r.text)
    assert "ご連絡先" in r.text
    page = user.get(f"/customers/{site.ids['contact']}")
    text = _text(page.text)
    assert "ご連絡先" in text
    assert "03-1234-5678" in text
    assert "担当メモ" in text
    assert "お得意様" in text
    assert "チェック1" in text
    assert "チェック3" in text
    assert "チェック2" not in text
    assert "見積依頼" in text
    pop = user.get("/pop?phone=０３１２３４５６７８")  # full-width digits
    assert "山田 太郎" in pop.text
    missing = user.get("/pop?phone=099-999-9999")
    assert missing.status_code == 200
    assert "電話番号 099-999-9999 の顧客はいません" in missing.text
    # another tenant's customer is not there
    outsider = build_site(site.app, site.clock)
    beta = _login(site, "beta-admin", outsider.client)
    assert beta.get(f"/customers/{site.ids['contact']}").status_code == 404
    assert "山田" not in beta.get("/pop?phone=0312345678").text


def test_an_upgrade_shows_base_ours_theirs_and_a_choice_per_conflict(site: Site) -> None:
    """Issue 13: the plan page of a three-way upgrade, and approving with a choice."""
    from tests.support import labelled

    w = site.world
    w.set_config("beta", labelled(w.config("beta"), 1, "年賀状"))
    first = w.send("beta", w.key("acme"))
    w.approve(first, "acme-admin")
    w.set_config("acme", labelled(w.config("acme"), 1, "年賀状(個人)"))
    w.set_config("beta", labelled(w.config("beta"), 1, "年賀状(法人)"))
    second = w.send("beta", w.key("acme"))
    admin = _login(site, "acme-admin")
    plan = admin.get(f"/inbox/{second}")
    assert plan.status_code == 200
    text = _text(plan.text)
    assert 'name="mode" value="upgrade"' in plan.text
    assert "checkboxes.1.label" in text
    assert "年賀状 年賀状(個人) 年賀状(法人)" in " ".join(text.split())
    r = admin.post(
        f"/inbox/{second}/approve",
        data={"csrf": _csrf(plan.text), "mode": "upgrade", "confirmed": "yes"},
    )
    assert r.status_code == 409
    assert "unresolved_conflicts" in r.text
    r = admin.post(
        f"/inbox/{second}/approve",
        data={
            "csrf": _csrf(plan.text),
            "mode": "upgrade",
            "resolve:checkboxes.1.label": "ours",
            "confirmed": "yes",
        },
    )
    assert r.status_code == 200, r.text
    assert w.config("acme")["checkboxes"][0]["label"] == "年賀状(個人)"


def _pending_transfer(site: Site) -> int:
    """beta sends its configuration to acme (a pending transfer in acme's inbox)."""
    site.world.set_config("beta", {"mode": "individual"})
    key = site.call("POST", "/api/tenants/acme/keys", "acme-admin").json()["key"]
    transfer_id: int = site.call(
        "POST", "/api/tenants/beta/send", "beta-admin", json={"key": key}
    ).json()["id"]
    return transfer_id


def test_what_a_role_may_not_do_is_not_offered_and_still_refused(site: Site) -> None:
    transfer_id = _pending_transfer(site)
    admin = _login(site, "acme-admin")
    page = admin.get(f"/inbox/{transfer_id}")
    assert 'href="/keys"' in page.text
    assert 'href="/send"' in page.text
    assert 'id="approve"' in page.text
    assert 'id="reject"' in page.text
    other = build_site(site.app, site.clock)
    user = _login(site, "acme-gen", other.client)
    page = user.get(f"/inbox/{transfer_id}")
    assert page.status_code == 403  # the copy feature is admins' only, the inbox included
    for control in ('href="/keys"', 'href="/send"', 'href="/inbox"', 'id="approve"', 'id="reject"'):
        assert control not in page.text  # ... and no admin-only control is offered
    config = user.get("/config")
    assert ">保存<" not in config.text
    assert config.text.count('<fieldset class="plain" disabled>') == 5
    history = user.get("/config/history")
    assert "/config/rollback" not in history.text
    # the server refuses what the page does not offer
    csrf = _csrf(config.text)
    r = user.post(f"/inbox/{transfer_id}/approve", data={"csrf": csrf, "confirmed": "yes"})
    assert r.status_code == 403
    r = user.post(f"/inbox/{transfer_id}/approve", data={"csrf": csrf})  # nor the question
    assert r.status_code == 403
    r = user.post(f"/inbox/{transfer_id}/reject", data={"csrf": csrf, "confirmed": "yes"})
    assert r.status_code == 403
    assert user.post("/keys", data={"csrf": csrf}).status_code == 403
    assert site.world.transfer(transfer_id).status == "pending"


def test_approve_then_roll_back_from_the_result_page(site: Site) -> None:
    transfer_id = _pending_transfer(site)
    before = site.world.version("acme")
    admin = _login(site, "acme-admin")
    page = admin.get(f"/inbox/{transfer_id}")
    ask = admin.post(
        f"/inbox/{transfer_id}/approve", data={"csrf": _csrf(page.text), "mode": "replace"}
    )
    assert "確認して適用" in ask.text
    assert site.world.version("acme") == before
    result = admin.post(
        f"/inbox/{transfer_id}/approve",
        data={"csrf": _csrf(ask.text), "mode": "replace", "confirmed": "yes"},
    )
    assert result.url.path == f"/inbox/{transfer_id}"
    assert re.search(
        r'<p class="notice" role="status" tabindex="-1" data-focus>適用しました', result.text
    )
    assert 'id="rollback-transfer"' in result.text  # offered where the result is shown
    assert site.world.config("acme")["mode"] == "individual"
    undone = admin.post(f"/inbox/{transfer_id}/rollback", data={"csrf": _csrf(result.text)})
    assert "適用を元に戻しました" in undone.text
    assert 'data-status="rolled_back"' in undone.text
    assert 'id="rollback-transfer"' not in undone.text
    assert site.world.config("acme")["mode"] == "corporate"


def test_error_pages_keep_the_layout(site: Site) -> None:
    user = _login(site, "acme-gen")
    for path, status in (("/no-such-page", 404), ("/customers/999999", 404), ("/keys", 403)):
        r = user.get(path)
        assert r.status_code == status, path
        assert 'class="menu"' in r.text, path  # the menu, the tenant switch, the logout
        assert 'action="/logout"' in r.text, path
        assert 'class="skip" href="#main"' in r.text, path
        assert 'role="alert"' in r.text, path
    assert "このページはありません" in user.get("/no-such-page").text
    # without a session: the layout, without the menu
    anonymous = build_site(site.app, site.clock).client
    r = anonymous.get("/no-such-page")
    assert r.status_code == 404
    assert 'class="skip"' in r.text
    assert 'class="menu"' not in r.text


def test_the_language_switch_keeps_the_page_and_its_query(site: Site) -> None:
    user = _login(site, "acme-gen")
    page = user.get("/customers?q=田&offset=50&msg=saved")
    link = re.search(r'<a class="lang" href="([^"]+)"', page.text)
    assert link
    r = user.get(html.unescape(link.group(1)), follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/customers?q=%E7%94%B0&offset=50"  # less the notice
    english = user.get(r.headers["location"])
    assert 'lang="en"' in english.text
    assert 'value="田"' in english.text


def test_the_send_form_keeps_the_key_after_an_error(site: Site) -> None:
    admin = _login(site, "beta-admin")
    r = admin.post(
        "/send",
        data={"csrf": _csrf(admin.get("/send").text), "key": "pcpy_mistyped", "only": "labels"},
    )
    assert r.status_code in (403, 422)
    assert 'value="pcpy_mistyped"' in r.text
    assert re.search(r'value="labels" checked', r.text)
    assert "コピーキー" in r.text
    assert 'role="alert" tabindex="-1" data-focus' in r.text  # focused on load


OUTSIDE = re.compile(r"""(?:src|href|action|url)\s*[=(]\s*["']?\s*(?:https?:)?//""", re.I)


def test_no_page_references_an_outside_host(site: Site) -> None:
    """Console pages and the API documentation load nothing from another host."""
    transfer_id = _pending_transfer(site)
    admin = _login(site, "acme-admin")
    pages = [
        "/login",
        "/tenants",
        "/",
        "/keys",
        "/send",
        "/inbox",
        f"/inbox/{transfer_id}",
        "/config",
        "/config/history?diff_from=1&diff_to=1",
        "/customers?q=ヤマダ",
        f"/customers/{site.ids['contact']}",
        "/pop?phone=0312345678",
        "/no-such-page",
        "/docs",
        "/redoc",
        "/static/console.css",
        "/static/console.js",
        "/customers",
        "/customers/new",
        f"/customers/{site.ids['contact']}/edit",
        "/customers/import",
        "/customers/bulk?action=update",
        "/users",
    ]
    for lang in ("ja", "en"):
        admin.get(f"/lang/{lang}")
        for path in pages:
            r = admin.get(path)
            assert r.status_code in (200, 404), path
            found = OUTSIDE.search(r.text)
            assert found is None, f"{path} references {r.text[found.start() :][:80]!r}"
    docs = admin.get("/docs").text
    assert "/static-offline-docs/swagger-ui-bundle.js" in docs
    assert '"validatorUrl": null' in docs
    assert '<script src="/redoc-assets/redoc.standalone.js">' in admin.get("/redoc").text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"):
        assert admin.get(f"/static-offline-docs/{asset}").status_code == 200, asset
    # ReDoc's script would fetch its footer logo from its vendor: served with ours instead
    redoc = admin.get("/redoc-assets/redoc.standalone.js")
    assert redoc.status_code == 200
    assert len(redoc.content) > 500_000
    assert b"cdn.redoc.ly" not in redoc.content
    assert b"/static-offline-docs/favicon.png" in redoc.content


def test_the_check_for_outside_hosts_can_fail() -> None:
    assert OUTSIDE.search('<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist">')
    assert OUTSIDE.search("<link href='//fonts.googleapis.com/css'>")
    assert not OUTSIDE.search('<script src="/static-offline-docs/swagger-ui-bundle.js">')
