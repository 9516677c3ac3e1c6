"""CSV import and export of customers (Excel on Japanese Windows is the normal case).

    report = import_customers(ctx, actor, raw_bytes, dry_run=True)   # admin ('import')
    report.problems        # [Problem(row=3, column="電話番号", reason="...")] for every bad row
    data = export(ctx, actor, "customers", Query(q="田中"), columns=["name", "phone"],
                  encoding="cp932")                                 # 'export' permission

Import: the encoding is detected (UTF-8 with BOM, UTF-8, else CP932); headers
match the configured labels (``氏名``, ``メモ1``, a checkbox's label) or the field
keys (``name``, ``memo_1``, ``checkbox_1``, ``company``). Every row is validated
like a single create (input rules, picklists, enabled checkboxes,
classifications); if any row is bad nothing is written (all-or-nothing) and the
error lists every bad row with its row number, column and reason. Rows are then
inserted in batches (``COPY`` on PostgreSQL, else ``executemany``: see
:func:`search_index.insert_rows`) with their change-log rows and indexed
for search in the same transaction (searchable as soon as it commits); the
import is access-logged.

Export: chosen columns in the chosen order, headed by the configured labels,
filtered by a search; UTF-8 with BOM (Excel-friendly) by default or CP932.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, select

from provisioner import metrics
from provisioner.config.document import ConfigDocument
from provisioner.config.rules import ActionError
from provisioner.db.crm_models import CrmActivity, CrmChange, CrmCompany, CrmContact, CrmPurchase
from provisioner.errors import ValidationFailed, excerpt
from provisioner.services import audit
from provisioner.services.actors import Actor
from provisioner.services.crm import records, scope, search_index, tally
from provisioner.services.crm.coerce import Fields, Refused
from provisioner.services.crm.search import Query, conditions, order_by
from provisioner.services.crm.text import company_suffix, formula_safe, name_key, nfkc, phone_digits
from provisioner.services.provisioning import quotas
from provisioner.services.transaction import Context

CONTACT_COLUMNS: tuple[str, ...] = (
    "name", "kana", "company", "title", "email", "phone", "mobile", "fax", "postal_code",
    "address", "birthday", "sex", "note", *records.MEMOS,
    *(f"checkbox_{i}" for i in range(1, 49)), "classifications",
)
EXPORT_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("id", *CONTACT_COLUMNS),
    "activities": ("contact_id", "contact_name", "date", "kind", "content", "detail",
                   "response", "store", "staff", "memo",
                   *(f"content_{i}" for i in range(1, 11))),
    "purchases": ("contact_id", "contact_name", "date", "product_class", "product_code",
                  "product_name", "quantity", "unit_price", "amount", "payment_method",
                  "shipped", "paid", "media", "memo"),
}
DEFAULT_EXPORT = ("id", "name", "kana", "company", "title", "email", "phone", "mobile",
                  "postal_code", "address")
_TRUE = {"1", "true", "yes", "on", "✓", "○", "◯", "y", "checked", "はい"}
_FALSE = {"", "0", "false", "no", "off", "n", "×", "いいえ"}
_BATCH = 5000
#: columns an export writes that an import reads past (the record id of the exporting tenant)
IGNORED_ON_IMPORT = frozenset({"id"})


@dataclass(frozen=True)
class Problem:
    row: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}, {self.column}: {self.reason}"


@dataclass
class ImportReport:
    encoding: str
    rows: int
    created: int = 0
    companies_created: int = 0
    dry_run: bool = False
    problems: list[Problem] = field(default_factory=list)


#: the longest cell of a file (the longest text field's limit; shorter ones are checked
#: field by field) and the most columns a header may have
MAX_CELL = 20_000
MAX_COLUMNS = 500


def decode(raw: bytes) -> tuple[str, str]:
    """The text and the encoding it was in: UTF-8 with BOM, UTF-8, else CP932.

    A file mixing UTF-8 and CP932 lines is refused (naming a line of each), and so is
    a NUL character (naming its line): neither can be imported as the user meant.
    """
    if raw.startswith(b"\xef\xbb\xbf"):
        text, encoding = _decoded(raw[3:], "utf-8"), "utf-8-sig"
    else:
        try:
            text, encoding = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            _refuse_mixed(raw)
            text, encoding = _decoded(raw, "cp932"), "cp932"
    at = text.find("\x00")
    if at >= 0:
        raise ValidationFailed(
            f"line {text.count(chr(10), 0, at) + 1} contains a NUL character (U+0000)",
            hint="remove the NUL characters (is the file UTF-16? save it as 'CSV UTF-8')")
    return text, encoding


def _decoded(raw: bytes, encoding: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        what = "not UTF-8" if encoding == "utf-8" else "neither UTF-8 nor CP932"
        raise ValidationFailed(
            f"the file is {what} (byte {exc.start}, line {line})",
            hint="save it from Excel as 'CSV UTF-8' or 'CSV (comma separated)'") from None


def _refuse_mixed(raw: bytes) -> None:
    """A file that is not UTF-8 as a whole but has non-ASCII lines that are: mixed."""
    utf8 = cp932 = 0
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            cp932 = cp932 or number
        else:
            utf8 = utf8 or number
        if utf8 and cp932:
            raise ValidationFailed(
                f"the file mixes encodings: line {utf8} is UTF-8, line {cp932} is CP932 "
                "(Shift_JIS)", hint="save the whole file in one encoding ('CSV UTF-8')")


def read_rows(text: str) -> list[list[str]]:
    """The file's rows; refuses a header over :data:`MAX_COLUMNS` columns and any cell over
    :data:`MAX_CELL` characters with its row and column (the csv module's own field
    limit, 131,072 characters, would be an internal error)."""
    if csv.field_size_limit() <= len(text):  # only ever raised: other readers lose nothing
        csv.field_size_limit(len(text) + 1)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if rows and len(rows[0]) > MAX_COLUMNS:
        raise ValidationFailed(
            f"the header has {len(rows[0]):,} columns; at most {MAX_COLUMNS} are allowed",
            hint="the first line must be the header of the customer columns")
    header = rows[0] if rows else []
    problems = []
    for number, cells in enumerate(rows, start=1):
        for index, cell in enumerate(cells):
            if len(cell) > MAX_CELL:
                column = header[index] if index < len(header) and number > 1 else index + 1
                problems.append(Problem(number, f"column {excerpt(column, 40)}",
                                        f"{len(cell):,} characters, more than the {MAX_CELL:,} "
                                        "a cell may hold"))
    if problems:
        raise ValidationFailed(f"{len(problems)} cell(s) are too long; nothing was imported",
                               problems=[str(p) for p in problems])
    return rows


def labels(doc: ConfigDocument, kind: str = "customers") -> dict[str, str]:
    """Column key -> header label from the configuration."""
    out: dict[str, str] = {}
    for key in EXPORT_COLUMNS[kind]:
        if key == "company":
            out[key] = doc.labels.get("company.name", "会社名")
        elif key.startswith("memo_"):
            out[key] = doc.memo_fields[int(key[5:]) - 1].label
        elif key.startswith("checkbox_"):
            out[key] = doc.checkboxes[int(key[9:]) - 1].label
        elif kind == "customers":
            out[key] = doc.labels.get(f"contact.{key}", key)
        else:
            obj = "activity" if kind == "activities" else "purchase"
            out[key] = doc.labels.get(f"{obj}.{key}", key)
    return out


def _header_map(doc: ConfigDocument, header: Sequence[str]) -> tuple[list[str | None],
                                                                     list[Problem]]:
    by_text: dict[str, str] = {}
    for column, label in labels(doc).items():
        by_text.setdefault(nfkc(label).lower(), column)
    for column in CONTACT_COLUMNS:
        by_text[column] = column
    keys: list[str | None] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for text in header:
        key: str | None = by_text.get(nfkc(text).lower())
        if key in IGNORED_ON_IMPORT:  # an export's record id: ids do not carry over
            keys.append(None)
            continue
        if key is None and text.strip():
            problems.append(Problem(1, text, "unknown column (use a configured label or a "
                                             "field key such as name, phone, memo_1)"))
        elif key in seen:
            problems.append(Problem(1, text, f"column {key!r} appears twice"))
        if key:
            seen.add(key)
        keys.append(key)
    if "name" not in seen:
        problems.append(Problem(1, "-", f"the name column is missing "
                                        f"({labels(doc)['name']!r} or 'name')"))
    return keys, problems


def _flag(cell: str) -> bool | None:
    """A checkbox cell: checked, not checked, or None (not a checkbox value)."""
    flag = nfkc(cell).lower()
    return True if flag in _TRUE else False if flag in _FALSE else None


def _not_a_flag(cell: str) -> str:
    return f"{cell!r} is not a checkbox value (1/0, true/false, ✓)"


def _codes(cell: str) -> list[str]:
    """A classifications cell (``a;b`` or ``a,b``) as the list of codes a create takes."""
    return [c for c in nfkc(cell).replace(";", ",").split(",") if c]


_INDIVIDUAL = "this tenant is in individual mode (no companies)"


def _problems(number: int, label_of: dict[str | None, str], found: list[str]) -> list[Problem]:
    """``"field: reason"`` problems as the file's: under the column's header."""
    out = []
    for text in found:
        key, _, reason = text.partition(": ")
        out.append(Problem(number, str(label_of.get(key, key)), reason or key))
    return out


def shape_row(ctx: Context, actor: Actor, doc: ConfigDocument, keys: list[str | None],
              header: Sequence[str], number: int, cells: list[str]
              ) -> tuple[tuple[dict[str, Any], str] | None, list[Problem]]:
    """One row as a create shapes it (:func:`records.shape`): its ``(values, company)``,
    or None, and its problems. The reference for :func:`shape_rows`, which must give
    every row exactly this (tested)."""
    if len(cells) > len(keys):
        return None, [Problem(number, "-", f"{len(cells)} cells but {len(keys)} columns")]
    problems: list[Problem] = []
    data: dict[str, Any] = {}
    checks: dict[str, bool] = {}
    company = ""
    for key, text, cell in zip(keys, header, cells, strict=False):
        if key is None:
            continue
        if key.startswith("checkbox_"):
            flag = _flag(cell)
            if flag is None:
                problems.append(Problem(number, text, _not_a_flag(cell)))
            elif flag:
                checks[key[9:]] = True
        elif key == "company":
            company = cell.strip()
        elif key == "classifications":
            data[key] = _codes(cell)
        else:
            data[key] = cell
    if checks:
        data["checkboxes"] = checks
    if company and doc.mode == "individual":
        problems.append(Problem(number, "company", _INDIVIDUAL))
    try:
        values = records.shape(ctx, actor, doc, records.TYPES["contact"], data, None)
    except ValidationFailed as exc:
        label_of = dict(zip(keys, header, strict=False))
        return None, problems + _problems(number, label_of, exc.problems or [exc.message])
    return (None if problems else (values, company)), problems


def shape_rows(doc: ConfigDocument, keys: list[str | None], header: Sequence[str],
               numbered: Sequence[tuple[int, list[str]]]
               ) -> tuple[list[tuple[dict[str, Any], str]], list[Problem]]:
    """The valid rows' ``(values, company)`` and every problem of the others: each row
    exactly as :func:`shape_row` gives it, computed column by column with the same field
    coercers (:class:`~provisioner.services.crm.coerce.Fields`), each distinct cell once."""
    width = len(keys)
    problems: list[Problem] = []
    rows: list[tuple[int, list[str]]] = []
    for number, cells in numbered:
        if len(cells) > width:
            problems.append(Problem(number, "-", f"{len(cells)} cells but {width} columns"))
        else:  # a missing cell is an empty one (as a create without the field)
            rows.append((number, cells if len(cells) == width
                         else [*cells, *[""] * (width - len(cells))]))
    if not rows:
        return [], problems
    fields = Fields(doc, records.TYPES["contact"])
    table = _Columns(fields, len(rows))
    columns = zip(*(c for _, c in rows), strict=True)
    for key, text, column in zip(keys, header, columns, strict=True):
        if key is not None:
            table.add(key, text, column)
    label_of = dict(zip(keys, header, strict=False))
    individual = doc.mode == "individual"
    flagged = {*table.refused, *table.cell, *table.boxes}
    if individual:
        flagged.update(n for n, company in enumerate(table.company) if company)
    names, masks, companies, finish = table.names, table.mask, table.company, fields.finish
    shaped: list[tuple[dict[str, Any], str]] = []
    for n, row in enumerate(table.rows()):
        found = table.refused.get(n) if n in flagged else None
        values = dict(zip(names, row, strict=False)) if found is None else {
            k: v for k, v in zip(names, row, strict=False) if v.__class__ is not Refused}
        if masks[n]:
            values["checkboxes"] = masks[n]
        late: list[str] = []
        finish(values, None, late)
        if not late and n not in flagged:
            shaped.append((values, companies[n]))
            continue
        number = rows[n][0]
        problems += [Problem(number, column, reason) for column, reason in table.cell.get(n, [])]
        if individual and companies[n]:
            problems.append(Problem(number, "company", _INDIVIDUAL))
        problems += _problems(number, label_of, [*(found or []), *table.boxes.get(n, []), *late])
    return shaped, problems


class _Columns:
    """The coerced columns of a block of rows (see :func:`shape_rows`)."""

    def __init__(self, fields: Fields, count: int) -> None:
        self.fields = fields
        self.count = count
        self.names: list[str] = []
        self.values: list[list[Any]] = []
        self.company = [""] * count
        self.mask = [0] * count
        #: row -> its problems, by kind: a cell that is no value, a refused field, a checkbox
        self.cell: dict[int, list[tuple[str, str]]] = {}
        self.refused: dict[int, list[str]] = {}
        self.boxes: dict[int, list[str]] = {}

    def add(self, key: str, text: str, cells: Sequence[str]) -> None:
        if key == "company":
            self.company = [c.strip() for c in cells]
        elif key.startswith("checkbox_"):
            self._checkbox(int(key[9:]), text, cells)
        else:
            column = self.fields.column(key, cells, _codes if key == "classifications"
                                        else None)
            if Refused in map(type, column):
                for n, value in enumerate(column):
                    if value.__class__ is Refused:
                        self.refused.setdefault(n, []).extend(value.problems)
            self.names.append(key)
            self.values.append(column)

    def _checkbox(self, index: int, text: str, cells: Sequence[str]) -> None:
        bits: dict[str, Any] = {}
        for cell in set(cells):
            flag = _flag(cell)
            try:
                bits[cell] = _not_a_flag(cell) if flag is None else \
                    self.fields.checkbox(index, True) if flag else 0
            except Refused as exc:
                bits[cell] = exc
        if all(v.__class__ is int for v in bits.values()):
            self.mask = [m | bits[c] for m, c in zip(self.mask, cells, strict=True)]
            return
        for n, cell in enumerate(cells):
            bit = bits[cell]
            if bit.__class__ is int:
                self.mask[n] |= bit
            elif isinstance(bit, Refused):
                self.boxes.setdefault(n, []).extend(bit.problems)
            else:
                self.cell.setdefault(n, []).append((text, bit))

    def rows(self) -> Iterable[tuple[Any, ...]]:
        return zip(*self.values, strict=True) if self.values else iter([()] * self.count)


def import_customers(ctx: Context, actor: Actor, raw: bytes, *, dry_run: bool = False,
                     source: str = "upload",
                     progress: Callable[[int], None] | None = None) -> ImportReport:
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "import", "import customers")
    text, encoding = decode(raw)
    doc = scope.config(ctx, actor.tenant_id)
    rows = read_rows(text)
    if not rows:
        raise ValidationFailed("the file is empty", hint="the first line must be the header")
    # row numbers as the file (and Excel) counts them: blank lines are skipped, not renumbered
    numbered = [(n, r) for n, r in enumerate(rows[1:], start=2) if any(c.strip() for c in r)]
    header, body = rows[0], [r for _, r in numbered]
    keys, problems = _header_map(doc, header)
    report = ImportReport(encoding=encoding, rows=len(body), dry_run=dry_run, problems=problems)
    if problems:
        raise ValidationFailed("the header is not valid", problems=[str(p) for p in problems])
    contact_type = records.TYPES["contact"]
    shaped, found = shape_rows(doc, keys, header, numbered)
    problems += found
    if progress is not None:
        for _ in range(len(numbered) // 1000):
            progress(1000)
    if problems:
        problems.sort(key=lambda p: p.row)
        raise ValidationFailed(
            f"{len({p.row for p in problems})} of {len(body)} rows are not valid; nothing "
            "was imported", problems=[str(p) for p in problems],
            hint="fix the rows and import again (--dry-run checks without writing)")
    if dry_run:
        return report
    # each customer is a contact row and a change-log row; new companies at most one each
    quotas.require_room_for_records(
        ctx, actor.tenant_id, 2 * len(shaped) + len({c for _, c in shaped if c}),
        what=f"importing {len(shaped)} customers")
    companies = _companies(ctx, actor, doc, {c for _, c in shaped if c}, report)
    now = ctx.clock.now()
    base = {"tenant_id": actor.tenant_id, "created_at": now, "created_by": actor.login,
            "updated_at": now, "updated_by": actor.login}
    defaults = {k: ("" if kind in ("str", "text", "date", "codes") else
                    0 if kind == "checkboxes" else False if kind == "bool" else None)
                for k, kind in contact_type.fields.items()}
    template = {**defaults, **base}
    conn = ctx.session.connection()
    builder = search_index.Builder(conn, actor.tenant_id)
    changes = CrmChange.__table__
    assert isinstance(changes, Table)
    change_columns = ["tenant_id", "at", "actor", "record_type", "record_id", "action",
                      "changes", "purpose"]
    change = (actor.tenant_id, now, actor.login, "contact")
    created = ("create", {"import": source}, "CSV import")
    name_keys: dict[str, str] = {}
    no_company = (None, "")
    search_text = records.search_text
    rules = records.rules_for_new_rows(doc, "contact")
    coerce = _cached(records.coercer(ctx, actor, doc, contact_type, records.NEW_ROW))
    fields = list(contact_type.fields)
    for start in range(0, len(shaped), _BATCH):
        batch: list[dict[str, Any]] = []
        fired: list[tuple[int, list[Any]]] = []
        for values, company in shaped[start:start + _BATCH]:
            row = {**template, **values}
            company_id, company_name = companies.get(company, no_company)
            row["company_id"] = company_id
            if rules is not None:  # a created contact's rules, on the row before it is
                firings = rules.run("contact", "created", row, fields, coerce=coerce)
                if firings:  # written: their changes are part of the inserted row
                    fired.append((len(batch), firings))
            name = row["name"]
            norm = name_keys.get(name)
            if norm is None:
                norm = name_keys[name] = name_key(name)
            row["name_norm"] = norm
            phone, mobile = row["phone"], row["mobile"]
            row["phone_digits"] = phone_digits(phone) if phone else ""
            row["mobile_digits"] = phone_digits(mobile) if mobile else ""
            row["search_text"] = search_text(row, company_name)
            batch.append(row)
        ids = search_index.insert_contacts(conn, actor.tenant_id, batch, builder)
        search_index.insert_rows(conn, changes, change_columns,
                                 [(*change, i, *created) for i in ids])
        tally.add_rows(conn, actor.tenant_id, CrmContact, batch, extra_records=len(ids))
        if fired:
            records.apply_new_row_firings(ctx, actor, doc, contact_type, [
                ({**batch[at], "id": ids[at]}, firings) for at, firings in fired])
        report.created += len(ids)
        if progress is not None:
            progress(0)
    builder.finish()
    records.log_access(ctx, actor, "import", source, rows=report.created, encoding=encoding)
    audit.record(ctx, tenant_id=actor.tenant_id, actor=actor.login, action="crm:imported",
                 subject=source, rows=report.created)
    metrics.import_rows.labels("customers").inc(report.created)
    return report


def _cached(coerce: Callable[[str, str, Any], Any]) -> Callable[[str, str, Any], Any]:
    """A rule's value shaped once per import (the same for every row)."""
    done: dict[tuple[str, str], tuple[bool, Any]] = {}

    def cached(obj: str, column: str, value: Any) -> Any:
        key = (column, repr(value))
        if key not in done:
            try:
                done[key] = (True, coerce(obj, column, value))
            except ActionError as exc:  # raised again for every row it applies to
                done[key] = (False, exc)
        ok, result = done[key]
        if not ok:
            raise result
        return result

    return cached


