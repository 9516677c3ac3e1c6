"""``provisioner``: the command line.

Exit codes: 0 success, 1 refused or failed (one-line reason on stderr), 2 usage.
``--json`` (before the command) switches every command to machine output.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from provisioner import __version__
from provisioner.bundles.payload import read_bundle
from provisioner.bundles.signing import key_id, load_public_pem
from provisioner.canonical import canonical_bytes
from provisioner.cli.output import (
    State,
    database_error,
    dumps,
    emit,
    fail,
    pass_state,
    table,
)
from provisioner.cli.render import render_config, render_plan
from provisioner.cli.tenant_choice import tenant_option
from provisioner.clock import as_utc, format_instant
from provisioner.config.diff import summarize
from provisioner.config.validate import load_file
from provisioner.db.models import Tenant
from provisioner.errors import ConfigurationError, ProvisionerError, ValidationFailed
from provisioner.services import (
    actors,
    configs,
    copykeys,
    lineage,
    signing,
    tenants,
    transfers,
)
from provisioner.services import audit as audit_service
from provisioner.services.crm import impact as data_impact
from provisioner.services.eligibility import PLANS

#: -t N|SLUG: a number in the --as user's list or a slug; omitted: asked (see tenant_choice)
TENANT = tenant_option()
AS_REQUIRED = click.option("--as", "login", required=True, metavar="LOGIN", help="the acting user")
#: Ids and version numbers: positive, and within the database's 32-bit integer columns.
ROW_ID = click.IntRange(1, 2**31 - 1)
AS_OPTIONAL = click.option(
    "--as", "login", metavar="LOGIN", help="the acting user (checked against the tenant)"
)


def _read_bytes(path: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise ValidationFailed(f"cannot read {path}: {exc.strerror}") from None


def _only(value: str | None) -> list[str] | None:
    return None if value is None else value.split(",")


class ProvisionerGroup(click.Group):
    """Maps every ProvisionerError to exit 1 with a one-line reason, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ProvisionerError as exc:
            fail(exc, ctx.find_object(State))
        except (DBAPIError, PoolTimeout) as exc:
            fail(database_error(exc), ctx.find_object(State))
        except KeyboardInterrupt:
            click.echo("interrupted; nothing was changed by the unfinished step", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get("PROVISIONER_DEBUG"):
                raise
            click.echo(
                f"error: internal error: {type(exc).__name__}: {exc} "
                "(set PROVISIONER_DEBUG=1 for details, and please report it)",
                err=True,
            )
            sys.exit(1)


@click.group(cls=ProvisionerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "db_url",
    metavar="URL",
    help="database URL (default: PROVISIONER_DATABASE_URL, else SQLite under PROVISIONER_HOME)",
)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option(
    "--allow-superuser",
    is_flag=True,
    envvar="PROVISIONER_ALLOW_SUPERUSER",
    help="run even when connected to PostgreSQL as a superuser or BYPASSRLS role "
    "(row-level security does not apply to it; see 'init --runtime-role')",
)
@click.version_option(__version__, prog_name="provisioner")
@click.pass_context
def cli(ctx: click.Context, db_url: str | None, as_json: bool, allow_superuser: bool) -> None:
    """Copy CRM tenant configurations safely: copy keys, signed bundles, review, apply."""
    ctx.obj = State(db_url=db_url, as_json=as_json, allow_superuser=allow_superuser)


@cli.command()
@click.option(
    "--owner-role",
    metavar="ROLE",
    help="PostgreSQL: create (if missing) this role, neither superuser nor BYPASSRLS, "
    "and make it the owner of the schema's objects (the connected role must be able "
    "to SET ROLE to it)",
)
@click.option(
    "--runtime-role",
    metavar="ROLE",
    help="PostgreSQL: create (if missing) this login role, neither superuser nor "
    "BYPASSRLS, and grant it the rows of every table: serve and the CLI connect as it",
)
@click.option(
    "--runtime-password-stdin",
    is_flag=True,
    help="read the runtime role's password from standard input (one line)",
)
@pass_state
def init(
    state: State,
    owner_role: str | None,
    runtime_role: str | None,
    runtime_password_stdin: bool,
) -> None:
    """Create or migrate the database to the current schema.

    Says whether it created the database, upgraded it (from which revision) or found
    it current; each migration step is reported on stderr as it starts. Derived data
    (search text and index, tallies, stored sizes) that an older release computed
    differently is then rebuilt, tenant by tenant, and what changed is reported.

    On PostgreSQL, run it as the schema's owner (or an administrator with
    ``--owner-role``), with ``--runtime-role`` naming the role the application
    connects as: row-level security applies to that role, not to a superuser.
    """
    import time

    from provisioner.services import reindex as rebuild
    from provisioner.services.context import Provisioner

    app = Provisioner.open(state.db_url, migrate_to_head=False, require_schema=False)
    password = sys.stdin.readline().rstrip("\r\n") if runtime_password_stdin else None
    roles_note = _prepare_roles(app, owner_role, runtime_role, password)
    _refuse_a_role_that_cannot_migrate(app)
    started = time.monotonic()

    def say(what: str) -> Callable[[str], None]:
        def progress(step: str) -> None:
            if not state.as_json:
                click.echo(f"  [{time.monotonic() - started:6.1f}s] {what} {step}", err=True)

        return progress

    outcome = app.migrate(progress=say("migrating"))
    state._app = app
    migrated = time.monotonic() - started
    # derived data an older release computed differently is rebuilt with today's code
    done = rebuild.refresh(
        app, created=outcome.action == "created", progress=say("rebuilt the derived data of")
    )
    where = app.engine.url.render_as_string(hide_password=True)
    revision = ", ".join(outcome.after)
    text = {
        "created": f"created the database at revision {revision}: {where}",
        "current": f"the database is already current (revision {revision}): {where}",
        "upgraded": f"upgraded the database from revision {', '.join(outcome.before)} "
        f"to {revision} in {migrated:.1f}s: {where}",
    }[outcome.action]
    emit(
        state,
        {
            "database": where,
            "revision": revision,
            "action": outcome.action,
            "from": ", ".join(outcome.before) or None,
            "derived_data": done.to_dict() if done.stale else None,
        },
        text + "".join(f"\n{line}" for line in done.describe()) + roles_note(),
    )


#: whether the connected role may create or change the schema: a superuser, the owner
#: of the migrated schema (or a member of its role), or, with no schema yet, a role
#: that may create tables in it; and who owns it (None: nobody yet)
_MAY_MIGRATE = """
SELECT
    r.rolsuper
    OR CASE WHEN t.tableowner IS NULL
        THEN has_schema_privilege(current_user, current_schema(), 'CREATE')
        ELSE pg_has_role(current_user, t.tableowner, 'USAGE') END,
    current_user,
    t.tableowner
FROM pg_roles r
LEFT JOIN pg_tables t ON t.schemaname = current_schema() AND t.tablename = 'alembic_version'
WHERE r.rolname = current_user
"""


def _refuse_a_role_that_cannot_migrate(app: Any) -> None:
    """PostgreSQL: refuse, before any step, a migration the connected role cannot make
    (the runtime role: it has rows, not the schema)."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from provisioner.db import failures, migrate

    if app.engine.dialect.name != "postgresql":
        return
    try:
        if migrate.current(app.engine) == migrate.heads():
            return  # nothing to migrate (the derived data is rows: any role may rebuild it)
        with app.engine.connect() as conn:
            allowed, who, owner = conn.execute(text(_MAY_MIGRATE)).one()
    except OperationalError as exc:
        raise failures.for_operator(exc) from exc
    if allowed:
        return
    if owner is None:
        raise ConfigurationError(
            f"connected to PostgreSQL as {who!r}, which may not create the schema here",
            hint="run 'provisioner init' as the database's administrator, with --owner-role "
            "NAME --runtime-role NAME; the application then connects as the runtime role",
        )
    raise ConfigurationError(
        f"connected to PostgreSQL as {who!r}, which does not own the schema ({owner!r} "
        "does): it cannot migrate it",
        hint=f"run 'provisioner init' as {owner!r} (or as an administrator with "
        f"--owner-role {owner})",
    )


def _prepare_roles(
    app: Any, owner: str | None, runtime: str | None, password: str | None
) -> Callable[[], str]:
    """Set up the owner before migrating; return what grants the runtime role after."""
    from sqlalchemy import text

    from provisioner.db import roles

    if not (owner or runtime):
        return lambda: ""
    if app.engine.dialect.name != "postgresql":
        raise ValidationFailed(
            "--owner-role and --runtime-role are for PostgreSQL",
            hint="SQLite has no roles: leave them out",
        )
    created: list[str] = []
    try:
        with app.engine.begin() as conn:  # as the connected (administrator) role
            if owner and roles.ensure_role(conn, roles.checked_name(owner), login=False):
                created.append(f"created the owner role {owner}")
            if runtime and roles.ensure_role(
                conn, roles.checked_name(runtime), login=True, password=password
            ):
                created.append(f"created the runtime role {runtime}")
            if owner:
                roles.prepare_owner(conn, owner)
                if roles.current(conn) != owner:
                    conn.execute(text(f"GRANT {owner} TO CURRENT_USER"))
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != "42501":  # insufficient_privilege
            raise
        raise ConfigurationError(
            f"the connected role may not set up the roles: {str(exc.orig).splitlines()[0]}",
            hint="run 'provisioner init --owner-role ... --runtime-role ...' as the database's "
            "administrator (a superuser, or a role with CREATEROLE that owns the database)",
        ) from None
    app.engine.dispose()
    if owner:  # the schema's objects are created, and owned, by the owner role
        roles.act_as(app.engine, owner)

    def grant() -> str:
        if runtime:
            with app.engine.begin() as conn:  # as the owner: it grants on what it owns
                roles.grant_runtime(conn, runtime)
            created.append(f"granted the runtime role {runtime} the rows of every table")
        return "".join(f"\n{line}" for line in created)

    return grant


@cli.command()
@click.option("-t", "--tenant", "tenant_slug", metavar="SLUG", help="this tenant")
@click.option("--all", "all_tenants", is_flag=True, help="every tenant")
@click.option(
    "--check",
    is_flag=True,
    help="only report what differs (exit 1 if anything does); change nothing",
)
@pass_state
def reindex(state: State, tenant_slug: str | None, all_tenants: bool, check: bool) -> None:
    """Rebuild (or --check) derived data: search text and index, tallies, disk usage
    (stored sizes, call bytes).

    Run it after an upgrade whose notes say how such data is computed changed. One
    transaction per tenant; a line per tenant as it is done.
    """
    from provisioner.services import reindex as rebuild

    if (tenant_slug is None) == (not all_tenants):
        raise click.UsageError("give either -t SLUG or --all")
    with state.transaction() as ctx:
        slugs = (
            [t.slug for t in tenants.list_all(ctx)]
            if all_tenants
            else [actors.get_tenant(ctx, tenant_slug or "").slug]
        )
    reports = []
    for slug in slugs:
        with state.transaction() as ctx:
            report = rebuild.reindex(ctx, actors.get_tenant(ctx, slug), check=check)
        reports.append(report.to_dict())
        if not state.as_json:
            verb = "differ" if check else "rebuilt"
            click.echo(
                f"{slug}: {report.contacts:,} contacts; "
                + (
                    "all derived data matches"
                    if report.clean
                    else f"{verb}: search text {report.search_text:,}, search index "
                    f"{report.search_index:,} entries, tallies {report.tallies:,}, "
                    f"stored sizes {report.sizes:,}, call bytes {report.call_bytes:,}"
                )
            )
    if state.as_json:
        click.echo(dumps(reports))
    if check and not all(r["clean"] for r in reports):
        sys.exit(1)


@cli.command()
@click.option("--keep", is_flag=True, help="keep the temporary data directory")
def demo(keep: bool) -> None:
    """The end-to-end copy story, narrated, in a fresh temporary data directory."""
    from provisioner.cli.demo import run_demo

    run_demo(keep=keep)


# --------------------------------------------------------------------------- tenants


@cli.group()
def tenant() -> None:
    """Tenants."""


@tenant.command("create")
@click.argument("slug")
@click.option("--name", required=True)
@click.option("--plan", type=click.Choice(PLANS), default="standard", show_default=True)
@click.option("--sandbox", is_flag=True, help="a sandbox tenant (can send, never receive)")
@click.option("--integrations", is_flag=True, help="the tenant has active integrations")
@click.option("--group", metavar="GROUP", help="put the tenant in this tenant group")
@click.option(
    "--from-bundle",
    "from_bundle",
    metavar="FILE",
    help="take the configuration from this verified bundle (a template)",
)
@click.option(
    "--public-key",
    "pem_files",
    multiple=True,
    metavar="PEM_FILE",
    type=click.Path(exists=True, dir_okay=False),
    help="with --from-bundle: also accept this signer's public key (a template "
    "signed in another deployment); repeatable",
)
@pass_state
def tenant_create(
    state: State,
    slug: str,
    name: str,
    plan: str,
    sandbox: bool,
    integrations: bool,
    group: str | None,
    from_bundle: str | None,
    pem_files: tuple[str, ...],
) -> None:
    from provisioner.cli import provisioning as _provisioning  # groups and templates

    if from_bundle is not None:
        made = _provisioning.create_from_bundle(
            state,
            slug,
            name=name,
            plan=plan,
            group=group,
            bundle_file=from_bundle,
            pem_files=pem_files,
        )
        emit(state, made, f"created tenant {slug} ({name}, {plan}) from {from_bundle}")
        return
    with state.transaction() as ctx:
        row = tenants.create(
            ctx, slug, name=name, plan=plan, sandbox=sandbox, integrations=integrations
        )
        if group is not None:
            _provisioning.join_group(ctx, group, row.slug)
        kid = key_id(signing.public_key(ctx, row.id))
    emit(
        state,
        {
            "slug": row.slug,
            "id": row.id,
            "name": row.name,
            "plan": row.plan,
            "sandbox": row.is_sandbox,
            "integrations": row.integrations_active,
            "config_version": row.config_version,
            "key_id": kid,
            "group": group,
        },
        f"created tenant {row.slug} ({row.name}, {row.plan}); signing key {kid}"
        + (f"; in group {group}" if group else ""),
    )


@tenant.command("update")
@click.argument("slug")
@click.option(
    "--integrations/--no-integrations",
    default=None,
    help="turn the tenant's integrations on or off",
)
@click.option("--plan", type=click.Choice(PLANS))
@pass_state
def tenant_update(state: State, slug: str, integrations: bool | None, plan: str | None) -> None:
    with state.transaction() as ctx:
        row = tenants.update_flags(ctx, slug, integrations=integrations, plan=plan)
    emit(
        state,
        {"slug": row.slug, "plan": row.plan, "integrations": row.integrations_active},
        f"tenant {row.slug}: plan {row.plan}, integrations "
        f"{'on' if row.integrations_active else 'off'}",
    )


@tenant.command("list")
@pass_state
def tenant_list(state: State) -> None:
    with state.transaction() as ctx:
        rows = tenants.list_all(ctx)
        data = [
            {
                "slug": t.slug,
                "id": t.id,
                "name": t.name,
                "plan": t.plan,
                "sandbox": t.is_sandbox,
                "integrations": t.integrations_active,
                "status": t.status,
                "config_version": t.config_version,
            }
            for t in rows
        ]
    emit(
        state,
        data,
        lambda: table(
            [
                (
                    d["slug"],
                    d["name"],
                    d["plan"],
                    "yes" if d["sandbox"] else "",
                    "on" if d["integrations"] else "",
                    d["status"],
                    d["config_version"],
                )
                for d in data
            ],
            ["slug", "name", "plan", "sandbox", "integrations", "status", "config"],
        ),
    )


@tenant.command("public-key")
@click.argument("slug")
@pass_state
def tenant_public_key(state: State, slug: str) -> None:
    """The tenant's signing public key as PEM (for verifying its bundles)."""
    with state.transaction() as ctx:
        row = actors.get_tenant(ctx, slug)
        pem = signing.public_key_pem(ctx, row.id)
        kid = key_id(signing.public_key(ctx, row.id))
    emit(state, {"slug": slug, "key_id": kid, "pem": pem}, pem.rstrip("\n"))


# --------------------------------------------------------------------------- users


@cli.group()
def user() -> None:
    """Users and their roles per tenant."""


@user.command("add")
@click.argument("login")
@click.option("--tenant", "tenant_slug", required=True, metavar="SLUG")
@click.option("--role", required=True, help=", ".join(actors.ROLES) + " or a configured role")
@click.option("--name", "display_name", default="", help="display name")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="read the new user's password from stdin (shared by all their tenants)",
)
@pass_state
def user_add(
    state: State, login: str, tenant_slug: str, role: str, display_name: str, password_stdin: bool
) -> None:
    from provisioner.cli import provisioning as _provisioning  # group logins

    password = _provisioning.read_password(True) if password_stdin else None
    with state.transaction() as ctx:
        tenants.add_user(ctx, login, tenant_slug=tenant_slug, role=role, display_name=display_name)
        if password is not None:
            _provisioning.set_initial_password(ctx, login, password)
    emit(
        state,
        {"login": login, "tenant": tenant_slug, "role": role},
        f"{login} is {role} in {tenant_slug}",
    )


