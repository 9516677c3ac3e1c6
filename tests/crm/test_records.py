"""Records shaped by the configuration: validation, input rules, duplicates, history."""

from __future__ import annotations

import pytest

from provisioner.errors import NotFound, PermissionDenied, ValidationFailed
from provisioner.services.crm import records
from tests.crm.helpers import configured, make, one_of_each
from tests.support import World


def test_every_type_can_be_created_shown_updated_and_deleted(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    ids = one_of_each(world, admin)
    with world.app.transaction() as ctx:
        assert records.show(ctx, admin, "purchase", ids["purchase"])["amount"] == 1000
        assert records.show(ctx, admin, "custom_record", ids["custom_record"])["data"] == {
            "count": 3}
        records.update(ctx, admin, "activity", ids["activity"], {"content": "訪問"},
                       purpose="訂正")
        assert records.history(ctx, admin, "activity", ids["activity"])[-1] == {
            "at": "2026-11-23T09:00:00Z", "actor": "acme-admin", "action": "update",
            "changes": {"content": ["電話", "訪問"]}, "purpose": "訂正"}
    for type_name in ("external_link", "custom_record", "product", "purchase", "activity",
                      "family", "card_exchange", "secret_note", "contact", "department",
                      "company"):
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
    contact = make(world, admin, "contact", {"name": "X", "memo_2": "gold",
                                             "checkboxes": [1, 47],
                                             "classifications": ["agency"]})
    assert contact["checkboxes"] == [1, 47]
    with world.app.transaction() as ctx:
        saved = records.update(ctx, admin, "contact", contact["id"],
                               {"checkboxes": {"1": False, "2": True}})
    assert saved.record["checkboxes"] == [2, 47]
    bad_custom = [
        ({"count": "3"}, "data.count"), ({}, "data.count: required"),
        ({"count": 1, "place": "home"}, "data.place"), ({"count": 1, "x": 1}, "data.x"),
    ]
    for data, reason in bad_custom:
        with world.app.transaction() as ctx, pytest.raises(ValidationFailed) as exc:
            records.create(ctx, admin, "custom_record", {"database": "visits",
                                                         "owner_id": contact["id"],
                                                         "data": data})
        assert any(reason in p for p in exc.value.problems), exc.value.problems
    with world.app.transaction() as ctx, pytest.raises(ValidationFailed):
        records.create(ctx, admin, "external_link", {"contact_id": contact["id"],
                                                     "system": "crm2", "external_id": "1"})
    with world.app.transaction() as ctx, pytest.raises(ValidationFailed):
        records.create(ctx, admin, "product", {"code": "A", "name": "a",
                                               "product_class": "hardware"})


def test_input_rules_and_duplicates(world: World) -> None:
    configured(world)
    world.set_config("acme", {"input_rules": {
        "company_suffix": "kakko_kabu", "phone_format": "hyphen", "normalize_width": True,
        "duplicate_check_company": True, "duplicate_check_contact": True}})
    admin = world.actor("acme")
    with world.app.transaction() as ctx:
        first = records.create(ctx, admin, "company", {"name": "株式会社　ＡＢＣ商事",
                                                       "phone": "０３１２３４５６７８"})
        assert first.record["name"] == "(株) ABC商事" or first.record["name"] == "(株)ABC商事"
        assert first.record["phone"] == "03-1234-5678"
        assert first.duplicates == []
        second = records.create(ctx, admin, "company", {"name": "ABC商事㈱"})
        assert second.record["name"] == "ABC商事(株)"
        assert second.duplicates == [{"id": first.record["id"], "name": first.record["name"]}]
        person = records.create(ctx, admin, "contact", {"name": "鈴木　一郎",
                                                        "mobile": "+81 90 1234 5678"})
        assert person.record["mobile"] == "090-1234-5678"
        again = records.create(ctx, admin, "contact", {"name": "鈴木一郎"})
        assert [d["id"] for d in again.duplicates] == [person.record["id"]]


def test_career_history_is_kept_on_company_department_or_title_change(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    old = make(world, admin, "company", {"name": "旧社"})
    new = make(world, admin, "company", {"name": "新社"})
    dept = make(world, admin, "department", {"company_id": new["id"], "name": "開発部"})
    person = make(world, admin, "contact", {"name": "佐藤", "company_id": old["id"],
                                            "title": "主任"})
    with world.app.transaction() as ctx:
        records.update(ctx, admin, "contact", person["id"], {"note": "memo only"})
        records.update(ctx, admin, "contact", person["id"],
                       {"company_id": new["id"], "department_id": dept["id"], "title": "課長"})
        records.update(ctx, admin, "contact", person["id"], {"title": "部長"})
        shown = records.show(ctx, admin, "contact", person["id"])
    assert [(c["company"], c["department"], c["title"]) for c in shown["careers"]] == [
        ("新社", "開発部", "課長"), ("旧社", "", "主任")]
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
        assert [n["id"] for n in records.list_children(ctx, general, "secret_note",
                                                       contact["id"])] == [note["id"]]
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
    logged = make(world, admin, "contact", {"name": "要記録", "log_personal_info": True,
                                            "phone": "0311112222"})
    plain = make(world, admin, "contact", {"name": "普通"})
    from provisioner.services.crm import search
    with world.app.transaction() as ctx:
        records.show(ctx, general, "contact", logged["id"])
        records.show(ctx, general, "contact", plain["id"])
        search.lookup(ctx, general, "03-1111-2222")
    with world.app.transaction() as ctx:
        log = records.access_log(ctx, admin)
    assert [(e["actor"], e["kind"], e["subject"]) for e in log] == [
        ("acme-gen", "personal_info_view", f"contact:{logged['id']}")] * 2
    world.set_config("acme", {"settings": {**world.config("acme")["settings"],
                                           "personal_info_logging": True}})
    with world.app.transaction() as ctx:
        records.show(ctx, general, "contact", plain["id"])
    with world.app.transaction() as ctx:
        assert records.access_log(ctx, admin)[0]["subject"] == f"contact:{plain['id']}"
