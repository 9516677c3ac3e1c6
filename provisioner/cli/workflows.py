"""Automation commands: workflows (list, activate, pause, dry-run, log, run-due),
notifications, and blueprint transitions of a record.

    provisioner workflow list -t acme --as admin
    provisioner workflow dry-run vip_gold -t acme --as admin --sample 1000
    provisioner workflow activate vip_gold -t acme --as admin
    provisioner workflow log -t acme --as admin --record contact 42
    provisioner workflow run-due                      # the scheduler's job, once
    provisioner notifications -t acme --as sato --unread --mark-read
    provisioner record transition contact 42 --to won -t acme --as sato
"""

from __future__ import annotations

from datetime import date
from typing import Any

import click

from provisioner.cli.crm import AS_REQUIRED, TENANT_REF, record_group
from provisioner.cli.output import State, emit, pass_state, table
from provisioner.errors import ValidationFailed
from provisioner.services import actors, workflows
from provisioner.services.crm import records


@click.group("workflow")
def workflow_group() -> None:
    """Workflow rules: list, activate/pause (admins), dry-run, execution log, due dates."""


@workflow_group.command("list")
@TENANT_REF
@AS_REQUIRED
@pass_state
def workflow_list(state: State, tenant: str, login: str) -> None:
    """Code, label, trigger, state (active or paused), last fired."""
    with state.transaction() as ctx:
        rows = workflows.list_workflows(ctx, actors.resolve(ctx, login, tenant))
    emit(
        state,
        rows,
        lambda: (
            table(
                [
                    (
                        r["code"],
                        r["label"],
                        r["trigger"],
                        r["state"],
                        r["last_fired"] or "-",
                        r["firings"],
                    )
                    for r in rows
                ],
                ["code", "label", "trigger", "state", "last fired", "firings"],
            )
            if rows
            else "no workflows"
        ),
    )


def _set_active(state: State, tenant: str, login: str, code: str, active: bool) -> None:
    with state.transaction() as ctx:
        version = workflows.set_active(ctx, actors.resolve(ctx, login, tenant), code, active)
    word = "activated" if active else "paused"
    emit(
        state,
        {"workflow": code, "state": "active" if active else "paused", "version": version},
        f"{word} {code} (configuration version {version})"
        if version is not None
        else f"{code} was already {'active' if active else 'paused'}; nothing changed",
    )


@workflow_group.command("activate")
@click.argument("code")
@TENANT_REF
@AS_REQUIRED
@pass_state
def workflow_activate(state: State, code: str, tenant: str, login: str) -> None:
    """Let a workflow run on the tenant's records (admins; audited)."""
    _set_active(state, tenant, login, code, True)


@workflow_group.command("pause")
@click.argument("code")
@TENANT_REF
@AS_REQUIRED
@pass_state
def workflow_pause(state: State, code: str, tenant: str, login: str) -> None:
    """Stop a workflow from running (admins; audited)."""
    _set_active(state, tenant, login, code, False)


def _dry_run_text(report: dict[str, Any]) -> str:
    lines = [
        f"{report['workflow']} ({report['state']}, {report['trigger']}): "
        f"{report['matched']} of {report['examined']} {report['object']} records match"
    ]
    lines += [f"  {n:>8}  {what}" for what, n in report["changes"].items()]
    lines += [f"  {n:>8}  {what}" for what, n in report["effects"].items()]
    lines += [f"  {n:>8}  error: {what}" for what, n in report["errors"].items()]
    if report["examples"]:
        lines.append("first matches: " + ", ".join(str(e["id"]) for e in report["examples"]))
    lines.append("nothing was written")
    return "\n".join(lines)


@workflow_group.command("dry-run")
@click.argument("code")
@TENANT_REF
@AS_REQUIRED
@click.option(
    "--sample",
    type=click.IntRange(1),
    default=None,
    help="evaluate the first N records only (default: all)",
)
@pass_state
def workflow_dry_run(state: State, code: str, tenant: str, login: str, sample: int | None) -> None:
    """How many existing records the rule matches and what it would change (writes nothing)."""
    with state.transaction() as ctx:
        report = workflows.dry_run(
            ctx, actors.resolve(ctx, login, tenant), code, sample=sample
        ).to_dict()
    emit(state, report, lambda: _dry_run_text(report))


