"""The console's CRM pages (issue 12): the customer list with the full search, paging and
sorting; create and edit forms from the configuration; activities and purchases; CSV
import (dry run) and export; bulk update and delete after a confirmation; user admin.
On SQLite and PostgreSQL (the ``site`` fixture)."""

from __future__ import annotations

import csv
import io
import re

from fastapi.testclient import TestClient

from provisioner.services import actors
from provisioner.services.crm import records
from tests.web.conftest import Site, build_site
from tests.web.test_console import _csrf, _login, _text


def _customers(site: Site, count: int = 24) -> list[int]:
    """``count`` more customers: kana in reverse order of their id, box 5 on the even ones,
    a purchase (paid when odd) for every third, born 1980 + i."""
    made = []
    with site.app.transaction() as ctx:
        actor = actors.resolve(ctx, "acme-admin", "acme")
        for i in range(count):
            saved = records.create(
                ctx,
                actor,
                "contact",
                {
                    "name": f"顧客 {i:02d}",
                    "kana": f"コキャク {99 - i:02d}",
                    "phone": f"06-1111-{i:04d}",
                    "birthday": f"{1980 + i}-04-01",
                    "checkboxes": [5] if i % 2 == 0 else [],
                },
            )
            made.append(saved.record["id"])
            if i % 3 == 0:
                records.create(
                    ctx,
                    actor,
                    "purchase",
                    {
                        "contact_id": saved.record["id"],
                        "date": "2026-10-01",
                        "product_name": "年賀状セット",
                        "quantity": 2,
                        "unit_price": 500,
                        "paid": i % 2 == 1,
                        "payment_method": "cash",
                    },
                )
    return made


def _names(page: str) -> list[str]:
    table = re.search(r'<table id="customer-table">.*?</table>', page, re.S)
    assert table, page[-2000:]
    return re.findall(r'<a href="/customers/\d+">([^<]+)</a>', table.group(0))


def test_the_list_searches_by_every_condition_pages_and_sorts(site: Site) -> None:
    boxes = [dict(c) for c in site.world.config("acme")["checkboxes"]]
    boxes[4]["label"] = "年賀状送付"
    site.world.set_config("acme", {"checkboxes": boxes})
    _customers(site)
    user = _login(site, "acme-gen")
    page = user.get("/customers")  # every customer, 50 a page
    assert page.status_code == 200
    assert "25 件" in _text(page.text)
    # the 48 tri-state controls, each under its configured label
    assert len(re.findall(r'<select id="s-cb\d+" name="cb\d+">', page.text)) == 48
    assert re.search(r'<label for="s-cb5">年賀状送付</label>', page.text)
    # checkbox 5 checked / unchecked
    on = user.get("/customers?cb5=on")
    assert "12 件" in _text(on.text)
    assert 'value="on" selected' in on.text  # the form keeps the condition
    assert "13 件" in _text(user.get("/customers?cb5=off").text)
    # text with AND / OR, and OR over text and a checkbox
    assert "0 件" in _text(user.get("/customers?q=顧客+山田").text)
    assert "2 件" in _text(user.get("/customers?q=顧客+01&match=all&f_name=0").text)
    assert "13 件" in _text(user.get("/customers?q=山田&cb5=on&match=any").text)
    # dates, age, purchase conditions (paid, payment method), field conditions
    assert "5 件" in _text(
        user.get("/customers?birthday_from=1990-01-01&birthday_to=1994-12-31").text
    )
    assert "4 件" in _text(
        user.get("/customers?purchase_paid=no&purchase_payment_method=cash").text
    )
    assert "4 件" in _text(user.get("/customers?purchase_paid=yes").text)
    assert "1 件" in _text(user.get("/customers?f_phone=0611110003").text)
    assert "3 件" in _text(user.get("/customers?age_from=40&age_to=42").text)  # on 2026-11-23
    # paging: 20 a page, page 2 of 2, the search carried in the links
    first = user.get("/customers?per=20&sort=name")
    assert "1 / 2 ページ" in _text(first.text)
    assert 'href="/customers?sort=name&amp;per=20&amp;page=2"' in first.text
    second = user.get("/customers?per=20&sort=name&page=2")
    assert "(21–25)" in _text(second.text)
    assert len(_names(second.text)) == 5
    # sorting: kana descending is the reverse of kana ascending; the header says so
    down = user.get("/customers?sort=-kana&f_name=顧客")
    up = user.get("/customers?sort=kana&f_name=顧客")
    assert _names(down.text) == list(reversed(_names(up.text)))
    assert 'aria-sort="descending"' in down.text
    # a bad condition is a clear error, in the page's language, not a traceback
    bad = user.get("/customers?created_from=2026-13-01")
    assert bad.status_code == 422
    assert "created_from" in bad.text
    assert user.get("/customers?sort=secret").status_code == 422


