"""Companies are searchable (name, kana, classification, phone, address) through an index
whose results are those of a LIKE scan (issue 12)."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import func, select

from provisioner.db.crm_models import CrmCompanyGram
from provisioner.errors import ValidationFailed
from provisioner.services import actors, reindex
from provisioner.services.crm import company_search, records
from provisioner.services.crm.company_search import CompanyQuery
from tests.crm.helpers import configured, make
from tests.crm.test_cli import Cli
from tests.support import World

NAMES = [
    "渋谷商事",
    "新宿物産",
    "ＡＢＣ興業",
    "abc trading",
    "渋谷ホールディングス",
    "東京商会",
    "大阪商事",
    "名古屋物流",
]
KANAS = ["シブヤショウジ", "シンジュクブッサン", "エービーシー", "", "シブヤ", "トウキョウ"]
ADDRESSES = [
    "東京都渋谷区道玄坂1-2-3",
    "東京都新宿区西新宿2-8-1",
    "大阪府大阪市北区梅田1-1",
    "",
    "愛知県名古屋市中村区名駅4-7-1",
]


def _companies(world: World, rng: random.Random, n: int) -> list[int]:
    admin = world.actor("acme")
    ids = []
    for i in range(n):
        ids.append(
            make(
                world,
                admin,
                "company",
                {
                    "name": f"{rng.choice(NAMES)}{i % 7}",
                    "kana": rng.choice(KANAS),
                    "address": rng.choice(ADDRESSES),
                    "phone": rng.choice(["", "03-1234-5678", "06-6345-0001", "052-111-2222"]),
                    "classifications": rng.sample(["supplier", "agency"], rng.randint(0, 2)),
                },
            )["id"]
        )
    return ids


def _ids(world: World, query: CompanyQuery, *, use_index: bool = True) -> tuple[int, list[int]]:
    with world.app.transaction() as ctx:
        found = company_search.search(ctx, world.actor("acme"), query, use_index=use_index)
    return found.total, [i["id"] for i in found.items]


def test_indexed_company_search_equals_the_like_scan(world: World) -> None:
    configured(world)
    rng = random.Random(7)
    ids = _companies(world, rng, 40)
    admin = world.actor("acme")
    with world.app.transaction() as ctx:  # renames, moves and deletions keep the index
        records.update(ctx, admin, "company", ids[0], {"name": "梅田ビル管理", "kana": ""})
        records.update(ctx, admin, "company", ids[1], {"address": "福岡県福岡市博多区"})
        records.delete_record(ctx, admin, "company", ids[2])
    terms = [
        "渋",
        "渋谷",
        "渋谷商",
        "渋谷商事",
        "商事",
        "abc",
        "ＡＢＣ",
        "ショウ",
        "シブヤショウジ",
        "新宿区",
        "東京都渋谷区道玄坂",
        "1234",
        "梅田",
        "ビル管",
        "福岡",
        "区道",
        "事0",
        "存在しない",
        "%",
        "_",
    ]
    seen = 0
    for _ in range(80):
        query = CompanyQuery(
            q=" ".join(rng.sample(terms, rng.randint(1, 2))),
            match=rng.choice(["all", "any"]),
            classification=rng.choice([None, None, "agency"]),
            phone=rng.choice([None, None, "03-1234", "０６６３４５"]),
            sort=rng.choice(["id", "-name", "kana"]),
            limit=1000,
        )
        expected = _ids(world, query, use_index=False)
        assert _ids(world, query) == expected, query
        seen += bool(expected[0])
    assert seen > 20  # most queries find something
    assert _ids(world, CompanyQuery(q="梅田ビル"))[1] == [ids[0]]
    assert ids[2] not in _ids(world, CompanyQuery(q="", limit=1000))[1]


def test_company_search_pages_sorts_and_refuses_bad_input(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    for name, kana in (("佐藤商事", "サトウ"), ("安藤商事", "アンドウ"), ("加藤商事", "カトウ")):
        make(world, admin, "company", {"name": name, "kana": kana})
    total, page = _ids(world, CompanyQuery(q="商事", sort="kana", limit=2))
    with world.app.transaction() as ctx:
        names = [
            i["name"]
            for i in company_search.search(
                ctx, admin, CompanyQuery(q="商事", sort="kana", limit=2, offset=1)
            ).items
        ]
    assert (total, len(page), names) == (3, 2, ["加藤商事", "佐藤商事"])
    with world.app.transaction() as ctx, pytest.raises(ValidationFailed, match="cannot sort"):
        company_search.search(ctx, admin, CompanyQuery(sort="capital"))


def test_reindex_rebuilds_a_damaged_company_index(world: World) -> None:
    configured(world)
    ids = _companies(world, random.Random(3), 5)
    with world.app.transaction() as ctx:
        ctx.enter_tenant(world.actor("acme").tenant_id)
        ctx.session.execute(
            company_search.CrmCompanyGram.__table__.delete().where(
                company_search.CrmCompanyGram.company_id == ids[0]
            )
        )
    with world.app.transaction() as ctx:
        report = reindex.reindex(ctx, actors.get_tenant(ctx, "acme"))
    assert report.company_index == 1
    with world.app.transaction() as ctx:
        assert reindex.reindex(ctx, actors.get_tenant(ctx, "acme"), check=True).clean


def test_cli_search_companies(run: Cli) -> None:
    run.run("init")
    run.run("tenant", "create", "acme", "--name", "ACME", "--plan", "standard")
    run.run("user", "add", "sato", "--tenant", "acme", "--role", "admin")
    for name in ("渋谷商事", "新宿物産"):
        run.json(
            "record",
            "create",
            "company",
            "-t",
            "acme",
            "--as",
            "sato",
            "--data",
            f'{{"name": "{name}", "phone": "03-1111-2222"}}',
        )
    found = run.json("search-companies", "-t", "acme", "--as", "sato", "--q", "渋谷")
    assert (found["total"], [i["name"] for i in found["items"]]) == (1, ["渋谷商事"])
    assert (
        run.json("search-companies", "-t", "acme", "--as", "sato", "--phone", "0311112222")["total"]
        == 2
    )
    assert "渋谷商事" in run.run("search-companies", "-t", "acme", "--as", "sato").stdout


def test_companies_created_by_an_import_are_indexed_in_one_bulk_load(world: World) -> None:
    """An import creating many companies at once loads their grams in bulk (more than
    ``_BULK_ABOVE``): the index is exactly the one a rebuild computes, and searches
    equal the scan."""
    from provisioner.services.crm import csvio

    configured(world)
    admin = world.actor("acme")
    names = [f"{NAMES[i % len(NAMES)]}第{i}営業所ビル管理サービス" for i in range(60)]
    lines = ["name,company", *(f"担当{i},{name}" for i, name in enumerate(names))]
    with world.app.transaction() as ctx:
        report = csvio.import_customers(ctx, admin, "\r\n".join(lines).encode())
        conn = ctx.session.connection()
        added = conn.scalar(select(func.count()).select_from(CrmCompanyGram))
    assert report.companies_created == 60
    assert added > company_search._BULK_ABOVE
    with world.app.transaction() as ctx:
        assert reindex.reindex(ctx, actors.get_tenant(ctx, "acme"), check=True).clean
    for term in ("営業所", "第12", "渋谷商事第0", "ビル管理"):
        query = CompanyQuery(q=term, limit=1000)
        assert _ids(world, query) == _ids(world, query, use_index=False)
    assert _ids(world, CompanyQuery(q="第59営業"))[0] == 1
