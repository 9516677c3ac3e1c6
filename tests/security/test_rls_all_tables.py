"""PostgreSQL row-level security on every tenant table, table by table, as the runtime role.

Migration 0021 put every table that carries ``tenant_id`` under forced row-level
security. These tests hold the schema to that rule (a new tenant table without
its policies fails here, by name) and prove the policies with data: three
tenants with rows in every tenant table, built through the services as the
runtime role (neither superuser nor BYPASSRLS), then, for each table, what a
transaction scoped to one tenant can read, insert, update and delete.

Every building step runs through the services as the runtime role: a service that
does not scope its writes fails the module, by the name of its step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from functools import partial
from typing import Any

import pytest
from psycopg.errors import InsufficientPrivilege
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ProgrammingError

from provisioner.clock import FrozenClock
from provisioner.db import migrate, roles
from provisioner.db.engine import make_engine
from provisioner.db.schema import metadata
from provisioner.security.keystore import MasterKey
from provisioner.services import actors, signing, users, workflows
from provisioner.services.context import Provisioner
from provisioner.services.crm import csvio, records, seed
from provisioner.services.crm.search import Query
from provisioner.services.provisioning import auth, metering, quotas, rollout
from provisioner.services.provisioning.rollout import Target
from tests.conftest import MASTER_KEY, RUNTIME_ROLE, START, runtime_url
from tests.crm.helpers import make, one_of_each
from tests.support import World
from tests.workflows.helpers import CHECK, rule, with_rules

pytestmark = pytest.mark.postgres

#: the tables of schema public without tenant_id, each with why it needs no tenant policy
SHARED_TABLES: dict[str, str] = {
    "alembic_version": "the schema's revision: one row, no tenant data",
    "tenants": "the tenant registry itself; read by slug before a scope exists",
    "users": "logins are global (one user, many tenants); memberships carry the tenant",
    "tenant_groups": "operator-defined billing groups of tenants, no tenant's own data",
    "price_books": "the deployment's list prices, the same for every tenant",
    "config_documents": "content-addressed documents shared by digest, reached only "
    "through a tenant's config_versions row",
    "derived_data": "derived caches keyed by document digest, not by tenant",
    "key_failures": "failed copy-key attempts by selector, before any tenant is known",
    "throttles": "login throttling by login/client key, before any tenant is known",
}

#: tables whose scoped read shows, besides the tenant's own rows, rows another policy
#: admits by design (migration 0021): table -> owner-side count of those rows for :t
DESIGNED_EXTRA_READ: dict[str, str] = {
    # the source of a transfer sees what it sent: rows of the target signed by its key
    "transfers": "SELECT count(*) FROM transfers x WHERE x.tenant_id <> :t "
    "AND x.signer_key_id IN (SELECT key_id FROM signing_keys WHERE tenant_id = :t)",
}

#: the policies every tenant table has (name -> command, all permissive)
BASE_POLICIES = {"tenant_isolation": "ALL", "operator_read": "SELECT", "operator_write": "ALL"}
#: the credential and visibility policies some tables have besides (migration 0021);
#: a policy not declared here or there fails the listing test
EXTRA_POLICIES: dict[str, dict[str, str]] = {
    "memberships": {"member_self": "SELECT"},
    "login_sessions": {
        "session_self": "SELECT",
        "session_self_update": "UPDATE",
        "session_token": "SELECT",
    },
    "copy_keys": {"key_selector": "SELECT", "key_selector_update": "UPDATE"},
    "signing_keys": {"key_lookup": "SELECT"},
    "transfers": {"source_read": "SELECT"},
    "rollout_targets": {"publisher_read": "SELECT"},
}

SLUGS = ("alpha", "beta", "gamma")
#: a tenant id no row carries: a scope that owns nothing
NOBODY = 999_999
PASSWORD = "correct horse battery staple"


#: every table of the models that carries tenant_id (the schema's, checked below)
TENANT_TABLES: list[str] = sorted(t.name for t in metadata.sorted_tables if "tenant_id" in t.c)


def _truncate(engine: Engine) -> None:
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


STAGES = {
    "code": "stage",
    "label": "商談段階",
    "values": [{"code": "lead", "label": "見込み"}, {"code": "won", "label": "受注"}],
}
PIPELINE = {
    "code": "deal",
    "label": "商談",
    "object": "contact",
    "picklist": "stage",
    "initial_state": "lead",
    "states": [{"code": "lead", "label": "見込み"}, {"code": "won", "label": "受注"}],
    "transitions": [
        {
            "code": "close",
            "label": "受注",
            "from_state": "lead",
            "to_state": "won",
            "allowed_roles": [],
            "required_fields": [],
        }
    ],
}
BIRTHDAY_CARD = {"type": "create_activity", "kind": "email", "content": "カード", "due_in_days": 0}


def _configure(world: World, slug: str) -> None:
    with_rules(
        world,
        rule(
            "tell",
            "contact",
            "created",
            [CHECK, {"type": "notify", "role": "admin", "message": "新規"}],
        ),
        rule(
            "birthday",
            "contact",
            "date",
            [BIRTHDAY_CARD],
            field="contact.birthday",
            days=-3,
            yearly=True,
        ),
        slug=slug,
        blueprints=[PIPELINE],
        picklists=[STAGES],
    )


def _records(world: World, slug: str) -> None:
    admin = world.actor(slug)
    ids = one_of_each(world, admin)
    with world.app.transaction() as ctx:
        seed.seed_contacts(ctx, admin, 5, seed=len(slug))  # the bulk path: search grams
    with world.app.transaction() as ctx:
        records.update(ctx, admin, "contact", ids["contact"], {"title": "部長"})  # a career
        csvio.export(ctx, admin, "customers", Query())  # an access-log row
    contact = make(world, admin, "contact", {"name": "誕生", "birthday": "1980-11-26"})
    with world.app.transaction() as ctx:
        workflows.transition(ctx, admin, "contact", contact["id"], "won")
        records.update(ctx, admin, "contact", contact["id"], {"memo_1": "更新"})


def _people(world: World, slug: str) -> None:
    with world.app.transaction() as ctx:
        admin = actors.resolve(ctx, f"{slug}-admin", slug)
        users.add_department(ctx, admin, "sales", "営業部")
        users.set_department(ctx, admin, f"{slug}-gen", "sales")


def _telephony(world: World, slug: str) -> None:
    with world.app.transaction() as ctx:
        admin = actors.resolve(ctx, f"{slug}-admin", slug)
        metering.set_business_hours(ctx, admin, {d: ("09:00", "18:00") for d in range(5)})
        metering.add_holiday(ctx, admin, date(2026, 11, 23), name="勤労感謝の日")
        metering.add_number(ctx, admin, "03-1111-1111", kind="customer", label="山田様")


def _call(world: World, slug: str) -> None:
    with world.app.transaction() as ctx:
        metering.record_call(ctx, actors.resolve(ctx, f"{slug}-gen", slug), "03-1111-1111")


def _contract(world: World, slug: str) -> None:
    with world.app.transaction() as ctx:
        metering.set_contract(ctx, slug, started_on=date(2026, 11, 1), seats=2, by="operator")
        quotas.add_disk(ctx, slug, gb=1, by="operator")


def _session(world: World, slug: str) -> None:
    with world.app.transaction() as ctx:
        auth.set_initial_password(ctx, f"{slug}-gen", PASSWORD, by="test")
    with world.app.transaction() as ctx:
        auth.login(ctx, f"{slug}-gen", PASSWORD)


def _trust(world: World, slug: str, source: str) -> None:
    """``slug`` trusts ``source`` as a publisher (its rollouts apply automatically)."""
    with world.app.transaction() as ctx:
        admin = actors.resolve(ctx, f"{slug}-admin", slug)
        pem = signing.public_key_pem(ctx, actors.get_tenant(ctx, source).id).encode()
        signing.trust(ctx, admin, pem, label=f"{source} HQ", policy="auto")


def _due(world: World) -> None:
    with world.app.transaction() as ctx:
        workflows.run_due(ctx, today=date(2026, 11, 23))


def _key(world: World, state: dict[str, Any], target: str) -> None:
    state[f"key {target}"] = world.key(target)


def _send(world: World, state: dict[str, Any], source: str, target: str) -> None:
    """The source redeems the target's copy key: a transfer into the target."""
    state[f"transfer {target}"] = world.send(source, state[f"key {target}"])


