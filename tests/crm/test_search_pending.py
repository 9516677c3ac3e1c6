"""The pending log of single writes (``crm_search_pending``): every search equals a scan
while it holds entries, after it is folded, and across its threshold; a single create's
WAL does not grow with the tenant (SQLite).

Single creates, updates and deletes append to the log; searches of every shape (a gram,
its pages both ways, a term verified with LIKE, a term matched by positioned trigrams,
several terms with ``all`` and ``any``) are compared with a ``LIKE`` scan at each step.
"""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, select, text

from provisioner.db.crm_models import CrmContact, CrmSearchGram
from provisioner.services.actors import Actor
from provisioner.services.crm import records, search, search_index, seed
from provisioner.services.crm.search import Query
from provisioner.services.crm.search_index import pending
from provisioner.services.crm.text import search_key
from tests.crm.helpers import configured, make
from tests.support import World

#: 1..3 characters (a gram), long terms of few matches (LIKE) and of many (chains)
TERMS = ("田", "中", "@", "-", "田中", "太郎", "example", "03-55", "ソクテイ", "測定太郎", "ヤマダ")


def _scoped(conn: Connection, tenant_id: int) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT set_config('provisioner.tenant_id', :t, true)"), {"t": str(tenant_id)}
        )


def _logged(world: World, actor: Actor) -> int:
    with world.app.engine.connect() as conn, conn.begin():
        _scoped(conn, actor.tenant_id)
        return int(
            conn.scalar(
                text("SELECT count(*) FROM crm_search_pending WHERE tenant_id = :t"),
                {"t": actor.tenant_id},
            )
            or 0
        )


def _fold(world: World, actor: Actor) -> None:
    with world.app.engine.connect() as conn, conn.begin():
        _scoped(conn, actor.tenant_id)
        search_index.fold(conn, actor.tenant_id)


def _assert_searches_are_scans(world: World, actor: Actor, terms: tuple[str, ...] = TERMS) -> None:
    with world.app.transaction() as ctx:
        ctx.enter_tenant(actor.tenant_id)
        texts = dict(
            ctx.session.execute(
                select(CrmContact.id, CrmContact.search_text).where(
                    CrmContact.tenant_id == actor.tenant_id
                )
            ).all()
        )
        for q in terms:
            key = search_key(q)
            expected = sorted(i for i, t in texts.items() if key in t)
            result = search.search(ctx, actor, Query(q=q, limit=1000))
            items = [i["id"] for i in result.items]
            assert (result.total, items) == (len(expected), expected[:1000]), q
            # pages, ascending and descending (a gram: from the stored counts and blocks)
            for offset in (0, 7, 14, max(0, len(expected) - 9)):
                page = search.search(ctx, actor, Query(q=q, limit=7, offset=offset))
                assert page.total == len(expected), q
                assert [i["id"] for i in page.items] == expected[offset : offset + 7], q
            conn = ctx.session.connection()
            total, ids = search_index.page(
                conn, actor.tenant_id, [key], "all", 2, 5, descending=True
            )
            assert (total, ids) == (len(expected), expected[::-1][2:7]), q
        for a, b in itertools.pairwise(terms):
            both = [search_key(a), search_key(b)]
            for match in ("all", "any"):
                join = all if match == "all" else any
                expected = sorted(i for i, t in texts.items() if join(k in t for k in both))
                result = search.search(
                    ctx,
                    actor,
                    Query(q=f"{a} {b}", match=match, limit=1000),  # type: ignore[arg-type]
                )
                got = (result.total, [i["id"] for i in result.items])
                assert got == (len(expected), expected[:1000]), (a, b, match)


def _person(n: int, name: str = "測定 太郎") -> dict[str, object]:
    return {
        "name": f"{name}{n}",
        "kana": "ソクテイ タロウ",
        "phone": f"03-5555-{n:04d}",
        "email": f"t{n}@example.jp",
    }