def test_create_and_edit_forms_follow_the_configuration(site: Site) -> None:
    w = site.world
    memos = [dict(m) for m in w.config("acme")["memo_fields"]]
    memos[1] = {"index": 2, "label": "ランク", "type": "picklist", "picklist": "rank"}
    w.set_config(
        "acme",
        {
            "labels": {**w.config("acme")["labels"], "contact.phone": "ご連絡先"},
            "memo_fields": memos,
            "picklists": [
                *w.config("acme")["picklists"],
                {
                    "code": "rank",
                    "label": "ランク",
                    "values": [
                        {"code": "gold", "label": "ゴールド"},
                        {"code": "silver", "label": "シルバー"},
                    ],
                },
            ],
            "input_rules": {**w.config("acme")["input_rules"], "phone_format": "hyphen"},
        },
    )
    user = _login(site, "acme-gen")
    form = user.get("/customers/new")
    assert form.status_code == 200
    assert '<label for="f-phone">ご連絡先</label>' in form.text
    assert '<option value="gold">ゴールド</option>' in form.text  # the memo's pick-list
    assert "ハイフン区切り（03-1234-5678）で保存します" in form.text  # the input rule
    # refused: the problems beside their fields, in Japanese, and the form kept
    r = user.post(
        "/customers/new",
        data={"csrf": _csrf(form.text), "name": "", "email": "not-an-address", "kana": "スズキ"},
    )
    assert r.status_code == 422
    assert 'aria-invalid="true"' in r.text
    assert re.search(r'id="f-email-problem">メールアドレスの形式ではありません', r.text)
    assert re.search(r'id="f-name-problem">入力してください', r.text)
    # the summary on top links each problem to its field, under the field's label
    assert '<a href="#f-email">メール: メールアドレスの形式ではありません。</a>' in r.text
    assert "入力内容に誤りがあります" in r.text  # the service's message, translated
    assert 'value="スズキ"' in r.text
    r = user.post(
        "/customers/new",
        data={
            "csrf": _csrf(form.text),
            "name": "鈴木 一郎",
            "kana": "スズキ イチロウ",
            "phone": "0312340000",
            "memo_2": "gold",
            "checkboxes": ["2", "4"],
        },
    )
    assert r.status_code == 200, r.text
    new_id = int(re.search(r"/customers/(\d+)", str(r.url)).group(1))  # type: ignore[union-attr]
    text = _text(r.text)
    assert "登録しました" in text
    assert "03-1234-0000" in text  # the phone format applied
    assert "ゴールド" in text
    # edit: untick a box, clear the memo, a wrong pick is refused
    edit = user.get(f"/customers/{new_id}/edit")
    assert 'value="鈴木 一郎"' in edit.text
    assert re.search(r'value="2" checked', edit.text)
    r = user.post(
        f"/customers/{new_id}/edit",
        data={"csrf": _csrf(edit.text), "name": "鈴木 一郎", "memo_2": "bronze"},
    )
    assert r.status_code == 422
    assert "選択肢にない値です" in r.text
    r = user.post(
        f"/customers/{new_id}/edit",
        data={
            "csrf": _csrf(edit.text),
            "name": "鈴木 一郎",
            "memo_2": "",
            "checkboxes": ["4"],
            "purpose": "訂正",
        },
    )
    assert r.status_code == 200
    with site.app.transaction() as ctx:
        shown = records.show(ctx, actors.resolve(ctx, "acme-admin", "acme"), "contact", new_id)
    assert shown["checkboxes"] == [4]
    assert shown["memo_2"] == ""
    assert shown["phone"] == "03-1234-0000"  # a field the post leaves out is kept
    # the customer's company is the one selected (and so kept on save)
    with site.app.transaction() as ctx:
        actor = actors.resolve(ctx, "acme-admin", "acme")
        company = records.create(ctx, actor, "company", {"name": "鈴木商事"}).record["id"]
        records.update(ctx, actor, "contact", new_id, {"company_id": company})
    edit = user.get(f"/customers/{new_id}/edit")
    assert re.search(rf'<option value="{company}" selected>鈴木商事', edit.text)
    # a read-only user is not offered the forms, and the service refuses them anyway
    reader = _login(site, "acme-ro", build_client(site))
    assert "/customers/new" not in reader.get("/customers").text
    assert (
        reader.post(
            "/customers/new", data={"csrf": _csrf(reader.get("/customers").text), "name": "x"}
        ).status_code
        == 403
    )


