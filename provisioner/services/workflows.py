"""Automation a tenant admin manages: workflow states, dry runs, the execution log, the
date scheduler, notifications, and blueprint transitions.

The rules run on the record-write path (:func:`provisioner.services.crm.records.after_write`);
this module is what people do *with* them.

    listing = list_workflows(ctx, actor)               # code, label, active/paused, last fired
    dry_run(ctx, actor, "vip_gold", sample=1000)      # how many match, what would change
    set_active(ctx, admin, "vip_gold", True)          # a new configuration version, audited
    run_due(ctx)                                      # date-triggered rules due today, once
    transition(ctx, actor, "contact", 7, "won")       # a blueprint move, checked and logged

A rule copied from another tenant arrives paused (``config/merge.py``): nothing acts
on the target's records until its admin has looked (a dry run) and activated it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import and_, func, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from provisioner.clock import format_instant, local_today
from provisioner.config.document import ConfigDocument, Workflow
from provisioner.config.rules import ActionError, RuleSet, due_on, read, split_path
from provisioner.crashpoints import crashpoint
from provisioner.db.crm_models import CrmChange
from provisioner.db.models import Tenant
from provisioner.db.workflow_models import (
    BATCH_SPAN,
    Notification,
    WfDueFiring,
    WfExecution,
    WfStat,
)
from provisioner.errors import NotFound, PermissionDenied, ValidationFailed
from provisioner.services import audit, configs, rule_sql
from provisioner.services.actors import Actor, get_tenant, require_admin
from provisioner.services.crm import automation, records, scope
from provisioner.services.transaction import Context

#: days a date firing may be late (the scheduler was down) and still be made
CATCH_UP_DAYS = 3
#: records read per query by a dry run and the scheduler
_PAGE = 5000


def _workflow(doc: ConfigDocument, code: str) -> Workflow:
    for wf in doc.workflows:
        if wf.code == code:
            return wf
    raise NotFound(
        f"no workflow {code!r}",
        hint="workflows: " + (", ".join(w.code for w in doc.workflows) or "none"),
    )


def describe_trigger(wf: Workflow) -> str:
    trigger = wf.trigger
    if trigger.event == "field_changed":
        return f"{trigger.field} changed"
    if trigger.event == "date":
        days = trigger.days or 0
        when = "on" if days == 0 else f"{abs(days)} days {'after' if days > 0 else 'before'}"
        return f"{when} {trigger.field}{' every year' if trigger.yearly else ''}"
    return f"{wf.object} {trigger.event}"


# ---------------------------------------------------------------- list, activate, pause


def list_workflows(ctx: Context, actor: Actor) -> list[dict[str, Any]]:
    """The tenant's workflows: code, label, object, trigger, state, last fired, firings."""
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "records.read", "list the workflows")
    doc = scope.config(ctx, actor.tenant_id)
    stats = {  # kept with the execution log (automation.add_stats): no scan of it
        code: (last, n)
        for code, last, n in ctx.session.execute(
            select(WfStat.workflow, WfStat.last_fired, WfStat.firings).where(
                WfStat.tenant_id == actor.tenant_id
            )
        )
    }
    return [
        {
            "code": wf.code,
            "label": wf.label,
            "object": wf.object,
            "trigger": describe_trigger(wf),
            "state": "active" if wf.active else "paused",
            "last_fired": format_instant(stats[wf.code][0]) if wf.code in stats else None,
            "firings": stats.get(wf.code, (None, 0))[1],
        }
        for wf in doc.workflows
    ]


def set_active(ctx: Context, actor: Actor, code: str, active: bool) -> int | None:
    """Activate or pause a workflow (admins): a new configuration version, audited.
    Returns the new version, or None when it already was in that state."""
    scope.enter(ctx, actor)
    require_admin(actor, "activate or pause workflows")
    tenant = get_tenant(ctx, actor.tenant_slug)
    head = configs.current(ctx, tenant)
    flows = head.data["workflows"]
    if not any(wf["code"] == code for wf in flows):
        _workflow(scope.config(ctx, actor.tenant_id), code)  # NotFound, with the list
    changed = [{**wf, "active": active} if wf["code"] == code else wf for wf in flows]
    if changed == flows:
        return None
    version = configs.set_sections(ctx, actor, tenant, {"workflows": changed})
    audit.record(
        ctx,
        tenant_id=tenant.id,
        actor=actor.login,
        action="workflow:activated" if active else "workflow:paused",
        subject=f"workflow:{code}",
        version=version,
    )
    return version