def _approve(world: World, state: dict[str, Any], target: str) -> None:
    world.approve(state[f"transfer {target}"], f"{target}-admin")


def _start(world: World, state: dict[str, Any], source: str, target: str) -> None:
    raw = world.export(source)
    with world.app.transaction() as ctx:
        actor = actors.resolve(ctx, f"{source}-admin", source)
        state[f"run {source}"] = rollout.start(ctx, actor, raw, [Target(target)]).id


def _process(world: World, state: dict[str, Any], source: str) -> None:
    rollout.process(world.app, f"{source}-admin", state[f"run {source}"])


Step = Callable[[World, dict[str, Any]], Any]


def _steps() -> list[tuple[str, Step]]:
    def plain(function: Callable[..., Any], **kw: Any) -> Step:
        return lambda world, state: function(world, **kw)

    steps: list[tuple[str, Step]] = []
    for slug in SLUGS:
        steps.append((f"configure {slug}", plain(_configure, slug=slug)))
    for n, slug in enumerate(SLUGS):
        steps += [
            (f"records of {slug}", plain(_records, slug=slug)),
            (f"departments of {slug}", plain(_people, slug=slug)),
            (f"telephony of {slug}", plain(_telephony, slug=slug)),
            (f"a call of {slug}", plain(_call, slug=slug)),
            (f"contract and disk of {slug}", plain(_contract, slug=slug)),
            (f"a login session in {slug}", plain(_session, slug=slug)),
            (f"{slug} trusts {SLUGS[n - 1]}", plain(_trust, slug=slug, source=SLUGS[n - 1])),
        ]
    steps.append(("the due-date scan", plain(_due)))
    for n, slug in enumerate(SLUGS):
        target = SLUGS[(n + 1) % len(SLUGS)]
        steps += [
            (f"a copy key of {target}", partial(_key, target=target)),
            (f"{slug} sends to {target}", partial(_send, source=slug, target=target)),
            (f"{target} approves", partial(_approve, target=target)),
            (f"an unused copy key of {target}", partial(_key, target=target)),
            (f"{slug} starts a rollout to {target}", partial(_start, source=slug, target=target)),
            (f"{slug}'s rollout processed", partial(_process, source=slug)),
        ]
    return steps