def test_reads_apply_the_log_before_and_after_it_is_folded(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    with world.app.transaction() as ctx:  # bulk: written to the sets, the log stays empty
        seed.seed_contacts(ctx, admin, 120, seed=3)
    assert _logged(world, admin) == 0
    made = [make(world, admin, "contact", _person(n))["id"] for n in range(6)]
    assert _logged(world, admin) == 6
    _assert_searches_are_scans(world, admin)
    with world.app.transaction() as ctx:  # an update, then a delete of a seeded contact
        records.update(ctx, admin, "contact", made[0], {"name": "山田 花子"})
    oldest = min(
        i for i in _ids(world, admin) if i not in made
    )  # its keys are in the sets: the log removes them
    with world.app.transaction() as ctx:
        records.delete_record(ctx, admin, "contact", oldest)
    assert _logged(world, admin) == 8
    _assert_searches_are_scans(world, admin, (*TERMS, "山田", "花子"))
    _fold(world, admin)
    assert _logged(world, admin) == 0
    _assert_searches_are_scans(world, admin, (*TERMS, "山田", "花子"))


def _ids(world: World, actor: Actor) -> list[int]:
    with world.app.transaction() as ctx:
        ctx.enter_tenant(actor.tenant_id)
        return list(
            ctx.session.scalars(
                select(CrmContact.id).where(CrmContact.tenant_id == actor.tenant_id)
            )
        )


def test_adds_and_removes_of_one_contact_in_the_log(world: World) -> None:
    """The last logged change of a (key, contact) wins: create, change, change back, delete."""
    configured(world)
    admin = world.actor("acme")
    with world.app.transaction() as ctx:
        seed.seed_contacts(ctx, admin, 40, seed=4)
    contact = make(world, admin, "contact", _person(1, "田中 一郎"))["id"]
    _assert_searches_are_scans(world, admin, ("田中", "一郎", "次郎", "ソクテイ"))
    for name in ("田中 次郎", "田中 一郎", "ヤマダ 次郎"):
        with world.app.transaction() as ctx:
            records.update(ctx, admin, "contact", contact, {"name": name})
        _assert_searches_are_scans(world, admin, ("田中", "一郎", "次郎", "ヤマダ", "ダ次"))
    with world.app.transaction() as ctx:
        records.delete_record(ctx, admin, "contact", contact)
    assert _logged(world, admin) == 5
    _assert_searches_are_scans(world, admin, ("田中", "一郎", "次郎", "ヤマダ", "ダ次"))
    again = make(world, admin, "contact", _person(2, "ヤマダ 次郎"))["id"]
    _assert_searches_are_scans(world, admin, ("次郎", "ヤマダ", "ダ次"))
    _fold(world, admin)
    _assert_searches_are_scans(world, admin, ("田中", "一郎", "次郎", "ヤマダ", "ダ次"))
    assert _logged(world, admin) == 0
    # (SQLite may give the deleted contact's id to the new one: removed, then added back)
    assert again >= contact


def test_the_log_is_folded_past_its_bound_and_before_bulk_writes(world: World) -> None:
    configured(world)
    admin = world.actor("acme")
    seen: list[int] = []
    for n in range(pending.FOLD_AT + 3):
        make(world, admin, "contact", _person(n))
        seen.append(_logged(world, admin))
    assert max(seen) == pending.FOLD_AT
    assert seen[pending.FOLD_AT] == 0  # the create past the bound folded the log
    assert _logged(world, admin) == 2
    _assert_searches_are_scans(world, admin)
    with world.app.transaction() as ctx:  # more contacts than a single write: to the sets
        ctx.enter_tenant(admin.tenant_id)
        ids = list(
            ctx.session.scalars(
                select(CrmContact.id).where(CrmContact.tenant_id == admin.tenant_id)
            )
        )
        wide = ids[: pending.SMALL + 1]
        ctx.session.execute(
            CrmContact.__table__.update().where(CrmContact.id.in_(wide)).values(memo_1="展示会")
        )
        records.refresh_search_text(ctx, admin.tenant_id, wide)
    assert _logged(world, admin) == 0
    _assert_searches_are_scans(world, admin, (*TERMS, "展示会", "示"))


def test_a_dense_set_with_logged_changes(world: World) -> None:
    """A gram held by most of a block (stored dense) with logged adds and removes."""
    configured(world)
    admin = world.actor("acme")
    with world.app.transaction() as ctx:
        seed.seed_contacts(ctx, admin, 2300, seed=9)
    with world.app.transaction() as ctx:
        conn = ctx.session.connection()
        _scoped(conn, admin.tenant_id)
        dense = conn.scalar(
            select(func.count())
            .select_from(CrmSearchGram)
            .where(CrmSearchGram.tenant_id == admin.tenant_id, CrmSearchGram.gram == "@")
            .where(func.substr(CrmSearchGram.data, 1, 1) == b"D")
        )
    assert dense == 1
    holder = _ids(world, admin)[5]
    with world.app.transaction() as ctx:
        records.delete_record(ctx, admin, "contact", holder)
    make(world, admin, "contact", _person(7))
    _assert_searches_are_scans(world, admin, ("@", "jp", "ソクテイ", "測定太郎"))
    _fold(world, admin)
    _assert_searches_are_scans(world, admin, ("@", "jp"))


def _wal_of_a_create(world: World, actor: Actor, path: Path, n: int) -> int:
    world.app.engine.dispose()  # no pooled connection holds a snapshot
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()
    make(world, actor, "contact", _person(n))
    return path.with_name(path.name + "-wal").stat().st_size


def test_the_wal_of_a_create_does_not_grow_with_the_tenant(world: World) -> None:
    if world.app.engine.dialect.name != "sqlite":
        pytest.skip("the write-ahead log measured is SQLite's")
    database = world.app.engine.url.database
    assert database
    path = Path(database)
    configured(world)
    admin = world.actor("acme")
    small = min(_wal_of_a_create(world, admin, path, n) for n in range(3))
    with world.app.transaction() as ctx:
        seed.seed_contacts(ctx, admin, 3000, seed=2)
    large = min(_wal_of_a_create(world, admin, path, n) for n in range(3, 6))
    page = 4096 + 24
    # the same pages whatever the index holds (before the log: 50+ pages of sets at 1,000)
    assert large <= small + 3 * page, (small, large)
    assert large < 24 * page, large
