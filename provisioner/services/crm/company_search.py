"""Company search: partial match over name, kana, phone and address, by classification.

    result = company_search.search(ctx, actor, CompanyQuery(q="商事 渋谷", match="all",
                                                            classification="agency"))
    result.total, result.items[0]["name"]

Rules (as customer search, :mod:`provisioner.services.crm.search`):

* ``q`` is split on white space; each term is a partial match over the company's
  search text (:func:`search_text`: name, kana, phone, address -- NFKC, lower
  case, no spaces, fields apart). ``name``, ``kana``, ``address`` are partial
  matches on one field; ``phone`` compares digits (``03-1234``, ``０３１２３４``);
  ``classification`` is a customer classification code.
* ``match`` combines every condition with AND (``all``) or OR (``any``).
* ``total`` is the exact count; ``items`` one page in ``sort`` order.

The index (``crm_company_grams``, migration 0013): for every 1-, 2- and
3-character substring of each field of a company's search text (the grams of
:func:`search_index.grams`, never across fields), one row (tenant, gram,
company id). A term of up to 3 characters IS a gram: its set is exact. A longer
term's candidates are the companies holding all its trigrams; they are verified
with ``LIKE`` on the stored search text. So the ids are exactly those of
``search_text LIKE '%term%'`` -- :func:`conditions` with ``use_index=False`` is
that scan, and the tests compare the two.

Maintenance: every ORM write of a company (create, update, delete, CSV import,
seed data) recomputes its search text before the flush and rewrites its grams
after it (:data:`FLUSH_HOOK`, installed by ``records.install_maintenance``);
``provisioner init`` builds the index of existing companies after the
migration (``rebuilds``), and ``reindex`` rebuilds it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    delete,
    false,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.orm import Session, UOWTransaction, attributes

from provisioner.clock import format_instant
from provisioner.db.bulk import insert_rows
from provisioner.db.crm_models import CrmCompany, CrmCompanyGram
from provisioner.errors import ValidationFailed
from provisioner.services.actors import Actor
from provisioner.services.crm import scope
from provisioner.services.crm.search_index import GRAM, grams, lock_tenant_writes, term_grams
from provisioner.services.crm.sorting import order_by
from provisioner.services.crm.text import nfkc, phone_digits, search_key, search_keys
from provisioner.services.transaction import Context

#: the fields of a company's search text, in order
SEARCH_PARTS = ("name", "kana", "phone", "address")
FIELDS = ("name", "kana", "address")
#: more grams than this are bulk-loaded (COPY on PostgreSQL), fewer inserted by one statement
_BULK_ABOVE = 1000


@dataclass(frozen=True)
class CompanyQuery:
    q: str = ""
    match: Literal["all", "any"] = "all"
    name: str | None = None
    kana: str | None = None
    address: str | None = None
    phone: str | None = None
    classification: str | None = None
    sort: str = "id"
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True)
class CompanyResult:
    total: int
    items: list[dict[str, Any]]


def search_text(row: Any) -> str:
    """What ``q`` matches: the search keys of name, kana, phone and address, fields apart."""
    return search_keys([getattr(row, k) or "" for k in SEARCH_PARTS])


# ---------------------------------------------------------------- the index


_COLUMNS = ["tenant_id", "gram", "company_id"]


def _rows(tenant_id: int, company_id: int, text: str) -> list[tuple[int, str, int]]:
    return [(tenant_id, g, company_id) for g in sorted(grams(text))]


def index(conn: Connection, tenant_id: int, items: Iterable[tuple[int, str | None]]) -> None:
    """Rewrite the grams of companies: (id, search text, or None when deleted)."""
    items = list(items)
    if not items:
        return
    lock_tenant_writes(conn, tenant_id)
    g: Any = CrmCompanyGram.__table__
    ids = [i for i, _ in items]
    for start in range(0, len(ids), 500):
        conn.execute(
            delete(g).where(
                g.c.tenant_id == tenant_id, g.c.company_id.in_(ids[start : start + 500])
            )
        )
    rows = [r for i, text in items if text for r in _rows(tenant_id, i, text)]
    if len(rows) > _BULK_ABOVE:  # many companies at once (an import): one bulk load
        insert_rows(conn, g, _COLUMNS, rows)
    elif rows:
        conn.execute(insert(g), [dict(zip(_COLUMNS, r, strict=True)) for r in rows])


def rebuild(conn: Connection, tenant_id: int) -> int:
    """The tenant's company search texts and index computed again from the companies;
    returns how many companies' stored text or grams differed."""
    c: Any = CrmCompany.__table__
    g: Any = CrmCompanyGram.__table__
    companies = conn.execute(
        select(c.c.id, *(c.c[k] for k in SEARCH_PARTS), c.c.search_text)
        .where(c.c.tenant_id == tenant_id)
        .order_by(c.c.id)
    ).all()
    stored: dict[int, set[str]] = defaultdict(set)
    for company_id, gram in conn.execute(
        select(g.c.company_id, g.c.gram).where(g.c.tenant_id == tenant_id)
    ):
        stored[company_id].add(gram)
    wrong: list[tuple[int, str | None]] = []
    for row in companies:
        text = search_text(row)
        if text != row.search_text or stored.pop(row.id, set()) != grams(text):
            wrong.append((row.id, text))
            if text != row.search_text:
                conn.execute(c.update().where(c.c.id == row.id).values(search_text=text))
    wrong += [(i, None) for i in stored]  # grams of companies that no longer exist
    index(conn, tenant_id, wrong)
    return len(wrong)


