"""Customer search: partial match, AND/OR, checkbox tri-state, dates, history conditions.

    result = search(ctx, actor, Query(q="田中 渋谷", match="all",
                                      checkboxes={3: True, 7: False},
                                      activity_from="2026-01-01", purchase_product="A-100",
                                      sort="-updated_at", limit=50))
    result.total, result.items[0]["name"]

Rules:

* ``q`` is split on white space; each term is a partial match over the contact's
  normalised search text (name, kana, company, phones, address, e-mail, memo
  1..10: NFKC, lower case, no spaces). ``fields`` adds partial matches on one
  field each (``name``, ``kana``, ``company``, ``phone``, ``address``, ``email``,
  ``memo_1``..``memo_10``, ``title``, ``postal_code`` (digits), ``department``
  (the department's name)).
* the other conditions: checkboxes (index -> checked / unchecked; absent means
  "any"), classification, update-date, registration-date, birthday and age
  ranges (age in whole years as of today in Japan), and "has an activity / a
  purchase" matching the given kind, text, product, date range, shipped, paid
  and payment method (in the same query, as EXISTS subqueries).
* ``match`` combines every condition, text or not, with AND (``all``) or OR
  (``any``); a range is one condition, and the conditions on an activity (or a
  purchase) are met by one and the same activity (purchase).
* ``total`` is the exact number of matches; ``items`` one page in ``sort`` order.

The ``q`` terms are answered by the n-gram index of
:mod:`provisioner.services.crm.search_index` (same rows as ``LIKE '%term%'``):
a text-only query sorted by id takes its total and page straight from the
index; otherwise the index's id set replaces the ``LIKE`` conditions (up to
:data:`_MAX_ID_LIST` ids, beyond which ``LIKE`` stays). ``fields`` conditions,
exports and bulk operations use ``LIKE``.

Phone lookup (:func:`lookup`) compares digits only, so ``03-1234-5678``,
``0312345678``, ``+81 3 1234 5678`` and full-width digits find the same card.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    and_,
    any_,
    bindparam,
    column,
    exists,
    false,
    func,
    or_,
    select,
    union,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import aliased

from provisioner.clock import format_instant
from provisioner.db.crm_models import (
    CrmActivity,
    CrmCompany,
    CrmContact,
    CrmDepartment,
    CrmPurchase,
)
from provisioner.errors import NotFound, ValidationFailed
from provisioner.services.actors import Actor
from provisioner.services.crm import display, records, scope, search_index, sorting
from provisioner.services.crm.text import nfkc, phone_digits, search_key
from provisioner.services.transaction import Context

SORTS = sorting.SORTS
TOKYO = ZoneInfo("Asia/Tokyo")  # ages are counted in the Japanese calendar
#: beyond this many ``q`` matches a combined query keeps LIKE rather than an id list
_MAX_ID_LIST = 200_000
TEXT_FIELDS = (
    "name",
    "kana",
    "company",
    "phone",
    "address",
    "email",
    *(f"memo_{i}" for i in range(1, 11)),
    "title",
    "postal_code",
    "department",
)


@dataclass(frozen=True)
class Query:
    q: str = ""
    match: Literal["all", "any"] = "all"
    fields: Mapping[str, str] = field(default_factory=dict)
    checkboxes: Mapping[int, bool] = field(default_factory=dict)
    classification: str | None = None
    updated_from: str | None = None
    updated_to: str | None = None
    birthday_from: str | None = None
    birthday_to: str | None = None
    activity_kind: str | None = None
    activity_text: str | None = None
    activity_from: str | None = None
    activity_to: str | None = None
    purchase_product: str | None = None
    purchase_from: str | None = None
    purchase_to: str | None = None
    #: registration (created) date range, YYYY-MM-DD
    created_from: str | None = None
    created_to: str | None = None
    #: age range in whole years, as of today in Japan (contacts with a birthday)
    age_from: int | None = None
    age_to: int | None = None
    purchase_shipped: bool | None = None
    purchase_paid: bool | None = None
    purchase_payment_method: str | None = None
    sort: str = "id"
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True)
class Result:
    total: int
    items: list[dict[str, Any]]


def _day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(nfkc(value))
    except ValueError:
        raise ValidationFailed(f"{name}: {value!r} is not a date YYYY-MM-DD") from None


def _instant(value: str, name: str, *, end: bool = False) -> datetime:
    day = _day(value, name) + (timedelta(days=1) if end else timedelta())
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _text_condition(key: str, value: str, tenant_id: int) -> ColumnElement[bool]:
    c = CrmContact
    if key == "phone":
        digits = phone_digits(value)
        if not digits:
            return false()
        return or_(
            c.phone_digits.contains(digits, autoescape=True),
            c.mobile_digits.contains(digits, autoescape=True),
        )
    needle = nfkc(value).lower()
    if key == "postal_code":  # digits only: 150-0001, 1500001 and １５０ match alike
        digits = "".join(ch for ch in needle if ch.isdigit())
        return func.replace(c.postal_code, "-", "").contains(digits, autoescape=True)
    if key == "department":
        dept = aliased(CrmDepartment)
        return c.department_id.in_(
            select(dept.id)
            .where(
                dept.tenant_id == tenant_id, func.lower(dept.name).contains(needle, autoescape=True)
            )
            .correlate_except(dept)
        )
    if key == "company":
        co = aliased(CrmCompany)
        return c.company_id.in_(
            select(co.id)
            .where(co.tenant_id == tenant_id, func.lower(co.name).contains(needle, autoescape=True))
            .correlate_except(co)
        )
    column = getattr(c, key)
    return func.lower(column).contains(needle, autoescape=True)


def terms(query: Query) -> list[str]:
    """The search keys of ``q``'s white-space separated terms."""
    return [term for term in (search_key(t) for t in query.q.split()) if term]


