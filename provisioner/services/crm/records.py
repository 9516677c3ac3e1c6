"""Create, show, update and delete CRM records, shaped and checked by the configuration.

One generic set of operations over every record type (:data:`TYPES`), each call
checking the actor's permission, scoping to the actor's tenant (another tenant's
id is simply "not found"), validating against the tenant's current configuration
(memo picklists, checkboxes, classifications, custom-database fields, external
systems), applying the input rules (NFKC, company suffix, phone format) and
writing the change log (who, when, what, optional purpose).

    saved = create(ctx, actor, "contact", {"name": "田中 太郎", "phone": "03-1234-5678"})
    saved.record["id"], saved.duplicates      # possible duplicates (same name) listed
    update(ctx, actor, "contact", saved.record["id"], {"title": "部長"}, purpose="昇進")
    show(ctx, actor, "contact", saved.record["id"])
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    Table,
    Text,
    and_,
    bindparam,
    event,
    func,
    select,
)
from sqlalchemy import update as sql_update
from sqlalchemy.dialects.postgresql import ARRAY

from provisioner.clock import as_utc, format_instant, local_today
from provisioner.config.document import ConfigDocument
from provisioner.config.rules import MAX_DEPTH, ActionError, Effect, Firing, RuleSet
from provisioner.crashpoints import crashpoint
from provisioner.db import bulk
from provisioner.db.crm_models import (
    CrmAccess,
    CrmActivity,
    CrmCardExchange,
    CrmCareer,
    CrmChange,
    CrmCompany,
    CrmContact,
    CrmCustomRecord,
    CrmDepartment,
    CrmExternalLink,
    CrmFamily,
    CrmJob,
    CrmProduct,
    CrmPurchase,
    CrmSecretNote,
)
from provisioner.db.models import AuditEvent, Base
from provisioner.errors import NotFound, ProvisionerError, ValidationFailed
from provisioner.services.actors import Actor
from provisioner.services.crm import automation, company_search, scope, tally
from provisioner.services.crm import search_index as _search_index
from provisioner.services.crm.coerce import CHECKBOX_BITS, DATE, EMAIL, Fields
from provisioner.services.crm.text import (
    name_key,
    phone_digits,
    refuse_nul,
    search_keys,
)
from provisioner.services.provisioning import quotas
from provisioner.services.transaction import Context

MEMOS = tuple(f"memo_{i}" for i in range(1, 11))


@dataclass(frozen=True)
class RecordType:
    name: str
    model: type[Base]
    #: field -> kind: "str" | "text" | "int" | "bool" | "date"
    fields: Mapping[str, str]
    required: tuple[str, ...] = ()
    #: parent reference field -> record type it must point at (in the same tenant)
    parents: Mapping[str, str] = field(default_factory=dict)


_CONTACT_FIELDS = {
    "company_id": "ref",
    "department_id": "ref",
    "name": "str",
    "kana": "str",
    "title": "str",
    "email": "str",
    "phone": "str",
    "mobile": "str",
    "fax": "str",
    "postal_code": "str",
    "address": "str",
    "birthday": "date",
    "sex": "str",
    "note": "text",
    **{m: "text" for m in MEMOS},
    "checkboxes": "checkboxes",
    "classifications": "codes",
    "log_personal_info": "bool",
}

TYPES: dict[str, RecordType] = {
    t.name: t
    for t in (
        RecordType(
            "company",
            CrmCompany,
            {
                "name": "str",
                "kana": "str",
                "representative": "str",
                "industry": "str",
                "capital": "int",
                "employees": "int",
                "established": "date",
                "postal_code": "str",
                "address": "str",
                "phone": "str",
                "fax": "str",
                "email": "str",
                "url": "str",
                "note": "text",
                "classifications": "codes",
            },
            ("name",),
        ),
        RecordType(
            "department",
            CrmDepartment,
            {
                "company_id": "ref",
                "name": "str",
                "postal_code": "str",
                "address": "str",
                "phone": "str",
                "fax": "str",
                "email": "str",
                "note": "text",
            },
            ("company_id", "name"),
            {"company_id": "company"},
        ),
        RecordType(
            "contact",
            CrmContact,
            _CONTACT_FIELDS,
            ("name",),
            {"company_id": "company", "department_id": "department"},
        ),
        RecordType(
            "family",
            CrmFamily,
            {
                "contact_id": "ref",
                "relation": "str",
                "name": "str",
                "kana": "str",
                "sex": "str",
                "birthday": "date",
                "living_together": "bool",
                "occupation": "str",
                "hobby": "str",
            },
            ("contact_id", "name"),
            {"contact_id": "contact"},
        ),
        RecordType(
            "job",
            CrmJob,
            {  # previous / concurrent jobs entered by hand
                "contact_id": "ref",
                "kind": "str",
                "company_name": "str",
                "department_name": "str",
                "title": "str",
                "date_from": "date",
                "date_to": "date",
                "note": "text",
            },
            ("contact_id", "company_name"),
            {"contact_id": "contact"},
        ),
        RecordType(
            "card_exchange",
            CrmCardExchange,
            {"contact_id": "ref", "employee": "str", "date": "date", "note": "text"},
            ("contact_id", "employee", "date"),
            {"contact_id": "contact"},
        ),
        RecordType(
            "secret_note",
            CrmSecretNote,
            {"contact_id": "ref", "body": "text"},
            ("contact_id", "body"),
            {"contact_id": "contact"},
        ),
        RecordType(
            "activity",
            CrmActivity,
            {
                "contact_id": "ref",
                "date": "date",
                "kind": "str",
                "content": "text",
                "detail": "text",
                "response": "text",
                "store": "str",
                "staff": "str",
                "memo": "text",
                **{f"content_{i}": "text" for i in range(1, 11)},
            },  # labelled by the configuration
            ("contact_id", "date"),
            {"contact_id": "contact"},
        ),
        RecordType(
            "purchase",
            CrmPurchase,
            {
                "contact_id": "ref",
                "date": "date",
                "product_class": "str",
                "product_code": "str",
                "product_name": "str",
                "quantity": "int",
                "unit_price": "int",
                "amount": "int",
                "payment_method": "str",
                "shipped": "bool",
                "paid": "bool",
                "media": "str",
                "memo": "text",
            },
            ("contact_id", "date"),
            {"contact_id": "contact"},
        ),
        RecordType(
            "product",
            CrmProduct,
            {"code": "str", "name": "str", "product_class": "str", "unit_price": "int"},
            ("code", "name"),
        ),
        RecordType(
            "custom_record",
            CrmCustomRecord,
            {"database": "str", "owner_id": "ref", "data": "json"},
            ("database", "owner_id", "data"),
        ),
        RecordType(
            "external_link",
            CrmExternalLink,
            {"contact_id": "ref", "system": "str", "external_id": "str"},
            ("contact_id", "system", "external_id"),
            {"contact_id": "contact"},
        ),
    )
}


@dataclass(frozen=True)
class Saved:
    record: dict[str, Any]
    #: possible duplicates (same normalised name): [{"id": ..., "name": ...}]
    duplicates: list[dict[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------- helpers


def record_type(name: str) -> RecordType:
    try:
        return TYPES[name]
    except KeyError:
        raise ValidationFailed(
            f"unknown record type {name!r}", hint="types: " + ", ".join(TYPES)
        ) from None


def checked(mask: int) -> list[int]:
    """Checkbox indexes (1-based) set in ``mask``."""
    return list(_checked(mask))


@lru_cache(maxsize=4096)
def _checked(mask: int) -> tuple[int, ...]:
    out = []
    while mask:
        low = mask & -mask
        index = low.bit_length()
        if index > CHECKBOX_BITS:
            break
        out.append(index)
        mask ^= low
    return tuple(out)


def codes(stored: str) -> list[str]:
    return [c for c in stored.split(",") if c]


def to_dict(rt: RecordType, row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": row.id}
    for name, kind in rt.fields.items():
        value = getattr(row, name)
        if kind == "checkboxes":
            value = checked(value or 0)
        elif kind == "codes":
            value = codes(value or "")
        out[name] = value
    if rt.name == "secret_note":
        out["author_id"] = row.author_id
    out["updated_at"] = format_instant(row.updated_at) if getattr(row, "updated_at", None) else None
    out["updated_by"] = getattr(row, "updated_by", None)
    return out


def fetch(ctx: Context, actor: Actor, type_name: str, record_id: int) -> Any:
    """A record of the actor's tenant, or NotFound (another tenant's id looks absent)."""
    rt = record_type(type_name)
    model: Any = rt.model
    row = ctx.session.scalar(
        select(model).where(model.id == record_id, model.tenant_id == actor.tenant_id)
    )
    if row is None or (rt.name == "secret_note" and row.author_id != actor.user_id):
        raise NotFound(f"no {type_name} {record_id} in {actor.tenant_slug!r}")
    return row


def log_access(ctx: Context, actor: Actor, kind: str, subject: str = "", **details: Any) -> None:
    """One access-log row: login, personal_info_view, export, print, bulk_update, ...

    In a read-only transaction the row is committed right after it (``add_log_row``).
    """
    ctx.add_log_row(
        CrmAccess(
            tenant_id=actor.tenant_id,
            at=ctx.clock.now(),
            actor=actor.login,
            kind=kind,
            subject=subject,
            details=details,
        )
    )


def _change(
    ctx: Context,
    actor: Actor,
    rt: RecordType,
    record_id: int,
    action: str,
    changes: dict[str, Any],
    purpose: str | None,
) -> None:
    ctx.session.add(
        CrmChange(
            tenant_id=actor.tenant_id,
            at=ctx.clock.now(),
            actor=actor.login,
            record_type=rt.name,
            record_id=record_id,
            action=action,
            changes=changes,
            purpose=purpose or "",
        )
    )


def _custom_data(doc: ConfigDocument, database: str, data: Any, problems: list[str]) -> str | None:
    """Validate a custom-database record; returns what it attaches to."""
    db = next((d for d in doc.custom_databases if d.code == database), None)
    if db is None:
        problems.append(
            f"database: no custom database {database!r} "
            f"({', '.join(d.code for d in doc.custom_databases) or 'none configured'})"
        )
        return None
    if not isinstance(data, dict):
        problems.append("data: expected an object of field values")
        return db.attached_to
    defined = {f.key: f for f in db.fields}
    for key in data:
        if key not in defined:
            problems.append(
                f"data.{key}: not a field of {database!r} ({', '.join(defined) or 'no fields'})"
            )
    for key, spec in defined.items():
        value = data.get(key)
        if value is None or value == "":
            if spec.required:
                problems.append(f"data.{key}: required ({spec.label})")
            continue
        ok = {
            "text": isinstance(value, str) and len(value) <= 200,
            "long_text": isinstance(value, str) and len(value) <= 20000,
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "date": isinstance(value, str) and bool(DATE.match(value)),
            "boolean": isinstance(value, bool),
            "choice": value in {o.code for o in spec.options},
            "email": isinstance(value, str) and bool(EMAIL.match(value)),
            "url": isinstance(value, str) and value.startswith(("https://", "http://")),
        }[spec.type]
        if not ok:
            problems.append(f"data.{key}: {value!r} is not a valid {spec.type} ({spec.label})")
    return db.attached_to


def _parent(ctx: Context, actor: Actor, type_name: str, record_id: Any, key: str) -> Any:
    try:
        return fetch(ctx, actor, type_name, record_id)
    except NotFound:
        raise NotFound(f"{key}: no {type_name} {record_id} in {actor.tenant_slug!r}") from None


SEARCH_PARTS = (
    "name",
    "kana",
    "phone",
    "phone_digits",
    "mobile",
    "mobile_digits",
    "address",
    "email",
    *MEMOS,
)


def search_text(values: Mapping[str, Any], company_name: str) -> str:
    """The normalised text partial-match search runs over (one per contact): the
    :func:`~provisioner.services.crm.text.search_key` of each non-empty part, joined by
    U+001F (:func:`~provisioner.services.crm.text.search_keys`)."""
    return search_keys(
        [values["name"], values["kana"], company_name, *map(values.__getitem__, SEARCH_PARTS[2:])]
    )


def contact_search_text(row: CrmContact, company_name: str) -> str:
    return search_text({k: getattr(row, k) for k in SEARCH_PARTS}, company_name)


def _company_name(ctx: Context, actor: Actor, company_id: int | None) -> str:
    if company_id is None:
        return ""
    name = ctx.session.scalar(
        select(CrmCompany.name).where(
            CrmCompany.id == company_id, CrmCompany.tenant_id == actor.tenant_id
        )
    )
    return name or ""


def _duplicates(
    ctx: Context, actor: Actor, model: Any, key: str, exclude: int | None
) -> list[dict[str, Any]]:
    query = select(model.id, model.name).where(
        model.tenant_id == actor.tenant_id, model.name_norm == key
    )
    if exclude is not None:
        query = query.where(model.id != exclude)
    return [
        {"id": i, "name": n} for i, n in ctx.session.execute(query.order_by(model.id).limit(20))
    ]


# ---------------------------------------------------------------- shaping


def shape(
    ctx: Context,
    actor: Actor,
    doc: ConfigDocument,
    rt: RecordType,
    data: Mapping[str, Any],
    row: Any | None,
) -> dict[str, Any]:
    """Validated, normalised column values for a create (row None) or an update."""
    problems: list[str] = []
    for bp in automation.blueprints_of(doc, rt.name):
        if bp.code in data:
            moves = (
                ", ".join(f"{t.code} ({t.from_state} -> {t.to_state})" for t in bp.transitions)
                or "none configured"
            )
            problems.append(
                f"{bp.code}: moves only by a transition of blueprint "
                f"{bp.code!r} (transitions: {moves}); use 'provisioner record "
                f"transition {rt.name} ID --to STATE'"
            )
    data = {
        k: v
        for k, v in data.items()
        if not any(bp.code == k for bp in automation.blueprints_of(doc, rt.name))
    }
    fields = Fields(doc, rt)  # each coercer is built when a field is first given
    values = fields.shape(data, row, problems)
    fields.finish(values, row, problems)
    if rt.name == "custom_record":
        if row is not None and "database" in values and values["database"] != row.database:
            problems.append("database: a record cannot move to another custom database")
        database = values.get("database", row.database if row is not None else "")
        merged = values.get("data", row.data if row is not None else None)
        attached = _custom_data(doc, database, merged, problems)
        if attached and "owner_id" in values and not problems:
            _parent(ctx, actor, attached, values["owner_id"], "owner_id")
    if problems:
        raise ValidationFailed(
            f"the {rt.name} is not valid",
            problems=problems,
            hint="fix the listed fields and try again",
        )
    for key, parent in rt.parents.items():
        if values.get(key) is not None:
            _parent(ctx, actor, parent, values[key], key)
    if rt.name == "contact":
        dept_id = values.get("department_id", row.department_id if row else None)
        comp_id = values.get("company_id", row.company_id if row else None)
        if dept_id is not None:
            dept = _parent(ctx, actor, "department", dept_id, "department_id")
            if comp_id is None:
                values["company_id"] = dept.company_id
            elif dept.company_id != comp_id:
                raise ValidationFailed(
                    "the contact is not valid",
                    problems=[f"department_id: department {dept_id} belongs to another company"],
                )
    return values


def _derive(ctx: Context, actor: Actor, rt: RecordType, row: Any) -> None:
    """Columns computed from others: name keys, phone digits, search text."""
    if rt.name in ("company", "contact"):
        row.name_norm = name_key(row.name)
    if hasattr(row, "phone_digits"):
        row.phone_digits = phone_digits(row.phone or "")
    if rt.name == "contact":
        row.mobile_digits = phone_digits(row.mobile or "")
        row.search_text = contact_search_text(row, _company_name(ctx, actor, row.company_id))


# ---------------------------------------------------------------- derived data


def install_maintenance(sessions: Any) -> None:
    """Keep the data every record write derives -- the search index and the maintained
    counts -- on the sessions of ``sessions`` (the application's ``sessionmaker``; the
    composition root calls this once). Each write path here and in the bulk modules also
    keeps them itself where it writes with Core statements (``db.bulk.insert_rows``,
    ``tally.add_rows``); these hooks cover every ORM flush."""
    # Once per sessionmaker, remembered by a weak reference: ``event.contains`` cannot
    # tell, since SQLAlchemy keys its registry by ``id(target)`` and a new sessionmaker
    # at a dead one's address would be taken for it (and left without the hooks).
    if sessions in _MAINTAINED:
        return
    # the indexes' hooks first: tally locks after them
    for hooks in (_search_index.FLUSH_HOOK, company_search.FLUSH_HOOK, tally.FLUSH_HOOK):
        for name, listener in hooks:
            event.listen(sessions, name, listener)
    _MAINTAINED.add(sessions)


#: the sessionmakers :func:`install_maintenance` has equipped
_MAINTAINED: weakref.WeakSet[Any] = weakref.WeakSet()


# ---------------------------------------------------------------- rules on the write path


def changed_fields(
    before: Mapping[str, Any], after: Mapping[str, Any], changes: Mapping[str, Any]
) -> list[str]:
    """The fields an update changed, as triggers name them (each checkbox, the
    classification) from :func:`to_dict` before and after."""
    out = list(changes)
    if "checkboxes" in changes:
        out += [
            f"checkbox_{i}"
            for i in set(before.get("checkboxes") or []) ^ set(after.get("checkboxes") or [])
        ]
    if "classifications" in changes:
        out.append("classification")
    return out


def show_value(rt: RecordType, column: str, value: Any) -> Any:
    """A stored column value as records show it (checkbox indexes, classification codes)."""
    kind = rt.fields.get(column)
    if kind == "checkboxes":
        return checked(int(value or 0))
    if kind == "codes":
        return codes(value or "")
    return value


def rule_columns(rt: RecordType, row: Any) -> dict[str, Any]:
    """A record as the rules read it: its stored columns."""
    return {"id": row.id, **{k: getattr(row, k) for k in rt.fields}}


def _related(ctx: Context, actor: Actor, rt: RecordType, row: Any) -> Any:
    """Rows of the record's contact and company, read when a condition names them."""
    cache: dict[str, Mapping[str, Any] | None] = {}

    def related(obj: str) -> Mapping[str, Any] | None:
        if obj not in cache:
            target_id = (
                getattr(row, "contact_id", None)
                if obj == "contact"
                else getattr(row, "company_id", None)
                if obj == "company"
                else None
            )
            other: Mapping[str, Any] | None = None
            if target_id is not None:
                other_rt = TYPES[obj]
                model: Any = other_rt.model
                found = ctx.session.scalar(
                    select(model).where(model.id == target_id, model.tenant_id == actor.tenant_id)
                )
                other = rule_columns(other_rt, found) if found is not None else None
            cache[obj] = other
        return cache[obj]

    return related


