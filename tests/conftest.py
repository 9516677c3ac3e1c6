"""Shared fixtures: every test that takes ``app`` runs on SQLite and on PostgreSQL.

PostgreSQL: ``PROVISIONER_TEST_PG_URL`` (default: postgres on 127.0.0.1:5432).
When it is unreachable the PostgreSQL half is skipped on a developer machine,
but FAILS when ``CI`` or ``PROVISIONER_REQUIRE_POSTGRES`` is set, so CI can
never pass with the PostgreSQL tests silently skipped.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, ProgrammingError

from provisioner.clock import FrozenClock, parse_instant
from provisioner.db import migrate, roles
from provisioner.db.engine import make_engine
from provisioner.db.schema import metadata
from provisioner.security.keystore import MasterKey
from provisioner.services.context import Provisioner
from tests.support import World

MASTER_KEY = bytes(range(32))
START = parse_instant("2026-11-23T09:00:00Z")
PG_URL = os.environ.get(
    "PROVISIONER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _require_postgres() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("PROVISIONER_REQUIRE_POSTGRES"))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


#: the role the application runs as in the tests: neither superuser nor BYPASSRLS, so
#: every row-level security policy applies (as in production, see provisioner.db.roles)
RUNTIME_ROLE = "provisioner_test_runtime"


def ensure_runtime_role(conn: Any) -> None:
    """Create the tests' runtime role once per server (several runs may race to it)."""
    try:
        with conn.begin_nested():
            roles.ensure_role(conn, RUNTIME_ROLE, login=True)
    except IntegrityError:  # created by a concurrent run
        pass
    except ProgrammingError as exc:  # the same race, reported as a duplicate object
        if "already exists" not in str(exc):
            raise


@pytest.fixture(scope="session")
def postgres_owner_url(worker_id: str) -> Iterator[str]:
    """The test database as its owner (the administrator): migrations, truncation."""
    # unique per process: several test runs may share one server
    name = f"provisioner_test_{worker_id}_{os.getpid()}".replace("-", "_")
    admin_url = make_url(PG_URL).set(drivername="postgresql+psycopg")
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # any failure to reach the server
        message = f"PostgreSQL unreachable at {PG_URL}: {str(exc).splitlines()[0]}"
        if _require_postgres():
            pytest.fail(message + " (CI requires PostgreSQL)")
        pytest.skip(message)
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        ensure_runtime_role(conn)
        roles.grant_runtime(conn, RUNTIME_ROLE)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_url(postgres_owner_url: str) -> str:
    """The test database as the application's runtime role (row-level security applies)."""
    return runtime_url(postgres_owner_url)


def runtime_url(owner_url: str) -> str:
    """The same database as the runtime role."""
    return (
        make_url(owner_url)
        .set(username=RUNTIME_ROLE, password=None)
        .render_as_string(hide_password=False)
    )


@pytest.fixture(scope="session")
def worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _truncate(engine: Engine) -> None:
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "provisioner.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        owner = request.getfixturevalue("postgres_owner_url")
        engine = make_engine(owner, pool_size=1, max_overflow=0)
        _truncate(engine)
        engine.dispose()
        yield request.getfixturevalue("postgres_url")


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Environment for code that reads it (the CLI): home and master key."""
    monkeypatch.setenv("PROVISIONER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PROVISIONER_MASTER_KEY", base64.b64encode(MASTER_KEY).decode())
    monkeypatch.delenv("PROVISIONER_DATABASE_URL", raising=False)


@pytest.fixture
def app(db_url: str, clock: FrozenClock, env: None) -> Iterator[Provisioner]:
    engine = make_engine(db_url)
    application = Provisioner(engine, master_key=MasterKey(MASTER_KEY), clock=clock)
    yield application
    engine.dispose()


@pytest.fixture
def world(app: Provisioner) -> World:
    return World(app)


@pytest.fixture
def app_engines(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Dispose the engine each CLI invocation opens (no leaked connections between runs)."""
    opened: list[Provisioner] = []
    original = Provisioner.open.__func__  # type: ignore[attr-defined]

    def open_and_track(cls: type[Provisioner], *a: Any, **k: Any) -> Provisioner:
        app: Provisioner = original(cls, *a, **k)
        opened.append(app)
        return app

    monkeypatch.setattr(Provisioner, "open", classmethod(open_and_track))
    yield
    for app in opened:
        app.engine.dispose()