# --------------------------------------------------------------------------- config


@cli.group()
def config() -> None:
    """A tenant's configuration: show, set, history, diff, rollback."""


def _reader(ctx: Any, slug: str, login: str | None) -> Any:
    if login is not None:
        actors.resolve(ctx, login, slug)
    return actors.get_tenant(ctx, slug)


@config.command("show")
@TENANT
@AS_OPTIONAL
@click.option("--version", "version", type=ROW_ID, help="an older version")
@pass_state
def config_show(state: State, tenant: str, login: str | None, version: int | None) -> None:
    """Show the configuration (--json: the document itself)."""
    with state.transaction() as ctx:
        row = _reader(ctx, tenant, login)
        if version is None:
            head = configs.current(ctx, row)
            data, shown = head.data, head.version
        else:
            data, shown = configs.version_data(ctx, row.id, version), version
    emit(state, data, lambda: render_config(tenant, shown, data))


@config.command("set")
@TENANT
@AS_REQUIRED
@click.argument("file", type=click.Path(dir_okay=False))
@pass_state
def config_set(state: State, tenant: str, login: str, file: str) -> None:
    """Replace the sections in FILE (JSON or YAML: a whole document or some sections)."""
    data = load_file(Path(file))
    with state.transaction() as ctx:
        actor = actors.resolve(ctx, login, tenant)
        row = actors.get_tenant(ctx, tenant)
        version = configs.set_sections(ctx, actor, row, data)
        current = row.config_version
    emit(
        state,
        {"version": version or current, "changed": version is not None},
        f"configuration of {tenant} is now version {version}"
        if version
        else f"no change: the configuration of {tenant} already matches {file}",
    )


