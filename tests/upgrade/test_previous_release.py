"""CI upgrades databases made by the previous release, on both backends, and checks them.

The fixtures (``fixtures/``, built by ``build_fixtures.py`` with the previous release's
own code: the commit is in ``fixtures/SOURCE.json``) are upgraded to this tree's head
with ``provisioner init``. Every row of every table the previous release had is still
there with the same values (the derived columns excepted: ``init`` may rebuild them),
the derived data then equals a fresh computation (``reindex --all --check`` exits 0),
and the upgraded database works: a search finds the seeded customers, a copy key,
send and approval go through with the tenants' sealed signing keys.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import MetaData, create_engine, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from provisioner.cli.main import cli
from provisioner.db import migrate
from provisioner.db.models import ConfigVersion, Transfer
from provisioner.services import documents, reindex, transfers
from tests.conftest import PG_URL, _require_postgres

FIXTURES = Path(__file__).parent / "fixtures"
SOURCE = json.loads((FIXTURES / "SOURCE.json").read_text())
#: derived data: whole tables and columns ``init`` rebuilds when a release computes them anew
DERIVED_TABLES = {"crm_search_grams", "crm_tallies", "alembic_version"}
DERIVED_COLUMNS = {
    ("crm_contacts", "search_text"),
    ("config_versions", "size_bytes"),
    ("transfers", "envelope_bytes"),
}
#: columns whose values moved elsewhere (0018: documents stored once, by digest); each
#: value is checked where it went (:func:`_moved_documents`)
MOVED_COLUMNS = {("config_versions", "document"), ("transfers", "incoming")}

Rows = dict[str, Counter[tuple[Any, ...]]]


def _rows(engine: Engine, only: dict[str, list[str]] | None = None) -> Rows:
    """Every row of every table (derived data left out), as multisets of tuples."""
    meta = MetaData()
    meta.reflect(engine)
    out: Rows = {}
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            if table.name in DERIVED_TABLES or (only is not None and table.name not in only):
                continue
            names = (
                only[table.name]
                if only is not None
                else [
                    c.name
                    for c in table.columns
                    if (table.name, c.name) not in DERIVED_COLUMNS | MOVED_COLUMNS
                ]
            )
            out[table.name] = Counter(
                tuple(map(_frozen, row))
                for row in conn.execute(select(*(table.c[n] for n in names)))
            )
    return out


def _frozen(value: Any) -> Any:
    """A hashable stand-in for a value read back (JSON documents compare as canonical text)."""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return value


def _columns(engine: Engine) -> dict[str, list[str]]:
    meta = MetaData()
    meta.reflect(engine)
    return {
        t.name: [
            c.name for c in t.columns if (t.name, c.name) not in DERIVED_COLUMNS | MOVED_COLUMNS
        ]
        for t in meta.sorted_tables
        if t.name not in DERIVED_TABLES
    }


def _old_documents(engine: Engine) -> dict[tuple[str, Any], bytes]:
    """The documents the previous release kept in its rows: versions and transfers."""
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT tenant_id, version, document FROM config_versions"))
        out = {("version", (t, v)): d.encode("utf-8") for t, v, d in versions}
        for transfer_id, incoming in conn.execute(text("SELECT id, incoming FROM transfers")):
            out[("transfer", transfer_id)] = bytes(incoming)
    return out


def _moved_documents(engine: Engine) -> dict[tuple[str, Any], bytes]:
    """The same documents read back through the document store of this release."""
    out: dict[tuple[str, Any], bytes] = {}
    with Session(engine) as session:
        for row in session.scalars(select(ConfigVersion)):
            out[("version", (row.tenant_id, row.version))] = documents.version_body(session, row)
        for transfer in session.scalars(select(Transfer)):
            out[("transfer", transfer.id)] = transfers.incoming_bytes(session, transfer)
    return out


@pytest.fixture
def previous_sqlite(tmp_path: Path) -> str:
    path = tmp_path / "previous.db"
    path.write_bytes(gzip.decompress((FIXTURES / "previous.sqlite.gz").read_bytes()))
    return f"sqlite:///{path}"


@pytest.fixture
def previous_postgresql() -> Iterator[str]:
    name = "provisioner_previous_release"
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
    url = admin_url.set(database=name)
    dump = gzip.decompress((FIXTURES / "previous.pg.sql.gz").read_bytes()).decode()
    with psycopg.connect(
        url.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True
    ) as conn:
        conn.execute(dump.encode())  # pg_dump --inserts: plain SQL statements
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _run(*args: str) -> Result:
    """The CLI as the database's administrator: the previous release's database was
    restored by the superuser, which owns it (SQLite: the flag changes nothing)."""
    return CliRunner().invoke(cli, ["--allow-superuser", *args], catch_exceptions=False)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_a_database_of_the_previous_release_upgrades_with_every_row_and_its_derived_data(
    backend: str, request: pytest.FixtureRequest, env: None, app_engines: None
) -> None:
    url: str = request.getfixturevalue(f"previous_{backend}")
    engine = create_engine(url)
    columns = _columns(engine)
    before = _rows(engine)
    old_documents = _old_documents(engine)
    with engine.connect() as conn:
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert sum(rows.total() for rows in before.values()) > 150  # the fixture is not empty
    assert len(before["tenants"]) == 6
    assert len(before["transfers"]) >= 4

    result = _run("--db", url, "init")
    assert result.exit_code == 0, result.output
    head = ", ".join(sorted(migrate.heads()))
    assert f"upgraded the database from revision {revision} to {head}" in result.output
    assert "rebuilt the derived data of 6 tenant(s)" in result.output

    after = _rows(engine, only=columns)
    assert set(after) == set(before)
    for table, rows in before.items():
        assert after[table] == rows, f"{table}: rows changed by the upgrade"
    documents.clear_caches()
    assert _moved_documents(engine) == old_documents, "a document changed when it moved"

    checked = _run("--json", "--db", url, "reindex", "--all", "--check")
    assert checked.exit_code == 0, checked.output
    reports = json.loads(checked.output)
    assert len(reports) == 6
    assert all(r["clean"] for r in reports)
    assert sum(r["contacts"] for r in reports) == before["crm_contacts"].total()
    with engine.connect() as conn:
        versions = dict(conn.execute(text("SELECT name, version FROM derived_data")).all())
    assert versions == reindex.VERSIONS
    assert "already current" in _run("--db", url, "init").output

    # the upgraded database works: search, and a copy between tenants with their old keys
    found = _run(
        "--json",
        "--db",
        url,
        "search",
        "-t",
        "aoba-fudosan",
        "--as",
        "takahashi",
        "--q",
        "青葉開発",
    )
    assert found.exit_code == 0, found.output
    assert json.loads(found.output)["total"] == 3
    gone = _run(
        "--json",
        "--db",
        url,
        "search",
        "-t",
        "aoba-fudosan",
        "--as",
        "takahashi",
        "--q",
        "閉鎖商事",
    )  # the deleted company's name is in no search text
    assert json.loads(gone.output)["total"] == 0, gone.output
    key = _run("--db", url, "key", "generate", "-t", "aoba-fudosan", "--as", "takahashi")
    assert key.exit_code == 0, key.output  # the tenant's sealed signing key still opens
    engine.dispose()


def test_the_fixtures_say_where_they_came_from() -> None:
    assert len(SOURCE["commit"]) == 40
    assert SOURCE["how"].startswith("python tests/upgrade/build_fixtures.py")
    for name in SOURCE["files"]:
        assert (FIXTURES / name).stat().st_size < 300_000