def build_client(site: Site) -> TestClient:
    """A browser of its own (another session)."""
    return build_site(site.app, site.clock).client


def test_activities_and_purchases_are_added_from_the_customer_page(site: Site) -> None:
    contact = site.ids["contact"]
    user = _login(site, "acme-gen")
    page = user.get(f"/customers/{contact}")
    assert f'action="/customers/{contact}/activities"' in page.text
    assert '<option value="visit">訪問</option>' in page.text
    r = user.post(
        f"/customers/{contact}/activities",
        data={
            "csrf": _csrf(page.text),
            "date": "2026-11-20",
            "kind": "visit",
            "content": "新商品の説明",
            "content_1": "次回訪問 12月",
        },
    )
    assert r.status_code == 200
    assert "対応履歴を追加しました" in r.text
    assert "新商品の説明" in r.text
    bad = user.post(
        f"/customers/{contact}/purchases",
        data={
            "csrf": _csrf(page.text),
            "date": "2026-11-20",
            "product_name": "カレンダー",
            "quantity": "3",
            "unit_price": "1000",
            "amount": "2000",
        },
    )
    assert bad.status_code == 422
    assert re.search(
        r'id="p-amount-problem">金額が 数量 × 単価（3 x 1000 = 3000）と一致しません', bad.text
    )
    assert 'value="カレンダー"' in bad.text  # the form is kept
    r = user.post(
        f"/customers/{contact}/purchases",
        data={
            "csrf": _csrf(page.text),
            "date": "2026-11-20",
            "product_name": "カレンダー",
            "quantity": "3",
            "unit_price": "1000",
            "paid": "on",
            "payment_method": "cash",
        },
    )
    assert "購入履歴を追加しました" in r.text
    assert "3000" in _text(r.text)
    # without the form's token: refused
    assert (
        user.post(f"/customers/{contact}/activities", data={"date": "2026-11-20"}).status_code
        == 403
    )


def test_export_then_import_with_a_dry_run_report(site: Site) -> None:
    _customers(site, 3)
    admin = _login(site, "acme-admin")
    listing = admin.get("/customers?f_name=顧客")
    assert 'action="/customers/export"' in listing.text
    assert "data-download" in listing.text  # the progress-showing download
    r = admin.get("/customers/export?f_name=顧客&sort=-kana&kind=customers")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-length"] == str(len(r.content))
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert len(rows) == 4
    assert [row[rows[0].index("氏名")] for row in rows[1:]] == ["顧客 00", "顧客 01", "顧客 02"]
    # into another tenant: dry run first (nothing written), then for real
    other = _login(site, "beta-admin", build_client(site))
    form = other.get("/customers/import")
    assert form.status_code == 200
    dry = other.post(
        "/customers/import",
        data={"csrf": _csrf(form.text), "dry_run": "on"},
        files={"file": ("acme.csv", r.content, "text/csv")},
    )
    assert dry.status_code == 200, dry.text
    assert 'id="import-rows">3<' in dry.text
    assert "何も書き込んでいません" in dry.text
    assert "0 件" in _text(other.get("/customers").text)
    done = other.post(
        "/customers/import",
        data={"csrf": _csrf(form.text)},
        files={"file": ("acme.csv", r.content, "text/csv")},
    )
    assert 'id="import-created">3<' in done.text
    assert "3 件" in _text(other.get("/customers").text)
    # a bad file: each problem by row and column, nothing imported
    bad = "氏名,電話番号\r\n佐藤,03-1111-2222\r\n\r\n,0311112222\r\n".encode()
    r = other.post(
        "/customers/import",
        data={"csrf": _csrf(form.text), "dry_run": "on"},
        files={"file": ("bad.csv", bad, "text/csv")},
    )
    assert r.status_code == 422
    problems = re.search(r'<table id="import-problems">.*?</table>', r.text, re.S)
    assert problems
    assert re.search(r"<td>4</td><td>氏名</td><td>入力してください。</td>", problems.group(0))
    # no file chosen
    assert (
        other.post(
            "/customers/import",
            data={"csrf": _csrf(form.text)},
            files={"file": ("", b"", "text/csv")},
        ).status_code
        == 422
    )
    # a general user without the import permission is not offered it
    assert "/customers/import" not in _login(site, "acme-gen").get("/customers").text