# ---------------------------------------------------------------- dry run


@dataclass
class DryRun:
    workflow: str
    object: str
    trigger: str
    state: str
    examined: int = 0
    matched: int = 0
    #: "field: old -> new" -> records that would change so
    changes: Counter[str] = field(default_factory=Counter)
    #: effects on other records and notifications: description -> count
    effects: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    #: the first matching records and what each would change
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "object": self.object,
            "trigger": self.trigger,
            "state": self.state,
            "examined": self.examined,
            "matched": self.matched,
            "changes": dict(self.changes.most_common()),
            "effects": dict(self.effects.most_common()),
            "errors": dict(self.errors.most_common()),
            "examples": self.examples,
        }


def _columns_for(doc: ConfigDocument, wf: Workflow, rt: records.RecordType) -> list[str]:
    """The record columns a rule reads or writes (a dry run reads only those)."""
    wanted = {"id", "contact_id", "company_id"} & {"id", *rt.fields}
    for cond in wf.conditions.rules:
        obj, name = split_path(cond.field)
        if obj == wf.object:
            wanted.add(
                "checkboxes"
                if name.startswith("checkbox_")
                else "classifications"
                if name == "classification"
                else name
            )
    for action in wf.actions:
        if action.type == "set_field":
            obj, name = split_path(action.field)
            if obj == wf.object:
                wanted.add("checkboxes" if name.startswith("checkbox_") else name)
        elif action.type == "set_checkbox":
            wanted.add("checkboxes")
        elif action.type == "add_classification":
            wanted.add("classifications")
    if wf.trigger.field:
        wanted.add(split_path(wf.trigger.field)[1])
    return sorted(c for c in wanted if c == "id" or c in rt.fields)


def dry_run(
    ctx: Context,
    actor: Actor,
    code: str,
    *,
    sample: int | None = None,
    examples: int = 20,
    fast: bool = True,
) -> DryRun:
    """Evaluate one workflow (active or paused) against the tenant's existing records,
    as if each had just been written: how many match and what each would change.
    Writes nothing.

    Counted in the database when the rule's conditions and own-record actions have an
    exact SQL form (:mod:`provisioner.services.rule_sql`), else record by record in
    Python (``fast=False`` forces that: the reference the fast path is tested against).
    """
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "records.read", "dry-run a workflow")
    doc = scope.config(ctx, actor.tenant_id)
    wf = _workflow(doc, code)
    plan = _DryPlan(ctx, actor.tenant_id, doc, wf, sample, actor)
    report = DryRun(wf.code, wf.object, describe_trigger(wf), "active" if wf.active else "paused")
    if not (fast and plan.counted_in_sql(report)):
        for row in plan.rows():
            report.examined += 1
            plan.evaluate(report, row, len(report.examples) < examples)
        return report
    if report.matched:
        for row in plan.rows(matching=True, limit=examples):
            plan.evaluate(DryRun(wf.code, wf.object, "", ""), row, True, into=report.examples)
    return report


def count_matches(
    ctx: Context, tenant_id: int, doc: ConfigDocument, wf: Workflow, *, fast: bool = True
) -> tuple[int, int]:
    """(examined, matched): how many of the tenant's records of the workflow's object
    there are, and how many a dry run of it would count as matching now (``doc``: the
    configuration the workflow is part of, e.g. an incoming one). Counted as
    :func:`dry_run` counts: one aggregate query when the conditions have an exact SQL
    form, else record by record (``fast=False``: always, the reference)."""
    plan = _DryPlan(ctx, tenant_id, doc, wf, None)
    if fast and not plan.states and wf.trigger.event != "date":
        where = rule_sql.condition_sql(wf, plan.table, dict(plan.rt.fields), plan.dialect)
        if where is not None:
            examined, matched = ctx.session.execute(
                select(func.count(), func.count().filter(where))
                .select_from(plan.table)
                .where(plan.scope())
            ).one()
            return int(examined), int(matched)
    report = DryRun(wf.code, wf.object, "", "")
    for row in plan.rows():
        report.examined += 1
        plan.evaluate(report, row, False)
    return report.examined, report.matched