@config.command("history")
@TENANT
@AS_OPTIONAL
@pass_state
def config_history(state: State, tenant: str, login: str | None) -> None:
    with state.transaction() as ctx:
        row = _reader(ctx, tenant, login)
        data = [
            {
                "version": v.version,
                "digest": v.digest,
                "created_at": format_instant(as_utc(v.created_at)),
                "created_by": v.created_by,
                "origin": v.origin,
                "current": v.version == row.config_version,
            }
            for v in configs.history(ctx, row)
        ]
    emit(
        state,
        data,
        lambda: table(
            [
                (
                    "*" if d["current"] else "",
                    d["version"],
                    d["created_at"],
                    d["created_by"],
                    d["origin"],
                    d["digest"][:19],
                )
                for d in data
            ],
            ["", "version", "created", "by", "origin", "digest"],
        ),
    )


@config.command("diff")
@TENANT
@click.argument("from_version", type=ROW_ID)
@click.argument("to_version", type=ROW_ID)
@AS_OPTIONAL
@pass_state
def config_diff(
    state: State, tenant: str, from_version: int, to_version: int, login: str | None
) -> None:
    with state.transaction() as ctx:
        row = _reader(ctx, tenant, login)
        changes = configs.diff_versions(ctx, row, from_version, to_version)
    emit(
        state,
        {
            "from": from_version,
            "to": to_version,
            "summary": summarize(changes),
            "changes": [c.to_dict() for c in changes],
        },
        lambda: "\n".join(c.describe() for c in changes) or "no differences",
    )