@workflow_group.command("log")
@TENANT_REF
@AS_REQUIRED
@click.option(
    "--record", nargs=2, default=None, metavar="TYPE ID", help="only the firings on this record"
)
@click.option("--workflow", "code", default=None, help="only this workflow's firings")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@pass_state
def workflow_log(
    state: State,
    tenant: str,
    login: str,
    record: tuple[str, str] | None,
    code: str | None,
    limit: int,
) -> None:
    """Which rule fired on which record, under which configuration version, what it did."""
    record_type, record_id = (None, None)
    if record is not None:
        if not (record[1].isascii() and record[1].isdigit()):
            raise ValidationFailed(f"--record {record[0]} {record[1]}: the id is a number")
        record_type, record_id = record[0], int(record[1])
    with state.transaction() as ctx:
        rows = workflows.execution_log(
            ctx,
            actors.resolve(ctx, login, tenant),
            record_type=record_type,
            record_id=record_id,
            workflow=code,
            limit=limit,
        )
    emit(
        state,
        rows,
        lambda: (
            table(
                [
                    (
                        r["at"],
                        r["workflow"],
                        f"v{r['config_version']}",
                        f"{r['record_type']} {r['record_id']}",
                        r["trigger"],
                        str(r["changes"])[:50],
                        r["error"][:40],
                    )
                    for r in rows
                ],
                ["at", "workflow", "config", "record", "trigger", "changes", "error"],
            )
            if rows
            else "no firings"
        ),
    )


@workflow_group.command("run-due")
@click.option(
    "-t",
    "--tenant",
    "tenant",
    default=None,
    metavar="SLUG",
    help="only this tenant (default: every tenant)",
)
@click.option(
    "--today",
    default=None,
    metavar="YYYY-MM-DD",
    help="run as of this date (default: today in Japan)",
)
@click.option(
    "--catch-up-days",
    type=click.IntRange(0, 31),
    default=workflows.CATCH_UP_DAYS,
    show_default=True,
    help="also make firings due this many days ago that were missed",
)
@pass_state
def workflow_run_due(
    state: State, tenant: str | None, today: str | None, catch_up_days: int
) -> None:
    """Fire the date-triggered rules due today, each (rule, record, date) once."""
    day = None
    if today is not None:
        try:
            day = date.fromisoformat(today)
        except ValueError:
            raise ValidationFailed(
                f"--today {today!r} is not a date", hint="write YYYY-MM-DD"
            ) from None
    with state.transaction() as ctx:
        report = workflows.run_due(
            ctx, tenant_slug=tenant, today=day, catch_up_days=catch_up_days
        ).to_dict()
    emit(
        state,
        report,
        lambda: (
            f"{report['fired']} firings in {report['tenants']} tenants "
            f"({report['examined']} records examined, {report['already']} made before)"
            + "".join(f"\nerror: {e}" for e in report["errors"])
        ),
    )


@click.command("notifications")
@TENANT_REF
@AS_REQUIRED
@click.option("--unread", is_flag=True, help="only the unread ones")
@click.option("--mark-read", is_flag=True, help="mark what is shown as read")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@pass_state
def notifications_cmd(
    state: State, tenant: str, login: str, unread: bool, mark_read: bool, limit: int
) -> None:
    """The acting user's notifications (from workflow notify actions)."""
    with state.transaction() as ctx:
        actor = actors.resolve(ctx, login, tenant)
        rows = workflows.notifications(ctx, actor, unread_only=unread, limit=limit)
        if mark_read and rows:
            workflows.mark_read(ctx, actor, [r["id"] for r in rows])
    emit(
        state,
        rows,
        lambda: (
            table(
                [
                    (
                        r["at"],
                        "" if r["read"] else "new",
                        r["workflow"],
                        f"{r['record_type']} {r['record_id']}",
                        r["message"],
                    )
                    for r in rows
                ],
                ["at", "", "workflow", "record", "message"],
            )
            if rows
            else "no notifications"
        ),
    )


@record_group.command("transition")
@click.argument("type_name", metavar="TYPE", type=click.Choice(list(records.TYPES)))
@click.argument("record_id", type=click.IntRange(1))
@click.option("--to", "to_state", required=True, metavar="STATE")
@TENANT_REF
@AS_REQUIRED
@click.option("--blueprint", default=None, help="needed when the object has several")
@click.option("--purpose", default=None)
@pass_state
def record_transition(
    state: State,
    type_name: str,
    record_id: int,
    to_state: str,
    tenant: str,
    login: str,
    blueprint: str | None,
    purpose: str | None,
) -> None:
    """Move a record to another state of its blueprint, along a configured transition."""
    with state.transaction() as ctx:
        moved = workflows.transition(
            ctx,
            actors.resolve(ctx, login, tenant),
            type_name,
            record_id,
            to_state,
            blueprint=blueprint,
            purpose=purpose,
        )
    emit(
        state,
        moved,
        f"{type_name} {record_id}: {moved['from']} -> {moved['to']} "
        f"({moved['blueprint']}.{moved['transition']})",
    )


def register(cli: click.Group) -> None:
    for command in (workflow_group, notifications_cmd):
        cli.add_command(command)