#: what :func:`coercer` shapes a value against for a record not written yet
NEW_ROW = SimpleNamespace(checkboxes=0, company_id=None, department_id=None, database="", data=None)


def coercer(ctx: Context, actor: Actor, doc: ConfigDocument, rt: RecordType, row: Any) -> Any:
    """A rule's ``set_field`` value shaped as an update of ``row`` would shape it (input
    rules, picklists); ActionError when it is not a valid value."""

    def coerce(_obj: str, column: str, value: Any) -> Any:
        try:
            return shape(ctx, actor, doc, rt, {column: value}, row)[column]
        except ValidationFailed as exc:
            raise ActionError("; ".join(exc.problems or [exc.message])) from None
        except KeyError:
            raise ActionError(f"{column}: not a field of {rt.name}") from None

    return coerce


def after_write(
    ctx: Context,
    actor: Actor,
    doc: ConfigDocument,
    rt: RecordType,
    row: Any,
    event: str,
    changed: Iterable[str],
) -> bool:
    """Run the tenant's active rules on a record just written (in the same transaction);
    whether they changed the record itself.

    The rules' changes to the record are written here (one update, one change-log row
    per rule, purpose ``workflow:CODE``); their effects on other records go through
    :func:`create` and :func:`update`, where rules run again, up to
    :data:`~provisioner.config.rules.MAX_DEPTH` records deep.
    """
    rules = automation.ruleset(doc)
    names = list(changed)
    if not rules.watches(rt.name, event, names):
        return False
    columns = rule_columns(rt, row)
    if rules.blueprint_fields:
        columns.update(
            {
                f"state:{k}": v
                for k, v in automation.states(ctx, doc, actor.tenant_id, rt.name, row.id).items()
            }
        )
    firings = rules.run(
        rt.name,
        event,
        columns,
        names,
        related=_related(ctx, actor, rt, row),
        coerce=coercer(ctx, actor, doc, rt, row),
    )
    if not firings:
        return False
    return apply_firings(ctx, actor, doc, rt, row, event, firings)