def _id_in(ctx: Context, ids: list[int]) -> ColumnElement[bool]:
    """``crm_contacts.id`` is one of ``ids`` (one bound array / JSON value, any size)."""
    if ctx.session.get_bind().dialect.name == "postgresql":
        return CrmContact.id == func.any(bindparam("index_ids", ids, type_=ARRAY(BigInteger)))
    return CrmContact.id.in_(
        select(column("value", BigInteger))
        .select_from(func.json_each(bindparam("index_ids", json.dumps(ids))))
        .scalar_subquery()
    )


def _indexed_q(ctx: Context, actor: Actor, query: Query) -> ColumnElement[bool] | None:
    """``q``'s terms as one id condition from the n-gram index (None: use LIKE)."""
    keys = terms(query)
    if not keys:
        return None
    blocks = search_index.match_set(ctx.session.connection(), actor.tenant_id, keys, query.match)
    if search_index.count(blocks) > _MAX_ID_LIST:
        return None
    ids = list(search_index.ids_of(blocks))
    return _id_in(ctx, ids) if ids else false()


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a year without one
        return day.replace(year=day.year - years, day=28)


def conditions(  # noqa: C901
    ctx: Context,
    actor: Actor,
    query: Query,
    *,
    use_index: bool = False,
) -> list[ColumnElement[bool]]:
    """The WHERE clause of ``query`` over ``crm_contacts`` (tenant included).

    With ``use_index`` the ``q`` terms are answered by the n-gram index (an id
    list) rather than ``LIKE``; the rows are the same. ``match`` combines every
    condition: text, checkboxes, classification, date and age ranges, history
    (a range is one condition; the conditions on one activity or one purchase
    describe the same row).
    """
    c = CrmContact
    conds: list[ColumnElement[bool]] = []
    indexed = _indexed_q(ctx, actor, query) if use_index else None
    if indexed is not None:
        conds.append(indexed)
    else:
        conds.extend(c.search_text.contains(term, autoescape=True) for term in terms(query))
    for key, value in query.fields.items():
        if key not in TEXT_FIELDS:
            raise ValidationFailed(
                f"cannot search field {key!r}", hint="fields: " + ", ".join(TEXT_FIELDS)
            )
        if value.strip():
            conds.append(_text_condition(key, value, actor.tenant_id))
    for index, on in query.checkboxes.items():
        if not 1 <= index <= 48:
            raise ValidationFailed(f"checkbox {index} does not exist (1..48)")
        bit = 1 << (index - 1)
        conds.append(c.checkboxes.op("&")(bit) != 0 if on else c.checkboxes.op("&")(bit) == 0)
    if query.classification:
        conds.append(c.classifications.contains(f",{query.classification},", autoescape=True))

    def span(*parts: ColumnElement[bool] | None) -> None:
        given = [p for p in parts if p is not None]
        if given:
            conds.append(and_(*given))

    span(
        c.updated_at >= _instant(query.updated_from, "updated_from")
        if query.updated_from
        else None,
        c.updated_at < _instant(query.updated_to, "updated_to", end=True)
        if query.updated_to
        else None,
    )
    span(
        c.created_at >= _instant(query.created_from, "created_from")
        if query.created_from
        else None,
        c.created_at < _instant(query.created_to, "created_to", end=True)
        if query.created_to
        else None,
    )
    if query.birthday_from or query.birthday_to:
        span(
            c.birthday != "",
            c.birthday >= _day(query.birthday_from, "birthday_from").isoformat()
            if query.birthday_from
            else None,
            c.birthday <= _day(query.birthday_to, "birthday_to").isoformat()
            if query.birthday_to
            else None,
        )
    if query.age_from is not None or query.age_to is not None:
        birth: list[ColumnElement[bool]] = [c.birthday != ""]
        low, high = query.age_from, query.age_to
        if (
            (low is not None and low < 0)
            or (high is not None and high < 0)
            or (low is not None and high is not None and low > high)
        ):
            raise ValidationFailed("an age range is two whole numbers, from <= to")
        today = ctx.clock.now().astimezone(TOKYO).date()
        if low is not None:  # born on or before today - low years
            birth.append(c.birthday <= _years_before(today, low).isoformat())
        if high is not None:  # born after today - (high + 1) years
            birth.append(c.birthday > _years_before(today, high + 1).isoformat())
        span(*birth)
    a = CrmActivity
    acts: list[ColumnElement[bool]] = []
    if query.activity_kind:
        acts.append(a.kind == query.activity_kind)
    if query.activity_text:
        needle = nfkc(query.activity_text).lower()
        acts.append(
            or_(
                *(
                    func.lower(col).contains(needle, autoescape=True)
                    for col in (
                        a.content,
                        a.detail,
                        a.response,
                        a.memo,
                        *(getattr(a, f"content_{i}") for i in range(1, 11)),
                    )
                )
            )
        )
    if query.activity_from:
        acts.append(a.date >= _day(query.activity_from, "activity_from").isoformat())
    if query.activity_to:
        acts.append(a.date <= _day(query.activity_to, "activity_to").isoformat())
    if acts:
        conds.append(exists().where(a.tenant_id == c.tenant_id, a.contact_id == c.id, *acts))
    p = CrmPurchase
    buys: list[ColumnElement[bool]] = []
    if query.purchase_product:
        needle = nfkc(query.purchase_product).lower()
        buys.append(
            or_(
                func.lower(p.product_code).contains(needle, autoescape=True),
                func.lower(p.product_name).contains(needle, autoescape=True),
            )
        )
    if query.purchase_from:
        buys.append(p.date >= _day(query.purchase_from, "purchase_from").isoformat())
    if query.purchase_to:
        buys.append(p.date <= _day(query.purchase_to, "purchase_to").isoformat())
    if query.purchase_shipped is not None:
        buys.append(p.shipped == query.purchase_shipped)
    if query.purchase_paid is not None:
        buys.append(p.paid == query.purchase_paid)
    if query.purchase_payment_method:
        buys.append(p.payment_method == query.purchase_payment_method)
    if buys:
        conds.append(exists().where(p.tenant_id == c.tenant_id, p.contact_id == c.id, *buys))
    where: list[ColumnElement[bool]] = [c.tenant_id == actor.tenant_id]
    if conds:
        where.append(and_(*conds) if query.match == "all" else or_(*conds))
    return where


