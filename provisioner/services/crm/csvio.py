"""CSV import and export of customers (Excel on Japanese Windows is the normal case).

    report = import_customers(ctx, actor, raw_bytes, dry_run=True)   # admin ('import')
    report.problems        # [Problem(row=3, column="電話番号", reason="...")] for every bad row
    data = export(ctx, actor, "customers", Query(q="田中"), columns=["name", "phone"],
                  encoding="cp932")                                 # 'export' permission

Import: the encoding is detected (UTF-8 with BOM, UTF-8, else CP932); headers
match the configured labels (``氏名``, ``メモ1``, a checkbox's label) or the field
keys (``name``, ``memo_1``, ``checkbox_1``, ``company``). Every row is validated
like a single create (input rules, picklists, enabled checkboxes,
classifications: the same per-field coercers, :mod:`~provisioner.services.crm.coerce`,
applied column by column); if any row is bad nothing is written (all-or-nothing) and
the error counts every bad row and lists the first :data:`MAX_PROBLEMS` problems with
their row number, column and reason. The file is read as it goes (a seekable file, or
bytes): its encoding in one chunked pass, then its rows a block of :data:`_BATCH` at a
time, each block shaped and inserted (``COPY`` on PostgreSQL, else ``executemany``: see
:func:`provisioner.db.bulk.insert_rows`) with its change-log rows and indexed for search, all
in the caller's one transaction; after a bad row nothing more is
written and the refusal rolls back what was. Memory stays bounded whatever the file's size (measured
by ``bench/bench_stream.py``). The import is access-logged.

Export: chosen columns in the chosen order, headed by the configured labels,
filtered by a search; UTF-8 with BOM (Excel-friendly) by default or CP932;
:func:`export_to` writes to a file as the rows are read.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, repeat
from operator import itemgetter
from typing import IO, Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Connection,
    Table,
    bindparam,
    func,
    insert,
    literal,
    select,
)

from provisioner import metrics
from provisioner.config.document import ConfigDocument
from provisioner.config.rules import ActionError
from provisioner.crashpoints import crashpoint
from provisioner.db.crm_models import CrmActivity, CrmChange, CrmCompany, CrmContact, CrmPurchase
from provisioner.errors import ValidationFailed, excerpt
from provisioner.gcpause import paused_gc
from provisioner.services import audit
from provisioner.services.actors import Actor
from provisioner.services.crm import display, records, scope, search_index, tally
from provisioner.services.crm.coerce import Fields, Refused
from provisioner.services.crm.search import Query, conditions, order_by
from provisioner.services.crm.search_index.gram_keys import SEP
from provisioner.services.crm.text import (
    company_suffix,
    formula_safe,
    name_key,
    nfkc,
    phone_digits,
    search_key_column,
)
from provisioner.services.provisioning import quotas
from provisioner.services.transaction import Context

CONTACT_COLUMNS: tuple[str, ...] = (
    "name",
    "kana",
    "company",
    "title",
    "email",
    "phone",
    "mobile",
    "fax",
    "postal_code",
    "address",
    "birthday",
    "sex",
    "note",
    *records.MEMOS,
    *(f"checkbox_{i}" for i in range(1, 49)),
    "classifications",
)
EXPORT_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("id", *CONTACT_COLUMNS),
    "activities": (
        "contact_id",
        "contact_name",
        "date",
        "kind",
        "content",
        "detail",
        "response",
        "store",
        "staff",
        "memo",
        *(f"content_{i}" for i in range(1, 11)),
    ),
    "purchases": (
        "contact_id",
        "contact_name",
        "date",
        "product_class",
        "product_code",
        "product_name",
        "quantity",
        "unit_price",
        "amount",
        "payment_method",
        "shipped",
        "paid",
        "media",
        "memo",
    ),
}
DEFAULT_EXPORT = (
    "id",
    "name",
    "kana",
    "company",
    "title",
    "email",
    "phone",
    "mobile",
    "postal_code",
    "address",
)
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
    """The text and the encoding it was in (see :func:`open_text`)."""
    text, encoding = open_text(raw)
    try:
        return text.read(), encoding
    finally:
        text.detach()


def open_text(source: bytes | IO[bytes]) -> tuple[io.TextIOWrapper, str]:
    """A seekable file (or bytes) as text, and its encoding: UTF-8 with BOM, UTF-8, else
    CP932, found in one pass of bounded memory before the text is read.

    A file mixing UTF-8 and CP932 lines is refused (naming a line of each), and so is
    a NUL character (naming its line): neither can be imported as the user meant. The
    caller detaches the text from ``source`` when done.
    """
    stream: IO[bytes] = io.BytesIO(source) if isinstance(source, bytes) else source
    start = stream.tell()
    bom = stream.read(3) == b"\xef\xbb\xbf"
    if not bom:
        stream.seek(start)
    body = stream.tell()
    nul = _utf8_or_nul(stream, "utf-8-sig" if bom else None)
    encoding = "utf-8-sig" if bom else "utf-8"
    if nul is _NOT_UTF8:
        stream.seek(body)
        _refuse_mixed(stream)
        stream.seek(body)
        nul = _utf8_or_nul(stream, "cp932")
        encoding = "cp932"
    if nul:
        raise ValidationFailed(
            f"line {nul} contains a NUL character (U+0000)",
            hint="remove the NUL characters (is the file UTF-16? save it as 'CSV UTF-8')",
        )
    stream.seek(body)
    return io.TextIOWrapper(stream, encoding="utf-8" if bom else encoding, newline=""), encoding


_NOT_UTF8 = -1
_CHUNK = 1 << 20


def _utf8_or_nul(stream: IO[bytes], refuse: str | None) -> int:
    """Decode the rest of ``stream`` in chunks (UTF-8, or CP932 when ``refuse`` says so);
    the line of its first NUL (0: none), or :data:`_NOT_UTF8` for a file that is not
    UTF-8 when ``refuse`` is None. With ``refuse``, a byte that does not decode is a
    ValidationFailed naming its byte and line."""
    decoder = codecs.getincrementaldecoder("cp932" if refuse == "cp932" else "utf-8")()
    offset = lines = nul = 0
    while True:
        chunk = stream.read(_CHUNK)
        pending = len(decoder.getstate()[0])
        try:
            decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            if refuse is None:
                return _NOT_UTF8
            at = offset - pending + exc.start
            line = lines + chunk.count(b"\n", 0, max(0, exc.start - pending)) + 1
            what = "neither UTF-8 nor CP932" if refuse == "cp932" else "not UTF-8"
            raise ValidationFailed(
                f"the file is {what} (byte {at}, line {line})",
                hint="save it from Excel as 'CSV UTF-8' or 'CSV (comma separated)'",
            ) from None
        if not chunk:
            return nul
        if not nul and (at := chunk.find(b"\x00")) >= 0:
            nul = lines + chunk.count(b"\n", 0, at) + 1
        offset += len(chunk)
        lines += chunk.count(b"\n")


def _refuse_mixed(lines: Iterable[bytes]) -> None:
    """A file that is not UTF-8 as a whole but has non-ASCII lines that are: mixed."""
    utf8 = cp932 = 0
    for number, line in enumerate(lines, start=1):
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
                "(Shift_JIS)",
                hint="save the whole file in one encoding ('CSV UTF-8')",
            )


#: the longest cell read at all (its length is then reported with its row and column)
MAX_READ_CELL = 1 << 24


def _records(text: IO[str]) -> Iterator[list[str]]:
    """The CSV records of ``text``, read as they come."""
    if csv.field_size_limit() < MAX_READ_CELL:  # only ever raised: other readers lose nothing
        csv.field_size_limit(MAX_READ_CELL)
    reader = csv.reader(text)
    try:
        yield from reader
    except csv.Error as exc:
        raise ValidationFailed(
            f"line {reader.line_num}: {exc}",
            hint=f"a cell may hold at most {MAX_CELL:,} characters",
        ) from None


def _long_cells(number: int, cells: Sequence[str], header: Sequence[str]) -> list[Problem]:
    """The cells of a row over :data:`MAX_CELL` characters, named by their column."""

    if max(map(len, cells), default=0) <= MAX_CELL:
        return []

    def column(index: int) -> str | int:
        return header[index] if index < len(header) and number > 1 else index + 1

    return [
        Problem(
            number,
            f"column {excerpt(column(index), 40)}",
            f"{len(cell):,} characters, more than the {MAX_CELL:,} a cell may hold",
        )
        for index, cell in enumerate(cells)
        if len(cell) > MAX_CELL
    ]


def _long_rows(block: Sequence[tuple[int, Sequence[str]]], header: Sequence[str]) -> list[Problem]:
    """:func:`_long_cells` of each numbered row of a block (none looked at one by one when
    no cell of the block is too long)."""
    if max(map(len, chain.from_iterable(map(itemgetter(1), block))), default=0) <= MAX_CELL:
        return []
    return [p for number, cells in block for p in _long_cells(number, cells, header)]


def _check_header(header: Sequence[str]) -> None:
    if len(header) > MAX_COLUMNS:
        raise ValidationFailed(
            f"the header has {len(header):,} columns; at most {MAX_COLUMNS} are allowed",
            hint="the first line must be the header of the customer columns",
        )


def _too_long(problems: list[Problem]) -> ValidationFailed:
    return ValidationFailed(
        f"{len(problems)} cell(s) are too long; nothing was imported",
        problems=[str(p) for p in problems],
    )


def read_rows(text: str) -> list[list[str]]:
    """The file's rows; refuses a header over :data:`MAX_COLUMNS` columns and any cell over
    :data:`MAX_CELL` characters with its row and column."""
    rows = list(_records(io.StringIO(text, newline="")))
    if rows:
        _check_header(rows[0])
    header = rows[0] if rows else []
    problems = [
        p for number, cells in enumerate(rows, start=1) for p in _long_cells(number, cells, header)
    ]
    if problems:
        raise _too_long(problems)
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


def _header_map(
    doc: ConfigDocument, header: Sequence[str]
) -> tuple[list[str | None], list[Problem]]:
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
            problems.append(
                Problem(
                    1,
                    text,
                    "unknown column (use a configured label or a "
                    "field key such as name, phone, memo_1)",
                )
            )
        elif key in seen:
            problems.append(Problem(1, text, f"column {key!r} appears twice"))
        if key:
            seen.add(key)
        keys.append(key)
    if "name" not in seen:
        problems.append(
            Problem(1, "-", f"the name column is missing ({labels(doc)['name']!r} or 'name')")
        )
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


def shape_row(
    ctx: Context,
    actor: Actor,
    doc: ConfigDocument,
    keys: list[str | None],
    header: Sequence[str],
    number: int,
    cells: list[str],
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


def shape_rows(
    doc: ConfigDocument,
    keys: list[str | None],
    header: Sequence[str],
    numbered: Sequence[tuple[int, list[str]]],
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
            rows.append(
                (number, cells if len(cells) == width else [*cells, *[""] * (width - len(cells))])
            )
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
        values = (
            dict(zip(names, row, strict=False))
            if found is None
            else {k: v for k, v in zip(names, row, strict=False) if v.__class__ is not Refused}
        )
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
            column = self.fields.column(key, cells, _codes if key == "classifications" else None)
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
                bits[cell] = (
                    _not_a_flag(cell)
                    if flag is None
                    else self.fields.checkbox(index, True)
                    if flag
                    else 0
                )
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


#: the problems a refused import lists (every bad row is counted; the list stops there)
MAX_PROBLEMS = 1000


def _coded(
    doc: ConfigDocument, keys: Sequence[str | None], numbered: list[tuple[int, list[str]]]
) -> list[tuple[int, list[str]]]:
    """The rows with the labels in coded columns (picklists, classifications) replaced
    by their codes (:func:`display.to_code`: each distinct cell once)."""
    fields = display.coded_fields(doc, "contact")
    columns = [(i, key) for i, key in enumerate(keys) if key is not None and fields.get(key)]
    if not columns:
        return numbered
    done: dict[tuple[str, str], str] = {}
    out = []
    for number, cells in numbered:
        cells = list(cells)
        for i, key in columns:
            if i < len(cells) and cells[i]:
                found = done.get((key, cells[i]))
                if found is None:
                    found = done[(key, cells[i])] = display.to_code(
                        doc, "contact", key, cells[i], fields
                    )
                cells[i] = found
        out.append((number, cells))
    return out


def import_customers(
    ctx: Context,
    actor: Actor,
    raw: bytes | IO[bytes],
    *,
    dry_run: bool = False,
    source: str = "upload",
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import a CSV file (bytes, or a seekable binary file read as it goes: memory stays
    bounded whatever its size); see the module docstring. ``progress`` gets each block's
    number of rows once it is checked and written."""
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "import", "import customers")
    text, encoding = open_text(raw)
    try:
        return _import(
            ctx, actor, text, encoding, dry_run=dry_run, source=source, progress=progress
        )
    finally:
        text.detach()


