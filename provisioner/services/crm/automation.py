"""What the rule engine keeps in the database: blueprint states, the execution log,
notifications, and the compiled rules of a configuration.

The rules themselves are pure (:mod:`provisioner.config.rules`); the record-write
path (:mod:`provisioner.services.crm.records`) runs them after each write and
records here what they did, in the same transaction.

    rules = ruleset(doc)                          # compiled once per configuration
    log(ctx, tenant_id, version, "contact", 7, "created", firing)
    notify(ctx, tenant_id, "admin", "...", workflow="vip", record=("contact", 7))
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Table,
    bindparam,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY

from provisioner import metrics
from provisioner.config.document import ConfigDocument
from provisioner.config.rules import Firing, RuleSet
from provisioner.db.bulk import insert_rows
from provisioner.db.models import Membership, Tenant
from provisioner.db.workflow_models import CrmRecordState, Notification, WfExecution
from provisioner.services.transaction import Context

_RULES: dict[int, tuple[ConfigDocument, RuleSet]] = {}


def ruleset(doc: ConfigDocument) -> RuleSet:
    """The configuration's active rules, compiled once per document object."""
    cached = _RULES.get(id(doc))
    if cached is not None and cached[0] is doc:
        return cached[1]
    if len(_RULES) > 256:
        _RULES.clear()
    rules = RuleSet.of(doc)
    _RULES[id(doc)] = (doc, rules)
    return rules


def config_version(ctx: Context, tenant_id: int) -> int:
    """The tenant's current configuration version (the execution log names it)."""
    return int(ctx.session.scalar(select(Tenant.config_version).where(Tenant.id == tenant_id)) or 0)


def blueprints_of(doc: ConfigDocument, record_type: str) -> list[Any]:
    return [bp for bp in doc.blueprints if bp.object == record_type]


def states(
    ctx: Context, doc: ConfigDocument, tenant_id: int, record_type: str, record_id: int
) -> dict[str, str]:
    """Where the record stands in each blueprint of its object (initial state when it
    never moved)."""
    blueprints = blueprints_of(doc, record_type)
    if not blueprints:
        return {}
    stored = dict(
        ctx.session.execute(
            select(CrmRecordState.blueprint, CrmRecordState.state).where(
                CrmRecordState.tenant_id == tenant_id,
                CrmRecordState.record_type == record_type,
                CrmRecordState.record_id == record_id,
            )
        ).all()
    )
    return {bp.code: stored.get(bp.code, bp.initial_state) for bp in blueprints}


def set_state(
    ctx: Context,
    tenant_id: int,
    record_type: str,
    record_id: int,
    blueprint: str,
    state: str,
    by: str,
) -> None:
    row = ctx.session.get(CrmRecordState, (tenant_id, record_type, record_id, blueprint))
    if row is None:
        ctx.session.add(
            CrmRecordState(
                tenant_id=tenant_id,
                record_type=record_type,
                record_id=record_id,
                blueprint=blueprint,
                state=state,
                updated_at=ctx.clock.now(),
                updated_by=by,
            )
        )
    else:
        row.state, row.updated_at, row.updated_by = state, ctx.clock.now(), by


def execution_row(
    ctx: Context,
    tenant_id: int,
    version: int,
    record_type: str,
    record_id: int,
    trigger: str,
    firing: Firing,
) -> dict[str, Any]:
    """One execution-log row: the rule, the record, what it changed, its effects."""
    changes: dict[str, Any] = firing.changes
    if firing.effects:
        changes = {**changes, "effects": [describe_effect(e) for e in firing.effects]}
    return {
        "tenant_id": tenant_id,
        "at": ctx.clock.now(),
        "workflow": firing.rule or "-",
        "config_version": version,
        "record_type": record_type,
        "record_id": record_id,
        "trigger": trigger,
        "depth": firing.depth,
        "changes": changes,
        "error": "; ".join(firing.errors),
    }


def _count(rows: list[dict[str, Any]]) -> None:
    failed = sum(1 for r in rows if r["error"])
    if failed:
        metrics.workflow_firings.labels(outcome="error").inc(failed)
    if len(rows) > failed:
        metrics.workflow_firings.labels(outcome="ok").inc(len(rows) - failed)


def log(ctx: Context, rows: list[dict[str, Any]]) -> None:
    """Write execution-log rows (one statement); counted in /metrics."""
    if rows:
        ctx.session.execute(insert(WfExecution), rows)
        _count(rows)


_LOG_COLUMNS = [
    "tenant_id",
    "at",
    "workflow",
    "config_version",
    "record_type",
    "record_id",
    "trigger",
    "depth",
    "changes",
    "error",
]


def log_bulk(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Write many execution-log rows at bulk-load speed (COPY / executemany)."""
    if rows:
        table = WfExecution.__table__
        assert isinstance(table, Table)
        insert_rows(conn, table, _LOG_COLUMNS, [tuple(r[c] for c in _LOG_COLUMNS) for r in rows])
        _count(rows)


def insert_for_ids(
    conn: Connection, table: Table, values: Mapping[str, Any], id_column: str, ids: list[int]
) -> None:
    """One row per id of ``ids``, all alike but for ``id_column``: one
    ``INSERT ... SELECT`` over the array of ids (PostgreSQL ``unnest``, SQLite
    ``json_each``), every other value bound once."""
    if not ids:
        return
    if conn.dialect.name == "postgresql":
        source = (
            func.unnest(bindparam("ids", ids, type_=ARRAY(BigInteger)))
            .table_valued("value")
            .render_derived()
        )
    else:
        source = func.json_each(bindparam("ids", json.dumps(ids))).table_valued("value")
    names = [k for k in values if k != id_column]
    conn.execute(
        insert(table).from_select(
            [*names, id_column],
            select(*(literal(values[k], type_=table.c[k].type) for k in names), source.c.value),
        )
    )


def log_for_ids(conn: Connection, row: Mapping[str, Any], ids: list[int]) -> None:
    """The execution-log row ``row`` (an :func:`execution_row`) for each record of ``ids``
    (one statement); counted in /metrics."""
    table = WfExecution.__table__
    assert isinstance(table, Table)
    insert_for_ids(conn, table, {c: row[c] for c in _LOG_COLUMNS}, "record_id", ids)
    metrics.workflow_firings.labels(outcome="error" if row["error"] else "ok").inc(len(ids))


def describe_effect(effect: Any) -> str:
    if effect.kind == "set":
        return f"set {effect.target}: {effect.values}"
    if effect.kind == "create_activity":
        due = f" (due in {effect.due_in_days} days)" if effect.due_in_days else ""
        return f"activity {effect.kind_code}: {effect.text}{due}"
    return f"notify {effect.role}: {effect.text}"


def notify(
    ctx: Context, tenant_id: int, role: str, message: str, *, workflow: str, record: tuple[str, int]
) -> int:
    """A notification for every user of the tenant with ``role``; how many were made."""
    users = list(
        ctx.session.scalars(
            select(Membership.user_id).where(
                Membership.tenant_id == tenant_id, Membership.role == role
            )
        )
    )
    now = ctx.clock.now()
    ctx.session.add_all(
        Notification(
            tenant_id=tenant_id,
            user_id=user,
            at=now,
            workflow=workflow,
            record_type=record[0],
            record_id=record[1],
            message=message,
        )
        for user in users
    )
    return len(users)
