"""Data-aware plans: what a configuration change does to the target tenant's records.

    report = impact(ctx, tenant_id, base_data, result_data)
    report["items"]      # [{"kind": "picklist_value_removed", "field": "contact.memo_2",
                         #   "picklist": "rank", "value": "gold", "count": 1312,
                         #   "blocking": True}, ...]
    unresolved(report, remaps={"rank.gold": "silver"}, force=False)   # -> [] when covered
    apply_remap(ctx, tenant_id, result_data, {"rank.gold": "silver"})  # same transaction

Kinds (each with the number of affected records):

* ``picklist_value_removed`` -- a value removed or deactivated while records hold
  it (memo picklists, activity kind, payment method, media, sex, family relation).
  Blocking: the approver remaps it (``PICKLIST.VALUE=NEWVALUE``) or forces.
* ``memo_retyped`` -- a memo field changes type or picklist while holding data;
  ``invalid`` counts values the new picklist does not offer (blocking when > 0).
* ``checkbox_relabelled`` / ``checkbox_disabled`` -- while some records have it
  checked (warnings: the data is kept).
* ``classification_removed`` -- customer / product classifications still assigned
  (blocking).
* ``custom_field_removed`` -- custom-database fields (or whole databases) removed
  while records hold data (blocking).

Beside the items, ``report["workflows"]``: each workflow of the result that is new or
changed (anything but its active / paused state) with how many of the tenant's
records of its object its conditions match now (``count`` of ``examined``), counted
as a dry run counts (:func:`provisioner.services.workflows.count_matches`: one
aggregate query per rule when its conditions have an exact SQL form). Never blocking:
a copied rule arrives paused, and its admin activates it after a dry run.

Counting reads the tenant's maintained counts (:mod:`provisioner.services.crm.tally`:
records per picklist-like value, checkbox, classification and custom field, kept
exact by every write path): one query however many records the tenant holds.
``impact(..., scan=True)`` counts the same answers from the records instead -- one
aggregate scan per table holding questions, the questions packed several to an
aggregate (see :class:`_Counts`) -- the reference the counts are tested against;
the rare question the counts cannot answer exactly (a value that is not a code,
which a validated configuration never names) is always scanned.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    String,
    Table,
    bindparam,
    case,
    func,
    insert,
    literal,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from provisioner.config.document import ConfigDocument, Workflow
from provisioner.crashpoints import crashpoint
from provisioner.db.crm_models import (
    CrmActivity,
    CrmChange,
    CrmCompany,
    CrmContact,
    CrmCustomRecord,
    CrmFamily,
    CrmProduct,
    CrmPurchase,
    CrmTally,
)
from provisioner.db.models import Tenant
from provisioner.errors import ValidationFailed
from provisioner.services import workflows
from provisioner.services.actors import Actor
from provisioner.services.crm import records, tally
from provisioner.services.transaction import Context

#: fields of built-in records that take a value of a fixed picklist
PICKLIST_COLUMNS: dict[str, tuple[str, Any]] = {
    "activity.kind": ("activity_kind", CrmActivity.kind),
    "purchase.payment_method": ("payment_method", CrmPurchase.payment_method),
    "purchase.media": ("media", CrmPurchase.media),
    "contact.sex": ("sex", CrmContact.sex),
    "family.relation": ("family_relation", CrmFamily.relation),
    "family.sex": ("sex", CrmFamily.sex),
}


def _values(data: Mapping[str, Any], picklist: str | None) -> set[str] | None:
    for pl in data.get("picklists", []):
        if pl["code"] == picklist:
            return {v["code"] for v in pl["values"] if v.get("active", True)}
    return None


def _memo_uses(data: Mapping[str, Any]) -> dict[int, tuple[str, str | None]]:
    return {
        m["index"]: (m.get("type", "text"), m.get("picklist")) for m in data.get("memo_fields", [])
    }


#: the report of a change that touches no record
NO_IMPACT: dict[str, Any] = {"items": [], "blocking": 0}
#: the records a configuration change can strand values in
SHAPED = (CrmContact, CrmCompany, CrmActivity, CrmPurchase, CrmFamily, CrmProduct, CrmCustomRecord)


#: one tenant's count of one kind (PostgreSQL: read in a pipeline with the scope)
_RECORDS_COUNT = select(CrmTally.n).where(
    CrmTally.tenant_id == bindparam("tenant"),
    CrmTally.name == bindparam("name"),
    CrmTally.value == bindparam("value"),
)


def has_records(ctx: Context, tenant_id: int) -> bool:
    """Whether the tenant may hold a record a configuration change could affect (cheap).

    Read from the maintained counts: one row, the tenant's CRM records of every
    table (:data:`tally.RECORDS`, kept exact by every write path). Those tables
    include every table of :data:`SHAPED`, so this is never False while one of
    them holds a row of the tenant; it may be True for a tenant whose only rows
    are others (change history, access log...), for which :func:`impact`
    reports nothing -- itself answered from the counts.
    """
    session = ctx.session
    name, value = tally.RECORDS
    if session.get_bind().dialect.name != "postgresql":
        return bool(
            session.scalar(
                select(CrmTally.n).where(  # the session flushes first
                    CrmTally.tenant_id == tenant_id, CrmTally.name == name, CrmTally.value == value
                )
            )
        )
    # enter the tenant's scope and read its count, in order, in one round trip
    (rows,) = ctx.run_pipelined(
        [_RECORDS_COUNT], {"tenant": tenant_id, "name": name, "value": value}, tenant_id=tenant_id
    )
    row = rows[0].n if rows else 0
    return bool(row)


#: PostgreSQL: bits per packed count at first (3 counts an aggregate, tenants < 2M rows)
PG_FIELD_BITS = 21


class _Counts:
    """Questions about one table, answered by one scan of the tenant's rows.

    Each question is a 0/1 indicator; indicators are packed ``per_sum`` to a
    ``SUM`` in fields of ``width`` bits (``width`` = bits of the tenant's row
    count, so a field never carries into the next): 48 checkboxes cost 16
    aggregates (``(checkboxes >> k) & mask`` picks bits k, k+w, k+2w at once)
    and the removed values of one picklist column share one ``CASE``. The
    aggregate calls per row, not the comparisons, are what a scan of a million
    rows pays for.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        #: column key -> [(item, value)]: "column = value" questions, one CASE per column
        self.equal: dict[str, list[tuple[dict[str, Any], str]]] = {}
        self.other: list[tuple[dict[str, Any], ColumnElement[bool]]] = []
        self.bits: list[tuple[dict[str, Any], int]] = []  # (item, checkbox bit 0..47)

    def __bool__(self) -> bool:
        return bool(self.equal or self.other or self.bits)

    def ask(self, item: dict[str, Any], cond: ColumnElement[bool]) -> None:
        self.other.append((item, cond))

    def ask_equal(self, item: dict[str, Any], column: Any, value: str) -> None:
        self.equal.setdefault(column.key, []).append((item, value))

    def ask_bit(self, item: dict[str, Any], bit: int) -> None:
        self.bits.append((item, bit))

    def run(self, ctx: Context, tenant_id: int) -> list[tuple[dict[str, Any], int]]:
        """(asked item, count) for every question with a count above zero."""
        session = ctx.session
        scoped, rows = _tenant_rows(ctx, self.model, tenant_id)
        if rows is not None:
            # SQLite sums overflow with an error: size the fields from the row count
            if not rows:
                return []
            width = rows.bit_length()
        else:
            # PostgreSQL sums bigints into numerics (no overflow): count in the same scan
            # and only scan again in the rare case a field was too narrow
            width = PG_FIELD_BITS
        while True:
            sums = self._sums(width)
            answers = session.execute(
                select(func.count(), *(func.coalesce(func.sum(expr), 0) for expr, _ in sums)).where(
                    scoped
                )
            ).one()
            rows = int(answers[0])
            if rows < 1 << width:
                break
            width = rows.bit_length()
        field = (1 << width) - 1
        out = []
        for (_, fields), value in zip(sums, answers[1:], strict=True):
            for item, j in fields:
                count = int(value) >> (width * j) & field
                if count:
                    out.append((item, count))
        return out

    def _sums(self, width: int) -> list[tuple[Any, list[tuple[dict[str, Any], int]]]]:
        """One aggregate expression per entry, with its fields: [(item, field number)]."""
        model = self.model
        per_sum = max(1, 63 // width)
        sums: list[tuple[Any, list[tuple[dict[str, Any], int]]]] = []
        bits = dict.fromkeys(sorted({bit for _, bit in self.bits}))
        by_bit: dict[int, list[dict[str, Any]]] = {}
        for item, bit in self.bits:
            by_bit.setdefault(bit, []).append(item)
        for low in list(bits):
            if low not in bits:
                continue
            group = [low + width * j for j in range(per_sum) if low + width * j in bits]
            mask = sum(1 << (b - low) for b in group)
            for b in group:
                del bits[b]
            expr = model.checkboxes.op(">>")(literal_column(str(low))).op("&")(
                literal_column(str(mask))
            )
            sums.append((expr, [(item, (b - low) // width) for b in group for item in by_bit[b]]))
        for key, asked in self.equal.items():
            column = getattr(model, key)
            values = list(dict.fromkeys(value for _, value in asked))
            for start in range(0, len(values), per_sum):
                chunk = values[start : start + per_sum]
                expr = case(
                    {v: literal_column(str(1 << (width * j))) for j, v in enumerate(chunk)},
                    value=column,
                    else_=literal_column("0"),
                )
                sums.append((expr, [(item, chunk.index(v)) for item, v in asked if v in chunk]))
        for start in range(0, len(self.other), per_sum):
            batch = self.other[start : start + per_sum]
            expr = sum(
                (
                    case((cond, literal_column(str(1 << (width * j)))), else_=literal_column("0"))
                    for j, (_, cond) in enumerate(batch)
                ),
                start=literal_column("0"),
            )
            sums.append((expr, [(item, j) for j, (item, _) in enumerate(batch)]))
        return sums


#: tally counts -> the answer, or None: the tallies cannot answer it exactly (scan instead)
_Answer = Callable[[Mapping[str, Mapping[str, int]]], int] | None


class _Plan:
    """The questions of one analysis, each answerable from the tallies and by a scan."""

    def __init__(self) -> None:
        #: (asked item, scan group, scan registration, tally names, tally answer)
        self.questions: list[
            tuple[dict[str, Any], Any, Callable[[_Counts], None], tuple[str, ...], _Answer]
        ] = []
        self.order: list[dict[str, Any]] = []  # items are reported in the order asked

    def item(self, **fields: Any) -> dict[str, Any]:
        self.order.append(fields)
        return fields

    def ask(
        self,
        asked: dict[str, Any],
        group: Any,
        register: Callable[[_Counts], None],
        names: tuple[str, ...],
        answer: _Answer,
    ) -> None:
        self.questions.append((asked, group, register, names, answer))

    def equal(self, asked: dict[str, Any], column: Any, value: str) -> None:
        """Records whose ``column`` is ``value``."""
        name = tally.name_of(column.class_, column.key)
        exact = bool(tally.CODE.fullmatch(value))
        self.ask(
            asked,
            column.class_,
            lambda q: q.ask_equal(asked, column, value),
            (name,),
            (lambda t: t[name].get(value, 0)) if exact else None,
        )

    def filled(self, asked: dict[str, Any], column: Any, allowed: set[str] | None) -> None:
        """Records whose ``column`` holds a value (not in ``allowed``, when given)."""
        name = tally.name_of(column.class_, column.key)
        cond: ColumnElement[bool] = column != ""
        if allowed:
            cond = cond & column.not_in(sorted(allowed))
        exact = allowed is None or all(tally.CODE.fullmatch(v) for v in allowed)
        keep = allowed or set()
        self.ask(
            asked,
            column.class_,
            lambda q: q.ask(asked, cond),
            (name,),
            (lambda t: sum(n for v, n in t[name].items() if v not in keep)) if exact else None,
        )

    def checked(self, asked: dict[str, Any], index: int) -> None:
        """Contacts with checkbox ``index`` checked."""
        key = str(index)
        exact = isinstance(index, int) and 1 <= index <= tally.CHECKBOX_BITS
        self.ask(
            asked,
            CrmContact,
            lambda q: q.ask_bit(asked, index - 1),
            (tally.CHECKBOXES,),
            (lambda t: t[tally.CHECKBOXES].get(key, 0)) if exact else None,
        )

    def assigned(self, asked: dict[str, Any], model: Any, code: str) -> None:
        """Records of ``model`` (contacts, companies) assigned customer classification ``code``."""
        name = tally.name_of(model, "classifications")
        cond = model.classifications.contains(f",{code},", autoescape=True)
        self.ask(
            asked,
            model,
            lambda q: q.ask(asked, cond),
            (name,),
            (lambda t: t[name].get(code, 0)) if tally.CODE.fullmatch(code) else None,
        )

    def custom(self, asked: dict[str, Any], database: str, key: str) -> None:
        """Custom records of ``database`` whose field ``key`` holds a value."""
        name = tally.custom_name(database)
        value = CrmCustomRecord.data[key].as_string()
        cond = (CrmCustomRecord.database == database) & value.is_not(None) & (value != "")
        exact = bool(tally.CODE.fullmatch(database) and tally.CODE.fullmatch(key))
        self.ask(
            asked,
            ("custom", database),
            lambda q: q.ask(asked, cond),
            (name,),
            (lambda t: t[name].get(key, 0)) if exact else None,
        )


def impact(  # noqa: C901
    ctx: Context,
    tenant_id: int,
    base_data: Mapping[str, Any],
    result_data: Mapping[str, Any],
    *,
    scan: bool = False,
) -> dict[str, Any]:
    """Impact of going from ``base_data`` to ``result_data`` on the tenant's records.

    Answered from the maintained counts (:mod:`provisioner.services.crm.tally`);
    ``scan``: count every answer from the records instead (the reference; a
    question the counts cannot answer exactly -- a value that is not a code --
    is always scanned).
    """
    ctx.enter_tenant(tenant_id)
    c = CrmContact
    plan = _Plan()
    item = plan.item
    # memo fields
    old_memo, new_memo = _memo_uses(base_data), _memo_uses(result_data)
    for index, (old_type, old_pl) in old_memo.items():
        column = getattr(c, f"memo_{index}")
        new_type, new_pl = new_memo.get(index, ("text", None))
        field = f"contact.memo_{index}"
        if (old_type, old_pl) != (new_type, new_pl):
            plan.filled(
                item(
                    kind="memo_retyped",
                    field=field,
                    **{"from": old_type},
                    to=new_type,
                    picklist=new_pl,
                    blocking=False,
                ),
                column,
                None,
            )
            allowed = _values(result_data, new_pl) if new_type == "picklist" else None
            if allowed is not None:
                plan.filled(
                    item(kind="memo_retyped_invalid", field=field, picklist=new_pl, blocking=True),
                    column,
                    allowed,
                )
        elif old_type == "picklist" and old_pl:
            before, after = _values(base_data, old_pl) or set(), _values(result_data, old_pl)
            for value in sorted(before - (after or set())):
                plan.equal(
                    item(
                        kind="picklist_value_removed",
                        field=field,
                        picklist=old_pl,
                        value=value,
                        blocking=True,
                    ),
                    column,
                    value,
                )
    # checkboxes
    old_boxes = {b["index"]: b for b in base_data.get("checkboxes", [])}
    for box in result_data.get("checkboxes", []):
        old = old_boxes.get(box["index"])
        if old is None:
            continue
        if old.get("enabled", True) and not box.get("enabled", True):
            asked = item(
                kind="checkbox_disabled", index=box["index"], label=old["label"], blocking=False
            )
        elif old["label"] != box["label"]:
            asked = item(
                kind="checkbox_relabelled",
                index=box["index"],
                **{"from": old["label"]},
                to=box["label"],
                blocking=False,
            )
        else:
            continue
        plan.checked(asked, box["index"])
    # fixed picklist fields
    for field, (picklist, column) in PICKLIST_COLUMNS.items():
        old_values, new_values = _values(base_data, picklist), _values(result_data, picklist)
        if old_values is None or new_values is None:
            continue
        for value in sorted(old_values - new_values):
            plan.equal(
                item(
                    kind="picklist_value_removed",
                    field=field,
                    picklist=picklist,
                    value=value,
                    blocking=True,
                ),
                column,
                value,
            )
    # classifications
    trees: tuple[tuple[str, tuple[Any, ...]], ...] = (
        ("customer", (CrmContact, CrmCompany)),
        ("product", (CrmProduct, CrmPurchase)),
    )
    for tree, targets in trees:
        before = {n["code"] for n in base_data.get("classifications", {}).get(tree, [])}
        after = {n["code"] for n in result_data.get("classifications", {}).get(tree, [])}
        for code in sorted(before - after):
            for model in targets:
                asked = item(
                    kind="classification_removed",
                    tree=tree,
                    code=code,
                    records=model.__tablename__,
                    blocking=True,
                )
                if tree == "product":
                    plan.equal(asked, model.product_class, code)
                else:
                    plan.assigned(asked, model, code)
    # custom-database fields
    after_dbs = {
        d["code"]: {f["key"] for f in d.get("fields", [])}
        for d in result_data.get("custom_databases", [])
    }
    for db in base_data.get("custom_databases", []):
        gone = sorted({f["key"] for f in db.get("fields", [])} - after_dbs.get(db["code"], set()))
        for key in gone:
            plan.custom(
                item(
                    kind="custom_field_removed",
                    database=db["code"],
                    field=key,
                    database_removed=db["code"] not in after_dbs,
                    blocking=True,
                ),
                db["code"],
                key,
            )
    found: dict[int, int] = {}
    answered = [
        (asked, names, answer)
        for asked, _, _, names, answer in plan.questions
        if answer is not None and not scan
    ]
    if answered:
        counts = tally.counts(
            ctx.session.connection(),
            tenant_id,
            {name for _, names, _ in answered for name in names},
        )
        for asked, _, answer in answered:
            found[id(asked)] = answer(counts)
    groups: dict[Any, _Counts] = {}
    for _asked, group, register, _, maybe in plan.questions:
        if maybe is None or scan:
            model = CrmCustomRecord if isinstance(group, tuple) else group
            register(groups.setdefault(group, _Counts(model)))
    for questions in groups.values():
        for asked, count in questions.run(ctx, tenant_id):
            found[id(asked)] = count
    items = [{**asked, "count": found[id(asked)]} for asked in plan.order if found.get(id(asked))]
    report: dict[str, Any] = {"items": items, "blocking": sum(1 for i in items if i["blocking"])}
    matches = workflow_matches(ctx, tenant_id, base_data, result_data, fast=not scan)
    if matches:
        report["workflows"] = matches
    return report


def _definition(data: Mapping[str, Any]) -> Any:
    """A workflow as data, all but its active / paused state."""
    return Workflow.model_validate(data).model_dump(mode="json", exclude={"active"})


def workflow_matches(
    ctx: Context,
    tenant_id: int,
    base_data: Mapping[str, Any],
    result_data: Mapping[str, Any],
    *,
    fast: bool = True,
) -> list[dict[str, Any]]:
    """The workflows of ``result_data`` that are new or changed from ``base_data``, each
    with the number of the tenant's records its conditions match now (``count``, of
    ``examined`` records of its object). ``fast=False``: counted record by record."""
    before = {wf["code"]: _definition(wf) for wf in base_data.get("workflows", [])}
    incoming = [
        wf["code"]
        for wf in result_data.get("workflows", [])
        if before.get(wf["code"]) != _definition(wf)
    ]
    if not incoming:
        return []
    doc = ConfigDocument.model_validate(result_data)
    by_code = {wf.code: wf for wf in doc.workflows}
    out = []
    for code in incoming:
        wf = by_code[code]
        examined, matched = workflows.count_matches(ctx, tenant_id, doc, wf, fast=fast)
        out.append(
            {
                "workflow": code,
                "label": wf.label,
                "object": wf.object,
                "trigger": workflows.describe_trigger(wf),
                "change": "changed" if code in before else "new",
                "state": "active" if wf.active else "paused",
                "count": matched,
                "examined": examined,
            }
        )
    return out


def describe_workflow(item: Mapping[str, Any]) -> str:
    """One line of ``report["workflows"]``."""
    return (
        f"workflow {item['workflow']} ({item['change']}, {item['state']}; "
        f"{item['trigger']}): its conditions match {item['count']:,} of "
        f"{item['examined']:,} {item['object']} records now"
    )


def parse_remaps(specs: Iterable[str]) -> dict[str, str]:
    """``["rank.gold=silver"]`` -> ``{"rank.gold": "silver"}`` (PICKLIST.VALUE=NEWVALUE)."""
    out: dict[str, str] = {}
    for spec in specs:
        key, sep, new = spec.partition("=")
        picklist, dot, value = key.partition(".")
        if not sep or not dot or not picklist or not value or not new:
            raise ValidationFailed(
                f"cannot read remap {spec!r}",
                hint="write PICKLIST.VALUE=NEWVALUE, e.g. rank.gold=silver",
            )
        out[f"{picklist}.{value}"] = new
    return out


def unresolved(
    report: Mapping[str, Any], *, remaps: Mapping[str, str] | None = None, force: bool = False
) -> list[str]:
    """Blocking impact items a remap does not cover (empty with ``force``)."""
    if force:
        return []
    remaps = remaps or {}
    out = []
    for item in report["items"]:
        if not item["blocking"]:
            continue
        if (
            item["kind"] == "picklist_value_removed"
            and f"{item['picklist']}.{item['value']}" in remaps
        ):
            continue
        out.append(describe(item))
    return out


def _records(n: int) -> str:
    return "1 record holds" if n == 1 else f"{n} records hold"


def describe(item: Mapping[str, Any]) -> str:
    kind, n = item["kind"], item["count"]
    if kind == "picklist_value_removed":
        return (
            f"{item['field']}: value {item['value']!r} of picklist {item['picklist']!r} is "
            f"removed but {_records(n)} it (remap {item['picklist']}.{item['value']}"
            "=NEWVALUE)"
        )
    if kind == "memo_retyped_invalid":
        return (
            f"{item['field']} becomes picklist {item['picklist']!r}: {_records(n)} "
            "values it does not offer"
        )
    if kind == "memo_retyped":
        return f"{item['field']} changes type {item['from']} -> {item['to']} ({n} with data)"
    if kind == "checkbox_disabled":
        return f"checkbox {item['index']} ({item['label']}) is disabled while {_checked(n)}"
    if kind == "checkbox_relabelled":
        return (
            f"checkbox {item['index']} is relabelled {item['from']!r} -> {item['to']!r} "
            f"while {_checked(n)}"
        )
    if kind == "classification_removed":
        return (
            f"{item['tree']} classification {item['code']!r} is removed but assigned to "
            f"{n} {item['records']}"
        )
    return (
        f"custom database {item['database']!r}: field {item['field']!r} is removed but "
        f"{_records(n)} data"
    )


def _checked(n: int) -> str:
    return "1 record has it set" if n == 1 else f"{n} records have it set"


#: ids per statement of :func:`_log_updates`
_LOG_CHUNK = 50000


def _log_updates(ctx: Context, entry: Mapping[str, Any], ids: list[int]) -> None:
    """A change-log row per record id (``entry``: the other columns, the same for every
    row), written by one ``INSERT ... SELECT`` over the ids per chunk: the shared values
    are bound once, not once per row."""
    log = CrmChange.__table__
    assert isinstance(log, Table)
    names = list(entry)
    postgresql = ctx.session.get_bind().dialect.name == "postgresql"
    for start in range(0, len(ids), _LOG_CHUNK):
        chunk = ids[start : start + _LOG_CHUNK]
        if postgresql:  # unnest(:ids) AS anon(value)
            each = (
                func.unnest(bindparam("ids", chunk, type_=ARRAY(BigInteger)))
                .table_valued("value")
                .render_derived()
            )
        else:  # json_each(:ids): its column "value"
            each = func.json_each(bindparam("ids", json.dumps(chunk), type_=String)).table_valued(
                "value"
            )
        ctx.session.execute(
            insert(log).from_select(
                [*names, "record_id"],
                select(*(literal(entry[k], log.c[k].type) for k in names), each.c.value),
            )
        )


def _tenant_rows(
    ctx: Context, model: Any, tenant_id: int
) -> tuple[ColumnElement[bool], int | None]:
    """The condition selecting the tenant's rows of ``model`` for a scan, and on SQLite
    their number (None elsewhere). SQLite has no statistics: for a tenant holding a good
    share of the table it would still walk the tenant_id index row by row, slower than
    one pass over the table (``tenant_id + 0``)."""
    scoped: ColumnElement[bool] = model.tenant_id == tenant_id
    session = ctx.session
    if session.get_bind().dialect.name != "sqlite":
        return scoped, None
    rows = session.scalar(select(func.count()).select_from(model).where(scoped)) or 0
    if rows and rows * 4 > (session.scalar(select(func.count()).select_from(model)) or 0):
        scoped = model.tenant_id + 0 == tenant_id
    return scoped, rows


def apply_remap(
    ctx: Context,
    tenant_id: int,
    result_data: Mapping[str, Any],
    remaps: Mapping[str, str],
    *,
    actor: str = "configuration",
    purpose: str | None = None,
) -> dict[str, int]:
    """Rewrite removed picklist values to their replacements; returns rows changed per remap.

    Every rewritten record gets a change-log row (``actor``, ``purpose``: who
    approved the change and why), like any other change of a record.
    """
    ctx.enter_tenant(tenant_id)
    problems = []
    for key, new in remaps.items():
        picklist = key.split(".", 1)[0]
        allowed = _values(result_data, picklist)
        if allowed is None:
            problems.append(f"{key}: no picklist {picklist!r} in the new configuration")
        elif new not in allowed:
            problems.append(
                f"{key}: {new!r} is not an active value of {picklist!r} "
                f"({', '.join(sorted(allowed))})"
            )
    if problems:
        raise ValidationFailed("the remap is not valid", problems=problems)
    columns: list[tuple[str, Any]] = [(pl, col) for pl, col in PICKLIST_COLUMNS.values()]
    columns += [
        (pl, getattr(CrmContact, f"memo_{index}"))
        for index, (kind, pl) in _memo_uses(result_data).items()
        if kind == "picklist" and pl
    ]
    type_of = {rt.model: rt.name for rt in records.TYPES.values()}
    tenant = ctx.session.get(Tenant, tenant_id)
    rule_actor = Actor(
        login=actor,
        user_id=0,
        tenant_id=tenant_id,
        tenant_slug=tenant.slug if tenant is not None else "",
        role="admin",
    )
    now = ctx.clock.now()
    changed: dict[str, int] = {}
    for key, new in remaps.items():
        picklist, value = key.split(".", 1)
        total = 0
        for pl, column in columns:
            if pl != picklist:
                continue
            model = column.class_
            stamp = {column.key: new, "updated_at": now, "updated_by": actor}
            if model is CrmContact and column.key in records.SEARCH_PARTS:
                # the value and the search text in one write per row, indexed per change
                touched = records.rewrite_contacts(
                    ctx,
                    tenant_id,
                    [_tenant_rows(ctx, model, tenant_id)[0] & (column == value)],
                    stamp,
                )
            else:
                touched = list(
                    ctx.session.scalars(
                        update(model)
                        .where(model.tenant_id == tenant_id, column == value)
                        .values(stamp)
                        .returning(model.id)
                        .execution_options(synchronize_session=False)
                    )
                )
            total += len(touched)
            if not touched:
                continue
            crashpoint("remap.after_rewrite")
            tally.shift(
                ctx.session.connection(),
                tenant_id,
                model,
                column.key,
                value,
                new,
                len(touched),
                extra_records=len(touched),
            )  # + the change-log rows
            crashpoint("remap.after_tally")
            entry = {
                "tenant_id": tenant_id,
                "at": now,
                "actor": actor,
                "record_type": type_of[model],
                "action": "update",
                "changes": {column.key: [value, new]},
                "purpose": purpose or "",
            }
            _log_updates(ctx, entry, touched)
            # the records' rules run as after any update of that field (none: nothing read)
            records.rules_after_bulk_update(ctx, rule_actor, type_of[model], touched, [column.key])
        changed[key] = total
    return changed