def order_by(sort: str) -> list[Any]:
    """The ORDER BY of a customer list's ``sort`` (:func:`sorting.order_by`)."""
    return sorting.order_by(sort, CrmContact)


def summary(row: Any, company: str | None) -> dict[str, Any]:
    """A result row (a contact, or a row of :data:`_PAGE` columns) as the list shows it."""
    return {
        "id": row.id,
        "name": row.name,
        "kana": row.kana,
        "company": company or "",
        "title": row.title,
        "phone": row.phone,
        "mobile": row.mobile,
        "email": row.email,
        "address": row.address,
        "checkboxes": _checked(row.checkboxes),
        "updated_at": format_instant(row.updated_at),
    }


#: checkbox indexes (1-based) set in each value of one byte of the mask
_BYTE_CHECKS = [tuple(i + 1 for i in range(8) if value >> i & 1) for value in range(256)]


def _checked(mask: int) -> list[int]:
    """``records.checked`` a byte at a time."""
    out: list[int] = []
    base = 0
    while mask:
        if mask & 0xFF:
            out.extend(base + i for i in _BYTE_CHECKS[mask & 0xFF])
        mask >>= 8
        base += 8
    return out


_PC, _PCO = CrmContact.__table__.c, CrmCompany.__table__.c
#: one page of a text-only search by id: the list's columns and the company name (Core,
#: compiled once; no ORM objects). The ids: an expanding IN (SQLite), rendered for each
#: page's length; on PostgreSQL one array parameter (``= ANY``), so that the statement's
#: text is always the same one, prepared once per connection
_PAGE_COLUMNS = select(
    _PC.id,
    _PC.tenant_id,
    _PC.name,
    _PC.kana,
    _PC.title,
    _PC.phone,
    _PC.mobile,
    _PC.email,
    _PC.address,
    _PC.checkboxes,
    _PC.updated_at,
    _PCO.name.label("company_name"),
).select_from(CrmContact.__table__.outerjoin(CrmCompany.__table__, _PCO.id == _PC.company_id))
_PAGE = _PAGE_COLUMNS.where(_PC.id.in_(bindparam("ids", expanding=True)))
_PAGE_PG = _PAGE_COLUMNS.where(_PC.id == any_(bindparam("ids", type_=ARRAY(BigInteger))))


