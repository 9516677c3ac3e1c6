"""A picklist remap over many contacts keeps the n-gram index exact.

The remap writes the value and the search text in one pass and indexes only what
changed per field (:func:`search_index.apply`); the result must be the index a
from-scratch rebuild makes (every row: gram, block, count, members) and searches
must return what a ``LIKE`` scan returns.
"""

from __future__ import annotations

import copy
import random
from typing import Any

from sqlalchemy import Connection, bindparam, select, text, update

from provisioner.db.crm_models import CrmCompany, CrmContact
from provisioner.services.crm import impact, records, search, search_index, seed
from provisioner.services.crm.search import Query
from provisioner.services.crm.search_index import writer
from provisioner.services.crm.text import search_key
from tests.crm.helpers import configured, make
from tests.support import World

#: memo values sharing grams with the remapped ones ("gold" -> "silver")
OTHER_MEMOS = ("", "gold star", "old", "silverware", "go", "ld", "sil", "金")
TERMS = (
    "g",
    "o",
    "l",
    "d",
    "s",
    "i",
    "v",
    "e",
    "r",
    "go",
    "ol",
    "ld",
    "si",
    "il",
    "er",
    "gol",
    "old",
    "sil",
    "lve",
    "ver",
    "gold",
    "silver",
    "silv",
    "ilve",
    "star",
    "田",
    "ware",
    "rwar",
)

Rows = dict[tuple[str, int], tuple[int, frozenset[int]]]


def _scoped(conn: Connection, tenant_id: int) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT set_config('provisioner.tenant_id', :t, true)"), {"t": str(tenant_id)}
        )


def _rows(conn: Connection, tenant_id: int) -> Rows:
    """The tenant's index rows: (gram, block) -> (n, member offsets)."""
    out: Rows = {}
    for gram, block, n, data in conn.execute(
        text("SELECT gram, block, n, data FROM crm_search_grams WHERE tenant_id = :t"),
        {"t": tenant_id},
    ):
        out[(gram, block)] = (n, frozenset(search_index.members(search_index.decode(bytes(data)))))
    return out


def _assert_equals_rebuild(world: World, tenant_id: int) -> None:
    """The stored index (its pending log folded in) equals one built from scratch from
    the stored texts."""
    with world.app.engine.connect() as conn, conn.begin() as scope:
        _scoped(conn, tenant_id)
        search_index.fold(conn, tenant_id)
        stored = _rows(conn, tenant_id)
        texts = [
            (i, t)
            for i, t in conn.execute(
                select(CrmContact.id, CrmContact.search_text).where(
                    CrmContact.tenant_id == tenant_id
                )
            )
        ]
        conn.execute(text("DELETE FROM crm_search_grams WHERE tenant_id = :t"), {"t": tenant_id})
        search_index.index_new(conn, tenant_id, texts)
        rebuilt = _rows(conn, tenant_id)
        scope.rollback()
    assert all(n == len(members) > 0 for n, members in stored.values())
    assert stored.keys() == rebuilt.keys()
    assert stored == rebuilt


def _assert_search_is_scan(world: World, slug: str, tenant_id: int) -> None:
    actor = world.actor(slug)
    with world.app.transaction() as ctx:
        _scoped(ctx.session.connection(), tenant_id)
        for term in TERMS:
            key = search_key(term)
            pattern = "%" + key.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"
            expected = sorted(
                ctx.session.scalars(
                    select(CrmContact.id).where(
                        CrmContact.tenant_id == tenant_id,
                        CrmContact.search_text.like(pattern, escape="/"),
                    )
                )
            )
            got: list[int] = []
            while True:
                result = search.search(ctx, actor, Query(q=term, limit=1000, offset=len(got)))
                assert result.total == len(expected), term
                got.extend(item["id"] for item in result.items)
                if not result.items:
                    break
            assert sorted(got) == expected, term