def test_bulk_update_and_delete_ask_first(site: Site) -> None:
    made = _customers(site, 6)
    admin = _login(site, "acme-admin")
    listing = admin.get("/customers?f_name=顧客&cb5=off")
    assert "3 件" in _text(listing.text)
    link = re.search(r'href="(/customers/bulk\?[^"]+action=update)"', listing.text)
    assert link
    choose = admin.get(link.group(1).replace("&amp;", "&"))
    assert "3 件の顧客に行う変更" in _text(choose.text)
    carried = dict(
        re.findall(r'<input type="hidden" name="(f_name|cb5)" value="([^"]+)">', choose.text)
    )
    assert carried == {"f_name": "顧客", "cb5": "off"}
    ask = admin.post(
        "/customers/bulk/update",
        data={"csrf": _csrf(choose.text), **carried, "set_cb7": "on", "purpose": "展示会"},
    )
    assert "3 件の顧客を次のとおり変更します" in _text(ask.text)
    assert 'name="confirmed" value="yes"' in ask.text
    with site.app.transaction() as ctx:  # nothing changed yet
        actor = actors.resolve(ctx, "acme-admin", "acme")
        assert 7 not in records.show(ctx, actor, "contact", made[1])["checkboxes"]
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', ask.text))
    done = admin.post("/customers/bulk/update", data=fields)
    assert "一括更新しました" in done.text
    with site.app.transaction() as ctx:
        actor = actors.resolve(ctx, "acme-admin", "acme")
        assert 7 in records.show(ctx, actor, "contact", made[1])["checkboxes"]
        assert 7 not in records.show(ctx, actor, "contact", made[0])["checkboxes"]
    # nothing to change: the service's refusal
    assert (
        admin.post(
            "/customers/bulk/update", data={"csrf": _csrf(choose.text), **carried}
        ).status_code
        == 422
    )
    # delete: the confirmation first, then the customers are gone
    ask = admin.get("/customers/bulk?f_name=顧客&cb5=on&action=delete")
    assert "3 件の顧客と、その履歴を削除します" in _text(ask.text)
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', ask.text))
    assert fields["confirmed"] == "yes"
    assert "3 件" in _text(admin.get("/customers?f_name=顧客&cb5=on").text)
    admin.post("/customers/bulk/delete", data=fields)
    assert "0 件" in _text(admin.get("/customers?f_name=顧客&cb5=on").text)
    # a general user may bulk-update but not bulk-delete: not offered, and refused
    user = _login(site, "acme-gen", build_client(site))
    listing = user.get("/customers?f_name=顧客")
    assert 'id="bulk-update"' in listing.text
    assert 'id="bulk-delete"' not in listing.text
    assert user.get("/customers/bulk?f_name=顧客&action=delete").status_code == 403
    assert (
        user.post(
            "/customers/bulk/delete",
            data={"csrf": _csrf(listing.text), "f_name": "顧客", "confirmed": "yes"},
        ).status_code
        == 403
    )