def search(ctx: Context, actor: Actor, query: Query) -> Result:
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "records.read", "search customers")
    if not 0 <= query.limit <= 1000 or query.offset < 0:
        raise ValidationFailed("limit must be 0..1000 and offset >= 0")
    order = order_by(query.sort)
    keys = terms(query)
    if (
        keys
        and query.sort in ("id", "-id")
        and query
        == Query(
            q=query.q, match=query.match, sort=query.sort, limit=query.limit, offset=query.offset
        )
    ):
        # text only: total and page straight from the index, then one fetch by id
        total, ids = search_index.page(
            ctx.session.connection(),
            actor.tenant_id,
            keys,
            query.match,
            query.offset,
            query.limit,
            descending=query.sort == "-id",
        )
        if not ids:
            return Result(total, [])
        by_ids = _PAGE_PG if ctx.postgres else _PAGE
        page = ctx.session.connection().execute(by_ids, {"ids": ids})  # by primary key
        by_id = {
            row.id: summary(row, row.company_name)
            for row in page
            if row.tenant_id == actor.tenant_id
        }
        return Result(total, [by_id[i] for i in ids if i in by_id])
    where = conditions(ctx, actor, query, use_index=bool(keys))
    total = ctx.session.scalar(select(func.count()).select_from(CrmContact).where(*where)) or 0
    rows = ctx.session.execute(
        select(CrmContact, CrmCompany.name)
        .outerjoin(CrmCompany, CrmCompany.id == CrmContact.company_id)
        .where(*where)
        .order_by(*order)
        .limit(query.limit)
        .offset(query.offset)
    )
    return Result(total, [summary(row, company) for row, company in rows])


def matching_ids(ctx: Context, actor: Actor, query: Query) -> list[int]:
    """Every matching contact id (bulk operations and exports)."""
    where = conditions(ctx, actor, query)
    return list(
        ctx.session.scalars(select(CrmContact.id).where(*where).order_by(*order_by(query.sort)))
    )