def _companies(ctx: Context, actor: Actor, doc: ConfigDocument, names: set[str],
               report: ImportReport) -> dict[str, tuple[int, str]]:
    """Company name as written in the file -> (id, stored name); missing ones are created."""
    if not names:
        return {}
    existing = {key: (i, n) for i, n, key in ctx.session.execute(
        select(CrmCompany.id, CrmCompany.name, CrmCompany.name_norm).where(
            CrmCompany.tenant_id == actor.tenant_id))}
    now = ctx.clock.now()
    made: dict[str, CrmCompany] = {}
    for name in sorted(names):
        key = name_key(name)
        if key not in existing and key not in made:
            stored = company_suffix(nfkc(name) if doc.input_rules.normalize_width else name,
                                    doc.input_rules.company_suffix)
            made[key] = CrmCompany(tenant_id=actor.tenant_id, name=stored, name_norm=key,
                                   created_at=now, created_by=actor.login, updated_at=now,
                                   updated_by=actor.login)
    if made:  # one flush for all of them, then one for their change-log rows
        ctx.session.add_all(made.values())
        ctx.session.flush()
        ctx.session.add_all(CrmChange(tenant_id=actor.tenant_id, at=now, actor=actor.login,
                                      record_type="company", record_id=company.id,
                                      action="create", changes={"name": company.name},
                                      purpose="CSV import") for company in made.values())
        ctx.session.flush()
        existing.update((key, (company.id, company.name)) for key, company in made.items())
        report.companies_created += len(made)
    return {name: existing[name_key(name)] for name in names}