def _build(runtime: Provisioner) -> None:
    """Three tenants with rows in every tenant table, through the services as the runtime
    role (a step that fails names itself)."""
    state: dict[str, Any] = {}
    for name, step in _steps():
        try:
            step(World(runtime), state)
        except Exception as exc:
            raise AssertionError(f"building the world, step {name!r}: {exc}") from exc


def _copy_columns(conn: Connection, table: str) -> list[str]:
    """The columns a copy of a row carries: all but the serial ids (the database assigns)."""
    return list(
        conn.execute(
            text(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = :t "
                "AND is_identity = 'NO' AND is_generated = 'NEVER' "
                "AND coalesce(column_default, '') NOT LIKE 'nextval(%' ORDER BY ordinal_position"
            ),
            {"t": table},
        ).scalars()
    )


def _row_json(conn: Connection, table: str, tenant_id: int) -> str | None:
    """One row of the tenant in the table, as JSON (read as the owner)."""
    found = conn.execute(
        text(f"SELECT row_to_json(x)::text FROM {table} x WHERE tenant_id = :t LIMIT 1"),
        {"t": tenant_id},
    ).scalar()
    return None if found is None else str(found)


def _insert_copy(conn: Connection, table: str, columns: list[str], row: str) -> Any:
    """INSERT a copy of ``row`` (JSON of a row of ``table``)."""
    names = ", ".join(columns)
    return conn.execute(
        text(
            f"INSERT INTO {table} ({names}) SELECT {names} "
            f"FROM json_populate_record(NULL::{table}, CAST(:row AS json))"
        ),
        {"row": row},
    )


