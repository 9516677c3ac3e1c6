"""The n-gram search index: always equal to a LIKE scan, on every write path, per tenant.

A seeded generator writes Japanese names, kana, companies, addresses, digits and
memos through every path that changes a contact's search text (create, update,
delete, company rename and delete, bulk update and delete, CSV import, seed
data, picklist remap); after each phase the index must equal one rebuilt from
the stored texts, and searches of 1..6 characters must return exactly what a
``LIKE '%term%'`` scan returns.
"""

from __future__ import annotations

import random
from collections import defaultdict

import pytest
from sqlalchemy import Connection, select, text

from provisioner.db.crm_models import CrmContact, CrmSearchGram
from provisioner.db.tenancy import set_tenant
from provisioner.services.actors import Actor
from provisioner.services.crm import (
    bulk,
    csvio,
    derived,
    records,
    search,
    search_index,
    seed,
)
from provisioner.services.crm.search import Query
from provisioner.services.crm.search_index import codec, gram_keys, pending, query
from provisioner.services.crm.text import search_key
from tests.crm.helpers import configured, make, owner_engine
from tests.support import World

KANJI = "田中山本佐藤鈴木高橋伊渡辺小林加吉井上森池石川東京都大阪府渋谷区千代商事株式会社"
KANA = "タナカヤマモトサスズキイノウエアベモリシミズ"
MEMOS = ("展示会", "紹介", "DM希望", "要フォロー", "既存顧客", "100%", "a_b", "")


