"""What the rule engine keeps in the database: blueprint states, the execution log,
notifications, and the compiled rules of a configuration.

The rules themselves are pure (:mod:`provisioner.config.rules`); the record-write
path (:mod:`provisioner.services.crm.records`) runs them after each write and
records here what they did, in the same transaction.

    rules = ruleset(doc)                          # compiled once per configuration
    log(ctx, [execution_row(ctx, tenant_id, version, "contact", 7, "created", firing)])
    log_bulk(conn, batch_rows(template, ids))    # a bulk write: one row per rule and write
    notify(ctx, tenant_id, "admin", "...", workflow="vip", record=("contact", 7))

The execution log has one row per rule fired on a record for a single write, and one
row per rule and bulk write for the records the rule fired on alike (their ids packed
in ``record_ids``: :func:`pack_ids`); :func:`record_ids` reads either back. Every
write of the log also adds to the workflow's counters (``wf_stats``: firings, last
fired), so listing the workflows never reads the log.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Table,
    bindparam,
    func,
    insert,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY

from provisioner import metrics
from provisioner.config.document import ConfigDocument
from provisioner.config.rules import Firing, RuleSet
from provisioner.db.bulk import insert_rows
from provisioner.db.models import Membership, Tenant
from provisioner.db.workflow_models import (
    BATCH_SPAN,
    CrmRecordState,
    Notification,
    WfExecution,
)
from provisioner.services.crm import search_index
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
        "last_record_id": None,
        "record_ids": "",
    }


# ---------------------------------------------------------------- record ids, packed


def pack_ids(ids: Iterable[int]) -> str:
    """Ascending record ids as text: runs of consecutive ids as ``first-last``, the
    others alone, comma-separated (``[3, 4, 5, 9]`` -> ``"3-5,9"``)."""
    out: list[str] = []
    first = last = None
    for i in ids:
        if last is not None and i == last + 1:
            last = i
            continue
        if first is not None:
            out.append(str(first) if first == last else f"{first}-{last}")
        first = last = i
    if first is not None:
        out.append(str(first) if first == last else f"{first}-{last}")
    return ",".join(out)


def unpack_ids(text: str) -> list[int]:
    """The ids :func:`pack_ids` packed, ascending."""
    out: list[int] = []
    for part in text.split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        out.extend(range(int(first), int(last or first) + 1))
    return out


def count_ids(text: str) -> int:
    """How many ids :func:`pack_ids` packed (without listing them)."""
    n = 0
    for part in text.split(","):
        if part:
            first, _, last = part.partition("-")
            n += int(last or first) - int(first) + 1
    return n


def record_ids(record_id: int, packed: str) -> list[int]:
    """The records an execution-log row names: ``record_id``, or those packed."""
    return unpack_ids(packed) if packed else [record_id]


def batch_rows(row: dict[str, Any], ids: Sequence[int]) -> list[dict[str, Any]]:
    """The execution-log row ``row`` (an :func:`execution_row`) for every record of
    ``ids`` alike, as few rows as the packing allows: one per :data:`BATCH_SPAN` of
    ids (so that a record's rows are found in a window of ids), a lone id as a
    row of its own."""
    ordered = sorted(set(ids))
    out: list[dict[str, Any]] = []
    at = 0
    while at < len(ordered):
        first = ordered[at]
        end = at
        while end + 1 < len(ordered) and ordered[end + 1] - first <= BATCH_SPAN:
            end += 1
        chunk = ordered[at : end + 1]
        if len(chunk) == 1:
            out.append({**row, "record_id": first, "last_record_id": None, "record_ids": ""})
        else:
            out.append(
                {
                    **row,
                    "record_id": first,
                    "last_record_id": chunk[-1],
                    "record_ids": pack_ids(chunk),
                }
            )
        at = end + 1
    return out


# ---------------------------------------------------------------- writing the log


def _size(row: dict[str, Any]) -> int:
    return count_ids(row["record_ids"]) if row.get("record_ids") else 1


def _count(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Count the firings in /metrics and in the workflows' counters (``wf_stats``)."""
    ok = failed = 0
    per: dict[tuple[int, str], list[Any]] = {}
    for r in rows:
        n = _size(r)
        if r["error"]:
            failed += n
        else:
            ok += n
        seen = per.get((r["tenant_id"], r["workflow"]))
        if seen is None:
            per[(r["tenant_id"], r["workflow"])] = [n, r["at"]]
        else:
            seen[0] += n
            seen[1] = max(seen[1], r["at"])
    if failed:
        metrics.workflow_firings.labels(outcome="error").inc(failed)
    if ok:
        metrics.workflow_firings.labels(outcome="ok").inc(ok)
    add_stats(conn, {key: (n, at) for key, (n, at) in per.items()})


#: adds to a workflow's counters (a text statement: compiled once, run as executemany)
_ADD_STATS = text(
    "INSERT INTO wf_stats (tenant_id, workflow, firings, last_fired) "
    "VALUES (:t, :w, :n, :at) ON CONFLICT (tenant_id, workflow) DO UPDATE SET "
    "firings = wf_stats.firings + excluded.firings, "
    "last_fired = CASE WHEN excluded.last_fired > wf_stats.last_fired "
    "THEN excluded.last_fired ELSE wf_stats.last_fired END"
).bindparams(bindparam("at", type_=DateTime(timezone=True)))


def add_stats(conn: Connection, counts: dict[tuple[int, str], tuple[int, datetime]]) -> None:
    """Add to the counters of workflows ``(tenant, code) -> (firings, fired at)``.
    PostgreSQL: under the tenant's writer lock (taken first, as every writer of the
    tenant's derived data takes it), so that two transactions firing the same rules
    never wait on each other's counters in opposite orders."""
    if not counts:
        return
    for tenant_id in sorted({t for t, _ in counts}):
        search_index.lock_tenant_writes(conn, tenant_id)
    conn.execute(
        _ADD_STATS,
        [{"t": t, "w": w, "n": n, "at": at} for (t, w), (n, at) in sorted(counts.items())],
    )


def log(ctx: Context, rows: list[dict[str, Any]]) -> None:
    """Write execution-log rows (one statement); counted in /metrics and ``wf_stats``."""
    if rows:
        ctx.session.execute(insert(WfExecution), rows)
        _count(ctx.session.connection(), rows)


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
    "last_record_id",
    "record_ids",
]


def log_bulk(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Write many execution-log rows at bulk-load speed (COPY / executemany); counted
    in /metrics and ``wf_stats``."""
    if rows:
        table = WfExecution.__table__
        assert isinstance(table, Table)
        insert_rows(conn, table, _LOG_COLUMNS, [tuple(r[c] for c in _LOG_COLUMNS) for r in rows])
        _count(conn, rows)


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