def rule_changes(rt: RecordType, firings: list[Firing]) -> tuple[dict[str, list[Any]], str]:
    """What the rules of one write changed on its record, as one change-log entry: each
    column's value before the first rule and after the last, and the purpose naming the
    rules that changed something (``workflow:CODE[,CODE...]``)."""
    merged: dict[str, list[Any]] = {}
    codes_: list[str] = []
    for firing in firings:
        for column, (old, new) in firing.changes.items():
            if column in merged:
                merged[column][1] = new
            else:
                merged[column] = [old, new]
        if firing.changes and firing.rule not in codes_:
            codes_.append(firing.rule)
    shown = {
        column: [show_value(rt, column, old), show_value(rt, column, new)]
        for column, (old, new) in merged.items()
        if old != new
    }
    return shown, "workflow:" + ",".join(codes_)


def apply_firings(
    ctx: Context,
    actor: Actor,
    doc: ConfigDocument,
    rt: RecordType,
    row: Any,
    event: str,
    firings: list[Firing],
) -> bool:
    """Write what rules did to a record (one update and one change-log row for all their
    changes), log each firing, carry out the effects."""
    version = automation.config_version(ctx, actor.tenant_id)
    shown, purpose = rule_changes(rt, firings)
    if shown:
        values = {column: new for f in firings for column, (_old, new) in f.changes.items()}
        if rt.name == "contact":
            _keep_career(ctx, actor, row, values)
        for column, value in values.items():
            setattr(row, column, value)
        row.updated_at = ctx.clock.now()
        _change(ctx, actor, rt, row.id, "update", shown, purpose)
    crashpoint("workflow.after_record")
    log_rows = []
    for firing in firings:
        _run_effects(ctx, actor, rt, row, firing)
        log_rows.append(
            automation.execution_row(ctx, actor.tenant_id, version, rt.name, row.id, event, firing)
        )
    crashpoint("workflow.after_effects")
    if shown:
        _derive(ctx, actor, rt, row)
        ctx.session.flush()
    automation.log(ctx, log_rows)
    return bool(shown)


