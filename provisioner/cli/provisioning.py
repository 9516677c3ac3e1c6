"""CLI of tenant provisioning: groups, login, tenants (cancel, add-ons, sandboxes),
rollout, billing and CTI metering. Registered at the end of :mod:`provisioner.cli.main`.

    provisioner group create acme-group --name "ACME グループ"
    provisioner login sato --password-stdin            # numbered tenants, first selected
    provisioner rollout -t hq --as hq-admin --bundle hq.bundle --targets shop-1,shop-2
    provisioner billing show -g acme-group --month 2026-11
    provisioner calls record -t 1 --as op 03-1234-5678
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from provisioner.bundles.signing import load_public_pem
from provisioner.cli.output import State, emit, fail, pass_state, table
from provisioner.cli.tenant_choice import choose_tenant
from provisioner.clock import as_utc, format_instant, parse_instant
from provisioner.errors import ValidationFailed
from provisioner.numbers import parse_whole_number
from provisioner.services import actors
from provisioner.services.context import Context
from provisioner.services.provisioning import (
    auth,
    billing,
    groups,
    metering,
    quotas,
    rollout,
    sandboxes,
)

TENANT_REF = click.option(
    "-t",
    "--tenant",
    "tenant_ref",
    metavar="N|SLUG",
    help="the tenant: its number in your list, or its slug",
)
AS_REQUIRED = click.option("--as", "login", required=True, metavar="LOGIN", help="the acting user")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def read_password(from_stdin: bool, *, confirm: bool = False) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    value: str = click.prompt("password", hide_input=True, confirmation_prompt=confirm, err=True)
    return value


def _read_file(path: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise ValidationFailed(f"cannot read {path}: {exc.strerror}") from None


# --------------------------------------------------------------------------- groups


@click.group("group")
def group_cli() -> None:
    """Tenant groups: one contract, several tenants, one login per user."""


@group_cli.command("create")
@click.argument("code")
@click.option("--name", required=True)
@pass_state
def group_create(state: State, code: str, name: str) -> None:
    with state.transaction() as ctx:
        row = groups.create(ctx, code, name=name)
    emit(state, {"group": row.code, "name": row.name}, f"created group {row.code} ({row.name})")


@group_cli.command("list")
@pass_state
def group_list(state: State) -> None:
    with state.transaction() as ctx:
        data = [
            {
                "group": g.code,
                "name": g.name,
                "tenants": [t.slug for t in groups.tenants_of(ctx, g)],
            }
            for g in groups.list_all(ctx)
        ]
    emit(
        state,
        data,
        lambda: table(
            [(d["group"], d["name"], ", ".join(d["tenants"])) for d in data],
            ["group", "name", "tenants"],
        ),
    )


@group_cli.command("add-tenant")
@click.argument("code")
@click.argument("slug")
@pass_state
def group_add_tenant(state: State, code: str, slug: str) -> None:
    """Put an existing tenant in the group (effective immediately; it can never leave)."""
    with state.transaction() as ctx:
        groups.add_tenant(ctx, code, slug)
    emit(state, {"group": code, "tenant": slug}, f"{slug} is now in group {code}")


@group_cli.command("remove-tenant")
@click.argument("code")
@click.argument("slug")
@pass_state
def group_remove_tenant(state: State, code: str, slug: str) -> None:
    """Refused: a group tenant can only be cancelled."""
    with state.transaction() as ctx:
        groups.remove_tenant(ctx, code, slug)


# --------------------------------------------------------------------------- tenant extras


def register_tenant_commands(tenant: click.Group) -> None:
    @tenant.command("cancel")
    @click.argument("slug")
    @pass_state
    def tenant_cancel(state: State, slug: str) -> None:
        """Cancel a tenant, effective today: nobody can reach it; its data is kept."""
        with state.transaction() as ctx:
            row = groups.cancel_tenant(ctx, slug)
            at = format_instant(as_utc(row.cancelled_at or ctx.clock.now()))
        emit(
            state,
            {"slug": slug, "status": "cancelled", "cancelled_at": at},
            f"tenant {slug} cancelled at {at}; its data is kept but unreachable",
        )

    @tenant.command("show")
    @click.argument("slug")
    @pass_state
    def tenant_show(state: State, slug: str) -> None:
        """One tenant: plan, flags, group, configuration version, disk usage and add-ons.

        A cancelled tenant is shown too (status and date), for the operator's records;
        every command that works in or on a tenant refuses it.
        """
        with state.transaction() as ctx:
            data = sandboxes.describe(ctx, slug)
        emit(
            state,
            data,
            lambda: "\n".join(f"{k:16} {'' if v is None else v}" for k, v in data.items()),
        )

    @tenant.command("addon")
    @click.argument("slug")
    @click.option("--disk-gb", "gb", type=int, required=True, help="extra disk, in GB")
    @pass_state
    def tenant_addon(state: State, slug: str, gb: int) -> None:
        with state.transaction() as ctx:
            quotas.add_disk(ctx, slug, gb=gb, by="operator")
            usage = quotas.usage(ctx, actors.get_tenant(ctx, slug))
        emit(
            state,
            {"slug": slug, "added_gb": gb, **usage.to_dict()},
            f"{slug}: +{gb} GB; {usage.used_bytes:,} of {usage.quota_bytes:,} bytes used",
        )

    @tenant.command("usage")
    @click.argument("slug")
    @pass_state
    def tenant_usage(state: State, slug: str) -> None:
        """Disk usage against the quota (stored configuration, bundles and call records)."""
        with state.transaction() as ctx:
            usage = quotas.usage(ctx, actors.get_tenant(ctx, slug))
        emit(
            state,
            {"slug": slug, **usage.to_dict()},
            f"{slug}: {usage.used_bytes:,} of {usage.quota_bytes:,} bytes used "
            f"({usage.free_bytes:,} free)",
        )

    @tenant.command("create-sandbox")
    @click.argument("slug")
    @click.option("--from", "source", required=True, metavar="TENANT")
    @click.option("--name", help="default: the source's name + （サンドボックス）")
    @pass_state
    def tenant_create_sandbox(state: State, slug: str, source: str, name: str | None) -> None:
        """A sandbox with the tenant's configuration and no data (no copy feature)."""
        with state.transaction() as ctx:
            row = sandboxes.create_sandbox(ctx, slug, source=source, name=name)
        emit(
            state,
            {
                "slug": row.slug,
                "sandbox": True,
                "source": source,
                "config_version": row.config_version,
            },
            f"created sandbox {row.slug} from {source}; it can send but never receive",
        )