def _counts(conn: Connection, table: str) -> dict[int | None, int]:
    return {
        t: int(n)
        for t, n in conn.execute(text(f"SELECT tenant_id, count(*) FROM {table} GROUP BY 1")).all()
    }


@dataclass
class Seeded:
    owner: Engine
    runtime: Engine
    #: slug -> tenant id of the three tenants
    ids: dict[str, int]
    #: table -> tenant id -> rows, counted as the owner
    counts: dict[str, dict[int | None, int]]
    #: table -> the columns a copy of a row carries
    columns: dict[str, list[str]]


@pytest.fixture(scope="module")
def matrix_url(postgres_owner_url: str) -> Iterator[str]:
    """A database of its own for the module's world, next to the worker's test database
    (as its owner; the runtime role granted as there). The other modules truncate the
    worker's database before each of their tests, and the workers may interleave their
    tests with this module's: the world, built once, must outlive them."""
    url = make_url(postgres_owner_url)
    name = f"{url.database}_rls"[:63]
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    owner_url = url.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(owner_url, pool_size=1, max_overflow=0)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        roles.grant_runtime(conn, RUNTIME_ROLE)
    engine.dispose()
    yield owner_url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def seeded(matrix_url: str) -> Iterator[Seeded]:
    """The three tenants' world (once for the module), as the owner sees it."""
    owner = make_engine(matrix_url)
    runtime = make_engine(runtime_url(matrix_url))
    _truncate(owner)
    clock = FrozenClock(START)
    _build(Provisioner(runtime, master_key=MasterKey(MASTER_KEY), clock=clock))
    with owner.connect() as conn:
        ids: dict[str, int] = dict(
            conn.execute(
                text("SELECT slug, id FROM tenants WHERE slug = ANY(:s)"), {"s": list(SLUGS)}
            ).all()
        )
    with owner.connect() as conn:
        counts = {t: _counts(conn, t) for t in TENANT_TABLES}
        columns = {t: _copy_columns(conn, t) for t in TENANT_TABLES}
    yield Seeded(owner, runtime, ids, counts, columns)
    runtime.dispose()
    owner.dispose()


@contextmanager
def _as_runtime(seeded: Seeded, **settings: str) -> Iterator[Connection]:
    """A transaction of the runtime role with these ``provisioner.*`` settings, rolled back."""
    with seeded.runtime.connect() as conn:
        transaction = conn.begin()
        try:
            assert conn.scalar(text("SELECT current_user")) == RUNTIME_ROLE
            for name, value in settings.items():
                conn.execute(
                    text("SELECT set_config(:name, :value, true)"),
                    {"name": f"provisioner.{name}", "value": value},
                )
            yield conn
        finally:
            transaction.rollback()


#: tables whose rows the runtime role may update in some columns only (provisioner.db.roles):
#: the column the matrix sets there, with a value to set; tenant_id is not one of them
UPDATABLE_COLUMNS_ONLY = {"copy_keys": ("failed_attempts", 0)}


def _settable(table: str, tenant_id: int) -> tuple[str, int]:
    """A column the runtime role may update in ``table``, and a value for it."""
    return UPDATABLE_COLUMNS_ONLY.get(table, ("tenant_id", tenant_id))


@contextmanager
def _refused(conn: Connection, table: str, *, by_privilege: bool = False) -> Iterator[None]:
    """What runs inside is refused by a row-level security policy of ``table`` (or,
    ``by_privilege``, by the runtime role's privileges on it)."""
    with pytest.raises(ProgrammingError) as refused, conn.begin_nested():
        yield
    assert isinstance(refused.value.orig, InsufficientPrivilege), refused.value
    reason = (
        f"permission denied for table {table}"
        if by_privilege
        else f'violates row-level security policy for table "{table}"'
    )
    assert reason in str(refused.value)