def test_the_user_admin_page(site: Site) -> None:
    admin = _login(site, "acme-admin")
    page = admin.get("/users")
    assert page.status_code == 200
    assert 'href="/users"' in page.text  # in the menu, for admins
    for login in ("acme-admin", "acme-gen", "acme-ro"):
        assert f'data-login="{login}"' in page.text
    csrf = _csrf(page.text)
    r = admin.post("/users/add_department", data={"csrf": csrf, "code": "sales", "name": "営業部"})
    assert "部署を追加しました" in r.text
    r = admin.post(
        "/users/department", data={"csrf": csrf, "login": "acme-gen", "department": "sales"}
    )
    assert re.search(r'<option value="sales" selected>営業部</option>', r.text)
    r = admin.post("/users/role", data={"csrf": csrf, "login": "acme-ro", "role": "general"})
    assert "ユーザーを更新しました" in r.text
    row = re.search(r'data-login="acme-ro">.*?</tr>', r.text, re.S)
    assert row
    assert '<option value="general" selected>' in row.group(0)
    r = admin.post("/users/disable", data={"csrf": csrf, "login": "acme-gen"})
    row = re.search(r'data-login="acme-gen">.*?</tr>', r.text, re.S)
    assert row
    assert "無効" in row.group(0)
    admin.post("/users/enable", data={"csrf": csrf, "login": "acme-gen"})
    # an admin cannot demote themself: the refusal on the page, in Japanese
    r = admin.post("/users/role", data={"csrf": csrf, "login": "acme-admin", "role": "general"})
    assert r.status_code == 403
    assert "自分自身に対しては行えません" in r.text
    assert 'id="user-table"' in r.text
    # a password reset is shown once
    r = admin.post("/users/password", data={"csrf": csrf, "login": "acme-ro"})
    shown = re.search(r'<div class="newkey".*?<code>([^<]+)</code>', r.text, re.S)
    assert shown
    assert shown.group(1) not in admin.get("/users").text
    # remove asks first
    ask = admin.post("/users/remove", data={"csrf": csrf, "login": "acme-ro"})
    assert 'id="confirm-remove"' in ask.text
    assert 'data-login="acme-ro"' in ask.text  # still there
    r = admin.post("/users/remove", data={"csrf": csrf, "login": "acme-ro", "confirmed": "yes"})
    assert "ユーザーをテナントから外しました" in r.text
    assert 'data-login="acme-ro"' not in r.text
    # English
    assert "Reset password" in admin.get("/lang/en?next=/users").text
    # not an admin: refused, and not in the menu
    user = _login(site, "acme-gen", build_client(site))
    assert 'href="/users"' not in user.get("/").text
    assert user.get("/users").status_code == 403
    assert (
        user.post(
            "/users/disable", data={"csrf": _csrf(user.get("/").text), "login": "acme-admin"}
        ).status_code
        == 403
    )


def test_the_pages_in_english_every_form_needs_its_token_and_duplicates_are_told(
    site: Site,
) -> None:
    admin = _login(site, "acme-admin")
    admin.get("/lang/en")
    contact = site.ids["contact"]
    for path, words in (
        ("/customers", ("Checkbox conditions", "Keywords", "Sort by")),
        ("/customers/new", ("New customer", "* marks a required field")),
        (f"/customers/{contact}/edit", ("Edit customer",)),
        (f"/customers/{contact}", ("Add an activity", "Add a purchase")),
        ("/customers/import", ("Dry run (write nothing)",)),
        ("/customers/bulk?action=update", ("Choose the changes",)),
        ("/customers/bulk?action=delete", ("cannot be undone",)),
        ("/users", ("Reset password", "User departments")),
    ):
        page = admin.get(path)
        assert page.status_code == 200, path
        assert '<html lang="en">' in page.text
        for word in words:
            assert word in page.text, (path, word)
    # every form of these pages posts the session's token; without it, refused
    for path in (
        "/customers/new",
        f"/customers/{contact}/edit",
        f"/customers/{contact}/activities",
        f"/customers/{contact}/purchases",
        "/customers/import",
        "/customers/bulk/update",
        "/customers/bulk/delete",
        "/users/disable",
        "/users/add_department",
    ):
        r = admin.post(
            path, data={"csrf": "forged", "name": "x", "login": "acme-gen", "confirmed": "yes"}
        )
        assert r.status_code == 403, path
        assert "The form has expired or did not come from this site" in r.text
    assert "2 found" not in admin.get("/customers").text  # nothing was written
    # a second 山田 太郎: created, with the duplicate told
    form = admin.get("/customers/new")
    r = admin.post("/customers/new", data={"csrf": _csrf(form.text), "name": "山田 太郎"})
    assert "A customer with the same name already exists" in r.text