def _import(
    ctx: Context,
    actor: Actor,
    text: IO[str],
    encoding: str,
    *,
    dry_run: bool,
    source: str,
    progress: Callable[[int], None] | None,
) -> ImportReport:
    """Rows are read, shaped and written :data:`_BATCH` at a time, in the caller's one
    transaction: after the first bad row nothing more is written, every row is still
    checked, and the error rolls back what was written (all or nothing)."""
    doc = scope.config(ctx, actor.tenant_id)
    rows = _records(text)
    header = next(rows, None)
    if header is None:
        raise ValidationFailed("the file is empty", hint="the first line must be the header")
    _check_header(header)
    too_long = _long_cells(1, header, header)
    keys, problems = _header_map(doc, header)
    if problems and not too_long:
        raise ValidationFailed("the header is not valid", problems=[str(p) for p in problems])
    report = ImportReport(encoding=encoding, rows=0, dry_run=dry_run)
    writer = None if dry_run else _Writer(ctx, actor, doc, source, report)
    found = _Found()
    # row numbers as the file (and Excel) counts them: blank lines are skipped, not renumbered
    for block in _paused(_blocks(rows)):
        too_long += _long_rows(block, header)
        report.rows += len(block)
        if too_long:
            continue
        block = _coded(doc, keys, block)  # an export's labels read back as codes
        shaped, bad = shape_rows(doc, keys, header, block)
        found.add(bad)
        if writer is not None and not found.rows:
            writer.write(shaped)
        if progress is not None:
            progress(len(block))
    if too_long:
        raise _too_long(too_long)
    if found.rows:
        raise found.error(report.rows)
    if writer is not None:
        writer.finish()
    return report