class _DryPlan:
    """What a dry run of one rule reads and how it evaluates a record."""

    def __init__(
        self,
        ctx: Context,
        tenant_id: int,
        doc: ConfigDocument,
        wf: Workflow,
        sample: int | None,
        actor: Actor | None = None,
    ) -> None:
        """``actor``: whose dry run (its values shaped as that actor's write would
        shape them); None when only matches are counted (:func:`count_matches`)."""
        self.ctx, self.tenant_id, self.doc, self.wf, self.sample = (ctx, tenant_id, doc, wf, sample)
        self.rt = records.record_type(wf.object)
        self.rules = RuleSet(
            [wf.model_copy(update={"active": True})],
            (f"{bp.object}.{bp.code}" for bp in doc.blueprints),
        )
        self.rule = next(iter(self.rules.rules(wf.object, wf.trigger.event)))
        self.event = "created" if wf.trigger.event == "created" else "updated"
        self.trigger_field = split_path(wf.trigger.field or "")[1]
        self.changed = [self.trigger_field] if self.trigger_field else list(self.rt.fields)
        self.names = _columns_for(doc, wf, self.rt)
        self.table: Any = self.rt.model.__table__
        self.coerce = (
            records.coercer(ctx, actor, doc, self.rt, records.NEW_ROW)
            if actor is not None
            else None
        )
        self.states = bool(automation.blueprints_of(doc, self.rt.name))
        self.today = local_today(ctx.clock)
        self.dialect = ctx.session.get_bind().dialect.name
        #: SQLite: (rows, lowest id, highest id) of the tenant's (see :meth:`scope`)
        self._range: tuple[int, Any, Any] | None = None

    def scope(self) -> Any:
        """The rows looked at: the tenant's, or its first ``sample`` by id.

        SQLite, a whole tenant that fills most of its range of ids (a tenant
        loaded in bulk): that range of the table read in order, the tenant a filter
        (``tenant_id + 0``), instead of every row looked up from a ``tenant_id``
        index in that index's order -- ten times faster over a million rows, the
        planner having no statistics to choose it itself."""
        c = self.table.c
        where = c.tenant_id == self.tenant_id
        if self.sample is not None:
            first = select(c.id).where(where).order_by(c.id).limit(self.sample)
            return and_(where, c.id.in_(first))
        if self.dialect != "sqlite":
            return where
        if self._range is None:
            n, low, high = self.ctx.session.execute(
                select(func.count(), func.min(c.id), func.max(c.id)).where(where)
            ).one()
            self._range = (int(n or 0), low, high)
        n, low, high = self._range
        if n and n * 4 >= high - low + 1:
            return and_(c.tenant_id + 0 == self.tenant_id, c.id.between(low, high))
        return where

    def rows(self, *, matching: bool = False, limit: int | None = None) -> Any:
        query = select(*(self.table.c[n] for n in self.names)).where(self.scope())
        if matching:
            where = rule_sql.condition_sql(self.wf, self.table, dict(self.rt.fields), self.dialect)
            query = query.where(where if where is not None else true())
        query = query.order_by(self.table.c.id)
        if limit is not None:
            query = query.limit(limit)
        result = self.ctx.session.execute(query.execution_options(yield_per=_PAGE))
        for stored in result.mappings():
            yield dict(stored)

    def evaluate(
        self,
        report: DryRun,
        row: dict[str, Any],
        keep: bool,
        into: list[dict[str, Any]] | None = None,
    ) -> None:
        if self.states:
            row.update(
                {
                    f"state:{k}": v
                    for k, v in automation.states(
                        self.ctx, self.doc, self.tenant_id, self.rt.name, row["id"]
                    ).items()
                }
            )
        if self.wf.trigger.event == "date":  # as the scheduler fires it (run_due)
            if due_on(
                self.wf.trigger.days,
                self.wf.trigger.yearly,
                read(row, self.trigger_field),
                self.today,
            ) is None or not self.rule.matches(row):
                return
            firings = [self.rules.fire(self.rule, row, self.coerce)]
        else:
            firings = self.rules.run(
                self.rt.name, self.event, row, self.changed, coerce=self.coerce
            )
        if not firings:
            return
        report.matched += 1
        _tally_firing(report, self.rt, firings)
        if keep:
            (report.examples if into is None else into).append(
                {
                    "id": row["id"],
                    "changes": {
                        c: [records.show_value(self.rt, c, o), records.show_value(self.rt, c, n)]
                        for f in firings
                        for c, (o, n) in f.changes.items()
                    },
                    "effects": [automation.describe_effect(e) for f in firings for e in f.effects],
                }
            )

    def counted_in_sql(self, report: DryRun) -> bool:
        """Fill the counts of ``report`` in the database; False when the rule has no exact
        SQL form (then nothing was counted)."""
        if self.states or self.wf.trigger.event == "date":
            return False
        where = rule_sql.condition_sql(self.wf, self.table, dict(self.rt.fields), self.dialect)
        own: list[tuple[Any, str | None]] = [(a, _own_column(self.wf, a)) for a in self.wf.actions]
        columns = [c for _a, c in own if c is not None]
        if (
            where is None
            or len(columns) != len(set(columns))
            or any(
                c not in ("checkboxes", "classifications")
                and self.rt.fields.get(c) not in ("str", "text", "date")
                for c in columns
            )
        ):
            return False
        scope = self.scope()
        c = self.table.c
        #: one aggregate over the tenant's rows: examined, matched, and per checkbox
        #: action the matching records it would change
        boxes: list[tuple[str, Any]] = []
        for action, column in own:
            if column == "checkboxes":
                index = (
                    action.index
                    if action.type == "set_checkbox"
                    else int(split_path(action.field)[1][9:])
                )
                on = action.checked if action.type == "set_checkbox" else bool(action.value)
                bit = c.checkboxes.op("&")(1 << (index - 1)) != 0
                boxes.append(
                    (
                        f"checkbox_{index} -> {'checked' if on else 'unchecked'}",
                        and_(where, ~bit if on else bit),
                    )
                )
        counts = self.ctx.session.execute(
            select(
                func.count(),
                func.count().filter(where),
                *(func.count().filter(cond) for _label, cond in boxes),
            )
            .select_from(self.table)
            .where(scope)
        ).one()
        report.examined, report.matched = int(counts[0]), int(counts[1])
        for (label, _cond), n in zip(boxes, counts[2:], strict=True):
            if n:
                report.changes[label] += int(n)
        if not report.matched:
            return True
        for action, column in own:
            if column is None or column == "checkboxes":
                continue
            try:
                self._count_action(report, action, column, and_(scope, where))
            except ActionError as exc:
                report.errors[f"{action.type}: {exc}"] += report.matched
        probe = self.rules.fire(self.rule, {}, self.coerce)
        for effect in probe.effects:
            report.effects[automation.describe_effect(effect)] += report.matched
        for error in probe.errors:
            if not error.startswith(("set_field", "set_checkbox", "add_classification")):
                report.errors[error] += report.matched
        return True

    def _count_action(self, report: DryRun, action: Any, column: str, where: Any) -> None:
        """The matching records a set_field / add_classification would change, by old
        value (checkboxes are counted in :meth:`counted_in_sql`'s aggregate)."""
        c = self.table.c
        if column == "classifications":
            code = action.classification
            found = rule_sql.classification_absent(c.classifications, code, self.dialect)
            for old, n in self.ctx.session.execute(
                select(c.classifications, func.count())
                .where(where, found)
                .group_by(c.classifications)
            ):
                new = rules_new_codes(old, code)
                report.changes[
                    f"classifications: {records.show_value(self.rt, column, old)!r}"
                    f" -> {records.show_value(self.rt, column, new)!r}"
                ] += n
            return
        new = (
            self.coerce(self.wf.object, column, action.value)
            if self.coerce is not None
            else action.value
        )
        for old, n in self.ctx.session.execute(
            select(c[column], func.count()).where(where, c[column] != new).group_by(c[column])
        ):
            report.changes[f"{column}: {old!r} -> {new!r}"] += n


