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

Counting is one aggregate scan of the contacts (all memo and checkbox questions
in the same ``SELECT SUM(CASE ...)``), plus small queries for the other tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, case, func, select, text, update

from provisioner.db.crm_models import (
    CrmActivity,
    CrmCompany,
    CrmContact,
    CrmCustomRecord,
    CrmFamily,
    CrmProduct,
    CrmPurchase,
)
from provisioner.errors import ValidationFailed
from provisioner.services.context import Context
from provisioner.services.crm import records

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
    return {m["index"]: (m.get("type", "text"), m.get("picklist"))
            for m in data.get("memo_fields", [])}


def _enter(ctx: Context, tenant_id: int) -> None:
    if ctx.session.get_bind().dialect.name == "postgresql":
        ctx.session.execute(text("SELECT set_config('provisioner.tenant_id', :t, true)"),
                            {"t": str(tenant_id)})


def impact(ctx: Context, tenant_id: int, base_data: Mapping[str, Any],
           result_data: Mapping[str, Any]) -> dict[str, Any]:
    """Impact of going from ``base_data`` to ``result_data`` on the tenant's records."""
    _enter(ctx, tenant_id)
    c = CrmContact
    questions: list[tuple[dict[str, Any], ColumnElement[bool]]] = []
    others: list[tuple[dict[str, Any], Any, ColumnElement[bool]]] = []
    # memo fields
    old_memo, new_memo = _memo_uses(base_data), _memo_uses(result_data)
    for index, (old_type, old_pl) in old_memo.items():
        column = getattr(c, f"memo_{index}")
        new_type, new_pl = new_memo.get(index, ("text", None))
        field = f"contact.memo_{index}"
        if (old_type, old_pl) != (new_type, new_pl):
            item = {"kind": "memo_retyped", "field": field, "from": old_type, "to": new_type,
                    "picklist": new_pl, "blocking": False}
            questions.append((item, column != ""))
            allowed = _values(result_data, new_pl) if new_type == "picklist" else None
            if allowed is not None:
                invalid = {"kind": "memo_retyped_invalid", "field": field, "picklist": new_pl,
                           "blocking": True}
                questions.append((invalid, (column != "") & column.not_in(sorted(allowed))
                                  if allowed else column != ""))
        elif old_type == "picklist" and old_pl:
            before, after = _values(base_data, old_pl) or set(), _values(result_data, old_pl)
            for value in sorted(before - (after or set())):
                questions.append(({"kind": "picklist_value_removed", "field": field,
                                   "picklist": old_pl, "value": value, "blocking": True},
                                  column == value))
    # checkboxes
    old_boxes = {b["index"]: b for b in base_data.get("checkboxes", [])}
    for box in result_data.get("checkboxes", []):
        old = old_boxes.get(box["index"])
        if old is None:
            continue
        bit = 1 << (box["index"] - 1)
        is_set = c.checkboxes.op("&")(bit) != 0
        if old.get("enabled", True) and not box.get("enabled", True):
            questions.append(({"kind": "checkbox_disabled", "index": box["index"],
                               "label": old["label"], "blocking": False}, is_set))
        elif old["label"] != box["label"]:
            questions.append(({"kind": "checkbox_relabelled", "index": box["index"],
                               "from": old["label"], "to": box["label"], "blocking": False},
                              is_set))
    # fixed picklist fields
    for field, (picklist, column) in PICKLIST_COLUMNS.items():
        old_values, new_values = _values(base_data, picklist), _values(result_data, picklist)
        if old_values is None or new_values is None:
            continue
        for value in sorted(old_values - new_values):
            item = {"kind": "picklist_value_removed", "field": field, "picklist": picklist,
                    "value": value, "blocking": True}
            if column.class_ is CrmContact:
                questions.append((item, column == value))
            else:
                others.append((item, column.class_, column == value))
    # classifications
    trees: tuple[tuple[str, tuple[Any, ...]], ...] = (
        ("customer", (CrmContact, CrmCompany)), ("product", (CrmProduct, CrmPurchase)))
    for tree, targets in trees:
        before = {n["code"] for n in base_data.get("classifications", {}).get(tree, [])}
        after = {n["code"] for n in result_data.get("classifications", {}).get(tree, [])}
        for code in sorted(before - after):
            for model in targets:
                cond = (model.classifications.contains(f",{code},", autoescape=True)
                        if tree == "customer" else model.product_class == code)
                item = {"kind": "classification_removed", "tree": tree, "code": code,
                        "records": model.__tablename__, "blocking": True}
                if model is CrmContact:
                    questions.append((item, cond))
                else:
                    others.append((item, model, cond))
    items: list[dict[str, Any]] = []
    if questions:
        sums = [func.coalesce(func.sum(case((cond, 1), else_=0)), 0) for _, cond in questions]
        counts = ctx.session.execute(select(*sums).where(c.tenant_id == tenant_id)).one()
        for (item, _), count in zip(questions, counts, strict=True):
            if count:
                items.append({**item, "count": int(count)})
    for item, model, cond in others:
        count = ctx.session.scalar(select(func.count()).select_from(model).where(
            model.tenant_id == tenant_id, cond)) or 0
        if count:
            items.append({**item, "count": int(count)})
    items.extend(_custom_fields(ctx, tenant_id, base_data, result_data))
    return {"items": items, "blocking": sum(1 for i in items if i["blocking"])}