# --------------------------------------------------------------------------- the schema


def test_every_tenant_table_is_under_forced_row_level_security(postgres_owner_url: str) -> None:
    """Every table of schema public: tenant_id -> RLS enabled, forced, tenant_isolation;
    none -> named in SHARED_TABLES with its reason. The runtime role is exempt from nothing."""
    engine = make_engine(postgres_owner_url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
                    "EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid "
                    "  AND a.attname = 'tenant_id' AND NOT a.attisdropped), "
                    "EXISTS (SELECT 1 FROM pg_policies p WHERE p.schemaname = n.nspname "
                    "  AND p.tablename = c.relname AND p.policyname = 'tenant_isolation') "
                    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname"
                )
            ).all()
            policies: dict[str, dict[str, str]] = {}
            for table, name, command, permissive in conn.execute(
                text(
                    "SELECT tablename, policyname, cmd, permissive FROM pg_policies "
                    "WHERE schemaname = 'public'"
                )
            ):
                policies.setdefault(table, {})[name] = (
                    command if permissive == "PERMISSIVE" else f"{command} {permissive}"
                )
            role = conn.execute(
                text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :r"),
                {"r": RUNTIME_ROLE},
            ).one()
    finally:
        engine.dispose()
    problems = []
    forced = []
    for name, enabled, force, tenant_column, isolation in rows:
        if tenant_column:
            missing = [
                what
                for what, ok in (
                    ("ENABLE ROW LEVEL SECURITY", enabled),
                    ("FORCE ROW LEVEL SECURITY", force),
                    ("policy tenant_isolation", isolation),
                )
                if not ok
            ]
            if missing:
                problems.append(f"{name}: has tenant_id but lacks {', '.join(missing)}")
            else:
                forced.append(name)
            expected = {**BASE_POLICIES, **EXTRA_POLICIES.get(name, {})}
            if policies.get(name, {}) != expected:
                problems.append(f"{name}: policies {policies.get(name)}, expected {expected}")
            if name in SHARED_TABLES:
                problems.append(f"{name}: has tenant_id but is listed in SHARED_TABLES")
        elif name in policies:
            problems.append(f"{name}: no tenant_id but policies {sorted(policies[name])}")
        elif name not in SHARED_TABLES:
            problems.append(f"{name}: no tenant_id and not in SHARED_TABLES (say why it is shared)")
    absent = sorted(set(SHARED_TABLES) - {r[0] for r in rows})
    problems += [f"{name}: listed in SHARED_TABLES but not in the schema" for name in absent]
    assert problems == []
    assert tuple(role) == (False, False), f"{RUNTIME_ROLE} must be NOSUPERUSER NOBYPASSRLS"
    # the models' tenant tables (the matrix below) are exactly the schema's
    assert sorted(forced) == sorted(TENANT_TABLES)
    print(f"tables under forced row-level security: {len(forced)}")


# --------------------------------------------------------------------------- the matrix


def test_every_tenant_table_has_rows_of_all_three_tenants(seeded: Seeded) -> None:
    """The matrix is never vacuous: every table holds rows of each of the three tenants."""
    empty = [
        f"{table}: no rows of {slug}"
        for table in TENANT_TABLES
        for slug, tenant_id in seeded.ids.items()
        if not seeded.counts[table].get(tenant_id)
    ]
    assert empty == []


CASES = [
    pytest.param(table, slug, id=f"{table}-{slug}") for table in TENANT_TABLES for slug in SLUGS
]