def rules_new_codes(old: str, code: str) -> str:
    """The stored classifications after adding ``code`` (as ``add_classification``)."""
    present = [c for c in (old or "").split(",") if c]
    return "," + ",".join([*present, code]) + ","


def _own_column(wf: Workflow, action: Any) -> str | None:
    """The column of the rule's own record an action changes, if it changes one."""
    if action.type == "set_field":
        obj, name = split_path(action.field)
        if obj != wf.object:
            return None
        return "checkboxes" if name.startswith("checkbox_") and wf.object == "contact" else name
    if action.type == "set_checkbox" and wf.object == "contact":
        return "checkboxes"
    if action.type == "add_classification" and wf.object in ("contact", "company"):
        return "classifications"
    return None


def _tally_firing(report: DryRun, rt: records.RecordType, firings: list[Any]) -> None:
    for firing in firings:
        for column, (old, new) in firing.changes.items():
            if column == "checkboxes":
                for i in range(48):
                    if (int(old or 0) ^ int(new or 0)) >> i & 1:
                        state = "checked" if int(new) >> i & 1 else "unchecked"
                        report.changes[f"checkbox_{i + 1} -> {state}"] += 1
            else:
                report.changes[
                    f"{column}: {records.show_value(rt, column, old)!r} -> "
                    f"{records.show_value(rt, column, new)!r}"
                ] += 1
        for effect in firing.effects:
            report.effects[automation.describe_effect(effect)] += 1
        for error in firing.errors:
            report.errors[error] += 1