def _blocks(rows: Iterator[list[str]]) -> Iterator[list[tuple[int, list[str]]]]:
    """The non-blank rows after the header, numbered, :data:`_BATCH` at a time."""
    block: list[tuple[int, list[str]]] = []
    for number, cells in enumerate(rows, start=2):
        if "".join(cells).strip():  # some cell is not blank
            block.append((number, cells))
            if len(block) == _BATCH:
                yield block
                block = []
    if block:
        yield block


def _paused(blocks: Iterator[list[tuple[int, list[str]]]]) -> Iterator[list[tuple[int, list[str]]]]:
    """Each block read and handled with the cyclic garbage collector paused
    (:func:`~provisioner.gcpause.paused_gc`): a block is many small containers and no
    cycles to find. The collector comes back between blocks, so whatever garbage a
    block leaves is collected after it (memory stays bounded)."""
    while True:
        with paused_gc():
            block = next(blocks, None)
            if block is None:
                return
            yield block


@dataclass
class _Found:
    """The problems of an import: every bad row counted, the first :data:`MAX_PROBLEMS`
    problems kept."""

    rows: int = 0
    problems: int = 0
    listed: list[Problem] = field(default_factory=list)

    def add(self, problems: list[Problem]) -> None:
        if problems:
            problems.sort(key=lambda p: p.row)
            self.rows += len({p.row for p in problems})
            self.problems += len(problems)
            self.listed += problems[: MAX_PROBLEMS - len(self.listed)]

    def error(self, rows: int) -> ValidationFailed:
        listed = [str(p) for p in self.listed]
        if self.problems > len(listed):
            listed.append(
                f"... {self.problems - len(listed):,} more problems (the first "
                f"{MAX_PROBLEMS:,} are listed; fix them and run --dry-run again)"
            )
        return ValidationFailed(
            f"{self.rows} of {rows} rows are not valid; nothing was imported",
            problems=listed,
            hint="fix the rows and import again (--dry-run checks without writing)",
        )