@pytest.mark.parametrize(("table", "slug"), CASES)
def test_read(seeded: Seeded, table: str, slug: str) -> None:
    """Scoped to a tenant: exactly its rows (plus what a designed policy admits)."""
    tenant_id = seeded.ids[slug]
    extra = 0
    if table in DESIGNED_EXTRA_READ:
        with seeded.owner.connect() as conn:
            extra = int(conn.scalar(text(DESIGNED_EXTRA_READ[table]), {"t": tenant_id}) or 0)
    with _as_runtime(seeded, tenant_id=str(tenant_id)) as conn:
        seen = _counts(conn, table)
    own = seen.pop(tenant_id, 0)
    assert own == seeded.counts[table][tenant_id] > 0
    assert sum(seen.values()) == extra, f"{table} shows {slug} rows of tenants {list(seen)}"


@pytest.mark.parametrize(("table", "slug"), CASES)
def test_update(seeded: Seeded, table: str, slug: str) -> None:
    """Scoped to a tenant: its own rows update, the others' are not there to update, and
    none of its rows can be handed to another tenant."""
    tenant_id = seeded.ids[slug]
    other = next(t for s, t in seeded.ids.items() if s != slug)
    column, value = _settable(table, tenant_id)
    with _as_runtime(seeded, tenant_id=str(tenant_id)) as conn:
        others = conn.execute(
            text(f"UPDATE {table} SET {column} = {column} WHERE tenant_id <> :t"),
            {"t": tenant_id},
        )
        assert others.rowcount == 0
        mine = conn.execute(text(f"UPDATE {table} SET {column} = {column}"))
        assert mine.rowcount == seeded.counts[table][tenant_id]
        # a statement that reads no column is held by the UPDATE policies alone
        blind = conn.execute(text(f"UPDATE {table} SET {column} = :v"), {"v": value})
        assert blind.rowcount == seeded.counts[table][tenant_id]
        with _refused(conn, table, by_privilege=table in UPDATABLE_COLUMNS_ONLY):
            conn.execute(
                text(
                    f"UPDATE {table} SET tenant_id = :other WHERE ctid = "
                    f"(SELECT ctid FROM {table} WHERE tenant_id = :t LIMIT 1)"
                ),
                {"other": other, "t": tenant_id},
            )
    with seeded.owner.connect() as conn:  # rolled back: nothing changed
        assert _counts(conn, table) == seeded.counts[table]


@pytest.mark.parametrize(("table", "slug"), CASES)
def test_delete(seeded: Seeded, table: str, slug: str) -> None:
    """Scoped to a tenant: no other tenant's row can be deleted."""
    tenant_id = seeded.ids[slug]
    with _as_runtime(seeded, tenant_id=str(tenant_id)) as conn:
        deleted = conn.execute(
            text(f"DELETE FROM {table} WHERE tenant_id IS DISTINCT FROM :t"), {"t": tenant_id}
        )
        assert deleted.rowcount == 0
    with seeded.owner.connect() as conn:
        assert _counts(conn, table) == seeded.counts[table]


@pytest.mark.parametrize("table", TENANT_TABLES)
def test_blind_writes_of_a_scope_that_owns_nothing(seeded: Seeded, table: str) -> None:
    """Statements that read no column are held by the UPDATE/DELETE policies alone (the
    SELECT policies do not apply to them): scoped to a tenant without rows, they reach none."""
    column, value = _settable(table, NOBODY)
    with _as_runtime(seeded, tenant_id=str(NOBODY)) as conn:
        moved = conn.execute(text(f"UPDATE {table} SET {column} = :v"), {"v": value})
        assert moved.rowcount == 0
        assert conn.execute(text(f"DELETE FROM {table}")).rowcount == 0
    with seeded.owner.connect() as conn:
        assert _counts(conn, table) == seeded.counts[table]


@pytest.mark.parametrize(("table", "slug"), CASES)
def test_insert(seeded: Seeded, table: str, slug: str) -> None:
    """Scoped to a tenant: a copy of another tenant's row is refused (for each of them)."""
    tenant_id = seeded.ids[slug]
    others = [t for s, t in seeded.ids.items() if s != slug]
    with seeded.owner.connect() as conn:
        rows = {t: _row_json(conn, table, t) for t in others}
    columns = seeded.columns[table]
    with _as_runtime(seeded, tenant_id=str(tenant_id)) as conn:
        for row in rows.values():
            assert row is not None
            with _refused(conn, table):
                _insert_copy(conn, table, columns, row)
    with seeded.owner.connect() as conn:
        assert _counts(conn, table) == seeded.counts[table]