def apply_new_row_firings(
    ctx: Context,
    actor: Actor,
    doc: ConfigDocument,
    rt: RecordType,
    items: list[tuple[dict[str, Any], list[Firing]]],
) -> None:
    """What rules did to rows a bulk insert wrote with the rules' values already in them
    (a CSV import): a change-log row per changed record, the execution log, the effects
    on other records (through :func:`create` / :func:`update`).

    Written in bulk: rows that share their firings (:meth:`RuleSet.batch_runner`: the
    same rules, the same changes) get their change-log rows from one ``INSERT ...
    SELECT`` (over the array of their ids, :func:`automation.insert_for_ids`) and one
    execution-log row per rule naming all of them (:func:`automation.batch_rows`); the
    others in one bulk insert (:func:`provisioner.db.bulk.insert_rows`)."""
    version = automation.config_version(ctx, actor.tenant_id)
    now = ctx.clock.now()
    change_columns = [
        "tenant_id",
        "at",
        "actor",
        "record_type",
        "record_id",
        "action",
        "changes",
        "purpose",
    ]
    changes: list[tuple[Any, ...]] = []
    log_rows: list[dict[str, Any]] = []
    shared: dict[int, tuple[list[Firing], list[int]]] = {}
    for columns, firings in items:
        if not any(f.effects for f in firings):
            shared.setdefault(id(firings), (firings, []))[1].append(columns["id"])
            continue
        row = SimpleNamespace(**columns)
        shown, purpose = rule_changes(rt, firings)
        if shown:
            changes.append(
                (actor.tenant_id, now, actor.login, rt.name, row.id, "update", shown, purpose)
            )
        for firing in firings:
            _run_effects(ctx, actor, rt, row, firing)
            log_rows.append(
                automation.execution_row(
                    ctx, actor.tenant_id, version, rt.name, row.id, "created", firing
                )
            )
    conn = ctx.session.connection()
    table = CrmChange.__table__
    assert isinstance(table, Table)
    changed = len(changes)
    for firings, ids in shared.values():
        shown, purpose = rule_changes(rt, firings)
        templates = [
            automation.execution_row(ctx, actor.tenant_id, version, rt.name, 0, "created", f)
            for f in firings
        ]
        for template in templates:
            template["at"] = now
        for template in templates:  # one row per rule for all of them
            log_rows += automation.batch_rows(template, ids)
        if len(ids) < _SHARED_MIN:  # a few rows: with the others
            if shown:
                changes += [
                    (actor.tenant_id, now, actor.login, rt.name, i, "update", shown, purpose)
                    for i in ids
                ]
            continue
        if shown:
            automation.insert_for_ids(
                conn,
                table,
                dict(
                    zip(
                        change_columns,
                        (actor.tenant_id, now, actor.login, rt.name, 0, "update", shown, purpose),
                        strict=True,
                    )
                ),
                "record_id",
                ids,
            )
            changed += len(ids)
    if changes:
        bulk.insert_rows(conn, table, change_columns, changes)
    if changed:  # counted here, as the import counts its own change-log rows
        tally.add_records(conn, actor.tenant_id, changed)
    automation.log_bulk(conn, log_rows)