class _Writer:
    """Inserts shaped rows a block at a time: contacts, change log, index, tallies, rules."""

    def __init__(
        self, ctx: Context, actor: Actor, doc: ConfigDocument, source: str, report: ImportReport
    ) -> None:
        self.ctx, self.actor, self.doc, self.source, self.report = ctx, actor, doc, source, report
        self.contact_type = contact_type = records.TYPES["contact"]
        self.companies = _CompanyCache(ctx, actor, doc, report)
        now = self.now = ctx.clock.now()
        base = {
            "tenant_id": actor.tenant_id,
            "created_at": now,
            "created_by": actor.login,
            "updated_at": now,
            "updated_by": actor.login,
        }
        defaults = {
            k: (
                ""
                if kind in ("str", "text", "date", "codes")
                else 0
                if kind == "checkboxes"
                else False
                if kind == "bool"
                else None
            )
            for k, kind in contact_type.fields.items()
        }
        self.template = {**defaults, **base}
        self.conn = ctx.session.connection()
        self.builder = search_index.Builder(self.conn, actor.tenant_id)
        self.name_keys: dict[str, str] = {}
        rules = records.rules_for_new_rows(doc, "contact")
        coerce = _cached(records.coercer(ctx, actor, doc, contact_type, records.NEW_ROW))
        self.run_rules = (
            rules.batch_runner("contact", "created", list(contact_type.fields), coerce=coerce)
            if rules is not None
            else None
        )  # worked out once per shape of row

    def write(self, shaped: list[tuple[dict[str, Any], str]]) -> None:
        ctx, actor = self.ctx, self.actor
        # each customer is a contact row and a change-log row; new companies at most one each
        quotas.require_room_for_records(
            ctx,
            actor.tenant_id,
            2 * len(shaped) + len({c for _, c in shaped if c}),
            what=f"importing {len(shaped)} customers"
            if not self.report.created
            else f"importing {len(shaped)} more customers (after {self.report.created:,})",
        )
        companies = self.companies.ids({c for _, c in shaped if c})
        crashpoint("csv.after_companies")
        batch: list[dict[str, Any]] = []
        company_names: list[str] = []
        fired: list[tuple[int, list[Any]]] = []
        no_company = (None, "")
        template, run_rules = self.template, self.run_rules
        for values, company in shaped:
            row = {**template, **values}
            company_id, company_name = companies.get(company, no_company)
            row["company_id"] = company_id
            if run_rules is not None:  # a created contact's rules, on the row before it is
                firings = run_rules(row)
                if firings:  # written: their changes are part of the inserted row
                    fired.append((len(batch), firings))
            batch.append(row)
            company_names.append(company_name)
        derive(batch, company_names, self.name_keys)
        ids = search_index.insert_contacts(self.conn, actor.tenant_id, batch, self.builder)
        log_created(self.conn, actor, self.now, self.source, ids)
        tally.add_rows(self.conn, actor.tenant_id, CrmContact, batch, extra_records=len(ids))
        if fired:
            records.apply_new_row_firings(
                ctx,
                actor,
                self.doc,
                self.contact_type,
                [({**batch[at], "id": ids[at]}, firings) for at, firings in fired],
            )
        self.report.created += len(ids)
        crashpoint("csv.after_batch")

    def finish(self) -> None:
        ctx, actor, report = self.ctx, self.actor, self.report
        self.builder.finish()
        crashpoint("csv.after_index")
        records.log_access(
            ctx, actor, "import", self.source, rows=report.created, encoding=report.encoding
        )
        audit.record(
            ctx,
            tenant_id=actor.tenant_id,
            actor=actor.login,
            action="crm:imported",
            subject=self.source,
            rows=report.created,
        )
        metrics.import_rows.labels("customers").inc(report.created)