@config.command("rollback")
@TENANT
@click.option("--to", "to_version", type=ROW_ID, required=True, help="the version to restore")
@AS_REQUIRED
@pass_state
def config_rollback(state: State, tenant: str, to_version: int, login: str) -> None:
    """Make an older version current again (as a new version)."""
    with state.transaction() as ctx:
        actor = actors.resolve(ctx, login, tenant)
        row = actors.get_tenant(ctx, tenant)
        version = configs.rollback(ctx, actor, row, to_version)
    emit(
        state,
        {"version": version, "restored": to_version},
        f"{tenant}: version {to_version} restored as version {version}"
        if version
        else f"{tenant}: already identical to version {to_version}; nothing changed",
    )


@config.command("lineage")
@TENANT
@AS_OPTIONAL
@pass_state
def config_lineage(state: State, tenant: str, login: str | None) -> None:
    """The sources this configuration came from, and the local changes since each base."""
    with state.transaction() as ctx:
        row = _reader(ctx, tenant, login)
        data = lineage.describe(ctx, row.id, configs.current(ctx, row).data)

    def text() -> str:
        if not data:
            return f"{tenant}: no configuration was taken from another tenant or publisher"
        lines = []
        for d in data:
            lines.append(
                f"{d['source']}: its version {d['source_version']} taken with "
                f"transfer {d['transfer']} ({d['taken_at']}), bundle "
                f"{d['bundle_digest'][:19]}; base of "
                f"{', '.join(d['sections']) or 'no section'}"
            )
            changes = d["local_changes"]
            lines.append(
                f"  local changes since: {len(changes)}"
                + (
                    ""
                    if not changes
                    else "\n"
                    + "\n".join(f"    {a}" for a in changes[:50])
                    + (f"\n    ... and {len(changes) - 50} more" if len(changes) > 50 else "")
                )
            )
        return "\n".join(lines)

    emit(state, data, text)