def export(ctx: Context, actor: Actor, kind: str, query: Query, *,
           columns: Sequence[str] | None = None, encoding: str = "utf-8-sig") -> bytes:
    """CSV of customers, or of the activities / purchases of the customers a search finds."""
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "export", f"export {kind}")
    if kind not in EXPORT_COLUMNS:
        raise ValidationFailed(f"cannot export {kind!r}", hint="customers, activities, purchases")
    if encoding not in ("utf-8-sig", "utf-8", "cp932"):
        raise ValidationFailed(f"unsupported encoding {encoding!r}", hint="utf-8-sig or cp932")
    wanted = list(columns or (DEFAULT_EXPORT if kind == "customers" else EXPORT_COLUMNS[kind]))
    unknown = [c for c in wanted if c not in EXPORT_COLUMNS[kind]]
    if unknown:
        raise ValidationFailed(f"unknown column(s) {', '.join(unknown)}",
                               hint="columns: " + ", ".join(EXPORT_COLUMNS[kind]))
    doc = scope.config(ctx, actor.tenant_id)
    heads = labels(doc, kind)
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([formula_safe(heads[c]) for c in wanted])
    where = conditions(ctx, actor, query)
    order = order_by(query.sort)  # the customers in the search's order (--sort)
    count = 0
    if kind == "customers":
        rows = ctx.session.execute(
            select(CrmContact, CrmCompany.name)
            .outerjoin(CrmCompany, CrmCompany.id == CrmContact.company_id)
            .where(*where).order_by(*order).execution_options(yield_per=2000))
        for contact, company in rows:
            writer.writerow([formula_safe(_cell(contact, company, c)) for c in wanted])
            count += 1
    else:
        model: Any = CrmActivity if kind == "activities" else CrmPurchase
        ids = select(CrmContact.id).where(*where)
        history = ctx.session.execute(
            select(model, CrmContact.name).join(CrmContact, CrmContact.id == model.contact_id)
            .where(model.tenant_id == actor.tenant_id, model.contact_id.in_(ids))
            .order_by(*order[:-1], model.contact_id, model.date.desc(), model.id.desc()))
        for item, contact_name in history:
            writer.writerow([formula_safe(contact_name if c == "contact_name"
                                          else _plain(getattr(item, c))) for c in wanted])
            count += 1
    records.log_access(ctx, actor, "export", kind, rows=count, columns=wanted,
                       encoding=encoding)
    return out.getvalue().encode(encoding, errors="replace")


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return "" if value is None else str(value)


def _cell(contact: CrmContact, company: str | None, column: str) -> str:
    if column == "company":
        return company or ""
    if column.startswith("checkbox_"):
        return "1" if contact.checkboxes >> (int(column[9:]) - 1) & 1 else "0"
    if column == "classifications":
        return ";".join(records.codes(contact.classifications))
    return _plain(getattr(contact, column))