def derive_row(row: dict[str, Any], company_name: str) -> None:
    """Fill a new contact row's derived columns (normalised name, phone digits, search
    text) as a create does: the reference of :func:`derive` (tested)."""
    row["name_norm"] = name_key(row["name"])
    row["phone_digits"] = phone_digits(row["phone"] or "")
    row["mobile_digits"] = phone_digits(row["mobile"] or "")
    row["search_text"] = records.search_text(row, company_name)


def derive(
    rows: list[dict[str, Any]], company_names: list[str], name_keys: dict[str, str] | None = None
) -> None:
    """:func:`derive_row` of each row, column by column: each distinct value of a column
    is keyed once (a name's key, a field's search key; ``name_keys`` keeps the names'
    keys across blocks), ASCII phone columns are reduced to digits by one C-level
    ``translate`` each, and a row's search text joins its fields' keys."""
    if not rows:
        return
    known = {} if name_keys is None else name_keys
    names = list(map(itemgetter("name"), rows))
    for name in set(names).difference(known):
        known[name] = name_key(name)
    norms = list(map(known.__getitem__, names))
    if len(known) > 100_000:  # a cache, not a copy of the file
        known.clear()
    phones = _digits(list(map(itemgetter("phone"), rows)))
    mobiles = _digits(list(map(itemgetter("mobile"), rows)))
    for row, norm, phone, mobile in zip(rows, norms, phones, mobiles, strict=True):
        row["name_norm"] = norm
        row["phone_digits"] = phone
        row["mobile_digits"] = mobile
    columns: list[list[str | None]] = []
    for column in [
        names,
        list(map(itemgetter("kana"), rows)),
        company_names,
        *(list(map(itemgetter(key), rows)) for key in records.SEARCH_PARTS[2:]),
    ]:
        present = set(column)
        present.discard("")
        present.discard(None)
        if not present:
            continue  # an empty field is left out of every row's text
        keyed: dict[Any, str | None] = dict(zip(present, search_key_column(present), strict=True))
        keyed[""] = keyed[None] = None
        columns.append(list(map(keyed.__getitem__, column)))
    texts = [
        SEP.join(parts) if None not in parts else SEP.join([p for p in parts if p is not None])
        for parts in zip(*columns, strict=True)
    ]
    for row, search_text in zip(rows, texts or [""] * len(rows), strict=True):
        row["search_text"] = search_text