# ---------------------------------------------------------------- execution log


def execution_log(
    ctx: Context,
    actor: Actor,
    *,
    record_type: str | None = None,
    record_id: int | None = None,
    workflow: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Which rule fired on which record, under which configuration version, what it did:
    newest first, one entry per rule and record (a bulk write's row, which names many
    records, is one entry per record, the highest id first)."""
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "records.read", "read the workflow log")
    query = select(WfExecution).where(WfExecution.tenant_id == actor.tenant_id)
    if record_type is not None:
        query = query.where(WfExecution.record_type == records.record_type(record_type).name)
    if workflow is not None:
        query = query.where(WfExecution.workflow == workflow)
    newest = WfExecution.id.desc()
    if record_id is None:
        # each row is at least one entry: the newest ``limit`` rows are enough
        found = list(ctx.session.scalars(query.order_by(newest).limit(limit)))
    else:
        # the rows of this record alone, or starting at it; and the bulk rows whose
        # range of ids holds it (at most BATCH_SPAN below it)
        found = list(
            ctx.session.scalars(
                query.where(WfExecution.record_id == record_id).order_by(newest).limit(limit)
            )
        )
        found += ctx.session.scalars(
            query.where(
                WfExecution.record_id.between(record_id - BATCH_SPAN, record_id - 1),
                WfExecution.last_record_id >= record_id,
            )
        )
        found.sort(key=lambda e: e.id, reverse=True)
    out: list[dict[str, Any]] = []
    for e in found:
        ids = automation.record_ids(e.record_id, e.record_ids)
        if record_id is not None:
            ids = [record_id] if record_id in ids else []
        for one in reversed(ids):
            if len(out) == limit:
                return out
            out.append(
                {
                    "at": format_instant(e.at),
                    "workflow": e.workflow,
                    "config_version": e.config_version,
                    "record_type": e.record_type,
                    "record_id": one,
                    "trigger": e.trigger,
                    "depth": e.depth,
                    "changes": e.changes,
                    "error": e.error,
                }
            )
    return out


# ---------------------------------------------------------------- the date scheduler


@dataclass
class DueReport:
    tenants: int = 0
    examined: int = 0
    fired: int = 0
    #: due firings another run had made already (each happens once)
    already: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenants": self.tenants,
            "examined": self.examined,
            "fired": self.fired,
            "already": self.already,
            "errors": self.errors,
        }


def _claim(
    ctx: Context, tenant_id: int, workflow: str, record_type: str, record_id: int, due: date
) -> bool:
    """Record a due firing; False when it was made already (by this or another process)."""
    bind = ctx.session.get_bind()
    make = pg_insert if bind.dialect.name == "postgresql" else sqlite_insert
    statement = (
        make(WfDueFiring)
        .values(
            tenant_id=tenant_id,
            workflow=workflow,
            record_type=record_type,
            record_id=record_id,
            due_on=due,
            fired_at=ctx.clock.now(),
        )
        .on_conflict_do_nothing()
    )
    # RETURNING, not the row count: drivers report -1 for some inserts
    return ctx.session.execute(statement.returning(WfDueFiring.tenant_id)).first() is not None


def run_due(
    ctx: Context,
    *,
    tenant_slug: str | None = None,
    today: date | None = None,
    catch_up_days: int = CATCH_UP_DAYS,
) -> DueReport:
    """Fire the date-triggered rules due today (and up to ``catch_up_days`` late ones),
    each (rule, record, due date) once however often and wherever this runs."""
    day = today or local_today(ctx.clock)
    earliest = day - timedelta(days=catch_up_days)
    report = DueReport()
    tenants = ctx.session.scalars(
        select(Tenant)
        .where(Tenant.status == "active", Tenant.config_version.is_not(None))
        .where(Tenant.slug == tenant_slug if tenant_slug else Tenant.id > 0)
        .order_by(Tenant.id)
    ).all()
    for tenant in tenants:
        ctx.enter_tenant(tenant.id)
        doc = scope.config(ctx, tenant.id)
        dated = [wf for wf in doc.workflows if wf.active and wf.trigger.event == "date"]
        if not dated:
            continue
        report.tenants += 1
        actor = Actor(
            login="scheduler", user_id=0, tenant_id=tenant.id, tenant_slug=tenant.slug, role="admin"
        )
        for wf in dated:
            _run_due_rule(ctx, actor, doc, wf, day, earliest, report)
    return report


def _run_due_rule(
    ctx: Context,
    actor: Actor,
    doc: ConfigDocument,
    wf: Workflow,
    day: date,
    earliest: date,
    report: DueReport,
) -> None:
    rt = records.record_type(wf.object)
    name = split_path(wf.trigger.field or "")[1]
    model: Any = rt.model
    column = getattr(model, name)
    rules = RuleSet([wf], (f"{bp.object}.{bp.code}" for bp in doc.blueprints))
    rule = rules.rules(wf.object, "date")[0]
    last = 0
    while True:
        found = ctx.session.execute(
            select(model.id, column)
            .where(model.tenant_id == actor.tenant_id, model.id > last, column != "")
            .order_by(model.id)
            .limit(_PAGE)
        ).all()
        if not found:
            return
        last = found[-1][0]
        for record_id, value in found:
            report.examined += 1
            due = due_on(wf.trigger.days, wf.trigger.yearly, value, day)
            if due is None or not earliest <= due <= day:
                continue
            row = ctx.session.get(model, record_id)
            if row is None:
                continue
            columns = records.rule_columns(rt, row)
            columns.update(
                {
                    f"state:{k}": v
                    for k, v in automation.states(
                        ctx, doc, actor.tenant_id, rt.name, record_id
                    ).items()
                }
            )
            if not rule.matches(columns):
                continue
            if not _claim(ctx, actor.tenant_id, wf.code, rt.name, record_id, due):
                report.already += 1
                continue
            crashpoint("workflow.due.after_claim")
            firing = rules.fire(rule, columns, records.coercer(ctx, actor, doc, rt, row))
            records.apply_firings(ctx, actor, doc, rt, row, "date", [firing])
            report.fired += 1
            report.errors.extend(f"{wf.code} on {rt.name} {record_id}: {e}" for e in firing.errors)


# ---------------------------------------------------------------- notifications


def notifications(
    ctx: Context, actor: Actor, *, unread_only: bool = False, limit: int = 50
) -> list[dict[str, Any]]:
    """The acting user's notifications in this tenant, newest first."""
    scope.enter(ctx, actor)
    query = select(Notification).where(
        Notification.tenant_id == actor.tenant_id, Notification.user_id == actor.user_id
    )
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    return [
        {
            "id": n.id,
            "at": format_instant(n.at),
            "workflow": n.workflow,
            "record_type": n.record_type,
            "record_id": n.record_id,
            "message": n.message,
            "read": n.read_at is not None,
        }
        for n in ctx.session.scalars(query.order_by(Notification.id.desc()).limit(limit))
    ]


def unread_count(ctx: Context, actor: Actor) -> int:
    scope.enter(ctx, actor)
    return int(
        ctx.session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(
                Notification.tenant_id == actor.tenant_id,
                Notification.user_id == actor.user_id,
                Notification.read_at.is_(None),
            )
        )
        or 0
    )