#: rows sharing their firings from which their change-log rows are written by INSERT ... SELECT
_SHARED_MIN = 16


def _rule_actor(actor: Actor) -> Actor:
    """Rules act with the tenant's full record permissions, in the name of whoever's
    write fired them (the change log says both: the login and ``workflow:CODE``)."""
    return actor if actor.role == "admin" else replace(actor, role="admin")


def _run_effects(ctx: Context, actor: Actor, rt: RecordType, row: Any, firing: Firing) -> None:
    if not firing.effects:
        return
    if ctx.rule_depth >= MAX_DEPTH:
        firing.errors.append(f"cut: rules on other records nested more than {MAX_DEPTH} deep")
        return
    purpose = f"workflow:{firing.rule}"
    acting = _rule_actor(actor)
    ctx.rule_depth += 1
    try:
        for effect in firing.effects:
            try:
                _run_effect(ctx, acting, rt, row, effect, purpose, firing.rule)
            except ProvisionerError as exc:
                firing.errors.append(f"{automation.describe_effect(effect)}: {exc.message}")
    finally:
        ctx.rule_depth -= 1


def _run_effect(
    ctx: Context, actor: Actor, rt: RecordType, row: Any, effect: Effect, purpose: str, rule: str
) -> None:
    if effect.kind == "notify":
        automation.notify(
            ctx, actor.tenant_id, effect.role, effect.text, workflow=rule, record=(rt.name, row.id)
        )
        return
    contact_id = row.id if rt.name == "contact" else getattr(row, "contact_id", None)
    if effect.kind == "create_activity":
        if contact_id is None:
            raise ValidationFailed(f"a {rt.name} has no contact to add an activity to")
        day = local_today(ctx.clock) + timedelta(days=effect.due_in_days)
        create(
            ctx,
            actor,
            "activity",
            {
                "contact_id": contact_id,
                "date": day.isoformat(),
                "kind": effect.kind_code,
                "content": effect.text,
            },
            purpose=purpose,
        )
        return
    target_id = contact_id if effect.target == "contact" else getattr(row, "company_id", None)
    if target_id is None:
        raise ValidationFailed(f"the {rt.name} has no {effect.target}")
    values = dict(effect.values)
    if "add_classification" in values:
        code = values.pop("add_classification")
        target = fetch(ctx, actor, effect.target, target_id)
        present = codes(target.classifications or "")
        if code in present:
            return
        values["classifications"] = [*present, code]
    update(ctx, actor, effect.target, target_id, values, purpose=purpose)


def rules_after_bulk_update(
    ctx: Context, actor: Actor, type_name: str, ids: Iterable[int], changed: Iterable[str]
) -> int:
    """Run the rules of records a bulk statement updated (a remap on approval): each
    record as if updated alone. Nothing is read when no rule watches such a change.
    Returns the number of records the rules changed in turn."""
    rt = record_type(type_name)
    doc = scope.config(ctx, actor.tenant_id)
    names = list(changed)
    if not automation.ruleset(doc).watches(rt.name, "updated", names):
        return 0
    model: Any = rt.model
    fired = 0
    for record_id in ids:
        row = ctx.session.scalar(
            select(model).where(model.id == record_id, model.tenant_id == actor.tenant_id)
        )
        if row is not None and after_write(ctx, actor, doc, rt, row, "updated", names):
            fired += 1
    return fired


def rules_for_new_rows(doc: ConfigDocument, type_name: str) -> RuleSet | None:
    """The rules a bulk insert must run on each new row, or None when there are none."""
    rules = automation.ruleset(doc)
    return rules if rules.watches(type_name, "created") else None


# ---------------------------------------------------------------- operations