# --------------------------------------------------------------------------- other scopes


def test_without_a_scope_every_tenant_table_reads_empty(seeded: Seeded) -> None:
    with _as_runtime(seeded) as conn:
        seen = {t: _counts(conn, t) for t in TENANT_TABLES}
    assert {t: c for t, c in seen.items() if c} == {}


def test_operator_read_sees_every_row_and_writes_nothing(seeded: Seeded) -> None:
    alpha = seeded.ids["alpha"]
    with _as_runtime(seeded, operator="read") as conn:
        seen = {t: _counts(conn, t) for t in TENANT_TABLES}
        assert seen == seeded.counts
        for table in TENANT_TABLES:
            column, value = _settable(table, alpha)
            for statement in (
                f"UPDATE {table} SET {column} = {column}",
                f"UPDATE {table} SET {column} = {value}",
                f"DELETE FROM {table} WHERE tenant_id IS NOT NULL OR tenant_id IS NULL",
                f"DELETE FROM {table}",
            ):
                assert conn.execute(text(statement)).rowcount == 0, (table, statement)
            with seeded.owner.connect() as owner:
                row = _row_json(owner, table, alpha)
            assert row is not None
            with _refused(conn, table):
                _insert_copy(conn, table, seeded.columns[table], row)


def test_a_copy_key_selector_shows_that_key_only(seeded: Seeded) -> None:
    with seeded.owner.connect() as conn:
        key_id, selector = conn.execute(
            text("SELECT id, selector FROM copy_keys WHERE tenant_id = :t ORDER BY id LIMIT 1"),
            {"t": seeded.ids["beta"]},
        ).one()
        assert conn.scalar(text("SELECT count(*) FROM copy_keys")) > 1
    with _as_runtime(seeded, copy_key=selector) as conn:
        assert list(conn.execute(text("SELECT id FROM copy_keys")).scalars()) == [key_id]
        seen = {t: _counts(conn, t) for t in TENANT_TABLES if t != "copy_keys"}
    assert {t: c for t, c in seen.items() if c} == {}


CREDENTIAL_UPDATES = [
    pytest.param(
        "login_sessions",
        "user_id",
        "SELECT id, user_id::text, tenant_id FROM login_sessions ORDER BY id LIMIT 1",
        False,  # the policy's WITH CHECK: only to a tenant the user is a member of
        id="login_sessions-session_self_update",
    ),
    pytest.param(
        "copy_keys",
        "copy_key",
        "SELECT id, selector, tenant_id FROM copy_keys k WHERE NOT EXISTS "
        "(SELECT 1 FROM transfers x WHERE x.copy_key_id = k.id) ORDER BY id LIMIT 1",
        True,  # the runtime role may update a key's use, revocation and failures only
        id="copy_keys-key_selector_update",
    ),
]


@pytest.mark.parametrize(("table", "credential", "query", "by_privilege"), CREDENTIAL_UPDATES)
def test_a_credential_cannot_move_its_row_to_another_tenant(
    seeded: Seeded, table: str, credential: str, query: str, by_privilege: bool
) -> None:
    with seeded.owner.connect() as conn:
        row_id, value, tenant_id = conn.execute(text(query)).one()
    # another of the three tenants (the session's user is a member of its own tenant only)
    with (
        _as_runtime(seeded, **{credential: value}) as conn,
        _refused(conn, table, by_privilege=by_privilege),
    ):
        conn.execute(
            text(f"UPDATE {table} SET tenant_id = :other WHERE id = :id"),
            {"other": next(t for t in seeded.ids.values() if t != tenant_id), "id": row_id},
        )