#: ASCII characters but the digits, deleted by ``str.translate``
_NOT_DIGITS = {c: None for c in range(128) if not chr(c).isdigit()}


def _digits(column: list[str | None]) -> list[str]:
    """:func:`phone_digits` of each value (None as empty): a column of ASCII values with
    no ``+`` (no +81 to read) is ``strip`` + ``translate`` at C level, what
    :func:`phone_digits` does to each; else each distinct value once."""
    values = [v or "" for v in column]
    joined = "".join(values)
    if joined.isascii() and "+" not in joined:
        return list(map(str.translate, map(str.strip, values), repeat(_NOT_DIGITS)))
    done = {v: phone_digits(v) for v in set(values)}
    return list(map(done.__getitem__, values))


_CHANGE_COLUMNS = [
    "tenant_id",
    "at",
    "actor",
    "record_type",
    "record_id",
    "action",
    "changes",
    "purpose",
]


def change_rows(
    actor: Actor, at: datetime, source: str, ids: Sequence[int]
) -> list[tuple[Any, ...]]:
    """The change-log rows of contacts ``ids`` just imported, in :data:`_CHANGE_COLUMNS`
    order: the reference of what :func:`log_created` writes (tested)."""
    change = (actor.tenant_id, at, actor.login, "contact")
    created = ("create", {"import": source}, "CSV import")
    return [(*change, i, *created) for i in ids]