def _word(rng: random.Random, alphabet: str, low: int, high: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


def _contact(rng: random.Random) -> dict[str, object]:
    return {
        "name": _word(rng, KANJI, 2, 4) + " " + _word(rng, KANJI, 1, 2),
        "kana": _word(rng, KANA, 2, 5) + " " + _word(rng, KANA, 2, 3),
        "phone": f"0{rng.randint(3, 9)}-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}",
        "mobile": rng.choice(["", f"090-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}"]),
        "address": _word(rng, KANJI, 3, 8) + f"{rng.randint(1, 9)}-{rng.randint(1, 30)}",
        "email": f"u{rng.randint(0, 999)}@ex{rng.randint(0, 9)}.jp",
        "memo_1": rng.choice(MEMOS),
    }


def _stored(world: World, actor: Actor) -> dict[int, str]:
    with world.app.transaction() as ctx:
        ctx.enter_tenant(actor.tenant_id)
        return {
            i: t
            for i, t in ctx.session.execute(
                select(CrmContact.id, CrmContact.search_text).where(
                    CrmContact.tenant_id == actor.tenant_id
                )
            )
        }


def _assert_index_exact(world: World, actor: Actor) -> dict[int, str]:
    """The stored index equals one rebuilt from the contacts' texts (grams, ids, counts)."""
    texts = _stored(world, actor)
    expected: dict[str, set[int]] = defaultdict(set)
    for contact_id, stored in texts.items():
        for gram in search_index.keys(stored):
            expected[gram].add(contact_id)
    actual: dict[str, set[int]] = defaultdict(set)
    with world.app.transaction() as ctx:
        ctx.enter_tenant(actor.tenant_id)
        for row in ctx.session.scalars(
            select(CrmSearchGram).where(CrmSearchGram.tenant_id == actor.tenant_id)
        ):
            members = {
                (row.block << search_index.BLOCK_BITS) + offset
                for offset in search_index.members(search_index.decode(row.data))
            }
            assert row.n == len(members) > 0, (row.gram, row.block)
            assert not actual[row.gram] & members
            actual[row.gram] |= members
        # the pending log of single writes, applied over the sets in the order written
        logged = _pending_rows(ctx.session.connection(), actor.tenant_id)
        assert len(logged) <= pending.FOLD_AT
        for contact_id, removed, added in logged:
            for gram in removed:
                actual[gram].discard(contact_id)
            for gram in added:
                actual[gram].add(contact_id)
    assert {g: ids for g, ids in actual.items() if ids} == expected
    return texts


def _pending_rows(conn: Connection, tenant_id: int) -> list[tuple[int, list[str], list[str]]]:
    """The tenant's logged index changes (contact, keys removed, added), oldest first."""
    return [
        (c, r.split("\n")[1:-1] if r else [], a.split("\n")[1:-1] if a else [])
        for c, r, a in conn.execute(
            text(
                "SELECT contact_id, removed, added FROM crm_search_pending "
                "WHERE tenant_id = :t ORDER BY seq"
            ),
            {"t": tenant_id},
        )
    ]


def _like(world: World, actor: Actor, terms: list[str], match: str = "all") -> list[int]:
    with world.app.transaction() as ctx:
        ctx.enter_tenant(actor.tenant_id)
        conditions = [
            CrmContact.search_text.like(
                "%" + t.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%", escape="/"
            )
            for t in terms
        ]
        query = select(CrmContact.id).where(CrmContact.tenant_id == actor.tenant_id)
        if match == "all":
            query = query.where(*conditions)
        else:
            from sqlalchemy import or_

            query = query.where(or_(*conditions))
        return sorted(ctx.session.scalars(query))


def _queries(rng: random.Random, texts: dict[int, str], count: int) -> list[str]:
    """Terms of 1..6 characters cut from the stored texts, plus some random ones."""
    pool = [t for t in texts.values() if t]
    out: list[str] = []
    for _ in range(count):
        if pool and rng.random() < 0.85:
            source = rng.choice(pool).replace("\x1f", "")
            size = rng.randint(1, 6)
            start = rng.randrange(max(1, len(source) - size + 1))
            out.append(source[start : start + size])
        else:
            out.append(_word(rng, KANJI + KANA + "0123456789-%_", 1, 4))
    return out


def _assert_search_is_scan(world: World, actor: Actor, rng: random.Random, count: int) -> None:
    texts = _assert_index_exact(world, actor)
    for q in _queries(rng, texts, count):
        key = search_key(q)
        expected = sorted(i for i, t in texts.items() if key in t)
        assert _like(world, actor, [key]) == expected, q
        with world.app.transaction() as ctx:
            result = search.search(ctx, actor, Query(q=q, limit=1000))
        assert (result.total, [i["id"] for i in result.items]) == (len(expected), expected), q
    for _ in range(count // 4):
        a, b = _queries(rng, texts, 2)
        for match in ("all", "any"):
            with world.app.transaction() as ctx:
                result = search.search(
                    ctx,
                    actor,
                    Query(
                        q=f"{a} {b}",
                        match=match,  # type: ignore[arg-type]
                        limit=1000,
                    ),
                )
            expected = _like(world, actor, [search_key(a), search_key(b)], match)
            assert [i["id"] for i in result.items] == expected, (a, b, match)
            assert result.total == len(expected)


@pytest.mark.parametrize(
    "tuning",
    [
        "default",
        pytest.param("chains", marks=pytest.mark.slow),
        pytest.param("dense", marks=pytest.mark.slow),
    ],
)
def test_index_equals_a_scan_across_every_write_path(
    world: World, tuning: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if tuning == "chains":  # long terms answered by positioned trigrams, most of them "far"
        monkeypatch.setattr(query, "VERIFY_MAX", {"sqlite": 0, "postgresql": 0})
        monkeypatch.setattr(gram_keys, "POSITIONS", 4)
    if tuning == "dense":  # bitmaps everywhere: stored, ANDed, ORed and walked
        monkeypatch.setattr(codec, "SPARSE_MAX", 2)
        monkeypatch.setattr(codec, "_AS_BITMAP", 2)
        monkeypatch.setattr(query, "VERIFY_MAX", {"sqlite": 3, "postgresql": 3})
        monkeypatch.setattr(query, "VERIFY_EARLY", 1)
    rng = random.Random(20261123)
    configured(world)
    configured(world, "other")
    admin, other = world.actor("acme"), world.actor("other")
    companies = [
        make(world, admin, "company", {"name": f"株式会社{_word(rng, KANJI, 2, 4)}"})
        for _ in range(4)
    ]
    ids = []
    with world.app.transaction() as ctx:
        for _ in range(60):
            data = _contact(rng)
            if rng.random() < 0.5:
                data["company_id"] = rng.choice(companies)["id"]
            ids.append(records.create(ctx, admin, "contact", data).record["id"])
        for _ in range(20):
            records.create(ctx, other, "contact", _contact(rng))
    _assert_search_is_scan(world, admin, rng, 30)

    # updates of searchable fields, company moves and unrelated fields; deletes
    with world.app.transaction() as ctx:
        for contact_id in rng.sample(ids, 25):
            change = {k: v for k, v in _contact(rng).items() if rng.random() < 0.4}
            change["company_id"] = rng.choice([None, *(c["id"] for c in companies)])
            records.update(ctx, admin, "contact", contact_id, change)
        records.update(ctx, admin, "contact", ids[0], {"checkboxes": [1]})
        for contact_id in rng.sample(ids[1:], 8):
            records.delete_record(ctx, admin, "contact", contact_id)
            ids.remove(contact_id)
    # a company renamed (its contacts' texts change) and a company deleted
    with world.app.transaction() as ctx:
        records.update(ctx, admin, "company", companies[0]["id"], {"name": "株式会社新名称"})
        records.delete_record(ctx, admin, "company", companies[1]["id"])
    _assert_search_is_scan(world, admin, rng, 30)

    # bulk update (company) and bulk delete over a search result
    with world.app.transaction() as ctx:
        bulk.bulk_update(ctx, admin, Query(q=rng.choice(KANJI)), company_id=companies[2]["id"])
        bulk.bulk_delete(ctx, admin, Query(q=rng.choice(KANA)))
    # CSV import and seed data next to the rows written one by one
    lines = ["name,kana,phone,address,company,memo_1"] + [
        ",".join(str(c[k]) for k in ("name", "kana", "phone", "address")) + ",株式会社輸入,紹介"
        for c in (_contact(rng) for _ in range(30))
    ]
    with world.app.transaction() as ctx:
        csvio.import_customers(ctx, admin, "\n".join(lines).encode())
        seed.seed_contacts(ctx, admin, 40, seed=5)
        seed.seed_contacts(ctx, other, 30, seed=6)
    _assert_search_is_scan(world, admin, rng, 40)
    _assert_search_is_scan(world, other, rng, 20)

    # a tenant whose contacts all come in bulk (index blocks written without merging)
    configured(world, "bulk")
    fresh = world.actor("bulk")
    with world.app.transaction() as ctx:
        csvio.import_customers(ctx, fresh, "\n".join(lines).encode())
    with world.app.transaction() as ctx:
        seed.seed_contacts(ctx, fresh, 50, seed=7)
    _assert_search_is_scan(world, fresh, rng, 30)


def test_a_picklist_remap_keeps_the_index_exact(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    contact = make(world, admin, "contact", {"name": "検索 太郎", "memo_2": "gold"})
    with world.app.transaction() as ctx:
        ctx.enter_tenant(admin.tenant_id)
        records.refresh_search_text(ctx, admin.tenant_id, [contact["id"]])
        ctx.session.execute(
            CrmContact.__table__.update()
            .where(CrmContact.id == contact["id"])
            .values(memo_2="silver")
        )
        records.refresh_search_text(ctx, admin.tenant_id, [contact["id"]])
    texts = _assert_index_exact(world, admin)
    assert "silver" in texts[contact["id"]]
    with world.app.transaction() as ctx:
        assert search.search(ctx, admin, Query(q="silv")).total == 1
        assert search.search(ctx, admin, Query(q="gol")).total == 0


def test_the_index_is_per_tenant(world: World) -> None:
    configured(world)
    configured(world, "other")
    admin, other = world.actor("acme"), world.actor("other")
    mine = make(world, admin, "contact", {"name": "田中 太郎", "phone": "03-1234-5678"})
    theirs = make(world, other, "contact", {"name": "田中 太郎", "phone": "03-1234-5678"})
    for actor, own in ((admin, mine), (other, theirs)):
        for q in ("田", "田中", "田中太", "田中太郎", "5678"):
            with world.app.transaction() as ctx:
                result = search.search(ctx, actor, Query(q=q))
            assert (result.total, [i["id"] for i in result.items]) == (1, [own["id"]]), q
    with world.app.transaction() as ctx:
        records.delete_record(ctx, other, "contact", theirs["id"])
    with world.app.transaction() as ctx:
        assert search.search(ctx, admin, Query(q="田中")).total == 1
        assert search.search(ctx, other, Query(q="田中")).total == 0
        for actor in (admin, other):  # the single writes' log written into the sets
            with ctx.tenant_scope(actor.tenant_id):
                search_index.fold(ctx.session.connection(), actor.tenant_id)
        with ctx.operator("read"):  # every tenant's index rows
            owners = set(ctx.session.scalars(select(CrmSearchGram.tenant_id).distinct()))
    assert owners == {admin.tenant_id}


def test_paging_sorting_and_other_conditions_use_the_same_rows(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    with world.app.transaction() as ctx:
        seed.seed_contacts(ctx, admin, 300, seed=11)
    texts = _stored(world, admin)
    wanted = sorted(i for i, t in texts.items() if "田" in t)
    assert len(wanted) > 20
    with world.app.transaction() as ctx:
        pages = [
            search.search(ctx, admin, Query(q="田", limit=7, offset=o))
            for o in range(0, len(wanted) + 7, 7)
        ]
        back = search.search(ctx, admin, Query(q="田", sort="-id", limit=5, offset=3))
        long_back = search.search(ctx, admin, Query(q="東京都", sort="-id", limit=4, offset=2))
        boxed = search.search(ctx, admin, Query(q="田 03", checkboxes={1: True}, limit=1000))
        by_kana = search.search(ctx, admin, Query(q="田", sort="kana", limit=1000))
    assert [i["id"] for p in pages for i in p.items] == wanted
    assert {p.total for p in pages} == {len(wanted)}
    assert [i["id"] for i in back.items] == wanted[::-1][3:8]
    tokyo = sorted((i for i, t in texts.items() if "東京都" in t), reverse=True)
    assert [i["id"] for i in long_back.items] == tokyo[2:6]
    with world.app.transaction() as ctx:
        ctx.enter_tenant(admin.tenant_id)
        checked = set(
            ctx.session.scalars(
                select(CrmContact.id).where(
                    CrmContact.tenant_id == admin.tenant_id, CrmContact.checkboxes.op("&")(1) != 0
                )
            )
        )
    assert [i["id"] for i in boxed.items] == [
        i for i in wanted if "03" in texts[i] and i in checked
    ]
    assert sorted(i["id"] for i in by_kana.items) == wanted
    assert [i["kana"] for i in by_kana.items] == sorted(i["kana"] for i in by_kana.items)


@pytest.mark.parametrize(
    "size", [1, 5, search_index.SPARSE_MAX, search_index.SPARSE_MAX + 1, 20000]
)
def test_block_sets_round_trip_and_switch_between_sparse_and_dense(size: int) -> None:
    rng = random.Random(size)
    members = sorted(rng.sample(range(search_index.BLOCK), size))
    data = search_index.encode(members)
    assert data[:1] == (b"S" if size <= search_index.SPARSE_MAX else b"D")
    assert list(search_index.members(search_index.decode(data))) == members
    assert list(search_index.members(search_index.decode(data), True)) == members[::-1]
    removed = members[: max(0, size - 10)]
    n, merged = codec.merge(data, [7], removed)
    left = sorted(set(members) - set(removed) | {7})
    assert merged is not None
    assert n == len(left)
    assert merged[:1] == b"S"
    assert list(search_index.members(search_index.decode(merged))) == left
    assert codec.merge(merged, [], left) == (0, None)


def test_grams_stay_inside_a_field() -> None:
    assert search_index.grams("ab\x1fcd") == {"a", "b", "ab", "c", "d", "cd"}
    assert search_index.term_grams("田中") == ["田中"]
    assert search_index.term_grams("田中太郎") == ["田中太", "中太郎"]


def test_row_level_security_covers_the_index(world: World) -> None:
    if world.app.engine.dialect.name != "postgresql":
        pytest.skip("row-level security is a PostgreSQL feature")
    configured(world)
    with world.app.transaction() as ctx:  # bulk: written to the sets
        seed.seed_contacts(ctx, world.actor("acme"), 3, seed=5)
    make(world, world.actor("acme"), "contact", {"name": "田中"})  # single: to the log
    with world.app.engine.connect() as conn, conn.begin():  # as the runtime role
        for table in ("crm_search_grams", "crm_search_pending"):
            flags = conn.execute(
                text("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = :r"),
                {"r": table},
            ).one()
            assert tuple(flags) == (True, True), table
        assert (
            conn.scalar(
                text(  # positioned trigrams are read by code-point range
                    "SELECT collation_name FROM information_schema.columns "
                    "WHERE table_name = 'crm_search_grams' AND column_name = 'gram'"
                )
            )
            == "C"
        )
        # no tenant set: none of the index's rows
        assert conn.scalar(text("SELECT count(*) FROM crm_search_grams")) == 0
        assert conn.scalar(text("SELECT count(*) FROM crm_search_pending")) == 0
        set_tenant(conn, world.actor("acme").tenant_id)
        assert conn.scalar(text("SELECT count(*) FROM crm_search_grams")) > 0
        assert conn.scalar(text("SELECT count(*) FROM crm_search_pending")) == 1


def test_the_migration_builds_the_index_of_existing_contacts(
    world: World, request: pytest.FixtureRequest
) -> None:
    from alembic import command

    from provisioner.db import migrate

    configured(world)
    admin = world.actor("acme")
    with world.app.transaction() as ctx:
        seed.seed_contacts(ctx, admin, 120, seed=3)
    before = _assert_index_exact(world, admin)
    cfg = migrate.alembic_config()
    with owner_engine(world, request) as owner:  # migrations: as the schema's owner
        with owner.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0002_crm")
        assert "0004_search_index" not in migrate.current(world.app.engine)
        # provisioner init: the migrations, then the derived data
        migrate.upgrade(owner, rebuild=derived.rebuild)
    assert _assert_index_exact(world, admin) == before
    with world.app.transaction() as ctx:
        assert search.search(ctx, admin, Query(q="田")).total == sum(
            "田" in t for t in before.values()
        )


def test_text_fast_paths_equal_the_unicode_rules() -> None:
    """ASCII shortcuts (and the cache) of search_key / nfkc / phone_digits change nothing."""
    import re
    import unicodedata

    from provisioner.services.crm import text as crm_text

    def reference_digits(value: str) -> str:
        normal = unicodedata.normalize("NFKC", value).strip()
        digits = "".join(ch for ch in normal if ch.isdigit())
        if normal.startswith("+81"):
            rest = digits[2:]
            digits = rest if rest.startswith("0") else "0" + rest
        return digits

    rng = random.Random(11)
    alphabet = [chr(i) for i in range(128)] + list("０１２３田中ｶﾀｶﾅ　\u3000\x85\xa0²ＡＢｃ")
    for _ in range(20000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        assert (
            crm_text.search_key(value)
            == re.sub(r"\s+", "", unicodedata.normalize("NFKC", value)).lower()
        ), repr(value)
        assert crm_text.nfkc(value) == unicodedata.normalize("NFKC", value).strip()
        assert crm_text.phone_digits(value) == reference_digits(value), repr(value)
