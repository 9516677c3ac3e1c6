"""``provisioner init --owner-role --runtime-role`` on a fresh PostgreSQL database.

The administrator (a superuser) creates the database; ``init`` creates the owner
role, which then owns every object of the schema, and the runtime role, which gets
the rows of every table and nothing else. Then:

* the runtime role runs the whole copy flow through the CLI (tenants, users, a copy
  key, a send, an approval), and row-level security applies to it: outside a
  tenant's scope it sees none of their rows;
* the superuser is refused (exit 1, a clear message) unless ``--allow-superuser``;
* ``init`` as the runtime role cannot migrate: it is refused with a clear message,
  no traceback, on a database it does not own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from provisioner.cli.main import cli
from tests.conftest import PG_URL

pytestmark = pytest.mark.postgres


@dataclass
class Fresh:
    admin: str  # the database as the superuser that created it
    runtime: str  # the same database as the runtime role
    owner_role: str
    runtime_role: str
    name: str


def _drop(conn: Any, name: str, roles: tuple[str, ...]) -> None:
    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    for role in roles:
        conn.execute(text(f"DROP ROLE IF EXISTS {role}"))


def _database(admin_conn: Any, name: str) -> str:
    admin_conn.execute(text(f'CREATE DATABASE "{name}"'))
    return (
        make_url(PG_URL)
        .set(drivername="postgresql+psycopg", database=name)
        .render_as_string(hide_password=False)
    )


@pytest.fixture
def fresh(env: None) -> Iterator[Fresh]:
    suffix = os.getpid()
    name = f"provisioner_roles_{suffix}"
    spare = f"provisioner_roles_spare_{suffix}"
    owner, runtime = f"provisioner_owner_{suffix}", f"provisioner_app_{suffix}"
    try:
        admin = create_engine(
            make_url(PG_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as conn:
            _drop(conn, spare, ())
            _drop(conn, name, (runtime, owner))
            url = _database(conn, name)
    except Exception as exc:  # any failure to reach the server
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}: {str(exc).splitlines()[0]}")
    runtime_url = make_url(url).set(username=runtime, password=None)
    yield Fresh(url, runtime_url.render_as_string(hide_password=False), owner, runtime, name)
    with admin.connect() as conn:
        _drop(conn, spare, ())
        _drop(conn, name, (runtime, owner))
    admin.dispose()


def _run(*args: str, code: int = 0, stdin: str | None = None) -> Any:
    result = CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=True)
    output = result.stdout + result.stderr
    assert result.exit_code == code, (args, output)
    assert "Traceback" not in output
    return result


def test_init_creates_the_roles_and_the_runtime_role_runs_a_copy(
    fresh: Fresh, app_engines: None
) -> None:
    created = _run(
        "--db",
        fresh.admin,
        "init",
        "--owner-role",
        fresh.owner_role,
        "--runtime-role",
        fresh.runtime_role,
        "--runtime-password-stdin",
        stdin="it's a secret\n",  # a quote: the password is a literal, not a parameter
    ).stdout
    assert "created the database" in created
    assert f"created the owner role {fresh.owner_role}" in created
    assert f"created the runtime role {fresh.runtime_role}" in created
    assert f"granted the runtime role {fresh.runtime_role}" in created

    engine = create_engine(fresh.admin)
    try:
        with engine.connect() as conn:
            owners = set(
                conn.execute(
                    text("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")
                ).scalars()
            )
            flags = conn.execute(
                text(
                    "SELECT rolname, rolsuper, rolbypassrls, rolcanlogin FROM pg_roles "
                    "WHERE rolname IN (:o, :r) ORDER BY rolname = :o"
                ),
                {"o": fresh.owner_role, "r": fresh.runtime_role},
            ).all()
            password = conn.execute(
                text("SELECT rolpassword FROM pg_authid WHERE rolname = :r"),
                {"r": fresh.runtime_role},
            ).scalar()
        assert owners == {fresh.owner_role}  # every table, alembic_version included
        assert password is not None
        assert password.startswith(("SCRAM-SHA-256$", "md5"))
        assert [tuple(row) for row in flags] == [
            (fresh.runtime_role, False, False, True),
            (fresh.owner_role, False, False, False),
        ]

        # the copy flow, through the CLI, as the runtime role
        db = ("--db", fresh.runtime)
        for slug in ("partner", "client"):
            _run(*db, "tenant", "create", slug, "--name", f"{slug} 株式会社")
            _run(*db, "user", "add", f"{slug}-admin", "--tenant", slug, "--role", "admin")
        key = json.loads(
            _run(*db, "--json", "key", "generate", "-t", "client", "--as", "client-admin").stdout
        )["key"]
        sent = json.loads(
            _run(
                *db, "--json", "send", "-t", "partner", "--as", "partner-admin", "--key", key
            ).stdout
        )
        transfer = str(sent["id"])
        _run(*db, "inbox", "approve", transfer, "--as", "client-admin")
        inbox = json.loads(
            _run(*db, "--json", "inbox", "list", "-t", "client", "--as", "client-admin").stdout
        )
        assert [(str(t["id"]), t["status"]) for t in inbox] == [(transfer, "applied")]
        # the partner's admin does not see the client's transfer
        _run(*db, "inbox", "show", transfer, "--as", "partner-admin", code=1)

        # row-level security applies to the runtime role: no scope, no tenant's rows
        runtime = create_engine(fresh.runtime)
        try:
            with runtime.connect() as conn:
                seen = conn.execute(text("SELECT count(*) FROM transfers")).scalar()
                keys = conn.execute(text("SELECT count(*) FROM signing_keys")).scalar()
        finally:
            runtime.dispose()
        with engine.connect() as conn:  # the superuser skips it
            stored = conn.execute(text("SELECT count(*) FROM transfers")).scalar()
        assert (seen, keys, stored) == (0, 0, 1)
    finally:
        engine.dispose()


def test_the_superuser_is_refused_without_allow_superuser(fresh: Fresh, app_engines: None) -> None:
    _run("--db", fresh.admin, "init", "--runtime-role", fresh.runtime_role)
    _run("--db", fresh.runtime, "tenant", "create", "acme", "--name", "ACME")
    refused = _run("--db", fresh.admin, "tenant", "list", code=1).output
    assert "a superuser or BYPASSRLS role" in refused
    assert "--allow-superuser" in refused
    as_json = json.loads(_run("--json", "--db", fresh.admin, "tenant", "list", code=1).output)
    assert as_json["error"]["code"] == "configuration_error"
    listed = _run("--json", "--allow-superuser", "--db", fresh.admin, "tenant", "list").stdout
    assert [t["slug"] for t in json.loads(listed)] == ["acme"]
    # the runtime role is not refused
    listed = _run("--json", "--db", fresh.runtime, "tenant", "list").stdout
    assert [t["slug"] for t in json.loads(listed)] == ["acme"]


def test_init_as_the_runtime_role_is_refused(fresh: Fresh, app_engines: None) -> None:
    _run(
        "--db",
        fresh.admin,
        "init",
        "--owner-role",
        fresh.owner_role,
        "--runtime-role",
        fresh.runtime_role,
    )
    # a database it has no schema in: it cannot create one
    admin = create_engine(
        make_url(PG_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            spare = _database(conn, f"provisioner_roles_spare_{os.getpid()}")
    finally:
        admin.dispose()
    spare_runtime = make_url(spare).set(username=fresh.runtime_role, password=None)
    refused = _run(
        "--db", spare_runtime.render_as_string(hide_password=False), "init", code=1
    ).output
    assert f"'{fresh.runtime_role}'" in refused
    assert "schema" in refused
    # nor roles: it cannot create them
    refused = _run(
        "--db", fresh.runtime, "init", "--runtime-role", "provisioner_other_app", code=1
    ).output
    assert "the connected role may not set up the roles: permission denied to create role" in (
        refused
    )
    assert "administrator" in refused