# --------------------------------------------------------------------------- copy keys


@cli.group()
def key() -> None:
    """Copy keys: 24-hour, one-use invitations to send a configuration to a tenant."""


@key.command("generate")
@TENANT
@AS_REQUIRED
@pass_state
def key_generate(state: State, tenant: str, login: str) -> None:
    """Generate a copy key for this (target) tenant. It is shown once."""
    with state.transaction() as ctx:
        actor = actors.resolve(ctx, login, tenant)
        generated = copykeys.generate(ctx, actor, actors.get_tenant(ctx, tenant))
    expires = format_instant(generated.expires_at)
    emit(
        state,
        {
            "key": generated.text,
            "id": generated.id,
            "selector": generated.selector,
            "expires_at": expires,
        },
        f"{generated.text}\n\nCopy key {generated.id} for {tenant}, valid until {expires} "
        "(24 hours), for one delivery.\nGive it to the source tenant's admin. It is shown "
        "only this once.",
    )


@key.command("list")
@TENANT
@AS_REQUIRED
@pass_state
def key_list(state: State, tenant: str, login: str) -> None:
    with state.transaction() as ctx:
        actor = actors.resolve(ctx, login, tenant)
        now = ctx.clock.now()
        data = [
            {
                "id": k.id,
                "selector": k.selector,
                "state": copykeys.state(k, now),
                "created_at": format_instant(as_utc(k.created_at)),
                "created_by": k.created_by,
                "expires_at": format_instant(as_utc(k.expires_at)),
                "used_by_transfer": k.used_by_transfer,
                "failed_attempts": k.failed_attempts,
            }
            for k in copykeys.list_keys(ctx, actor)
        ]
    emit(
        state,
        data,
        lambda: table(
            [
                (
                    d["id"],
                    d["selector"],
                    d["state"],
                    d["created_by"],
                    d["expires_at"],
                    d["used_by_transfer"] or "",
                )
                for d in data
            ],
            ["id", "selector", "state", "by", "expires", "transfer"],
        ),
    )


@key.command("revoke")
@TENANT
@click.argument("key_id_arg", metavar="KEY_ID")
@AS_REQUIRED
@pass_state
def key_revoke(state: State, tenant: str, key_id_arg: str, login: str) -> None:
    with state.transaction() as ctx:
        actor = actors.resolve(ctx, login, tenant)
        row = copykeys.revoke(ctx, actor, key_id_arg)
    emit(
        state,
        {"id": row.id, "selector": row.selector, "state": "revoked"},
        f"copy key {row.id} ({row.selector}) revoked",
    )


# --------------------------------------------------------------------------- bundles


@cli.group()
def bundle() -> None:
    """Signed bundle files."""


@bundle.command("export")
@TENANT
@AS_REQUIRED
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="bundle file to write ('-' for stdout)",
)
@click.option("--key", "key_text", metavar="KEY", help="bind the bundle to this copy key")
@click.option("--only", metavar="SECTIONS", help="comma-separated sections to export")
@pass_state
def bundle_export(
    state: State, tenant: str, login: str, output: str, key_text: str | None, only: str | None
) -> None:
    with state.transaction() as ctx:
        actor = actors.resolve(ctx, login, tenant)
        raw = transfers.export(ctx, actor, key_text=key_text, only=_only(only))
    summary = transfers.envelope_summary(raw)
    if output == "-":
        sys.stdout.buffer.write(raw)
        return
    tmp = Path(output + ".tmp")
    tmp.write_bytes(raw)
    tmp.replace(output)
    emit(
        state,
        {
            "file": output,
            "bundle_id": summary["bundle_id"],
            "bytes": len(raw),
            "expires_at": summary["expires_at"],
            "audience": summary["audience"],
        },
        f"wrote {output}: bundle {summary['bundle_id']} from {tenant}, "
        f"{len(raw):,} bytes, expires {summary['expires_at']}"
        + (f", bound to copy key {summary['audience']['copy_key']}" if summary["audience"] else ""),
    )