def mark_read(ctx: Context, actor: Actor, ids: list[int] | None = None) -> int:
    """Mark the user's notifications read (all when ``ids`` is None); how many."""
    scope.enter(ctx, actor)
    statement = update(Notification).where(
        Notification.tenant_id == actor.tenant_id,
        Notification.user_id == actor.user_id,
        Notification.read_at.is_(None),
    )
    if ids is not None:
        statement = statement.where(Notification.id.in_(ids))
    result = ctx.session.execute(
        statement.values(read_at=ctx.clock.now()).execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- blueprints


def blueprint_status(
    ctx: Context, actor: Actor, type_name: str, record_id: int
) -> list[dict[str, Any]]:
    """Where a record stands in each blueprint of its object and the moves open to the
    actor from there (the console's buttons)."""
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "records.read", f"read {type_name} records")
    rt = records.record_type(type_name)
    records.fetch(ctx, actor, type_name, record_id)
    doc = scope.config(ctx, actor.tenant_id)
    current = automation.states(ctx, doc, actor.tenant_id, rt.name, record_id)
    out = []
    for bp in automation.blueprints_of(doc, rt.name):
        labels = {s.code: s.label for s in bp.states}
        state = current[bp.code]
        out.append(
            {
                "blueprint": bp.code,
                "label": bp.label,
                "state": state,
                "state_label": labels.get(state, state),
                "transitions": [
                    {
                        "code": t.code,
                        "label": t.label,
                        "to": t.to_state,
                        "to_label": labels.get(t.to_state, t.to_state),
                    }
                    for t in bp.transitions
                    if t.from_state == state
                    and (not t.allowed_roles or actor.role in t.allowed_roles)
                ],
            }
        )
    return out


