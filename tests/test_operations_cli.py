"""The CLI names the cause of a database failure, and ``init`` says what it did.

* an unreachable PostgreSQL, a locked SQLite database: their own code and hint,
  never "run 'provisioner init'";
* a database from a newer release is refused by every command, ``init`` included,
  with both revisions named and what to do;
* ``init`` reports created / upgraded from X to Y (each step as it starts) /
  already current;
* a released migration file never changes (``migrations/released.sha256``).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from provisioner.cli.main import cli
from provisioner.db import migrate
from provisioner.db.engine import make_engine, plan_budget, server_connection_limits
from provisioner.errors import ConfigurationError

UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/provisioner"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_an_unreachable_postgresql_is_reported_as_unavailable(env: None) -> None:
    result = run("--db", UNREACHABLE_PG, "tenant", "list")
    assert result.exit_code == 1
    assert result.output.startswith("error: the database server is unavailable: ")
    assert "Connection refused" in result.output
    assert "check that the database server is running" in result.output
    assert "provisioner init" not in result.output
    result = run("--json", "--db", UNREACHABLE_PG, "tenant", "list")
    assert json.loads(result.output)["error"]["code"] == "database_unavailable"


def test_a_locked_sqlite_database_is_reported_as_locked(
    env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/p.db"
    assert run("--db", url, "init").exit_code == 0
    monkeypatch.setenv("PROVISIONER_SQLITE_BUSY_TIMEOUT", "0.2")
    other = sqlite3.connect(tmp_path / "p.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        result = run("--json", "--db", url, "tenant", "create", "acme", "--name", "ACME")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert result.exit_code == 1
    error = json.loads(result.output)["error"]
    assert error["code"] == "database_locked"
    assert error["message"].endswith("database is locked")
    assert "holding the lock" in error["hint"]
    assert "init" not in error["hint"]


def _stamp(url: str, revision: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE alembic_version SET version_num = '{revision}'")
    engine.dispose()


def test_a_database_from_a_newer_release_is_refused_by_every_command(
    env: None, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/p.db"
    assert run("--db", url, "init").exit_code == 0
    _stamp(url, "0042_from_the_future")
    for args in (["init"], ["tenant", "list"]):
        result = run("--db", url, *args)
        assert result.exit_code == 1, result.output
        assert (
            "newer release of provisioner (schema revision 0042_from_the_future)" in result.output
        )
        assert f"knows revisions up to {', '.join(sorted(migrate.heads()))}" in result.output
        assert "restore a backup" in result.output
        assert "Can't locate revision" not in result.output


def test_init_says_created_then_upgraded_from_x_to_y_then_already_current(
    env: None, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/p.db"
    head = ", ".join(sorted(migrate.heads()))
    created = run("--json", "--db", url, "init")
    assert json.loads(created.output) | {"database": None} == {
        "database": None,
        "revision": head,
        "action": "created",
        "from": None,
        "derived_data": None,
    }
    assert "already current" in run("--db", url, "init").output

    engine = make_engine(url)
    engine.dispose()
    older = f"sqlite:///{tmp_path}/older.db"
    old_engine = make_engine(older)
    migrate.upgrade(old_engine, "0006_crm_tallies")
    old_engine.dispose()
    result = run("--db", older, "init")
    assert result.exit_code == 0, result.output
    assert "migrating 0006_crm_tallies -> 0007_transfer_storage" in result.output
    assert f"upgraded the database from revision 0006_crm_tallies to {head}" in result.output
    # the derived-data versions were not recorded before 0012: rebuilt, and said so
    assert "rebuilt the derived data of 0 tenant(s) computed by an older release" in result.output
    assert "changed in this release: disk usage counts" in result.output
    again = run("--db", older, "init")
    assert "already current" in again.output
    assert "rebuilt" not in again.output


def test_no_released_migration_changes() -> None:
    """A migration that has shipped is never edited: databases were made with it.

    After adding a migration to a release, record it with
    ``python -m provisioner.db.migrate --write-manifest``.
    """
    released = migrate.read_manifest()
    now = migrate.fingerprints()
    assert "0001_core.py" in released
    changed = sorted(name for name, digest in released.items() if now.get(name) != digest)
    assert not changed, (
        f"released migrations changed or removed: {changed}; write a new migration instead"
    )


# --------------------------------------------------------------------------- connection budget


def test_the_default_budget_is_half_the_servers_slots_at_most_ten_per_worker() -> None:
    assert plan_budget(4, None, (97, 3)).per_worker == 10  # 40 of 97
    small = plan_budget(4, None, (37, 30))  # a small server: half of 37 = 18
    assert small.per_worker == 4
    assert small.total == 16
    assert "4 worker(s) x 4 database connections = 16 of the server's 37" in small.describe()
    assert plan_budget(3, 30, None).per_worker == 10  # SQLite: as configured


def test_a_budget_that_cannot_fit_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="more than the database server allows"):
        plan_budget(4, 120, (97, 3))
    with pytest.raises(ConfigurationError, match="4 workers cannot share 6 database"):
        plan_budget(4, 6, (97, 3))
    with pytest.raises(ConfigurationError, match="cannot share"):
        plan_budget(8, None, (9, 0))  # half of 9 is 4: not 2 each


@pytest.mark.postgres
def test_serve_refuses_more_connections_than_postgresql_has(env: None, postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    limits = server_connection_limits(engine)
    engine.dispose()
    assert limits[0] > 0
    result = run(
        "--db", postgres_url, "serve", "--workers", "2", "--max-db-connections", str(limits[0] + 1)
    )
    assert result.exit_code == 1
    assert "more than the database server allows" in result.output


def test_a_postgresql_server_too_old_for_the_schema_is_refused_before_any_step(
    postgres_url: str,
) -> None:
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as conn:
            migrate.refuse_old_server(conn)  # this server (15 or newer) passes

            class Old:  # the server's answer, as a PostgreSQL 14 gives it
                def exec_driver_sql(self, _sql: str) -> object:
                    return conn.exec_driver_sql("SELECT '140011'")

                dialect = conn.dialect

            with pytest.raises(ConfigurationError, match="version 14; provisioner needs 15") as e:
                migrate.refuse_old_server(Old())  # type: ignore[arg-type]
            assert "pg_upgrade" in str(e.value.to_dict())
    finally:
        engine.dispose()