@bundle.command("verify")
@click.argument("file")
@click.option(
    "--public-key",
    "pem_file",
    type=click.Path(dir_okay=False, exists=True),
    help="PEM public key of the publisher (default: keys known to this database)",
)
@pass_state
def bundle_verify(state: State, file: str, pem_file: str | None) -> None:
    """Verify a bundle's signature and payload."""
    raw = _read_bytes(file)
    if pem_file:
        public = load_public_pem(Path(pem_file).read_bytes(), source=pem_file)
        verified = read_bundle(raw, {key_id(public): public}.get)
    else:
        with state.transaction() as ctx:
            verified = read_bundle(raw, lambda kid: signing.any_tenant_key(ctx, kid))
    p = verified.payload
    emit(
        state,
        {
            "valid": True,
            "bundle_id": p.bundle_id,
            "digest": verified.digest,
            "key_id": verified.key_id,
            "source": p.source.model_dump(),
            "expires_at": p.expires_at,
            "sections": list(verified.sections),
        },
        f"OK: signature by {verified.key_id} verifies; payload valid\n"
        f"bundle {p.bundle_id} from {p.source.tenant} (config version "
        f"{p.source.config_version}), sections: {', '.join(verified.sections)}",
    )


@bundle.command("inspect")
@click.argument("file")
@pass_state
def bundle_inspect(state: State, file: str) -> None:
    """Show what a bundle says about itself (NOT verified; use 'bundle verify')."""
    summary = transfers.envelope_summary(_read_bytes(file))
    emit(
        state,
        summary,
        lambda: (
            dumps(summary) + "\n(not verified: run 'provisioner bundle "
            "verify' to check the signature)"
        ),
    )


# --------------------------------------------------------------------------- send / receive


def _transfer_json(t: Any) -> dict[str, Any]:
    return {
        "transfer": t.id,
        "id": t.id,
        "status": t.status,
        "tenant_id": t.tenant_id,
        "source_tenant": t.source_tenant,
        "source_version": t.source_version,
        "bundle_id": t.bundle_id,
        "bundle_digest": t.payload_digest,
        "signer_key_id": t.signer_key_id,
        "base_version": t.base_version,
        "received_at": format_instant(as_utc(t.received_at)),
        "received_by": t.received_by,
        "decided_by": t.decided_by,
        "applied_version": t.applied_version,
        "summary": t.plan.get("summary", {}),
    }


@cli.command()
@TENANT
@AS_REQUIRED
@click.option(
    "--key",
    "key_text",
    metavar="KEY",
    help="the copy key the target tenant's admin gave you (visible to other "
    "users of this machine and kept in shell history: prefer --key-stdin)",
)
@click.option(
    "--key-stdin", is_flag=True, help="read the copy key from standard input (first line)"
)
@click.option("--only", metavar="SECTIONS", help="comma-separated sections to send")
@pass_state
def send(
    state: State, tenant: str, login: str, key_text: str | None, key_stdin: bool, only: str | None
) -> None:
    """Send this tenant's configuration to the tenant that generated KEY."""
    if key_stdin == (key_text is not None):
        raise ValidationFailed(
            "give the copy key with exactly one of --key-stdin or --key",
            hint="provisioner send --key-stdin ... < key.txt",
        )
    if key_stdin:
        key_text = sys.stdin.readline(1024).strip()
        if not key_text:
            raise ValidationFailed(
                "no copy key on standard input", hint="provisioner send --key-stdin ... < key.txt"
            )
    assert key_text is not None
    with state.transaction() as ctx:
        actor = actors.resolve(ctx, login, tenant)
        t = transfers.send(ctx, actor, key_text, only=_only(only))
        target = ctx.session.get(Tenant, t.tenant_id)
        data = _transfer_json(t) | {"target": target.slug if target else None}
    emit(
        state,
        data,
        f"sent: transfer {t.id} is pending in {data['target']}'s inbox; "
        "its admin reviews and approves it",
    )


@cli.command()
@TENANT
@AS_REQUIRED
@click.argument("file")
@click.option(
    "--public-key",
    "pem_files",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True),
    help="PEM public key of the publisher, when it is not in this deployment",
)
@pass_state
def receive(state: State, tenant: str, login: str, file: str, pem_files: tuple[str, ...]) -> None:
    """Take a bundle file (made with 'bundle export --key') into the inbox."""
    raw = _read_bytes(file)
    keys = [load_public_pem(Path(p).read_bytes(), source=p) for p in pem_files]
    with state.transaction() as ctx:
        actor = actors.resolve(ctx, login, tenant)
        t = transfers.receive(ctx, actor, raw, extra_keys=keys)
        data = _transfer_json(t)
    emit(
        state,
        data,
        f"received: transfer {t.id} from {t.source_tenant} is pending; review "
        f"it with 'provisioner inbox show {t.id} --as {login}'",
    )