def join_group(ctx: Context, group: str, slug: str) -> None:
    """``tenant create ... --group GROUP`` (called from main.py, in its transaction)."""
    groups.add_tenant(ctx, group, slug)


def set_initial_password(ctx: Context, login: str, password: str) -> None:
    """``user add ... --password-stdin`` (called from main.py, in its transaction)."""
    auth.set_initial_password(ctx, login, password, by="operator")


def create_from_bundle(
    state: State,
    slug: str,
    *,
    name: str,
    plan: str,
    group: str | None,
    bundle_file: str,
    pem_files: tuple[str, ...] = (),
) -> dict[str, Any]:
    """``tenant create SLUG --from-bundle FILE`` (called from main.py's tenant create)."""
    raw = _read_file(bundle_file)
    keys = [load_public_pem(Path(p).read_bytes(), source=p) for p in pem_files]
    with state.transaction() as ctx:
        row = sandboxes.create_from_bundle(
            ctx, slug, name=name, plan=plan, raw=raw, group=group, extra_keys=keys
        )
        return {
            "slug": row.slug,
            "id": row.id,
            "name": row.name,
            "plan": row.plan,
            "group": group,
            "config_version": row.config_version,
            "from_bundle": bundle_file,
        }


# --------------------------------------------------------------------------- login