def _card_columns(type_name: str) -> list[Any]:
    """The columns ``records.to_dict`` reads for a record type (not the search text)."""
    table = records.TYPES[type_name].model.__table__
    return [
        table.c[name]
        for name in ("id", *records.TYPES[type_name].fields, "updated_at", "updated_by")
    ]


def _history_statement(type_name: str, contact: Any = None) -> Any:
    table = records.TYPES[type_name].model.__table__
    return (
        select(*_card_columns(type_name))
        .where(
            table.c.tenant_id == bindparam("tenant"),
            table.c.contact_id == (bindparam("contact") if contact is None else contact),
        )
        .order_by(table.c.date.desc(), table.c.id.desc())
        .limit(bindparam("history", type_=Integer))
    )


_LC, _LCO = CrmContact.__table__.c, CrmCompany.__table__.c
#: lookup's statements, built once (Core: no ORM objects, compiled once per dialect):
#: the contacts with the number (one index probe each for phone and mobile), their
#: company's name, and a contact's latest activities and purchases
_HAS_NUMBER = union(
    select(_LC.id).where(
        _LC.tenant_id == bindparam("tenant"), _LC.phone_digits == bindparam("digits")
    ),
    select(_LC.id).where(
        _LC.tenant_id == bindparam("tenant"), _LC.mobile_digits == bindparam("digits")
    ),
)
_LOOKUP_CONTACTS = (
    select(*_card_columns("contact"), _LCO.name.label("company_name"))
    .select_from(
        CrmContact.__table__.outerjoin(
            CrmCompany.__table__, and_(_LCO.id == _LC.company_id, _LCO.tenant_id == _LC.tenant_id)
        )
    )
    .where(_LC.id.in_(_HAS_NUMBER))
    .order_by(_LC.id)
    .limit(50)
)
_LOOKUP_ACTIVITIES = _history_statement("activity")
_LOOKUP_PURCHASES = _history_statement("purchase")
#: PostgreSQL: the card's contact is the first with the number, so its history can be
#: asked for in the same round trip as the contact itself
_FIRST_WITH_NUMBER = select(func.min(_HAS_NUMBER.subquery().c.id)).scalar_subquery()


#: PostgreSQL: the lookup's statements, sent in one pipeline (:func:`_pipelined_lookup`;
#: the metered screen pop sends them with its call's reads). Parameters: :func:`lookup_values`.
PIPELINED = (
    scope.CURRENT,
    _LOOKUP_CONTACTS,
    _history_statement("activity", _FIRST_WITH_NUMBER),
    _history_statement("purchase", _FIRST_WITH_NUMBER),
)


@dataclass(frozen=True)
class Found:
    """What a lookup read: the contacts with the number (first is the card's), the first
    one's activities and purchases; ``current`` (PostgreSQL, :data:`PIPELINED`): the
    configuration row read with them, whose permission check is still to be made
    (:func:`card`). Read statement by statement, the check came first (:func:`read`)."""

    contacts: list[Any]
    activities: list[Any]
    purchases: list[Any]
    pipelined: bool = False
    current: Any = None

    @classmethod
    def of_pipeline(cls, results: list[list[Any]]) -> Found:
        """The rows of :data:`PIPELINED`'s statements, in order."""
        config_rows, contacts, activities, purchases = results
        return cls(contacts, activities, purchases, True, config_rows[0] if config_rows else None)


def caller_digits(number: str) -> str:
    """The digits a lookup compares (ValidationFailed: not a phone number)."""
    digits = phone_digits(number)
    if len(digits) < 3:
        raise ValidationFailed(f"{number!r} is not a phone number")
    return digits


def lookup_values(actor: Actor, digits: str, history: int) -> dict[str, Any]:
    """The parameters of :data:`PIPELINED`."""
    return {"tenant": actor.tenant_id, "digits": digits, "history": history}


