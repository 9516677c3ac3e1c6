"""Records shaped by the configuration: validation, input rules, duplicates, history."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from provisioner.db.crm_models import CrmChange
from provisioner.errors import NotFound, PermissionDenied, ValidationFailed
from provisioner.services.crm import bulk, csvio, printing, records, search
from provisioner.services.crm.search import Query
from tests.crm.helpers import configured, make, one_of_each
from tests.support import World


def test_every_type_can_be_created_shown_updated_and_deleted(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    ids = one_of_each(world, admin)
    with world.app.transaction() as ctx:
        assert records.show(ctx, admin, "purchase", ids["purchase"])["amount"] == 1000
        assert records.show(ctx, admin, "custom_record", ids["custom_record"])["data"] == {
            "count": 3
        }
        records.update(ctx, admin, "activity", ids["activity"], {"content": "訪問"}, purpose="訂正")
        assert records.history(ctx, admin, "activity", ids["activity"])[-1] == {
            "at": "2026-11-23T09:00:00Z",
            "actor": "acme-admin",
            "action": "update",
            "changes": {"content": ["電話", "訪問"]},
            "purpose": "訂正",
        }
    for type_name in (
        "job",
        "external_link",
        "custom_record",
        "product",
        "purchase",
        "activity",
        "family",
        "card_exchange",
        "secret_note",
        "contact",
        "department",
        "company",
    ):
        with world.app.transaction() as ctx:
            records.delete_record(ctx, admin, type_name, ids[type_name])
        with world.app.transaction() as ctx, pytest.raises(NotFound):
            records.show(ctx, admin, type_name, ids[type_name])


def test_configuration_shapes_validation(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    cases = {
        "memo_2": ({"memo_2": "platinum"}, "not an active value of picklist 'rank'"),
        "inactive": ({"memo_2": "old"}, "not an active value"),
        "checkbox": ({"checkboxes": [48]}, "checkbox 48 is disabled"),
        "checkbox range": ({"checkboxes": [49]}, "not a checkbox index"),
        "classification": ({"classifications": ["vip"]}, "'vip' is not a customer"),
        "email": ({"email": "nope"}, "is not an e-mail address"),
        "date": ({"birthday": "1990/01/01"}, "expected a date"),
        "unknown": ({"shoe_size": "27"}, "not a field of contact"),
    }
    for name, (data, reason) in cases.items():
        with world.app.transaction() as ctx, pytest.raises(ValidationFailed) as exc:
            records.create(ctx, admin, "contact", {"name": "X", **data})
        assert any(reason in p for p in exc.value.problems), (name, exc.value.problems)
    contact = make(
        world,
        admin,
        "contact",
        {"name": "X", "memo_2": "gold", "checkboxes": [1, 47], "classifications": ["agency"]},
    )
    assert contact["checkboxes"] == [1, 47]
    with world.app.transaction() as ctx:
        saved = records.update(
            ctx, admin, "contact", contact["id"], {"checkboxes": {"1": False, "2": True}}
        )
    assert saved.record["checkboxes"] == [2, 47]
    bad_custom = [
        ({"count": "3"}, "data.count"),
        ({}, "data.count: required"),
        ({"count": 1, "place": "home"}, "data.place"),
        ({"count": 1, "x": 1}, "data.x"),
    ]
    for data, reason in bad_custom:
        with world.app.transaction() as ctx, pytest.raises(ValidationFailed) as exc:
            records.create(
                ctx,
                admin,
                "custom_record",
                {"database": "visits", "owner_id": contact["id"], "data": data},
            )
        assert any(reason in p for p in exc.value.problems), exc.value.problems
    with world.app.transaction() as ctx, pytest.raises(ValidationFailed):
        records.create(
            ctx,
            admin,
            "external_link",
            {"contact_id": contact["id"], "system": "crm2", "external_id": "1"},
        )
    with world.app.transaction() as ctx, pytest.raises(ValidationFailed):
        records.create(
            ctx, admin, "product", {"code": "A", "name": "a", "product_class": "hardware"}
        )


def test_input_rules_and_duplicates(world: World) -> None:
    configured(world)
    world.set_config(
        "acme",
        {
            "input_rules": {
                "company_suffix": "kakko_kabu",
                "phone_format": "hyphen",
                "normalize_width": True,
                "duplicate_check_company": True,
                "duplicate_check_contact": True,
            }
        },
    )
    admin = world.actor("acme")
    with world.app.transaction() as ctx:
        first = records.create(
            ctx, admin, "company", {"name": "株式会社　ＡＢＣ商事", "phone": "０３１２３４５６７８"}
        )
        assert first.record["name"] == "(株) ABC商事" or first.record["name"] == "(株)ABC商事"
        assert first.record["phone"] == "03-1234-5678"
        assert first.duplicates == []
        second = records.create(ctx, admin, "company", {"name": "ABC商事㈱"})
        assert second.record["name"] == "ABC商事(株)"
        assert second.duplicates == [{"id": first.record["id"], "name": first.record["name"]}]
        person = records.create(
            ctx, admin, "contact", {"name": "鈴木　一郎", "mobile": "+81 90 1234 5678"}
        )
        assert person.record["mobile"] == "090-1234-5678"
        again = records.create(ctx, admin, "contact", {"name": "鈴木一郎"})
        assert [d["id"] for d in again.duplicates] == [person.record["id"]]


def test_career_history_is_kept_on_company_department_or_title_change(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    old = make(world, admin, "company", {"name": "旧社"})
    new = make(world, admin, "company", {"name": "新社"})
    dept = make(world, admin, "department", {"company_id": new["id"], "name": "開発部"})
    person = make(
        world, admin, "contact", {"name": "佐藤", "company_id": old["id"], "title": "主任"}
    )
    with world.app.transaction() as ctx:
        records.update(ctx, admin, "contact", person["id"], {"note": "memo only"})
        records.update(
            ctx,
            admin,
            "contact",
            person["id"],
            {"company_id": new["id"], "department_id": dept["id"], "title": "課長"},
        )
        records.update(ctx, admin, "contact", person["id"], {"title": "部長"})
        shown = records.show(ctx, admin, "contact", person["id"])
    assert [(c["company"], c["department"], c["title"]) for c in shown["careers"]] == [
        ("新社", "開発部", "課長"),
        ("旧社", "", "主任"),
    ]
    other = make(world, admin, "company", {"name": "他社"})
    with world.app.transaction() as ctx, pytest.raises(ValidationFailed):
        records.update(ctx, admin, "contact", person["id"], {"company_id": other["id"]})


def test_individual_mode_has_no_companies_on_contacts(world: World) -> None:
    configured(world)
    world.set_config("acme", {"mode": "individual"})
    admin = world.actor("acme")
    company = make(world, admin, "company", {"name": "X"})
    with world.app.transaction() as ctx, pytest.raises(ValidationFailed):
        records.create(ctx, admin, "contact", {"name": "個人", "company_id": company["id"]})
    assert make(world, admin, "contact", {"name": "個人"})["company_id"] is None


def test_roles(world: World) -> None:
    configured(world)
    world.tenant("x")
    from provisioner.services import tenants

    with world.app.transaction() as ctx:
        tenants.add_user(ctx, "acme-custom", tenant_slug="acme", role="viewer_export")
    admin = world.actor("acme")
    contact = make(world, admin, "contact", {"name": "顧客"})
    for login in ("acme-ro", "acme-custom"):
        actor = world.actor("acme", login)
        with world.app.transaction() as ctx:
            assert records.show(ctx, actor, "contact", contact["id"])["name"] == "顧客"
        with world.app.transaction() as ctx, pytest.raises(PermissionDenied):
            records.create(ctx, actor, "contact", {"name": "x"})
        with world.app.transaction() as ctx, pytest.raises(PermissionDenied):
            records.update(ctx, actor, "contact", contact["id"], {"name": "x"})
        with world.app.transaction() as ctx, pytest.raises(PermissionDenied):
            records.delete_record(ctx, actor, "contact", contact["id"])
    general = world.actor("acme", "acme-gen")
    with world.app.transaction() as ctx:
        records.update(ctx, general, "contact", contact["id"], {"title": "x"})
        with pytest.raises(PermissionDenied):
            records.access_log(ctx, general)


def test_secret_notes_are_readable_by_their_author_only(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    general = world.actor("acme", "acme-gen")
    contact = make(world, admin, "contact", {"name": "顧客"})
    note = make(world, general, "secret_note", {"contact_id": contact["id"], "body": "秘密"})
    with world.app.transaction() as ctx:
        assert records.show(ctx, general, "secret_note", note["id"])["body"] == "秘密"
        assert [
            n["id"] for n in records.list_children(ctx, general, "secret_note", contact["id"])
        ] == [note["id"]]
        assert records.list_children(ctx, admin, "secret_note", contact["id"]) == []
        history = records.history(ctx, general, "secret_note", note["id"])
        assert "body" not in history[0]["changes"]
    for actor in (admin, world.actor("acme", "acme-ro")):
        with world.app.transaction() as ctx, pytest.raises(NotFound):
            records.show(ctx, actor, "secret_note", note["id"])
        with world.app.transaction() as ctx, pytest.raises((NotFound, PermissionDenied)):
            records.update(ctx, actor, "secret_note", note["id"], {"body": "x"})
        with world.app.transaction() as ctx, pytest.raises((NotFound, PermissionDenied)):
            records.delete_record(ctx, actor, "secret_note", note["id"])


def test_personal_info_views_are_logged(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    general = world.actor("acme", "acme-gen")
    logged = make(
        world,
        admin,
        "contact",
        {"name": "要記録", "log_personal_info": True, "phone": "0311112222"},
    )
    plain = make(world, admin, "contact", {"name": "普通"})
    from provisioner.services.crm import search

    with world.app.transaction() as ctx:
        records.show(ctx, general, "contact", logged["id"])
        records.show(ctx, general, "contact", plain["id"])
        search.lookup(ctx, general, "03-1111-2222")
    with world.app.transaction() as ctx:
        log = records.access_log(ctx, admin)
    assert [(e["actor"], e["kind"], e["subject"]) for e in log] == [
        ("acme-gen", "personal_info_view", f"contact:{logged['id']}")
    ] * 2
    world.set_config(
        "acme", {"settings": {**world.config("acme")["settings"], "personal_info_logging": True}}
    )
    with world.app.transaction() as ctx:
        records.show(ctx, general, "contact", plain["id"])
    with world.app.transaction() as ctx:
        assert records.access_log(ctx, admin)[0]["subject"] == f"contact:{plain['id']}"


def test_secret_note_body_never_reaches_the_change_log(world: World) -> None:
    configured(world)
    general = world.actor("acme", "acme-gen")
    contact = make(world, general, "contact", {"name": "顧客"})
    note = make(world, general, "secret_note", {"contact_id": contact["id"], "body": "初版"})
    with world.app.transaction() as ctx:
        records.update(
            ctx, general, "secret_note", note["id"], {"body": "極秘の改訂"}, purpose="追記"
        )
        history = records.history(ctx, general, "secret_note", note["id"])
        stored = [
            c.changes
            for c in ctx.session.scalars(
                select(CrmChange).where(CrmChange.record_type == "secret_note")
            )
        ]
    assert history[-1]["purpose"] == "追記"
    assert "body" in history[-1]["changes"]  # that it changed is recorded...
    assert "極秘" not in str(stored)  # ...never what it says
    assert "初版" not in str(stored)


@pytest.mark.parametrize(
    ("style", "entered", "stored"),
    [
        ("kabushiki_kaisha", "(株)山田商事", "株式会社山田商事"),
        ("kabushiki_kaisha", "山田商事㈱", "山田商事株式会社"),
        ("kakko_kabu", "株式会社山田商事", "(株)山田商事"),
        ("kakko_kabu", "山田商事（株）", "山田商事(株)"),
        ("maru_kabu", "株式会社 山田商事", "㈱山田商事"),
        ("maru_kabu", "山田商事(株)", "山田商事㈱"),
        ("as_entered", "株式会社山田商事", "株式会社山田商事"),
        ("as_entered", "山田商事(株)", "山田商事(株)"),
    ],
)
def test_company_suffix_style_is_applied_on_write(
    world: World, style: str, entered: str, stored: str
) -> None:
    configured(world)
    world.set_config(
        "acme", {"input_rules": {**world.config("acme")["input_rules"], "company_suffix": style}}
    )
    admin = world.actor("acme")
    company = make(world, admin, "company", {"name": entered})
    assert company["name"] == stored
    with world.app.transaction() as ctx:  # an update goes through the same rule
        assert (
            records.update(ctx, admin, "company", company["id"], {"name": entered}).record["name"]
            == stored
        )


@pytest.mark.parametrize(
    ("style", "stored"),
    [
        ("hyphen", "03-1234-5678"),
        ("paren", "(03)1234-5678"),
        ("digits", "0312345678"),
    ],
)
def test_phone_format_and_width_rules_are_applied_on_write(
    world: World, style: str, stored: str
) -> None:
    configured(world)
    world.set_config(
        "acme",
        {
            "input_rules": {
                **world.config("acme")["input_rules"],
                "phone_format": style,
                "normalize_width": True,
            }
        },
    )
    admin = world.actor("acme")
    contact = make(
        world,
        admin,
        "contact",
        {
            "name": "ＡＢＣ　太郎",
            "phone": "＋８１ ３ １２３４ ５６７８",
            "address": "東京都千代田区１－２－３",
            "email": "ＴＡＲＯ@example.jp",
        },
    )
    assert contact["phone"] == stored
    assert contact["name"] == "ABC 太郎"
    assert contact["address"] == "東京都千代田区1-2-3"
    assert contact["email"] == "TARO@example.jp"
    with world.app.transaction() as ctx:
        department = records.create(
            ctx,
            admin,
            "department",
            {
                "company_id": records.create(ctx, admin, "company", {"name": "X"}).record["id"],
                "name": "営業部",
                "phone": "０６１２３４５６７８",
            },
        ).record
    assert (
        department["phone"]
        == {"hyphen": "06-1234-5678", "paren": "(06)1234-5678", "digits": "0612345678"}[style]
    )


def test_duplicates_are_listed_with_their_matches_and_can_be_switched_off(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    first = make(world, admin, "contact", {"name": "田中 太郎"})
    second = make(world, admin, "contact", {"name": "田中　太郎"})
    with world.app.transaction() as ctx:
        third = records.create(ctx, admin, "contact", {"name": "田中太郎"})
        assert third.duplicates == [
            {"id": first["id"], "name": "田中 太郎"},
            {"id": second["id"], "name": "田中 太郎"},
        ]
        renamed = records.update(ctx, admin, "contact", first["id"], {"name": "山田 花子"})
        assert renamed.duplicates == []
    world.set_config(
        "acme",
        {"input_rules": {**world.config("acme")["input_rules"], "duplicate_check_contact": False}},
    )
    with world.app.transaction() as ctx:
        assert records.create(ctx, admin, "contact", {"name": "田中太郎"}).duplicates == []


def test_every_change_is_recorded_with_who_what_and_purpose(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    general = world.actor("acme", "acme-gen")
    with world.app.transaction() as ctx:
        saved = records.create(
            ctx, admin, "contact", {"name": "顧客", "memo_2": "gold"}, purpose="新規登録"
        )
        cid = saved.record["id"]
        records.update(ctx, general, "contact", cid, {"memo_2": "silver", "title": "課長"})
        records.update(ctx, general, "contact", cid, {"title": "課長"})  # no change: no row
        entries = records.history(ctx, admin, "contact", cid)
    assert [(e["actor"], e["action"], e["purpose"]) for e in entries] == [
        ("acme-admin", "create", "新規登録"),
        ("acme-gen", "update", ""),
    ]
    assert entries[0]["changes"]["memo_2"] == "gold"
    assert entries[1]["changes"] == {"memo_2": ["gold", "silver"], "title": ["", "課長"]}
    with world.app.transaction() as ctx:
        records.delete_record(ctx, admin, "contact", cid, purpose="重複のため")
        deleted = ctx.session.scalars(
            select(CrmChange).where(
                CrmChange.record_type == "contact",
                CrmChange.record_id == cid,
                CrmChange.action == "delete",
            )
        ).one()
    assert (deleted.actor, deleted.purpose, deleted.changes["name"]) == (
        "acme-admin",
        "重複のため",
        "顧客",
    )


def test_custom_role_permissions_come_from_the_configuration(world: World) -> None:
    configured(world)
    from provisioner.services import tenants

    with world.app.transaction() as ctx:
        tenants.add_user(ctx, "acme-custom", tenant_slug="acme", role="viewer_export")
    custom = world.actor("acme", "acme-custom")
    make(world, world.actor("acme"), "contact", {"name": "顧客"})
    with world.app.transaction() as ctx:
        assert csvio.export(ctx, custom, "customers", Query()).decode("utf-8-sig")
        with pytest.raises(PermissionDenied):
            printing.print_customers(ctx, custom, Query())
    # the role's permissions follow the configuration
    world.set_config(
        "acme",
        {"roles": [{"code": "viewer_export", "label": "閲覧", "permissions": ["records.read"]}]},
    )
    with world.app.transaction() as ctx, pytest.raises(PermissionDenied):
        csvio.export(ctx, custom, "customers", Query())


def test_print_needs_the_print_permission_and_is_logged(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    make(
        world,
        admin,
        "contact",
        {"name": "宛名 太郎", "postal_code": "100-0001", "address": "東京都千代田区<1>"},
    )
    make(world, admin, "contact", {"name": "対象外"})
    for login in ("acme-noprint", "acme-ro"):
        with world.app.transaction() as ctx, pytest.raises(PermissionDenied) as exc:
            printing.print_customers(ctx, world.actor("acme", login), Query())
        assert "print" in str(exc.value)
    general = world.actor("acme", "acme-gen")
    with world.app.transaction() as ctx:
        labels = printing.print_customers(ctx, general, Query(q="宛名"), layout="labels")
        listing = printing.print_customers(ctx, general, Query())
    assert "宛名 太郎 様" in labels
    assert "〒100-0001" in labels
    assert "対象外" not in labels
    assert "&lt;1&gt;" in labels  # values are escaped
    assert "<th>氏名</th>" in listing
    assert "対象外" in listing
    with world.app.transaction() as ctx:
        log = records.access_log(ctx, admin)
    assert [(e["actor"], e["kind"], e["details"]["layout"], e["details"]["rows"]) for e in log] == [
        ("acme-gen", "print", "list", 2),
        ("acme-gen", "print", "labels", 1),
    ]


def test_bulk_update_and_delete_over_a_search_result(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    general = world.actor("acme", "acme-gen")
    company = make(world, admin, "company", {"name": "移籍先"})
    ids = [
        make(world, admin, "contact", {"name": f"展示会 {n}", "checkboxes": [2]})["id"]
        for n in range(3)
    ]
    other = make(world, admin, "contact", {"name": "別件"})["id"]
    with world.app.transaction() as ctx:
        n = bulk.bulk_update(
            ctx,
            general,
            Query(q="展示会"),
            checkboxes={1: True, 2: False},
            company_id=company["id"],
            purpose="展示会フォロー",
        )
    assert n == 3
    with world.app.transaction() as ctx:
        for cid in ids:
            shown = records.show(ctx, admin, "contact", cid)
            assert (shown["checkboxes"], shown["company_id"]) == ([1], company["id"])
            assert records.history(ctx, admin, "contact", cid)[-1]["purpose"] == "展示会フォロー"
        assert records.show(ctx, admin, "contact", other)["checkboxes"] == []
    for actor in (general, world.actor("acme", "acme-ro")):
        with world.app.transaction() as ctx, pytest.raises(PermissionDenied):
            bulk.bulk_delete(ctx, actor, Query(q="展示会"))
    with world.app.transaction() as ctx, pytest.raises(PermissionDenied):
        bulk.bulk_update(ctx, world.actor("acme", "acme-ro"), Query(), checkboxes={1: True})
    with world.app.transaction() as ctx:
        assert bulk.bulk_delete(ctx, admin, Query(q="展示会"), purpose="整理") == 3
    with world.app.transaction() as ctx:
        assert search.search(ctx, admin, Query()).total == 1
        log = records.access_log(ctx, admin)
    assert [(e["kind"], e["subject"]) for e in log[:2]] == [
        ("bulk_delete", "3 contacts"),
        ("bulk_update", "3 contacts"),
    ]


def test_the_access_log_has_every_kind(world: World) -> None:
    configured(world)
    from provisioner.services.provisioning import auth

    admin = world.actor("acme")
    with world.app.transaction() as ctx:
        auth.set_initial_password(ctx, "acme-gen", "correct horse battery", by="acme-admin")
    with world.app.transaction() as ctx:
        auth.login(ctx, "acme-gen", "correct horse battery")
    general = world.actor("acme", "acme-gen")
    contact = make(world, admin, "contact", {"name": "要記録", "log_personal_info": True})
    with world.app.transaction() as ctx:
        records.show(ctx, general, "contact", contact["id"])
        records.history(ctx, general, "contact", contact["id"])
        csvio.export(ctx, general, "customers", Query())
        printing.print_customers(ctx, general, Query())
        bulk.bulk_update(ctx, general, Query(), checkboxes={1: True})
        csvio.import_customers(ctx, admin, "氏名\r\n取込 花子\r\n".encode(), source="a.csv")
        bulk.bulk_delete(ctx, admin, Query(q="取込"))
    with world.app.transaction() as ctx:
        log = records.access_log(ctx, admin)
    assert [(e["actor"], e["kind"]) for e in reversed(log)] == [
        ("acme-gen", "login"),
        ("acme-gen", "personal_info_view"),
        ("acme-gen", "personal_info_view"),
        ("acme-gen", "export"),
        ("acme-gen", "print"),
        ("acme-gen", "bulk_update"),
        ("acme-admin", "import"),
        ("acme-admin", "bulk_delete"),
    ]
    with world.app.transaction() as ctx:
        assert len(records.access_log(ctx, admin, limit=3)) == 3