# --------------------------------------------------------------------------- inbox


@cli.group()
def inbox() -> None:
    """Incoming configurations: review, approve, reject, roll back."""


@inbox.command("list")
@TENANT
@AS_REQUIRED
@click.option("--status", type=click.Choice(["pending", "applied", "rejected", "rolled_back"]))
@pass_state
def inbox_list(state: State, tenant: str, login: str, status: str | None) -> None:
    with state.transaction() as ctx:
        actor = actors.resolve(ctx, login, tenant)
        data = [_transfer_json(t) for t in transfers.inbox(ctx, actor, status=status)]
    emit(
        state,
        data,
        lambda: (
            table(
                [
                    (
                        d["id"],
                        d["status"],
                        d["source_tenant"],
                        d["received_at"],
                        ", ".join(f"{s} {sum(v.values())}" for s, v in d["summary"].items())
                        or "no changes",
                    )
                    for d in data
                ],
                ["id", "status", "from", "received", "changes"],
            )
            if data
            else "the inbox is empty"
        ),
    )


@inbox.command("show")
@click.argument("transfer_id", type=ROW_ID)
@AS_REQUIRED
@click.option(
    "--mode",
    type=click.Choice(["replace", "merge", "upgrade"]),
    help="preview the plan for this mode (default: upgrade when the tenant has a "
    "base from the transfer's source, else replace)",
)
@click.option("--only", metavar="SECTIONS", help="preview the plan for these sections")
@pass_state
def inbox_show(
    state: State, transfer_id: int, login: str, mode: str | None, only: str | None
) -> None:
    """The plan: per section what is added, changed, removed (an upgrade: taken, kept,
    conflicts)."""
    with state.transaction() as ctx:
        t, _ = transfers.get(ctx, login, transfer_id)
        plan = transfers.preview(ctx, t, mode=mode, only=_only(only))  # type: ignore[arg-type]
        data = _transfer_json(t) | {"plan": plan}
        if "upgrade" in plan:
            data["conflicts"] = plan["upgrade"]["conflicts"]
    emit(state, data, lambda: render_plan(data))


@inbox.command("approve")
@click.argument("transfer_id", type=ROW_ID)
@AS_REQUIRED
@click.option(
    "--mode",
    type=click.Choice(["replace", "merge", "upgrade"]),
    help="replace: take the source's sections as they are; merge: add and change "
    "only; upgrade: three-way, keeping this tenant's own changes (the default when "
    "it has a base from the transfer's source, else replace)",
)
@click.option("--only", metavar="SECTIONS", help="apply only these sections")
@click.option(
    "--remap",
    "remap_specs",
    multiple=True,
    metavar="PICKLIST.VALUE=NEW",
    help="rewrite records holding a removed picklist value (repeatable)",
)
@click.option(
    "--force",
    is_flag=True,
    help="apply even though records hold values the new configuration removes",
)
@click.option(
    "--keep",
    "keep",
    multiple=True,
    metavar="ADDRESS",
    help="upgrade: keep ours for the conflicts at or under ADDRESS (repeatable)",
)
@click.option(
    "--take",
    "take",
    multiple=True,
    metavar="ADDRESS",
    help="upgrade: take theirs for the conflicts at or under ADDRESS (repeatable)",
)
@click.option(
    "--prefer",
    type=click.Choice(["ours", "theirs"]),
    help="upgrade: resolve every other conflict this way",
)
@pass_state
def inbox_approve(
    state: State,
    transfer_id: int,
    login: str,
    mode: str | None,
    only: str | None,
    remap_specs: tuple[str, ...],
    force: bool,
    keep: tuple[str, ...],
    take: tuple[str, ...],
    prefer: str | None,
) -> None:
    """Apply the transfer in one transaction (configuration, remaps, state, audit)."""
    remaps = data_impact.parse_remaps(remap_specs)
    with state.transaction() as ctx:
        _, actor = transfers.get(ctx, login, transfer_id)
        decision = transfers.approve(
            ctx,
            actor,
            transfer_id,
            mode=mode,  # type: ignore[arg-type]
            only=_only(only),
            remaps=remaps,
            force=force,
            keep=keep,
            take=take,
            prefer=prefer,  # type: ignore[arg-type]
        )
        data = _transfer_json(decision.transfer) | {
            "outcome": decision.outcome,
            "version": decision.version,
            "remapped": decision.remapped or {},
            "forced": decision.forced or [],
        }
    if decision.outcome == "replanned":
        if state.as_json:
            click.echo(dumps(data | {"message": decision.message}), err=True)
        else:
            click.echo(f"error: {decision.message}", err=True)
        sys.exit(1)
    lines = [
        f"transfer {transfer_id} applied: configuration version {decision.version}"
        if decision.outcome == "applied"
        else f"transfer {transfer_id} applied: {decision.message}"
    ]
    lines += [
        f"  remapped {key} -> {remaps[key]}: {n} records"
        for key, n in (decision.remapped or {}).items()
    ]
    lines += [f"  forced: {item}" for item in decision.forced or []]
    emit(state, data, "\n".join(lines))