def transition(
    ctx: Context,
    actor: Actor,
    type_name: str,
    record_id: int,
    to_state: str,
    *,
    blueprint: str | None = None,
    purpose: str | None = None,
) -> dict[str, Any]:
    """Move a record along a blueprint transition: from its current state, by a role the
    transition allows, with the transition's required fields filled. The move is in the
    record's history and fires the rules watching the state field."""
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "records.write", f"update {type_name} records")
    rt = records.record_type(type_name)
    row = records.fetch(ctx, actor, type_name, record_id)
    doc = scope.config(ctx, actor.tenant_id)
    choices = automation.blueprints_of(doc, rt.name)
    if blueprint is not None:
        choices = [bp for bp in choices if bp.code == blueprint]
    if len(choices) != 1:
        names = ", ".join(bp.code for bp in automation.blueprints_of(doc, rt.name))
        raise ValidationFailed(
            f"no blueprint {blueprint!r} on {rt.name}"
            if blueprint is not None
            else f"a {rt.name} is in {len(choices)} blueprints",
            hint=f"name one with --blueprint ({names or 'none configured'})",
        )
    bp = choices[0]
    current = automation.states(ctx, doc, actor.tenant_id, rt.name, record_id)[bp.code]
    moves = [t for t in bp.transitions if t.from_state == current]
    chosen = next((t for t in moves if t.to_state == to_state), None)
    if chosen is None:
        raise ValidationFailed(
            f"{rt.name} {record_id} cannot move from {current!r} to {to_state!r} in "
            f"blueprint {bp.code!r}",
            hint="transitions from here: "
            + (", ".join(f"{t.code} (-> {t.to_state})" for t in moves) or "none"),
        )
    if chosen.allowed_roles and actor.role not in chosen.allowed_roles:
        raise PermissionDenied(
            f"{actor.login!r} ({actor.role}) may not take transition {chosen.code!r}",
            hint="it is allowed to: " + ", ".join(chosen.allowed_roles),
        )
    columns = records.rule_columns(rt, row)
    missing = [
        path
        for path in chosen.required_fields
        if split_path(path)[0] == rt.name
        and read(columns, split_path(path)[1]) in (None, "", [], False)
    ]
    if missing:
        raise ValidationFailed(
            f"transition {chosen.code!r} needs these fields filled first",
            problems=[f"{path}: required for {chosen.label}" for path in missing],
            hint=f"fill them ('provisioner record update {rt.name} {record_id} ...') and try again",
        )
    automation.set_state(ctx, actor.tenant_id, rt.name, record_id, bp.code, to_state, actor.login)
    ctx.session.add(
        CrmChange(
            tenant_id=actor.tenant_id,
            at=ctx.clock.now(),
            actor=actor.login,
            record_type=rt.name,
            record_id=record_id,
            action="transition",
            changes={bp.code: [current, to_state]},
            purpose=purpose or f"blueprint:{bp.code}:{chosen.code}",
        )
    )
    ctx.session.flush()
    records.after_write(ctx, actor, doc, rt, row, "updated", [bp.code])
    return {
        "record_type": rt.name,
        "record_id": record_id,
        "blueprint": bp.code,
        "transition": chosen.code,
        "from": current,
        "to": to_state,
    }