def log_created(
    conn: Connection, actor: Actor, at: datetime, source: str, ids: Sequence[int]
) -> None:
    """Write :func:`change_rows` of the contacts ``ids`` just inserted (ascending) with
    one ``INSERT ... SELECT`` in id order: the database builds the rows, nothing per row
    in Python or on the wire. On SQLite the ids are a run reserved under the write lock:
    they are read back from the contacts by that range (the rowid, not a tenant index,
    which would read all of the tenant's contacts for each block: ``tenant_id + 0``);
    elsewhere another session's contact may have an id between them, and the rows come
    from the array of the ids themselves."""
    if not ids:
        return
    changes = CrmChange.__table__
    contacts = CrmContact.__table__
    assert isinstance(changes, Table)
    assert isinstance(contacts, Table)
    c = changes.c
    if conn.dialect.name == "sqlite":
        number: Any = contacts.c.id
        origin: Any = contacts
        where = [
            contacts.c.id.between(ids[0], ids[-1]),
            contacts.c.tenant_id + 0 == actor.tenant_id,
        ]
    else:
        listed = func.unnest(bindparam("ids", list(ids), type_=ARRAY(BigInteger)))
        origin = select(listed.label("id")).subquery("created")
        number, where = origin.c.id, []
    rows = (
        select(
            literal(actor.tenant_id, c.tenant_id.type),
            literal(at, c.at.type),
            literal(actor.login, c.actor.type),
            literal("contact", c.record_type.type),
            number,
            literal("create", c.action.type),
            literal({"import": source}, c.changes.type),
            literal("CSV import", c.purpose.type),
        )
        .select_from(origin)
        .where(*where)
        .order_by(number)
    )
    conn.execute(insert(changes).from_select(_CHANGE_COLUMNS, rows))


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


class _CompanyCache:
    """Company name as written in the file -> (id, stored name); missing ones are created
    (the tenant's companies are read once, when the first company name comes)."""

    def __init__(
        self, ctx: Context, actor: Actor, doc: ConfigDocument, report: ImportReport
    ) -> None:
        self.ctx, self.actor, self.doc, self.report = ctx, actor, doc, report
        self.existing: dict[str, tuple[int, str]] | None = None

    def ids(self, names: set[str]) -> dict[str, tuple[int, str]]:
        if not names:
            return {}
        ctx, actor, doc = self.ctx, self.actor, self.doc
        if self.existing is None:
            self.existing = {
                key: (i, n)
                for i, n, key in ctx.session.execute(
                    select(CrmCompany.id, CrmCompany.name, CrmCompany.name_norm).where(
                        CrmCompany.tenant_id == actor.tenant_id
                    )
                )
            }
        existing = self.existing
        now = ctx.clock.now()
        made: dict[str, CrmCompany] = {}
        for name in sorted(names):
            key = name_key(name)
            if key not in existing and key not in made:
                stored = company_suffix(
                    nfkc(name) if doc.input_rules.normalize_width else name,
                    doc.input_rules.company_suffix,
                )
                made[key] = CrmCompany(
                    tenant_id=actor.tenant_id,
                    name=stored,
                    name_norm=key,
                    created_at=now,
                    created_by=actor.login,
                    updated_at=now,
                    updated_by=actor.login,
                )
        if made:  # one flush for all of them, then one for their change-log rows
            ctx.session.add_all(made.values())
            ctx.session.flush()
            ctx.session.add_all(
                CrmChange(
                    tenant_id=actor.tenant_id,
                    at=now,
                    actor=actor.login,
                    record_type="company",
                    record_id=company.id,
                    action="create",
                    changes={"name": company.name},
                    purpose="CSV import",
                )
                for company in made.values()
            )
            ctx.session.flush()
            existing.update((key, (company.id, company.name)) for key, company in made.items())
            self.report.companies_created += len(made)
        return {name: existing[name_key(name)] for name in names}


def export(
    ctx: Context,
    actor: Actor,
    kind: str,
    query: Query,
    *,
    columns: Sequence[str] | None = None,
    encoding: str = "utf-8-sig",
    codes: bool = False,
) -> bytes:
    """CSV of customers, or of the activities / purchases of the customers a search finds
    (:func:`export_to` into memory).

    Picklist and classification values are written as their labels
    (:mod:`~provisioner.services.crm.display`; an import reads them back), or as
    codes with ``codes``."""
    out = io.BytesIO()
    export_to(ctx, actor, kind, query, out, columns=columns, encoding=encoding, codes=codes)
    return out.getvalue()