@click.command("login")
@click.argument("login_id", metavar="LOGIN")
@click.option("--password-stdin", is_flag=True, help="read the password from stdin")
@click.option(
    "-t", "--tenant", "tenant_ref", metavar="N|SLUG", help="select this tenant instead of the first"
)
@pass_state
def login_cmd(state: State, login_id: str, password_stdin: bool, tenant_ref: str | None) -> None:
    """Log in once: your tenants, numbered, the first selected, and a session token."""
    password = read_password(password_stdin)
    with state.transaction() as ctx:
        result = auth.login(ctx, login_id, password)
        selected = result.selected
        if tenant_ref is not None:
            selected = auth.switch(ctx, result.token, tenant_ref).tenant_slug
    data = {
        "login": result.login,
        "tenants": [c.to_dict() for c in result.tenants],
        "selected": selected,
        "token": result.token,
        "expires_at": format_instant(result.expires_at),
    }
    emit(
        state,
        data,
        lambda: (
            table(
                [
                    ("*" if c.slug == selected else "", c.number, c.slug, c.name, c.role)
                    for c in result.tenants
                ],
                ["", "no", "tenant", "name", "role"],
            )
            + f"\n\nsession token (valid until {data['expires_at']}): {result.token}"
        ),
    )


@click.command("switch")
@click.argument("tenant_ref", metavar="N|SLUG")
@click.option(
    "--token-stdin",
    is_flag=True,
    required=True,
    help="read the session token (from 'provisioner login') from stdin",
)
@pass_state
def switch_cmd(state: State, tenant_ref: str, token_stdin: bool) -> None:
    """Select another of your tenants in the same session (no new login)."""
    token = sys.stdin.readline().strip()
    with state.transaction() as ctx:
        actor = auth.switch(ctx, token, tenant_ref)
    emit(
        state,
        {"selected": actor.tenant_slug, "role": actor.role, "login": actor.login},
        f"{actor.login} now works in {actor.tenant_slug} ({actor.role})",
    )


@click.command("password")
@click.argument("login_id", metavar="LOGIN")
@TENANT_REF
@click.option(
    "--password-stdin",
    is_flag=True,
    help="read the current password, then the new one, one per line from stdin",
)
@pass_state
def password_cmd(state: State, login_id: str, tenant_ref: str | None, password_stdin: bool) -> None:
    """Change your password: it is shared by all your tenants, so it changes everywhere."""
    slug = choose_tenant(state, login_id, tenant_ref)
    if password_stdin:
        old, new = read_password(True), read_password(True)
    else:
        old = read_password(False)
        new = click.prompt("new password", hide_input=True, confirmation_prompt=True, err=True)
    with state.transaction() as ctx:
        auth.change_password(ctx, actors.resolve(ctx, login_id, slug), old, new)
        count = len(auth.tenants_for_login(ctx, login_id))
    emit(
        state,
        {"login": login_id, "changed_in": slug, "tenants": count},
        f"password of {login_id} changed (in {slug}); it applies to all {count} of their "
        "tenants, and their other sessions have ended",
    )


# --------------------------------------------------------------------------- rollout


def _targets(spec: str | None, file: str | None) -> list[str]:
    names: list[str] = []
    if spec:
        names += [s.strip() for s in spec.split(",") if s.strip()]
    if file:
        names += [
            line.strip()
            for line in _read_file(file).decode("utf-8-sig").splitlines()
            if line.strip() and not line.startswith("#")
        ]
    return names


def _keys(pairs: tuple[str, ...]) -> dict[str, str]:
    keys: dict[str, str] = {}
    for pair in pairs:
        slug, sep, key = pair.partition("=")
        if not sep or not slug or not key:
            raise click.BadParameter(f"{pair!r}: use SLUG=KEY", param_hint="--key")
        keys[slug.strip()] = key.strip()
    return keys