_PENDING = "crm_company_grams_pending"


def _before_flush(session: Session, _context: UOWTransaction, _instances: Any) -> None:
    """Companies about to be written get their search text; deleted ones are remembered."""
    pending: list[tuple[int, int]] = session.info.setdefault(_PENDING, [])
    for obj in session.deleted:
        if isinstance(obj, CrmCompany) and obj.id is not None:
            pending.append((obj.tenant_id, obj.id))
    for obj in (*session.new, *session.dirty):
        if isinstance(obj, CrmCompany) and obj not in session.deleted:
            text = search_text(obj)
            if obj.search_text != text:
                obj.search_text = text


def _after_rollback(session: Session, _previous: Any) -> None:
    session.info.pop(_PENDING, None)


def _after_flush(session: Session, _context: UOWTransaction) -> None:
    """Rewrite the grams of the companies this flush created, changed or deleted."""
    changes: dict[int, list[tuple[int, str | None]]] = defaultdict(list)
    for tenant_id, company_id in session.info.pop(_PENDING, []):
        changes[tenant_id].append((company_id, None))
    for obj in session.new:
        if isinstance(obj, CrmCompany):
            changes[obj.tenant_id].append((obj.id, obj.search_text))
    for obj in session.dirty:
        if isinstance(obj, CrmCompany) and obj not in session.deleted:
            history = attributes.get_history(obj, "search_text")
            if history.added or history.deleted:
                changes[obj.tenant_id].append((obj.id, obj.search_text))
    if changes:
        conn = session.connection()
        for tenant_id, items in changes.items():
            index(conn, tenant_id, items)


#: (event, listener) pairs installed on the application's sessions by
#: ``records.install_maintenance``
FLUSH_HOOK: tuple[tuple[str, Any], ...] = (
    ("before_flush", _before_flush),
    ("after_soft_rollback", _after_rollback),
    ("after_flush", _after_flush),
)


# ---------------------------------------------------------------- querying


def terms(query: CompanyQuery) -> list[str]:
    return [t for t in (search_key(p) for p in query.q.split()) if t]


def _holding(tenant_id: int, names: list[str]) -> Any:
    """The ids of the companies whose grams include every one of ``names`` (a subquery)."""
    g = CrmCompanyGram
    return (
        select(g.company_id)
        .where(g.tenant_id == tenant_id, g.gram.in_(names))
        .group_by(g.company_id)
        .having(func.count() == len(names))
    )


def term_condition(tenant_id: int, term: str) -> ColumnElement[bool]:
    """``term`` (a search key) is in the company's search text, answered by the index: a
    gram's companies (exact), or a longer term's candidates (every trigram) verified
    with ``LIKE`` -- the rows of ``search_text LIKE '%term%'``."""
    c = CrmCompany
    if len(term) <= GRAM:
        return c.id.in_(_holding(tenant_id, [term]))
    return and_(
        c.id.in_(_holding(tenant_id, term_grams(term))),
        c.search_text.contains(term, autoescape=True),
    )


def conditions(
    actor: Actor, query: CompanyQuery, *, use_index: bool = True
) -> list[ColumnElement[bool]]:
    """The WHERE clause of ``query`` over ``crm_companies`` (tenant included); without
    ``use_index`` the ``q`` terms are ``LIKE`` scans (the reference: same rows)."""
    c = CrmCompany
    conds: list[ColumnElement[bool]] = []
    for term in terms(query):
        conds.append(
            term_condition(actor.tenant_id, term)
            if use_index
            else c.search_text.contains(term, autoescape=True)
        )
    for key in FIELDS:
        value = getattr(query, key)
        if value is not None and value.strip():
            conds.append(func.lower(getattr(c, key)).contains(nfkc(value).lower(), autoescape=True))
    if query.phone is not None and query.phone.strip():
        digits = phone_digits(query.phone)
        conds.append(c.phone_digits.contains(digits, autoescape=True) if digits else false())
    if query.classification:
        conds.append(c.classifications.contains(f",{query.classification},", autoescape=True))
    where: list[ColumnElement[bool]] = [c.tenant_id == actor.tenant_id]
    if conds:
        where.append(and_(*conds) if query.match == "all" else or_(*conds))
    return where


def summary(row: CrmCompany) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "kana": row.kana,
        "phone": row.phone,
        "postal_code": row.postal_code,
        "address": row.address,
        "classifications": [x for x in row.classifications.split(",") if x],
        "updated_at": format_instant(row.updated_at),
    }


def search(
    ctx: Context, actor: Actor, query: CompanyQuery, *, use_index: bool = True
) -> CompanyResult:
    """Companies matching ``query``: the exact total and one page."""
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "records.read", "search companies")
    if not 0 <= query.limit <= 1000 or query.offset < 0:
        raise ValidationFailed("limit must be 0..1000 and offset >= 0")
    order = order_by(query.sort, CrmCompany)
    where = conditions(actor, query, use_index=use_index)
    total = ctx.session.scalar(select(func.count()).select_from(CrmCompany).where(*where)) or 0
    rows = ctx.session.scalars(
        select(CrmCompany).where(*where).order_by(*order).limit(query.limit).offset(query.offset)
    )
    return CompanyResult(total, [summary(r) for r in rows])


__all__ = ["CompanyQuery", "CompanyResult", "search"]