@inbox.command("reject")
@click.argument("transfer_id", type=ROW_ID)
@AS_REQUIRED
@click.option("--reason", help="why (kept in the audit log)")
@pass_state
def inbox_reject(state: State, transfer_id: int, login: str, reason: str | None) -> None:
    with state.transaction() as ctx:
        _, actor = transfers.get(ctx, login, transfer_id)
        decision = transfers.reject(ctx, actor, transfer_id, reason=reason)
        data = _transfer_json(decision.transfer)
    emit(state, data, f"transfer {transfer_id} rejected; the configuration is unchanged")


@inbox.command("rollback")
@click.argument("transfer_id", type=ROW_ID)
@AS_REQUIRED
@pass_state
def inbox_rollback(state: State, transfer_id: int, login: str) -> None:
    """Undo an applied transfer (the version before it becomes current again)."""
    with state.transaction() as ctx:
        _, actor = transfers.get(ctx, login, transfer_id)
        version = transfers.rollback(ctx, actor, transfer_id)
    emit(
        state,
        {"transfer": transfer_id, "version": version},
        f"transfer {transfer_id} rolled back: configuration version {version}"
        if version is not None
        else f"transfer {transfer_id} rolled back: its approval had "
        "changed nothing, so the configuration stays as it is",
    )


# --------------------------------------------------------------------------- publishers, audit


@cli.group()
def publisher() -> None:
    """Trusted (pinned) publishers: once any is pinned, only pinned signers are accepted."""


@publisher.command("trust")
@TENANT
@AS_REQUIRED
@click.argument("pem_file", type=click.Path(dir_okay=False, exists=True))
@click.option("--label", required=True, help="who this key belongs to")
@click.option(
    "--policy", type=click.Choice(["manual", "auto"]), default="manual", show_default=True
)
@pass_state
def publisher_trust(
    state: State, tenant: str, login: str, pem_file: str, label: str, policy: str
) -> None:
    with state.transaction() as ctx:
        actor = actors.resolve(ctx, login, tenant)
        row = signing.trust(ctx, actor, Path(pem_file).read_bytes(), label=label, policy=policy)
    emit(
        state,
        {"key_id": row.key_id, "label": row.label, "policy": row.policy},
        f"{tenant} now trusts publisher {row.label} ({row.key_id}, policy {row.policy})",
    )


@publisher.command("list")
@TENANT
@AS_REQUIRED
@pass_state
def publisher_list(state: State, tenant: str, login: str) -> None:
    with state.transaction() as ctx:
        actor = actors.resolve(ctx, login, tenant)
        data = [
            {"key_id": p.key_id, "label": p.label, "policy": p.policy, "added_by": p.added_by}
            for p in signing.pinned(ctx, actor.tenant_id)
        ]
    emit(
        state,
        data,
        lambda: (
            table(
                [(d["key_id"], d["label"], d["policy"], d["added_by"]) for d in data],
                ["key id", "label", "policy", "added by"],
            )
            if data
            else "no pinned publishers: bundles from any tenant key of this deployment "
            "are accepted (with a copy key)"
        ),
    )


@publisher.command("remove")
@TENANT
@AS_REQUIRED
@click.argument("key_id_arg", metavar="KEY_ID")
@pass_state
def publisher_remove(state: State, tenant: str, login: str, key_id_arg: str) -> None:
    with state.transaction() as ctx:
        actor = actors.resolve(ctx, login, tenant)
        signing.untrust(ctx, actor, key_id_arg)
    emit(state, {"key_id": key_id_arg, "removed": True}, f"publisher {key_id_arg} removed")


@cli.command("audit")
@TENANT
@AS_REQUIRED
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@pass_state
def audit_log(state: State, tenant: str, login: str, limit: int) -> None:
    """The tenant's audit events, newest first (admins only)."""
    with state.transaction() as ctx:
        actor = actors.resolve(ctx, login, tenant)
        actors.require_admin(actor, "read the audit log")
        data = [
            {
                "id": e.id,
                "at": format_instant(as_utc(e.at)),
                "actor": e.actor,
                "action": e.action,
                "subject": e.subject,
                "details": e.details,
            }
            for e in audit_service.events(ctx, actor.tenant_id, limit=limit)
        ]
    emit(
        state,
        data,
        lambda: table(
            [
                (
                    d["at"],
                    d["actor"],
                    d["action"],
                    d["subject"],
                    canonical_bytes(d["details"]).decode()[:70],
                )
                for d in data
            ],
            ["at", "actor", "action", "subject", "details"],
        ),
    )


def main() -> None:
    cli(prog_name="provisioner")


from provisioner.cli.crm import register as _register_crm  # noqa: E402

_register_crm(cli)

from provisioner.cli.provisioning import register as _register_provisioning  # noqa: E402

_register_provisioning(cli)

from provisioner.cli.workflows import register as _register_workflows  # noqa: E402

_register_workflows(cli)

from provisioner.cli.serve import serve as _serve  # noqa: E402

cli.add_command(_serve)

from provisioner.cli.users import register as _register_users  # noqa: E402

_register_users(cli)