def _custom_fields(ctx: Context, tenant_id: int, base_data: Mapping[str, Any],
                   result_data: Mapping[str, Any]) -> list[dict[str, Any]]:
    after = {d["code"]: {f["key"] for f in d.get("fields", [])}
             for d in result_data.get("custom_databases", [])}
    out: list[dict[str, Any]] = []
    for db in base_data.get("custom_databases", []):
        gone = {f["key"] for f in db.get("fields", [])} - after.get(db["code"], set())
        if not gone:
            continue
        counts = dict.fromkeys(gone, 0)
        rows = ctx.session.scalars(select(CrmCustomRecord.data).where(
            CrmCustomRecord.tenant_id == tenant_id, CrmCustomRecord.database == db["code"])
            .execution_options(yield_per=5000))
        for data in rows:
            for key in gone:
                if data.get(key) not in (None, ""):
                    counts[key] += 1
        out.extend({"kind": "custom_field_removed", "database": db["code"], "field": key,
                    "database_removed": db["code"] not in after, "count": n, "blocking": True}
                   for key, n in sorted(counts.items()) if n)
    return out


def parse_remaps(specs: Iterable[str]) -> dict[str, str]:
    """``["rank.gold=silver"]`` -> ``{"rank.gold": "silver"}`` (PICKLIST.VALUE=NEWVALUE)."""
    out: dict[str, str] = {}
    for spec in specs:
        key, sep, new = spec.partition("=")
        picklist, dot, value = key.partition(".")
        if not sep or not dot or not picklist or not value or not new:
            raise ValidationFailed(f"cannot read remap {spec!r}",
                                   hint="write PICKLIST.VALUE=NEWVALUE, e.g. rank.gold=silver")
        out[f"{picklist}.{value}"] = new
    return out


def unresolved(report: Mapping[str, Any], *, remaps: Mapping[str, str] | None = None,
               force: bool = False) -> list[str]:
    """Blocking impact items a remap does not cover (empty with ``force``)."""
    if force:
        return []
    remaps = remaps or {}
    out = []
    for item in report["items"]:
        if not item["blocking"]:
            continue
        if item["kind"] == "picklist_value_removed" and \
                f"{item['picklist']}.{item['value']}" in remaps:
            continue
        out.append(describe(item))
    return out


def describe(item: Mapping[str, Any]) -> str:
    kind, n = item["kind"], item["count"]
    if kind == "picklist_value_removed":
        return (f"{item['field']}: value {item['value']!r} of picklist {item['picklist']!r} is "
                f"removed but {n} records hold it (remap {item['picklist']}.{item['value']}"
                "=NEWVALUE)")
    if kind == "memo_retyped_invalid":
        return (f"{item['field']} becomes picklist {item['picklist']!r}: {n} records hold "
                "values it does not offer")
    if kind == "memo_retyped":
        return f"{item['field']} changes type {item['from']} -> {item['to']} ({n} with data)"
    if kind == "checkbox_disabled":
        return f"checkbox {item['index']} ({item['label']}) is disabled while {n} have it set"
    if kind == "checkbox_relabelled":
        return (f"checkbox {item['index']} is relabelled {item['from']!r} -> {item['to']!r} "
                f"while {n} have it set")
    if kind == "classification_removed":
        return (f"{item['tree']} classification {item['code']!r} is removed but assigned to "
                f"{n} {item['records']}")
    return (f"custom database {item['database']!r}: field {item['field']!r} is removed but "
            f"{n} records hold data")


def apply_remap(ctx: Context, tenant_id: int, result_data: Mapping[str, Any],
                remaps: Mapping[str, str]) -> dict[str, int]:
    """Rewrite removed picklist values to their replacements; returns rows changed per remap."""
    _enter(ctx, tenant_id)
    problems = []
    for key, new in remaps.items():
        picklist = key.split(".", 1)[0]
        allowed = _values(result_data, picklist)
        if allowed is None:
            problems.append(f"{key}: no picklist {picklist!r} in the new configuration")
        elif new not in allowed:
            problems.append(f"{key}: {new!r} is not an active value of {picklist!r} "
                            f"({', '.join(sorted(allowed))})")
    if problems:
        raise ValidationFailed("the remap is not valid", problems=problems)
    columns: list[tuple[str, Any]] = [(pl, col) for pl, col in PICKLIST_COLUMNS.values()]
    columns += [(pl, getattr(CrmContact, f"memo_{index}"))
                for index, (kind, pl) in _memo_uses(result_data).items()
                if kind == "picklist" and pl]
    changed: dict[str, int] = {}
    for key, new in remaps.items():
        picklist, value = key.split(".", 1)
        total = 0
        for pl, column in columns:
            if pl != picklist:
                continue
            model = column.class_
            touched: list[int] = []
            if model is CrmContact:
                touched = list(ctx.session.scalars(select(CrmContact.id).where(
                    CrmContact.tenant_id == tenant_id, column == value)))
            result = ctx.session.execute(
                update(model).where(model.tenant_id == tenant_id, column == value)
                .values({column.key: new}).execution_options(synchronize_session=False))
            total += int(result.rowcount)  # type: ignore[attr-defined]
            if touched:
                records.refresh_search_text(ctx, tenant_id, touched)
        changed[key] = total
    return changed