@click.command("rollout")
@TENANT_REF
@AS_REQUIRED
@click.option(
    "--bundle",
    "bundle_file",
    metavar="FILE",
    help="the source's signed bundle (exported without --key)",
)
@click.option("--targets", "targets_spec", metavar="SLUG,SLUG,...")
@click.option("--targets-file", type=click.Path(dir_okay=False), help="one slug per line")
@click.option(
    "--key",
    "key_pairs",
    multiple=True,
    metavar="SLUG=KEY",
    help="a target taking part with its own copy key (repeatable)",
)
@click.option("--resume", "resume_id", type=int, metavar="RUN", help="continue an interrupted run")
@click.option("--status", "status_id", type=int, metavar="RUN", help="show a run")
@click.option(
    "--batch-size",
    type=click.IntRange(1, rollout.MAX_BATCH_SIZE),
    default=rollout.BATCH_SIZE,
    show_default=True,
    help="targets checked and written per transaction (an interruption loses at "
    "most one batch, which a resume redoes)",
)
@click.option(
    "--upgrade-policy",
    type=click.Choice(rollout.UPGRADE_POLICIES),
    default="apply_clean",
    show_default=True,
    help="auto targets that took a version from this tenant before are upgraded "
    "three-way: apply_clean applies those without conflicts, wait leaves every "
    "upgrade in the inbox (give it again with --resume)",
)
@pass_state
def rollout_cmd(
    state: State,
    tenant_ref: str | None,
    login: str,
    bundle_file: str | None,
    targets_spec: str | None,
    targets_file: str | None,
    key_pairs: tuple[str, ...],
    resume_id: int | None,
    status_id: int | None,
    batch_size: int,
    upgrade_policy: str,
) -> None:
    """One signed configuration to many tenants: a progress bar, then the status table.

    Each target takes part with its own copy key (--key SLUG=KEY) or because its
    admin trusts this tenant as a publisher (policy manual: inbox; auto: applied).
    An interrupted run is continued with --resume RUN; --status RUN shows one.
    """
    source = choose_tenant(state, login, tenant_ref)
    keys = _keys(key_pairs)
    if resume_id is not None and status_id is not None:
        raise click.UsageError("give --resume RUN or --status RUN, not both")
    if status_id is None and resume_id is None:
        if not bundle_file:
            raise click.UsageError("--bundle FILE is required (or --resume RUN / --status RUN)")
        names = _targets(targets_spec, targets_file)
        stray = sorted(set(keys) - set(names))
        if stray:
            raise click.BadParameter(
                f"{', '.join(stray)} not among the targets", param_hint="--key"
            )
        raw = _read_file(bundle_file)
        with state.transaction() as ctx:
            actor = actors.resolve(ctx, login, source)
            run_id = rollout.start(
                ctx, actor, raw, [rollout.Target(n, key=n in keys) for n in names]
            ).id
    else:
        if bundle_file or targets_spec or targets_file:
            raise click.UsageError(
                "--resume/--status take the run's own bundle and targets; "
                "drop --bundle and --targets"
            )
        run_id = resume_id if resume_id is not None else int(status_id or 0)
        with state.transaction() as ctx:  # the run must belong to the -t tenant
            rollout.get(ctx, actors.resolve(ctx, login, source), run_id)
    if status_id is None:
        try:
            _process(state, login, run_id, keys, batch_size, upgrade_policy)
        except KeyboardInterrupt:
            click.echo(
                f"\nrollout {run_id} interrupted: the targets done so far are kept; "
                f"continue with: provisioner rollout -t {source} --as {login} "
                f"--resume {run_id}",
                err=True,
            )
            sys.exit(130)
    with state.transaction() as ctx:
        summary = rollout.summary(ctx, actors.resolve(ctx, login, source), run_id)
    emit(state, summary, lambda: _render(summary))
    bad = sum(summary["counts"].get(s, 0) for s in ("rejected", "failed"))
    if bad and status_id is None:
        fail(
            ValidationFailed(
                f"{bad} of {len(summary['targets'])} targets were not delivered (rollout {run_id})"
            ),
            state,
        )


def _process(
    state: State,
    login: str,
    run_id: int,
    keys: dict[str, str],
    batch_size: int,
    upgrade_policy: str = "apply_clean",
) -> None:
    app = state.app()
    policy: rollout.UpgradePolicy = "wait" if upgrade_policy == "wait" else "apply_clean"
    if state.as_json:
        rollout.process(app, login, run_id, keys=keys, batch_size=batch_size, upgrade_policy=policy)
        return
    with app.transaction() as ctx:
        pending = rollout.pending_count(ctx, run_id)
    with click.progressbar(
        length=pending, label=f"rollout {run_id}", file=sys.stderr, show_pos=True
    ) as bar:
        rollout.process(
            app,
            login,
            run_id,
            keys=keys,
            batch_size=batch_size,
            on_progress=lambda _slug, _status: bar.update(1),
            upgrade_policy=policy,
        )