def create(
    ctx: Context,
    actor: Actor,
    type_name: str,
    data: Mapping[str, Any],
    *,
    purpose: str | None = None,
) -> Saved:
    rt = record_type(type_name)
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "records.write", f"create a {type_name}")
    refuse_nul(data, f"the {type_name}")
    doc = scope.config(ctx, actor.tenant_id)
    values = shape(ctx, actor, doc, rt, data, None)
    # the record and its change-log row; refused before anything is written
    quotas.require_room_for_records(ctx, actor.tenant_id, 2, what=f"a new {type_name}")
    now = ctx.clock.now()
    extra: dict[str, Any] = {}
    if rt.name == "secret_note":
        extra["author_id"] = actor.user_id
    if rt.name == "purchase" and values.get("amount") is None:
        values["amount"] = (values.get("quantity") or 1) * (values.get("unit_price") or 0)
    if rt.name == "product" and ctx.session.scalar(
        select(CrmProduct.id).where(
            CrmProduct.tenant_id == actor.tenant_id, CrmProduct.code == values["code"]
        )
    ):
        raise ValidationFailed(
            f"a product with code {values['code']!r} already exists",
            hint="choose another code or update that product",
        )
    if rt.name == "external_link" and ctx.session.scalar(
        select(CrmExternalLink.id).where(
            CrmExternalLink.tenant_id == actor.tenant_id,
            CrmExternalLink.system == values["system"],
            CrmExternalLink.external_id == values["external_id"],
        )
    ):
        raise ValidationFailed(
            f"{values['system']} id {values['external_id']!r} is already linked to a customer"
        )
    row: Any = rt.model(
        tenant_id=actor.tenant_id,
        created_at=now,
        created_by=actor.login,
        updated_at=now,
        updated_by=actor.login,
        **extra,
        **values,
    )
    for key, kind in rt.fields.items():
        if getattr(row, key) is None and kind in ("str", "text", "date", "codes"):
            setattr(row, key, "")
        if getattr(row, key) is None and kind in ("bool",):
            setattr(row, key, False)
        if getattr(row, key) is None and kind == "checkboxes":
            setattr(row, key, 0)
    _derive(ctx, actor, rt, row)
    ctx.session.add(row)
    ctx.session.flush()
    shown = to_dict(rt, row)
    _change(
        ctx,
        actor,
        rt,
        row.id,
        "create",
        {k: v for k, v in shown.items() if k in values and k != "body"},
        purpose,
    )
    if after_write(ctx, actor, doc, rt, row, "created", rt.fields):
        shown = to_dict(rt, row)
    duplicates: list[dict[str, Any]] = []
    check = (
        doc.input_rules.duplicate_check_company
        if rt.name == "company"
        else doc.input_rules.duplicate_check_contact
        if rt.name == "contact"
        else False
    )
    if check:
        duplicates = _duplicates(ctx, actor, rt.model, row.name_norm, row.id)
    return Saved(shown, duplicates)


def show(ctx: Context, actor: Actor, type_name: str, record_id: int) -> dict[str, Any]:
    """One record; a contact view is access-logged when personal-info logging is on."""
    rt = record_type(type_name)
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "records.read", f"read {type_name} records")
    row = fetch(ctx, actor, type_name, record_id)
    out = to_dict(rt, row)
    doc = scope.config(ctx, actor.tenant_id)
    if automation.blueprints_of(doc, rt.name):
        out["states"] = automation.states(ctx, doc, actor.tenant_id, rt.name, row.id)
    if rt.name == "contact":
        note_personal_view(ctx, actor, row)
        out["company_name"] = _company_name(ctx, actor, row.company_id)
        out["careers"] = [
            {
                "until": format_instant(c.until),
                "company": c.company_name,
                "department": c.department_name,
                "title": c.title,
            }
            for c in ctx.session.scalars(
                select(CrmCareer)
                .where(CrmCareer.tenant_id == actor.tenant_id, CrmCareer.contact_id == row.id)
                .order_by(CrmCareer.id.desc())
            )
        ]
        out["jobs"] = [
            to_dict(TYPES["job"], j)
            for j in ctx.session.scalars(
                select(CrmJob)
                .where(CrmJob.tenant_id == actor.tenant_id, CrmJob.contact_id == row.id)
                .order_by(CrmJob.date_from.desc(), CrmJob.id.desc())
            )
        ]
    return out


def note_personal_view(
    ctx: Context, actor: Actor, row: CrmContact, doc: ConfigDocument | None = None
) -> None:
    """Log a view of the contact when personal-info logging is on for it or the tenant
    (``doc``: the tenant's configuration, if already read)."""
    if (
        row.log_personal_info
        or (doc or scope.config(ctx, actor.tenant_id)).settings.personal_info_logging
    ):
        log_access(ctx, actor, "personal_info_view", f"contact:{row.id}")


def update(
    ctx: Context,
    actor: Actor,
    type_name: str,
    record_id: int,
    data: Mapping[str, Any],
    *,
    purpose: str | None = None,
) -> Saved:
    rt = record_type(type_name)
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "records.write", f"update {type_name} records")
    refuse_nul(data, f"the {type_name}")
    row = fetch(ctx, actor, type_name, record_id)
    doc = scope.config(ctx, actor.tenant_id)
    values = shape(ctx, actor, doc, rt, data, row)
    before = to_dict(rt, row)
    if rt.name == "contact":
        _keep_career(ctx, actor, row, values)
    old_company_name = row.name if rt.name == "company" else None
    for key, value in values.items():
        setattr(row, key, value)
    row.updated_at = ctx.clock.now()
    row.updated_by = actor.login
    _derive(ctx, actor, rt, row)
    ctx.session.flush()
    after = to_dict(rt, row)
    changes = {k: [before[k], after[k]] for k in values if before[k] != after[k]}
    if rt.name == "secret_note" and "body" in changes:
        changes["body"] = ["(secret)", "(secret)"]  # the change log never holds the note
    if changes:
        _change(ctx, actor, rt, row.id, "update", changes, purpose)
    if rt.name == "company" and old_company_name != row.name:
        refresh_company_contacts(ctx, actor, row.id)
    if changes and after_write(
        ctx, actor, doc, rt, row, "updated", changed_fields(before, after, changes)
    ):
        after = to_dict(rt, row)
    duplicates: list[dict[str, Any]] = []
    if (
        "name" in changes
        and rt.name in ("company", "contact")
        and (
            doc.input_rules.duplicate_check_company
            if rt.name == "company"
            else doc.input_rules.duplicate_check_contact
        )
    ):
        duplicates = _duplicates(ctx, actor, rt.model, row.name_norm, row.id)
    return Saved(after, duplicates)