def export_to(
    ctx: Context,
    actor: Actor,
    kind: str,
    query: Query,
    out: IO[bytes],
    *,
    columns: Sequence[str] | None = None,
    encoding: str = "utf-8-sig",
    codes: bool = False,
) -> int:
    """Write the CSV of :func:`export` to ``out`` as the rows are read (memory stays
    bounded whatever their number); how many rows it wrote."""
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "export", f"export {kind}")
    if kind not in EXPORT_COLUMNS:
        raise ValidationFailed(f"cannot export {kind!r}", hint="customers, activities, purchases")
    if encoding not in ("utf-8-sig", "utf-8", "cp932"):
        raise ValidationFailed(f"unsupported encoding {encoding!r}", hint="utf-8-sig or cp932")
    wanted = list(columns or (DEFAULT_EXPORT if kind == "customers" else EXPORT_COLUMNS[kind]))
    unknown = [c for c in wanted if c not in EXPORT_COLUMNS[kind]]
    if unknown:
        raise ValidationFailed(
            f"unknown column(s) {', '.join(unknown)}",
            hint="columns: " + ", ".join(EXPORT_COLUMNS[kind]),
        )
    doc = scope.config(ctx, actor.tenant_id)
    heads = labels(doc, kind)
    text = io.TextIOWrapper(
        out, encoding=encoding, errors="replace", newline="", write_through=True
    )
    try:
        shown = {} if codes else display.coded_fields(doc, kind)
        count = _write_rows(ctx, actor, kind, query, wanted, heads, shown, text)
        text.flush()
    finally:
        text.detach()
    records.log_access(ctx, actor, "export", kind, rows=count, columns=wanted, encoding=encoding)
    return count


def _write_rows(
    ctx: Context,
    actor: Actor,
    kind: str,
    query: Query,
    wanted: list[str],
    heads: dict[str, str],
    shown: dict[str, Any],
    text: IO[str],
) -> int:
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow([formula_safe(heads[c]) for c in wanted])
    where = conditions(ctx, actor, query)
    order = order_by(query.sort)  # the customers in the search's order (--sort)
    count = 0
    if kind == "customers":
        rows = ctx.session.execute(
            select(CrmContact, CrmCompany.name)
            .outerjoin(CrmCompany, CrmCompany.id == CrmContact.company_id)
            .where(*where)
            .order_by(*order)
            .execution_options(yield_per=2000)
        )
        for contact, company in rows:
            writer.writerow(
                [formula_safe(_cell(contact, company, c, shown.get(c))) for c in wanted]
            )
            count += 1
    else:
        model: Any = CrmActivity if kind == "activities" else CrmPurchase
        ids = select(CrmContact.id).where(*where)
        history = ctx.session.execute(
            select(model, CrmContact.name)
            .join(CrmContact, CrmContact.id == model.contact_id)
            .where(model.tenant_id == actor.tenant_id, model.contact_id.in_(ids))
            .order_by(*order[:-1], model.contact_id, model.date.desc(), model.id.desc())
            .execution_options(yield_per=2000)
        )
        for item, contact_name in history:
            writer.writerow(
                [
                    formula_safe(
                        contact_name
                        if c == "contact_name"
                        else _plain(_label(shown.get(c), getattr(item, c)))
                    )
                    for c in wanted
                ]
            )
            count += 1
    return count


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return "" if value is None else str(value)


def _label(known: dict[str, str] | None, value: Any) -> Any:
    return known.get(value, value) if known and isinstance(value, str) else value


def _cell(
    contact: CrmContact, company: str | None, column: str, known: dict[str, str] | None = None
) -> str:
    if column == "company":
        return company or ""
    if column.startswith("checkbox_"):
        return "1" if contact.checkboxes >> (int(column[9:]) - 1) & 1 else "0"
    if column == "classifications":
        return ";".join(_label(known, c) for c in records.codes(contact.classifications))
    return _plain(_label(known, getattr(contact, column)))