def _render(summary: dict[str, Any]) -> str:
    rows = [
        (
            t["number"],
            t["tenant"],
            t["status"],
            t["via"] or "",
            t["transfer"] or "",
            t["version"] or "",
            t["reason"] or "",
        )
        for t in summary["targets"]
    ]
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary["counts"].items()))
    return (
        table(rows, ["#", "tenant", "status", "via", "transfer", "version", "reason"])
        + f"\n\nrollout {summary['run']} {summary['status']}: {counts}"
    )


# --------------------------------------------------------------------------- billing


@click.group("billing")
def billing_cli() -> None:
    """Monthly bills of tenant groups and the price book."""


@billing_cli.command("show")
@click.option("-g", "--group", "group_code", required=True)
@click.option("--month", required=True, metavar="YYYY-MM")
@pass_state
def billing_show(state: State, group_code: str, month: str) -> None:
    with state.transaction() as ctx:
        bill = billing.group_bill(ctx, group_code, month)
    data = bill.to_dict()
    emit(
        state,
        data,
        lambda: (
            table(
                [
                    (
                        ln["item"],
                        ln["detail"],
                        ln["quantity"],
                        f"{ln['unit_price']:,}",
                        f"{ln['amount']:,}",
                    )
                    for ln in bill.lines
                ],
                ["item", "detail", "qty", "unit JPY", "amount JPY"],
            )
            + f"\n\ntotal {bill.total:,} JPY ({group_code}, {month})"
        ),
    )


@billing_cli.command("prices")
@click.option(
    "--set", "changes", multiple=True, metavar="NAME=JPY", help="change a price (repeatable)"
)
@pass_state
def billing_prices(state: State, changes: tuple[str, ...]) -> None:
    """Show (or change) the price book."""
    parsed: dict[str, Any] = {}
    for change in changes:
        name, sep, value = change.partition("=")
        number = parse_whole_number(value) if sep else None
        if number is None:
            raise click.BadParameter(f"{change!r}: use NAME=NUMBER", param_hint="--set")
        parsed[name.strip()] = number
    with state.transaction() as ctx:
        book = billing.set_prices(ctx, parsed, by="operator") if parsed else billing.price_book(ctx)
    emit(state, book, lambda: table([(k, f"{v:,}") for k, v in book.items()], ["price", "value"]))


# --------------------------------------------------------------------------- CTI calls


@click.group("calls")
def calls_cli() -> None:
    """CTI pop-up metering: numbers, business hours, holidays, calls, statements."""


def _actor(state: State, login: str, tenant_ref: str | None) -> str:
    return choose_tenant(state, login, tenant_ref)


@calls_cli.command("record")
@TENANT_REF
@AS_REQUIRED
@click.argument("number")
@click.option("--at", "at_text", metavar="INSTANT", help="e.g. 2026-11-24T01:00:00Z")
@pass_state
def calls_record(
    state: State, tenant_ref: str | None, login: str, number: str, at_text: str | None
) -> None:
    slug = _actor(state, login, tenant_ref)
    at = None
    if at_text:
        try:
            at = parse_instant(at_text)
        except ValueError:
            raise click.BadParameter("use 2026-11-24T01:00:00Z", param_hint="--at") from None
    with state.transaction() as ctx:
        row = metering.record_call(ctx, actors.resolve(ctx, login, slug), number, at=at)
        data = {
            "call": row.id,
            "tenant": slug,
            "number": row.number,
            "classification": row.classification,
            "in_hours": row.in_hours,
            "charge_jpy": row.charge_jpy,
            "at": format_instant(as_utc(row.at)),
        }
    emit(
        state,
        data,
        f"call {data['call']}: {data['classification']}, "
        f"{'in' if data['in_hours'] else 'out of'} business hours, {data['charge_jpy']} JPY",
    )