def _remapped(data: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(data)
    rank = next(p for p in new["picklists"] if p["code"] == "rank")
    rank["values"] = [v for v in rank["values"] if v["code"] != "gold"]
    return new


def test_a_remap_over_many_contacts_equals_a_rebuild(world: World) -> None:
    configured(world)
    configured(world, "other")
    admin, other = world.actor("acme"), world.actor("other")
    with world.app.transaction() as ctx:
        seed.seed_contacts(ctx, admin, 2600, seed=11)
    with world.app.transaction() as ctx:
        seed.seed_contacts(ctx, other, 50, seed=12)
    make(world, other, "contact", {"name": "他社", "memo_2": "gold"})
    rng = random.Random(3)
    with world.app.transaction() as ctx:
        conn = ctx.session.connection()
        _scoped(conn, admin.tenant_id)
        ids = list(
            ctx.session.scalars(
                select(CrmContact.id)
                .where(CrmContact.tenant_id == admin.tenant_id)
                .order_by(CrmContact.id)
            )
        )
        # most hold gold (the gram sets of a block become dense), some silver or old,
        # and other fields hold grams of both values
        conn.execute(
            update(CrmContact)
            .where(CrmContact.id == bindparam("i"))
            .values(memo_1=bindparam("m1"), memo_2=bindparam("m2"), memo_3=bindparam("m3")),
            [
                {
                    "i": contact_id,
                    "m1": rng.choice(OTHER_MEMOS),
                    "m3": rng.choice(OTHER_MEMOS),
                    "m2": rng.choice(["gold"] * 12 + ["silver", "old", ""]),
                }
                for contact_id in ids
            ],
        )
        records.refresh_search_text(ctx, admin.tenant_id, ids)
    _assert_equals_rebuild(world, admin.tenant_id)
    base = world.config("acme")
    with world.app.transaction() as ctx:
        changed = impact.apply_remap(ctx, admin.tenant_id, _remapped(base), {"rank.gold": "silver"})
    assert changed["rank.gold"] > 2000
    _assert_equals_rebuild(world, admin.tenant_id)
    _assert_equals_rebuild(world, other.tenant_id)
    _assert_search_is_scan(world, "acme", admin.tenant_id)
    with world.app.transaction() as ctx:
        _scoped(ctx.session.connection(), admin.tenant_id)
        stored = {
            i: t
            for i, t in ctx.session.execute(
                select(CrmContact.id, CrmContact.search_text).where(
                    CrmContact.tenant_id == admin.tenant_id
                )
            )
        }
        for contact_id in rng.sample(ids, 50):  # the stored text is the text of the values
            row = ctx.session.get(CrmContact, contact_id)
            assert row is not None
            assert row.memo_2 != "gold"
            company = (
                ctx.session.scalar(select(CrmCompany.name).where(CrmCompany.id == row.company_id))
                if row.company_id
                else ""
            )
            assert stored[contact_id] == records.contact_search_text(row, company or "")


def test_objects_in_the_session_see_the_remap(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    contact = make(world, admin, "contact", {"name": "検索 太郎", "memo_2": "gold"})
    base = world.config("acme")
    with world.app.transaction() as ctx:
        ctx.enter_tenant(admin.tenant_id)
        held = ctx.session.get(CrmContact, contact["id"])
        assert held is not None
        assert held.memo_2 == "gold"
        impact.apply_remap(ctx, admin.tenant_id, _remapped(base), {"rank.gold": "silver"})
        assert held.memo_2 == "silver"
        assert held.search_text.endswith("silver")
        held.name = "検索 次郎"  # a later ORM write is diffed from the remapped text
        held.search_text = records.contact_search_text(held, "")
    _assert_equals_rebuild(world, admin.tenant_id)
    with world.app.transaction() as ctx:
        assert search.search(ctx, admin, Query(q="次郎 silver")).total == 1
        assert search.search(ctx, admin, Query(q="gold")).total == 0


def _changed(rng: random.Random, parts: list[str]) -> list[str]:
    out = list(parts)
    for _ in range(rng.randint(1, 3)):
        j = rng.randrange(len(out))
        out[j] = rng.choice(
            [
                "",
                out[(j + 1) % len(out)],
                "".join(rng.choice("abcxy田") for _ in range(rng.randint(0, 80))),
            ]
        )
    return out


def test_a_field_by_field_diff_equals_the_full_one() -> None:
    rng = random.Random(5)
    known: dict[Any, Any] = {}
    for _ in range(3000):
        parts = [
            "".join(rng.choice("abcxy田") for _ in range(rng.randint(0, 70)))
            for _ in range(rng.randint(1, 6))
        ]
        old, new = "\x1f".join(parts), "\x1f".join(_changed(rng, parts))
        if old == new:
            continue
        found = writer.changed_keys(old, new, known)
        assert found is not None
        changed, plain_removed, plain_added = found
        positioned_removed, positioned_added, _, _ = known[changed]
        before, after = search_index.keys(old), search_index.keys(new)
        assert {*positioned_removed, *plain_removed} == before - after
        assert {*positioned_added, *plain_added} == after - before
    assert writer.changed_keys("a\x1fb", "a", known) is None