def refresh_company_contacts(ctx: Context, actor: Actor, company_id: int) -> None:
    """Recompute the search text of a company's contacts (after its name changed)."""
    rewrite_contacts(
        ctx,
        actor.tenant_id,
        [and_(CrmContact.tenant_id == actor.tenant_id, CrmContact.company_id == company_id)],
        {},
    )


#: ids per IN list of refresh_search_text
_REFRESH_CHUNK = 5000
#: rows per statement of rewrite_contacts' writes (PostgreSQL: each joins the table once)
_WRITE_CHUNK = 50000


def refresh_search_text(ctx: Context, tenant_id: int, ids: list[int]) -> None:
    """Recompute the search text of these contacts (after a bulk rewrite of their values):
    :func:`rewrite_contacts` of the ids, with no other values."""
    rewrite_contacts(
        ctx,
        tenant_id,
        [
            CrmContact.id.in_(ids[at : at + _REFRESH_CHUNK])
            for at in range(0, len(ids), _REFRESH_CHUNK)
        ],
        {},
    )


def _bound(conn: Connection, column: Column[Any], value: Any) -> Any:
    """``value`` as the driver takes it for ``column`` (its type's bind conversion)."""
    process = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return value if process is None else process(value)


def rewrite_contacts(
    ctx: Context, tenant_id: int, where: Iterable[ColumnElement[bool]], values: Mapping[str, Any]
) -> list[int]:
    """Set column ``values`` on the tenant's contacts matching any of ``where`` (column
    names -> values, none: only the search text) and recompute their search text; their
    ids, ascending. The tenant is a filter here (``tenant_id + 0``: rows looked up by id
    are read by primary key; SQLite would otherwise walk the tenant's whole tenant_id
    index, having no statistics to know better): a condition that should use the
    tenant's indexes names ``tenant_id`` itself.

    Core statements, no ORM objects: the search fields and company names are read
    (PostgreSQL: the rows locked, ``FOR UPDATE``), each new text is computed once, and
    the rows are written in one statement per :data:`_WRITE_CHUNK` (PostgreSQL: an
    UPDATE from arrays; SQLite: one executemany) -- the values and the text together,
    each row written once. Without ``values`` only the rows whose text changed are
    written. The index is updated from the old and new texts
    (:func:`search_index.apply`: diffed per changed field, one computation per distinct
    change; it takes the tenant's index lock after the rows' locks, like an UPDATE
    followed by a flush). Contacts the session holds are expired: they are read again,
    with the new values, when next used.
    """
    session = ctx.session
    session.flush()
    conn = session.connection()
    postgresql = conn.dialect.name == "postgresql"
    contact, company = CrmContact.__table__, CrmCompany.__table__
    assert isinstance(contact, Table)
    assert isinstance(company, Table)
    found: dict[int, tuple[str, str]] = {}
    override = {k: v for k, v in values.items() if k in SEARCH_PARTS}
    for condition in where:
        for row in conn.execute(
            select(
                contact.c.id,
                contact.c.search_text,
                company.c.name,
                *(contact.c[k] for k in SEARCH_PARTS),
            )
            .select_from(contact.outerjoin(company, company.c.id == contact.c.company_id))
            .where(contact.c.tenant_id + 0 == tenant_id, condition)
            .with_for_update(of=contact)
        ):  # (PostgreSQL only)
            parts = dict(zip(SEARCH_PARTS, row[3:], strict=True))
            parts.update(override)
            found[row[0]] = (row[1], search_text(parts, row[2] or ""))
    ids = sorted(found)
    written = ids if values else [i for i in ids if found[i][0] != found[i][1]]
    sets = "".join(f"{contact.c[k].name} = ?, " for k in values)
    shared = [_bound(conn, contact.c[k], v) for k, v in values.items()]
    for at in range(0, len(written), _WRITE_CHUNK):
        chunk = written[at : at + _WRITE_CHUNK]
        if postgresql:
            rows = func.unnest(
                bindparam("ids", chunk, type_=ARRAY(BigInteger)),
                bindparam("texts", [found[i][1] for i in chunk], type_=ARRAY(Text)),
            ).table_valued("i", "s")
            rows = rows.render_derived()
            conn.execute(
                sql_update(contact)
                .where(contact.c.id == rows.c.i)
                .values({**values, "search_text": rows.c.s})
            )
        else:  # driver-level executemany, the shared values converted once
            conn.exec_driver_sql(
                f"UPDATE crm_contacts SET {sets}search_text = ? WHERE id = ?",  # noqa: S608
                [(*shared, found[i][1], i) for i in chunk],
            )  # (sets: column names)
    _search_index.apply(conn, tenant_id, [(i, *found[i]) for i in written])
    held = set(ids)
    for key in [
        k
        for k in session.identity_map.keys()  # noqa: SIM118 (a copy: expiring)
        if k[0] is CrmContact and k[1][0] in held
    ]:
        obj = session.identity_map.get(key)
        if obj is not None:
            session.expire(obj)
    return ids


def _keep_career(ctx: Context, actor: Actor, row: CrmContact, values: dict[str, Any]) -> None:
    moved = any(
        k in values and values[k] != getattr(row, k)
        for k in ("company_id", "department_id", "title")
    )
    if not moved or (row.company_id is None and row.department_id is None and not row.title):
        return
    dept = ctx.session.get(CrmDepartment, row.department_id) if row.department_id else None
    ctx.session.add(
        CrmCareer(
            tenant_id=actor.tenant_id,
            contact_id=row.id,
            until=ctx.clock.now(),
            company_name=_company_name(ctx, actor, row.company_id),
            department_name=dept.name if dept is not None else "",
            title=row.title,
            recorded_by=actor.login,
        )
    )


