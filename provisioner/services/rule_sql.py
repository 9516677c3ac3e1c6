"""A workflow's conditions as SQL, for the reads that look at every record of a tenant
(a dry run over a million contacts, a plan's "this rule would match N records").

The reference is the Python evaluator (:func:`provisioner.config.rules.test`); this
compiles only the conditions whose SQL gives exactly the same answer on every row, and
returns None for the rest, which the caller then evaluates in Python:

* text columns (never NULL) against a text that does not look like a number (Python
  compares two numbers as numbers: ``"01" eq 1``), ``contains`` by position (case as
  written, like Python's ``in``; not ``LIKE``, which folds ASCII case on SQLite);
* ``gt`` / ``lt`` on whole-number columns against a number, and on date columns
  (``YYYY-MM-DD`` text, never a number) against a non-numeric text;
* checkboxes (a bit of the mask) against true / false, and the classification
  (``,code,`` in the stored list);
* conditions on the rule's own object only (no related contact or company, no
  blueprint state, no custom-database field).

``tests/workflows/test_rule_sql.py`` compares the two on generated rules and records.

    where = condition_sql(workflow, CrmContact.__table__, "sqlite")   # None: use Python
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Table, and_, false, func, literal, or_, true

from provisioner.config.document import Workflow
from provisioner.config.rules import split_path

#: columns holding dates as YYYY-MM-DD text
DATE_KINDS = frozenset({"date"})


def _looks_numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    text = str(value).strip().lstrip("-")
    if not text.isascii():
        return False
    try:
        float(str(value).strip())
    except ValueError:
        return False
    return True


def _position(dialect: str, column: ColumnElement[Any], needle: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.strpos(column, literal(needle))
    return func.instr(column, literal(needle))


def _text(
    op: str, column: ColumnElement[Any], wanted: Any, kind: str, dialect: str
) -> ColumnElement[bool] | None:
    if op == "empty":
        return column == ""
    if op == "not_empty":
        return column != ""
    if wanted is None:
        return (
            (column == "")
            if op == "eq"
            else (column != "")
            if op == "ne"
            else (None if op == "contains" else false())
        )
    if isinstance(wanted, bool):
        return None
    text = str(wanted)
    if op == "contains":  # a substring, numbers or not
        return and_(column != "", _position(dialect, column, text) > 0)
    if _looks_numeric(wanted):
        return None
    if op == "eq":
        return column == text
    if op == "ne":
        return column != text
    if kind in DATE_KINDS:  # gt / lt: text order, as Python compares two non-numbers
        return and_(column != "", column > text if op == "gt" else column < text)
    return None


def _number(op: str, column: ColumnElement[Any], wanted: Any) -> ColumnElement[bool] | None:
    if op == "empty":
        return column.is_(None)
    if op == "not_empty":
        return column.is_not(None)
    if op in ("gt", "lt") and _looks_numeric(wanted):
        return and_(
            column.is_not(None), column > float(wanted) if op == "gt" else column < float(wanted)
        )
    return None


def _checkbox(
    op: str, mask: ColumnElement[Any], index: int, wanted: Any
) -> ColumnElement[bool] | None:
    bit = mask.op("&")(1 << (index - 1)) != 0
    if op in ("empty", "not_empty"):
        return ~bit if op == "empty" else bit
    if op in ("eq", "ne") and isinstance(wanted, bool):
        holds = bit if wanted else ~bit
        return holds if op == "eq" else ~holds
    return None


def _classification(
    op: str, stored: ColumnElement[Any], wanted: Any, dialect: str
) -> ColumnElement[bool] | None:
    if op in ("empty", "not_empty"):
        return (stored == "") if op == "empty" else (stored != "")
    if op in ("eq", "contains", "ne") and isinstance(wanted, str) and wanted:
        present = _position(dialect, stored, f",{wanted},") > 0
        return ~present if op == "ne" else present
    return None


def condition_sql(
    workflow: Workflow, table: Table, fields: dict[str, str], dialect: str
) -> ColumnElement[bool] | None:
    """The workflow's conditions over ``table`` (``fields``: column -> kind, as the
    record type declares them), or None when some condition has no exact SQL form."""
    parts: list[ColumnElement[bool]] = []
    for cond in workflow.conditions.rules:
        obj, name = split_path(cond.field)
        if obj != workflow.object:
            return None
        part: ColumnElement[bool] | None
        if name.startswith("checkbox_") and name[9:].isascii() and name[9:].isdigit():
            part = (
                _checkbox(cond.op, table.c.checkboxes, int(name[9:]), cond.value)
                if "checkboxes" in table.c
                else None
            )
        elif name == "classification":
            part = (
                _classification(cond.op, table.c.classifications, cond.value, dialect)
                if "classifications" in table.c
                else None
            )
        elif name in fields and name in table.c:
            kind = fields[name]
            if kind in ("str", "text", "date"):
                part = _text(cond.op, table.c[name], cond.value, kind, dialect)
            elif kind == "int":
                part = _number(cond.op, table.c[name], cond.value)
            else:
                part = None
        else:
            part = None
        if part is None:
            return None
        parts.append(part)
    if not parts:
        return true()
    return and_(*parts) if workflow.conditions.match == "all" else or_(*parts)


def classification_absent(
    stored: ColumnElement[Any], code: str, dialect: str
) -> ColumnElement[bool]:
    """Rows whose classifications do not hold ``code`` yet."""
    return _position(dialect, stored, f",{code},") == 0
