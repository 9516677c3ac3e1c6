"""Search (partial match, AND/OR, tri-state checkboxes, dates, history) and phone lookup."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from provisioner.db.crm_models import CrmContact
from provisioner.errors import NotFound, PermissionDenied, ValidationFailed
from provisioner.services.crm import records, search, seed
from provisioner.services.crm.search import Query
from provisioner.services.crm.text import search_key
from tests.crm.helpers import configured, make
from tests.support import World


def _names(world: World, query: Query, login: str | None = None) -> list[str]:
    actor = world.actor("acme", login)
    with world.app.transaction() as ctx:
        result = search.search(ctx, actor, query)
    assert result.total >= len(result.items)
    return [i["name"] for i in result.items]


def test_search_conditions(world: World) -> None:
    configured(world)
    configured(world, "other")
    admin = world.actor("acme")
    company = make(world, admin, "company", {"name": "株式会社渋谷商事"})
    tanaka = make(
        world,
        admin,
        "contact",
        {
            "name": "田中 太郎",
            "kana": "タナカ タロウ",
            "company_id": company["id"],
            "phone": "03-1234-5678",
            "address": "東京都渋谷区",
            "email": "Tanaka@Example.jp",
            "memo_1": "展示会",
            "checkboxes": [1, 3],
            "classifications": ["agency"],
        },
    )
    make(
        world,
        admin,
        "contact",
        {
            "name": "田中 花子",
            "kana": "タナカ ハナコ",
            "address": "大阪府大阪市",
            "checkboxes": [3],
        },
    )
    suzuki = make(
        world, admin, "contact", {"name": "鈴木 一郎", "phone": "090-1111-2222", "memo_2": "gold"}
    )
    make(world, world.actor("other"), "contact", {"name": "田中 他社"})
    with world.app.transaction() as ctx:
        records.create(
            ctx,
            admin,
            "activity",
            {
                "contact_id": tanaka["id"],
                "date": "2026-10-01",
                "kind": "phone",
                "content": "見積依頼",
            },
        )
        records.create(
            ctx,
            admin,
            "purchase",
            {
                "contact_id": suzuki["id"],
                "date": "2026-09-15",
                "product_code": "A-100",
                "product_name": "会計ソフト",
            },
        )
    assert _names(world, Query(q="田中")) == ["田中 太郎", "田中 花子"]
    assert _names(world, Query(q="田中太郎")) == ["田中 太郎"]
    assert _names(world, Query(q="渋谷商事")) == ["田中 太郎"]  # company name
    assert _names(world, Query(q="ＴＡＮＡＫＡ@example")) == ["田中 太郎"]  # width + case
    assert _names(world, Query(q="5678")) == ["田中 太郎"]  # phone digits
    assert _names(world, Query(q="展示会")) == ["田中 太郎"]  # memo
    assert _names(world, Query(q="田中 大阪")) == ["田中 花子"]  # AND
    assert _names(world, Query(q="大阪 鈴木", match="any")) == ["田中 花子", "鈴木 一郎"]
    assert _names(world, Query(fields={"phone": "0901111"})) == ["鈴木 一郎"]
    assert _names(world, Query(fields={"company": "渋谷"})) == ["田中 太郎"]
    assert _names(world, Query(fields={"memo_2": "gold"})) == ["鈴木 一郎"]
    assert _names(world, Query(checkboxes={3: True})) == ["田中 太郎", "田中 花子"]
    assert _names(world, Query(checkboxes={3: True, 1: False})) == ["田中 花子"]
    assert _names(world, Query(checkboxes={3: False})) == ["鈴木 一郎"]
    assert _names(world, Query(classification="agency")) == ["田中 太郎"]
    assert _names(world, Query(activity_kind="phone", activity_from="2026-09-01")) == ["田中 太郎"]
    assert _names(world, Query(activity_to="2026-09-01")) == []
    assert _names(
        world, Query(purchase_product="会計", purchase_from="2026-09-01", purchase_to="2026-09-30")
    ) == ["鈴木 一郎"]
    assert _names(world, Query(q="田中", activity_text="見積")) == ["田中 太郎"]
    assert _names(world, Query(updated_from="2026-11-23", updated_to="2026-11-23")) == [
        "田中 太郎",
        "田中 花子",
        "鈴木 一郎",
    ]
    assert _names(world, Query(updated_from="2026-11-24")) == []
    assert _names(world, Query(sort="-kana")) == ["田中 花子", "田中 太郎", "鈴木 一郎"]
    assert _names(world, Query(q="100%")) == []  # LIKE is escaped
    with world.app.transaction() as ctx:
        page = search.search(ctx, admin, Query(q="田中", limit=1, offset=1))
    assert (page.total, [i["name"] for i in page.items]) == (2, ["田中 花子"])
    assert _names(world, Query(q="田中"), "acme-ro") == ["田中 太郎", "田中 花子"]


@pytest.mark.parametrize(
    "number",
    [
        "03-1234-5678",
        "0312345678",
        "+81 3 1234 5678",
        "+81-3-1234-5678",
        "０３－１２３４－５６７８",
        "(03)1234-5678",
        "+81 (0)3 1234 5678",
    ],
)
def test_lookup_whatever_the_format(world: World, number: str) -> None:
    configured(world)
    admin = world.actor("acme")
    tanaka = make(world, admin, "contact", {"name": "田中", "phone": "(03)1234-5678"})
    make(world, admin, "contact", {"name": "別人", "phone": "03-1234-5679"})
    with world.app.transaction() as ctx:
        for day in ("2026-01-01", "2026-03-01"):
            records.create(ctx, admin, "purchase", {"contact_id": tanaka["id"], "date": day})
            records.create(ctx, admin, "activity", {"contact_id": tanaka["id"], "date": day})
    with world.app.transaction() as ctx:
        card = search.lookup(ctx, admin, number)
    assert card["contact"]["id"] == tanaka["id"]
    assert [p["date"] for p in card["purchases"]] == ["2026-03-01", "2026-01-01"]
    assert [a["date"] for a in card["activities"]] == ["2026-03-01", "2026-01-01"]


def test_lookup_is_tenant_scoped_and_finds_mobiles(world: World) -> None:
    configured(world)
    configured(world, "other")
    make(world, world.actor("other"), "contact", {"name": "他社", "phone": "03-1234-5678"})
    admin = world.actor("acme")
    mine = make(world, admin, "contact", {"name": "携帯", "mobile": "090-1234-5678"})
    with world.app.transaction() as ctx, pytest.raises(NotFound):
        search.lookup(ctx, admin, "0312345678")
    with world.app.transaction() as ctx:
        assert search.lookup(ctx, admin, "+819012345678")["contact"]["id"] == mine["id"]


def test_lookup_card_is_the_same_however_it_is_read(world: World) -> None:
    """The card (first match, its latest five activities and purchases, the other matches)
    equals one read statement by statement -- on PostgreSQL the lookup is pipelined."""
    configured(world)
    configured(world, "other")
    admin, other = world.actor("acme"), world.actor("other")
    make(world, other, "contact", {"name": "他社", "phone": "03-1234-5678"})
    company = make(world, admin, "company", {"name": "株式会社渋谷商事"})
    first = make(
        world,
        admin,
        "contact",
        {
            "name": "田中 太郎",
            "company_id": company["id"],
            "mobile": "03-1234-5678",
            "checkboxes": [2, 5],
            "classifications": ["agency"],
            "memo_2": "gold",
        },
    )
    second = make(world, admin, "contact", {"name": "田中 花子", "phone": "0312345678"})
    with world.app.transaction() as ctx:
        for day in range(1, 8):
            for contact in (first, second):
                records.create(
                    ctx,
                    admin,
                    "activity",
                    {
                        "contact_id": contact["id"],
                        "date": f"2026-10-0{day}",
                        "kind": "phone",
                        "content": f"通話{day}",
                    },
                )
                records.create(
                    ctx,
                    admin,
                    "purchase",
                    {
                        "contact_id": contact["id"],
                        "date": f"2026-09-0{day}",
                        "product_code": f"A-{day}",
                        "quantity": day,
                    },
                )
    with world.app.transaction(read_only=True) as ctx:
        card = search.lookup(ctx, admin, "+81 3 1234 5678", codes=True)
        shown = search.lookup(ctx, admin, "+81 3 1234 5678")  # as the screen pop shows it
        ctx.enter_tenant(admin.tenant_id)  # the lookup's pipelined read ended its scope
        found = search.read(ctx, admin, "0312345678", 5)  # statement by statement
    assert (shown["contact"]["memo_2"], shown["contact"]["classifications"]) == (
        "ゴールド",
        ["代理店"],
    )
    assert card["contact"] == {
        **records.to_dict(records.TYPES["contact"], found.contacts[0]),
        "company_name": "株式会社渋谷商事",
    }
    assert card["contact"]["id"] == first["id"]
    assert card["other_matches"] == [second["id"]]
    assert card["activities"] == [
        records.to_dict(records.TYPES["activity"], a) for a in found.activities
    ]
    assert [a["content"] for a in card["activities"]] == [f"通話{d}" for d in (7, 6, 5, 4, 3)]
    assert card["purchases"] == [
        records.to_dict(records.TYPES["purchase"], p) for p in found.purchases
    ]
    assert {p["contact_id"] for p in card["purchases"]} == {first["id"]}
    with world.app.transaction(read_only=True) as ctx:
        assert search.lookup(ctx, other, "0312345678")["other_matches"] == []


def test_lookup_permission_and_errors_on_every_backend(world: World) -> None:
    configured(world)
    from provisioner.services import tenants

    with world.app.transaction() as ctx:
        tenants.add_user(ctx, "acme-custom", tenant_slug="acme", role="viewer_export")
    admin = world.actor("acme")
    make(world, admin, "contact", {"name": "顧客", "phone": "03-9999-0000"})
    custom = world.actor("acme", "acme-custom")
    with world.app.transaction(read_only=True) as ctx:
        assert search.lookup(ctx, custom, "0399990000")["contact"]["name"] == "顧客"
        with pytest.raises(NotFound):
            search.lookup(ctx, custom, "0399990001")
        with pytest.raises(ValidationFailed):
            search.lookup(ctx, custom, "電話")
    world.set_config(
        "acme",
        {"roles": [{"code": "viewer_export", "label": "出力のみ", "permissions": ["export"]}]},
    )
    with world.app.transaction(read_only=True) as ctx, pytest.raises(PermissionDenied):
        search.lookup(ctx, custom, "0399990000")


def test_search_equals_a_plain_like_scan(world: World) -> None:
    configured(world)
    configured(world, "other")
    admin, other = world.actor("acme"), world.actor("other")
    with world.app.transaction() as ctx:
        seed.seed_contacts(ctx, admin, 400, seed=7)
        seed.seed_contacts(ctx, other, 100, seed=8)
    with world.app.transaction() as ctx:
        ctx.enter_tenant(admin.tenant_id)
        rows = ctx.session.execute(
            select(CrmContact.id, CrmContact.search_text).where(
                CrmContact.tenant_id == admin.tenant_id
            )
        ).all()
    for q in ("田", "田中", "タナカ", "渋谷区", "090", "03-", "1234", "商事", "佐々木 太郎", "z"):
        terms = [search_key(t) for t in q.split()]
        expected = sorted(i for i, text in rows if all(t in text for t in terms))
        with world.app.transaction() as ctx:
            result = search.search(ctx, admin, Query(q=q, limit=1000))
            like = sorted(
                ctx.session.scalars(
                    select(CrmContact.id).where(
                        CrmContact.tenant_id == admin.tenant_id,
                        *(CrmContact.search_text.like(f"%{t}%") for t in terms),
                    )
                )
            )
        assert sorted(i["id"] for i in result.items) == expected == like, q
        assert result.total == len(expected)


def test_a_company_rename_or_delete_reaches_its_contacts_search_text(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    company = make(world, admin, "company", {"name": "株式会社旧名商事"})
    kept = make(world, admin, "contact", {"name": "残る 人", "company_id": company["id"]})
    make(world, admin, "contact", {"name": "別の 人"})

    def ids(q: str) -> list[int]:
        with world.app.transaction() as ctx:
            return [i["id"] for i in search.search(ctx, admin, Query(q=q)).items]

    assert ids("旧名商事") == [kept["id"]]
    with world.app.transaction() as ctx:
        records.update(ctx, admin, "company", company["id"], {"name": "株式会社新名商事"})
    assert (ids("旧名商事"), ids("新名商事")) == ([], [kept["id"]])
    with world.app.transaction() as ctx:
        records.delete_record(ctx, admin, "company", company["id"])
    assert (ids("新名商事"), ids("残る")) == ([], [kept["id"]])
    with world.app.transaction() as ctx:
        assert records.show(ctx, admin, "contact", kept["id"])["company_id"] is None