def _pipelined_lookup(ctx: Context, actor: Actor, digits: str, history: int) -> Found:
    """PostgreSQL: scope, configuration, contacts and the first one's history in one round
    trip (:meth:`Context.run_pipelined`: BEGIN and the five statements are sent before
    any reply is read).

    A read-only transaction (:meth:`Provisioner.transaction` with ``read_only``) is also
    ended in that round trip -- the lookup is its last read, after the session check:
    its COMMIT goes in the pipeline, and the transaction's own commit then finds
    nothing to do (it wrote nothing: a logged view is written after it, in a
    transaction of its own). (A later statement of the same context would run in a
    transaction of its own, without the tenant scope, so it would see no tenant rows:
    services scope themselves first.)
    """
    return Found.of_pipeline(
        ctx.run_pipelined(
            PIPELINED,
            lookup_values(actor, digits, history),
            tenant_id=actor.tenant_id,
            commit=ctx.read_only,
        )
    )


def read(ctx: Context, actor: Actor, digits: str, history: int) -> Found:
    """Statement by statement (SQLite): the permission check, then the contacts with the
    number and the first one's activities and purchases."""
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "records.read", "look up callers")
    conn = ctx.session.connection()
    found = list(conn.execute(_LOOKUP_CONTACTS, {"tenant": actor.tenant_id, "digits": digits}))
    if not found:
        return Found([], [], [])
    params = {"tenant": actor.tenant_id, "contact": found[0].id, "history": history}
    return Found(
        found,
        list(conn.execute(_LOOKUP_ACTIVITIES, params)),
        list(conn.execute(_LOOKUP_PURCHASES, params)),
    )


def lookup(
    ctx: Context, actor: Actor, number: str, *, history: int = 5, codes: bool = False
) -> dict[str, Any]:
    """The CTI screen-pop card of the caller: profile, latest purchases and activities.

    Picklist and classification values are shown by their labels (``codes``: as
    stored), see :mod:`~provisioner.services.crm.display`.

    Reads only, so it may run in a read-only transaction; a personal-information
    view it logs goes through ``Context.add_log_row``. On PostgreSQL the whole read
    is one round trip (:func:`_pipelined_lookup`) plus the commit. The metered screen
    pop (``metering.screen_pop``) reads the same rows with its call's and builds the
    same card (:func:`card`).
    """
    digits = caller_digits(number)
    if ctx.session.autoflush:
        ctx.session.flush()  # as session.execute would: contacts saved in this transaction
    if ctx.postgres:
        found = _pipelined_lookup(ctx, actor, digits, history)
    else:
        found = read(ctx, actor, digits, history)
    return card(ctx, actor, number, found, codes=codes)


def card(
    ctx: Context, actor: Actor, number: str, found: Found, *, codes: bool = False
) -> dict[str, Any]:
    """The card of what a lookup read (:class:`Found`): the permission check of a
    pipelined read first, then NotFound for a number no customer has, the logged
    personal-information view, and the values as shown."""
    doc = None
    if found.pipelined:
        doc = scope.document(ctx, found.current)
        scope.require(ctx, actor, "records.read", "look up callers", doc=doc)
    if not found.contacts:
        raise NotFound(
            f"no customer with phone number {number}", hint="register the caller as a new contact"
        )
    row = found.contacts[0]
    records.note_personal_view(ctx, actor, row, doc=doc)
    shown_card = records.to_dict(records.TYPES["contact"], row)
    shown_card["company_name"] = row.company_name or ""
    acts = [records.to_dict(records.TYPES["activity"], a) for a in found.activities]
    buys = [records.to_dict(records.TYPES["purchase"], p) for p in found.purchases]
    if not codes:
        shown = doc if doc is not None else scope.config(ctx, actor.tenant_id)
        shown_card = display.record(shown, "contact", shown_card)
        acts = [display.record(shown, "activity", a) for a in acts]
        buys = [display.record(shown, "purchase", p) for p in buys]
    return {
        "contact": shown_card,
        "other_matches": [r.id for r in found.contacts[1:]],
        "activities": acts,
        "purchases": buys,
    }


__all__ = ["Found", "Query", "Result", "card", "lookup", "matching_ids", "search"]
