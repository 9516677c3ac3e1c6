"""The PostgreSQL roles a deployment runs under: a migration owner and a runtime role.

Row-level security (migration 0021 and the CRM tables') keeps each tenant's rows
apart in the database itself, but a superuser or a ``BYPASSRLS`` role skips every
policy, forced or not. So ``provisioner init`` runs as the owner of the schema
and grants a separate login role exactly what the application needs (rows, not
tables); ``serve`` and the CLI connect as that role and refuse to run as one
that is exempt unless the operator says so (``--allow-superuser``)::

    provisioner --db postgresql+psycopg://owner@db/crm init --runtime-role provisioner_app
    PROVISIONER_DATABASE_URL=postgresql+psycopg://provisioner_app@db/crm provisioner serve

SQLite has no roles: none of this applies there.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, Engine, event, text

from provisioner.errors import ConfigurationError

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

#: what the runtime role may do: rows of every table (policies decide which), the
#: sequences behind the keys; temporary tables (the bulk load stages rows in one)
_GRANTS = (
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
    "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}",
    "GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {role}",
    # tables and sequences a later migration creates (run as the same owner)
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
    "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {role}",
    # a copy key is marked used, revoked or failed, never moved or re-keyed: the columns
    # the application updates, and no others (row-level security lets the redeemer of
    # another tenant update the key's row; these privileges keep it that tenant's key)
    "REVOKE UPDATE ON copy_keys FROM {role}",
    "GRANT UPDATE (used_at, used_by_transfer, revoked_at, revoked_by, failed_attempts) "
    "ON copy_keys TO {role}",
)


def checked_name(role: str) -> str:
    """A role name safe to write into a statement (lower-case identifier), or a clear refusal."""
    if not _NAME.fullmatch(role):
        raise ConfigurationError(
            f"{role[:80]!r} is not a usable role name",
            hint="use lower-case letters, digits and _ (at most 63), starting with a letter",
        )
    return role


def exempt(conn: Connection) -> bool:
    """Whether the connected role skips row-level security (superuser or BYPASSRLS)."""
    if conn.dialect.name != "postgresql":
        return False
    return bool(
        conn.execute(
            text("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")
        ).scalar()
    )


def current(conn: Connection) -> str:
    return str(conn.execute(text("SELECT current_user")).scalar())


def ensure_role(conn: Connection, role: str, *, login: bool, password: str | None = None) -> bool:
    """Create the role if it does not exist (never superuser, never BYPASSRLS); True if created.

    An existing role is checked instead: one that is exempt from row-level security
    is refused (it would defeat the point).
    """
    name = checked_name(role)
    row = conn.execute(
        text("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = :r"), {"r": name}
    ).first()
    if row is not None:
        if row[0]:
            raise ConfigurationError(
                f"the role {name!r} is a superuser or has BYPASSRLS: row-level security "
                "would not apply to it",
                hint=f"ALTER ROLE {name} NOSUPERUSER NOBYPASSRLS, or name another role",
            )
        if password is not None:
            _set_password(conn, name, password)
        return False
    options = "LOGIN" if login else "NOLOGIN"
    conn.execute(
        text(f"CREATE ROLE {name} {options} NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE")
    )
    if password is not None:
        _set_password(conn, name, password)
    return True


def _set_password(conn: Connection, name: str, password: str) -> None:
    """ALTER ROLE ... PASSWORD takes no bound parameter: the password as a quoted literal."""
    from psycopg import sql

    if "\x00" in password:
        raise ConfigurationError("the password contains a NUL character")
    statement = sql.SQL("ALTER ROLE {} PASSWORD {}").format(
        sql.Identifier(name), sql.Literal(password)
    )
    with conn.connection.dbapi_connection.cursor() as cursor:  # type: ignore[union-attr]
        cursor.execute(statement)


def grant_runtime(conn: Connection, role: str) -> None:
    """Give the runtime role the rows of every table, now and after later migrations."""
    name = checked_name(role)
    database = conn.execute(text("SELECT current_database()")).scalar()
    quoted = '"' + str(database).replace('"', '""') + '"'
    for statement in _GRANTS:
        conn.execute(text(statement.format(role=name, database=quoted)))


def prepare_owner(conn: Connection, role: str) -> None:
    """Let the migration owner create the schema's objects (run as an administrator)."""
    name = checked_name(role)
    database = conn.execute(text("SELECT current_database()")).scalar()
    quoted = '"' + str(database).replace('"', '""') + '"'
    conn.execute(text(f"GRANT CREATE, USAGE ON SCHEMA public TO {name}"))
    conn.execute(text(f"GRANT CONNECT, TEMPORARY, CREATE ON DATABASE {quoted} TO {name}"))


def act_as(engine: Engine, role: str) -> None:
    """Every connection ``engine`` opens from now on acts as ``role`` (``SET ROLE``): the
    objects a migration creates are then owned by it. The connected role must be a member."""
    name = checked_name(role)

    @event.listens_for(engine, "connect")
    def _set_role(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET ROLE {name}")
        dbapi_connection.commit()


def refuse_exempt(conn: Connection, *, allowed: bool) -> None:
    """Refuse to serve as a role that skips row-level security, unless ``allowed``."""
    if allowed or not exempt(conn):
        return
    who = current(conn)
    raise ConfigurationError(
        f"connected to PostgreSQL as {who!r}, a superuser or BYPASSRLS role: the database "
        "would not keep tenants apart (row-level security does not apply to it)",
        hint="run 'provisioner init --runtime-role NAME' as the schema owner and connect as "
        "that role; or pass --allow-superuser (PROVISIONER_ALLOW_SUPERUSER=1) to run anyway",
    )
