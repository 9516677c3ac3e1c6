"""Printable customer lists and address labels (HTML for the browser's print dialog).

    page = print_customers(ctx, actor, Query(q="渋谷"), layout="labels")   # 'print' permission

Printing is refused for roles without the ``print`` permission (``general_no_print``,
``read_only``) and every print is written to the access log (kind ``print``,
with the layout and the number of customers), like exports.
"""

from __future__ import annotations

from html import escape

from sqlalchemy import select

from provisioner.db.crm_models import CrmCompany, CrmContact
from provisioner.errors import ValidationFailed
from provisioner.services.actors import Actor
from provisioner.services.crm import display, records, scope
from provisioner.services.crm.csvio import labels
from provisioner.services.crm.search import Query, conditions
from provisioner.services.transaction import Context

LAYOUTS = ("list", "labels")
#: at most this many customers on one printout (narrow the search for more)
MAX_ROWS = 10_000
LIST_COLUMNS = (
    "name",
    "kana",
    "company",
    "title",
    "postal_code",
    "address",
    "phone",
    "classifications",
)

_STYLE = """body{font-family:sans-serif;font-size:10pt}
table{border-collapse:collapse;width:100%}th,td{border:1px solid #999;padding:2px 4px}
.labels{display:grid;grid-template-columns:repeat(3,1fr);gap:4mm}
.label{border:1px dashed #bbb;padding:4mm;min-height:30mm;page-break-inside:avoid}
.name{font-size:12pt;margin-top:2mm}"""


def _cell(
    row: CrmContact, company: str | None, column: str, shown: dict[str, dict[str, str]]
) -> str:
    if column == "company":
        return company or ""
    if column == "classifications":
        known = shown.get(column, {})
        return "、".join(known.get(c, c) for c in records.codes(row.classifications))
    value = getattr(row, column)
    return str(shown.get(column, {}).get(value, value))


def print_customers(
    ctx: Context, actor: Actor, query: Query, *, layout: str = "list", codes: bool = False
) -> str:
    """An HTML page of the customers a search finds: a list or address labels.

    Classifications are shown by their labels (codes with ``codes``)."""
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "print", "print customers")
    if layout not in LAYOUTS:
        raise ValidationFailed(f"unknown layout {layout!r}", hint="list or labels")
    where = conditions(ctx, actor, query)
    rows = ctx.session.execute(
        select(CrmContact, CrmCompany.name)
        .outerjoin(CrmCompany, CrmCompany.id == CrmContact.company_id)
        .where(*where)
        .order_by(CrmContact.kana, CrmContact.id)
        .limit(MAX_ROWS + 1)
    ).all()
    if len(rows) > MAX_ROWS:
        raise ValidationFailed(
            f"more than {MAX_ROWS:,} customers match",
            hint="narrow the search, or export them as CSV",
        )
    doc = scope.config(ctx, actor.tenant_id)
    if layout == "list":
        heads = labels(doc, "customers")
        shown = {} if codes else display.coded_fields(doc, "contact")
        head = "".join(f"<th>{escape(heads.get(c, c))}</th>" for c in LIST_COLUMNS)
        body = "".join(
            "<tr>"
            + "".join(f"<td>{escape(_cell(row, company, c, shown))}</td>" for c in LIST_COLUMNS)
            + "</tr>"
            for row, company in rows
        )
        content = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    else:
        content = (
            '<div class="labels">'
            + "".join(
                '<div class="label">'
                f"<div>〒{escape(row.postal_code)}</div><div>{escape(row.address)}</div>"
                f"<div>{escape(company or '')}</div>"
                f'<div class="name">{escape(row.name)} 様</div></div>'
                for row, company in rows
            )
            + "</div>"
        )
    records.log_access(ctx, actor, "print", "customers", layout=layout, rows=len(rows))
    return (
        f'<!DOCTYPE html><html lang="ja"><head><meta charset="utf-8">'
        f"<title>{escape(actor.tenant_slug)}</title><style>{_STYLE}</style></head>"
        f"<body>{content}</body></html>"
    )