@calls_cli.command("note")
@TENANT_REF
@AS_REQUIRED
@click.argument("call")
@click.argument("text")
@click.option(
    "--ref",
    "by_ref",
    is_flag=True,
    help="CALL is the telephony side's call id (as given to lookup --call-id)",
)
@pass_state
def calls_note(
    state: State, tenant_ref: str | None, login: str, call: str, text: str, by_ref: bool
) -> None:
    """Add contact history to a call: an activity of the customer it popped up
    (refused for nuisance callers)."""
    if not by_ref and not call.isdigit():
        raise click.BadParameter(
            f"{call!r} is not a call number (use --ref for a call id)", param_hint="CALL"
        )
    slug = _actor(state, login, tenant_ref)
    with state.transaction() as ctx:
        row = metering.add_contact_history(
            ctx,
            actors.resolve(ctx, login, slug),
            None if by_ref else int(call),
            text,
            call_ref=call if by_ref else None,
        )
        data = {"call": row.id, "ref": row.call_ref, "noted": True, "contact_id": row.contact_id}
    emit(
        state,
        data,
        f"call {call}: contact history added"
        + (f" to customer {data['contact_id']}" if data["contact_id"] else ""),
    )


@calls_cli.command("number")
@TENANT_REF
@AS_REQUIRED
@click.argument("number")
@click.option("--kind", type=click.Choice(metering.KINDS), required=True)
@click.option("--user", "user_login", metavar="LOGIN", help="the employee's login")
@click.option("--label", default="")
@pass_state
def calls_number(
    state: State,
    tenant_ref: str | None,
    login: str,
    number: str,
    kind: str,
    user_login: str | None,
    label: str,
) -> None:
    """Register a customer, employee or nuisance number."""
    slug = _actor(state, login, tenant_ref)
    with state.transaction() as ctx:
        row = metering.add_number(
            ctx, actors.resolve(ctx, login, slug), number, kind=kind, login=user_login, label=label
        )
    emit(state, {"number": row.number, "kind": row.kind}, f"{row.number} registered as {kind}")


@calls_cli.command("hours")
@TENANT_REF
@AS_REQUIRED
@click.option(
    "--day",
    "days",
    multiple=True,
    required=True,
    metavar="DAY=HH:MM-HH:MM",
    help="e.g. mon=09:00-18:00 (repeat per day; days not given are closed)",
)
@pass_state
def calls_hours(state: State, tenant_ref: str | None, login: str, days: tuple[str, ...]) -> None:
    """Set business hours (Asia/Tokyo)."""
    hours: dict[int, tuple[str, str]] = {}
    for spec in days:
        day, _, span = spec.partition("=")
        opens, _, closes = span.partition("-")
        if day.lower() not in WEEKDAYS or not opens or not closes:
            raise click.BadParameter(f"{spec!r}: use mon=09:00-18:00", param_hint="--day")
        hours[WEEKDAYS.index(day.lower())] = (opens, closes)
    slug = _actor(state, login, tenant_ref)
    with state.transaction() as ctx:
        metering.set_business_hours(ctx, actors.resolve(ctx, login, slug), hours)
    emit(
        state,
        {WEEKDAYS[d]: list(s) for d, s in sorted(hours.items())},
        f"business hours of {slug} set",
    )


@calls_cli.command("holiday")
@TENANT_REF
@AS_REQUIRED
@click.argument("day", type=click.DateTime(formats=["%Y-%m-%d"]))
@click.option("--name", default="")
@pass_state
def calls_holiday(state: State, tenant_ref: str | None, login: str, day: Any, name: str) -> None:
    slug = _actor(state, login, tenant_ref)
    with state.transaction() as ctx:
        metering.add_holiday(ctx, actors.resolve(ctx, login, slug), day.date(), name=name)
    emit(
        state,
        {"holiday": day.date().isoformat(), "name": name},
        f"{day.date().isoformat()} is a holiday of {slug}: calls are free",
    )