def delete_record(
    ctx: Context, actor: Actor, type_name: str, record_id: int, *, purpose: str | None = None
) -> None:
    rt = record_type(type_name)
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "records.delete", f"delete {type_name} records")
    row = fetch(ctx, actor, type_name, record_id)
    shown = to_dict(rt, row)
    shown.pop("body", None)
    released: list[int] = []  # a deleted company's contacts: their search text loses its name
    if rt.name == "company":
        released = list(
            ctx.session.scalars(
                sql_update(CrmContact)
                .where(CrmContact.tenant_id == actor.tenant_id, CrmContact.company_id == row.id)
                .values(company_id=None, department_id=None)
                .returning(CrmContact.id)
            )
        )
    ctx.session.flush()  # the Core deletes below see (and count) pending rows
    if rt.name in ("company", "department", "contact"):
        tally.delete_counted(
            ctx.session.connection(),
            actor.tenant_id,
            CrmCustomRecord,
            (CrmCustomRecord.owner_id == row.id)
            & CrmCustomRecord.database.in_(
                [
                    d.code
                    for d in scope.config(ctx, actor.tenant_id).custom_databases
                    if d.attached_to == rt.name
                ]
            ),
        )
    if rt.name == "company":  # explicit (counted), not left to the foreign key's cascade
        tally.delete_counted(
            ctx.session.connection(),
            actor.tenant_id,
            CrmDepartment,
            CrmDepartment.company_id == row.id,
        )
    if rt.name == "contact":
        delete_contact_children(ctx, actor.tenant_id, [row.id])
    ctx.session.delete(row)
    _change(ctx, actor, rt, record_id, "delete", shown, purpose)
    ctx.session.flush()
    if released:
        refresh_search_text(ctx, actor.tenant_id, released)


CHILDREN: tuple[Any, ...] = (
    CrmCareer,
    CrmJob,
    CrmFamily,
    CrmCardExchange,
    CrmSecretNote,
    CrmActivity,
    CrmPurchase,
    CrmExternalLink,
)


def delete_contact_children(ctx: Context, tenant_id: int, ids: list[int]) -> None:
    """Rows that belong to contacts (explicit: SQLite may run without cascading deletes)."""
    ctx.session.flush()  # (pending children are deleted too)
    conn = ctx.session.connection()
    for model in CHILDREN:
        tally.delete_counted(conn, tenant_id, model, model.contact_id.in_(ids))


def list_children(
    ctx: Context, actor: Actor, type_name: str, contact_id: int, *, limit: int = 100
) -> list[dict[str, Any]]:
    """A contact's family, card exchanges, secret notes (own only), activities, purchases..."""
    rt = record_type(type_name)
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "records.read", f"read {type_name} records")
    fetch(ctx, actor, "contact", contact_id)
    model: Any = rt.model
    query = select(model).where(model.tenant_id == actor.tenant_id, model.contact_id == contact_id)
    if rt.name == "secret_note":
        query = query.where(model.author_id == actor.user_id)
    order = (model.date.desc(), model.id.desc()) if "date" in rt.fields else (model.id.desc(),)
    return [to_dict(rt, r) for r in ctx.session.scalars(query.order_by(*order).limit(limit))]


def history(ctx: Context, actor: Actor, type_name: str, record_id: int) -> list[dict[str, Any]]:
    """Update history of one record: who, when, create/update/delete, what, purpose."""
    rt = record_type(type_name)
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "records.read", f"read {type_name} records")
    row = fetch(ctx, actor, type_name, record_id)
    if rt.name == "contact":
        note_personal_view(ctx, actor, row)  # the history shows the contact's values
    rows = ctx.session.scalars(
        select(CrmChange)
        .where(
            CrmChange.tenant_id == actor.tenant_id,
            CrmChange.record_type == rt.name,
            CrmChange.record_id == record_id,
        )
        .order_by(CrmChange.id)
    )
    return [
        {
            "at": format_instant(c.at),
            "actor": c.actor,
            "action": c.action,
            "changes": c.changes,
            "purpose": c.purpose,
        }
        for c in rows
    ]


#: audit events that are logins into a tenant (kept by the sign-in service)
LOGIN_EVENTS = {"user:logged_in": "login", "user:switched_tenant": "switch"}


def access_log(ctx: Context, actor: Actor, *, limit: int = 100) -> list[dict[str, Any]]:
    """The access log, newest first (admins: 'settings' permission).

    Personal-info views, exports, prints, bulk operations and imports are kept
    here; logins into the tenant (a sign-in or a switch to it) come from the
    audit trail the sign-in service writes, as kind ``login``.
    """
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "settings", "read the access log")
    rows = ctx.session.scalars(
        select(CrmAccess)
        .where(CrmAccess.tenant_id == actor.tenant_id)
        .order_by(CrmAccess.id.desc())
        .limit(limit)
    )
    out = [
        (
            a.at,
            1,
            a.id,
            {
                "at": format_instant(a.at),
                "actor": a.actor,
                "kind": a.kind,
                "subject": a.subject,
                "details": a.details,
            },
        )
        for a in rows
    ]
    logins = ctx.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.tenant_id == actor.tenant_id, AuditEvent.action.in_(LOGIN_EVENTS))
        .order_by(AuditEvent.id.desc())
        .limit(limit)
    )
    out += [
        (
            e.at,
            0,
            e.id,
            {
                "at": format_instant(e.at),
                "actor": e.actor,
                "kind": "login",
                "subject": e.subject,
                "details": {"via": LOGIN_EVENTS[e.action]},
            },
        )
        for e in logins
    ]
    out.sort(key=lambda entry: (as_utc(entry[0]), entry[1], entry[2]), reverse=True)
    return [entry[3] for entry in out[:limit]]