@calls_cli.command("statement")
@TENANT_REF
@AS_REQUIRED
@click.option("--month", required=True, metavar="YYYY-MM")
@pass_state
def calls_statement(state: State, tenant_ref: str | None, login: str, month: str) -> None:
    slug = _actor(state, login, tenant_ref)
    with state.transaction() as ctx:
        result = metering.statement(ctx, actors.resolve(ctx, login, slug), month)
    data = result.to_dict()
    emit(
        state,
        data,
        lambda: (
            table(
                [(ln["item"], ln["quantity"], f"{ln['amount']:,}") for ln in result.lines],
                ["item", "qty", "amount JPY"],
            )
            + f"\n\ntotal {result.total:,} JPY ({slug}, {month})"
        ),
    )


@calls_cli.command("contract")
@click.argument("slug")
@click.option("--start", "started", type=click.DateTime(formats=["%Y-%m-%d"]), required=True)
@click.option(
    "--maintenance",
    type=int,
    default=None,
    help="monthly maintenance fee, JPY (default: the price book's list price)",
)
@click.option(
    "--seat-fee", type=int, default=None, help="monthly fee per seat, JPY (default: list price)"
)
@click.option("--seats", type=int, required=True)
@click.option(
    "--mobile",
    type=int,
    default=0,
    help="peak mobile concurrent connections (bought in packs of 5, rounded up)",
)
@click.option(
    "--mobile-pack-fee",
    type=int,
    default=None,
    help="monthly fee per pack of 5 (default: list price)",
)
@click.option("--initial-fee", type=int, default=None, help="default: list price")
@click.option("--list-input", is_flag=True, help="take the list-input option (monthly)")
@click.option("--list-input-fee", type=int, default=None, help="default: list price")
@pass_state
def calls_contract(
    state: State,
    slug: str,
    started: Any,
    maintenance: int | None,
    seat_fee: int | None,
    seats: int,
    mobile: int,
    mobile_pack_fee: int | None,
    initial_fee: int | None,
    list_input: bool,
    list_input_fee: int | None,
) -> None:
    """Set a tenant's CTI contract (12-month minimum term); prices not given are the
    price book's list prices (billing prices)."""
    with state.transaction() as ctx:
        row = metering.set_contract(
            ctx,
            slug,
            started_on=started.date(),
            maintenance_jpy=maintenance,
            seat_fee_jpy=seat_fee,
            seats=seats,
            mobile_connections=mobile,
            mobile_pack_jpy=mobile_pack_fee,
            initial_jpy=initial_fee,
            list_input=list_input,
            list_input_jpy=list_input_fee,
            by="operator",
        )
        data = {
            "tenant": slug,
            "seats": seats,
            "mobile": mobile,
            "maintenance_jpy": row.maintenance_jpy,
            "seat_fee_jpy": row.seat_fee_jpy,
            "mobile_pack_jpy": row.mobile_pack_jpy,
            "initial_jpy": row.initial_jpy,
            "list_input_jpy": row.list_input_jpy,
        }
    emit(state, data, f"CTI contract of {slug} set")


@calls_cli.command("cancel-contract")
@click.argument("slug")
@click.option("--on", "on_day", type=click.DateTime(formats=["%Y-%m-%d"]), required=True)
@pass_state
def calls_cancel_contract(state: State, slug: str, on_day: Any) -> None:
    with state.transaction() as ctx:
        row = metering.cancel_contract(ctx, slug, on=on_day.date(), by="operator")
        fee = row.cancellation_fee_jpy or 0
    emit(
        state,
        {
            "tenant": slug,
            "cancelled_on": on_day.date().isoformat(),
            "early_cancellation_fee_jpy": fee,
        },
        f"CTI contract of {slug} cancelled on {on_day.date().isoformat()}; "
        f"early cancellation fee {fee:,} JPY",
    )


def register(cli: click.Group) -> None:
    cli.add_command(group_cli)
    cli.add_command(login_cmd)
    cli.add_command(switch_cmd)
    cli.add_command(password_cmd)
    cli.add_command(rollout_cmd)
    cli.add_command(billing_cli)
    cli.add_command(calls_cli)
    tenant = cli.commands.get("tenant")
    if isinstance(tenant, click.Group):
        register_tenant_commands(tenant)
