"""Inquiry (contact-history) CSV import (REQUIREMENTS B: the import ``-t`` was made for).

    report = inquiries.import_inquiries(ctx, actor, raw_bytes, dry_run=True)   # 'import'
    report.created, report.problems

The file is read like a customer import: UTF-8 with BOM, UTF-8 or CP932; the
first line is the header, by configured label (``対応日``, ``内容``...) or field
key (``date``, ``kind``, ``content``, ``detail``, ``response``, ``store``,
``staff``, ``memo``). The customer of a row is named by ``contact_id`` (顧客ID)
or, without it, by ``phone`` (電話番号: the first customer with that phone or
mobile number, as the screen pop finds it). Blank lines are skipped; row numbers
are the file's line numbers (the header is line 1).

Each row is one activity created by ``records.create`` -- the one record write
path, so the input rules, picklists, the tenant's quota and its workflow rules
apply to each row exactly as to a single create. All rows or none: every row is
tried (each in a savepoint), every bad row is reported with its line, column and
reason, and if any row is bad, or on a dry run, nothing is kept.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select

from provisioner.db.crm_models import CrmContact
from provisioner.errors import ProvisionerError, ValidationFailed
from provisioner.services.actors import Actor
from provisioner.services.crm import display, records, scope
from provisioner.services.crm.csvio import decode, labels
from provisioner.services.crm.text import nfkc, phone_digits
from provisioner.services.transaction import Context

#: activity columns a row may hold (besides contact_id / phone)
FIELDS = (
    "date",
    "kind",
    "content",
    "detail",
    "response",
    "store",
    "staff",
    "memo",
    *(f"content_{i}" for i in range(1, 11)),
)
MAX_PROBLEMS = 200


@dataclass
class InquiryReport:
    encoding: str
    rows: int
    created: int = 0
    dry_run: bool = False
    problems: list[str] = field(default_factory=list)


class _DryRun(Exception):
    """Rolls the dry run's savepoint back."""


def _header(doc: Any, header: list[str]) -> tuple[list[str | None], list[str]]:
    by_text: dict[str, str] = {}
    for column, label in labels(doc, "activities").items():
        by_text.setdefault(nfkc(label).lower(), column)
    by_text.setdefault(nfkc(doc.labels.get("contact.phone", "電話番号")).lower(), "phone")
    by_text.setdefault("顧客id", "contact_id")
    for column in (*FIELDS, "contact_id", "phone"):
        by_text[column] = column
    keys: list[str | None] = []
    problems: list[str] = []
    for text in header:
        key: str | None = by_text.get(nfkc(text).strip().lower())
        if key == "contact_name":
            key = None  # an export's name column: informative only
        elif key is None and text.strip():
            problems.append(
                f"row 1, {text}: unknown column (a configured label or one of "
                f"{', '.join((*FIELDS, 'contact_id', 'phone'))})"
            )
        elif key is not None and key in keys:
            problems.append(f"row 1, {text}: column {key!r} appears twice")
        keys.append(key)
    if "contact_id" not in keys and "phone" not in keys:
        problems.append("row 1: the customer column is missing (contact_id or phone)")
    if "date" not in keys:
        problems.append("row 1: the date column is missing")
    return keys, problems


def _contact(ctx: Context, actor: Actor, values: dict[str, str]) -> int | str:
    """The row's customer id, or the reason there is none."""
    if values.get("contact_id", "").strip():
        text = nfkc(values["contact_id"]).strip()
        if not text.isdigit():
            return f"contact_id: {values['contact_id']!r} is not a customer id"
        found = ctx.session.scalar(
            select(CrmContact.id).where(
                CrmContact.tenant_id == actor.tenant_id, CrmContact.id == int(text)
            )
        )
        return found if found is not None else f"contact_id: no customer {text}"
    digits = phone_digits(values.get("phone", ""))
    if len(digits) < 3:
        return "phone: the customer's phone number (or a contact_id) is required"
    found = ctx.session.scalar(
        select(CrmContact.id)
        .where(
            CrmContact.tenant_id == actor.tenant_id,
            or_(CrmContact.phone_digits == digits, CrmContact.mobile_digits == digits),
        )
        .order_by(CrmContact.id)
        .limit(1)
    )
    return found if found is not None else f"phone: no customer with {values['phone']}"


def import_inquiries(
    ctx: Context, actor: Actor, raw: bytes, *, dry_run: bool = False, source: str = "upload"
) -> InquiryReport:
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "import", "import inquiries")
    text, encoding = decode(raw)
    doc = scope.config(ctx, actor.tenant_id)
    reader = csv.reader(io.StringIO(text, newline=""))
    numbered: list[tuple[int, list[str]]] = []
    for cells in reader:
        numbered.append((reader.line_num, cells))
    if not numbered:
        raise ValidationFailed("the file is empty", hint="the first line must be the header")
    (_, header), body = (
        numbered[0],
        [(n, c) for n, c in numbered[1:] if any(cell.strip() for cell in c)],
    )
    keys, problems = _header(doc, header)
    if problems:
        raise ValidationFailed("the header is not valid", problems=problems)
    label_of = dict(zip(keys, header, strict=False))
    report = InquiryReport(encoding=encoding, rows=len(body), dry_run=dry_run)
    purpose = f"inquiry import ({source})"
    try:
        with ctx.session.begin_nested():
            for number, cells in body:
                if len(cells) > len(keys):
                    problems.append(f"row {number}: {len(cells)} cells, the header has {len(keys)}")
                    continue
                values = {k: cell for k, cell in zip(keys, cells, strict=False) if k is not None}
                contact = _contact(ctx, actor, values)
                if isinstance(contact, str):
                    column = label_of.get(contact.split(":", 1)[0], "-")
                    problems.append(f"row {number}, {column}: {contact.split(': ', 1)[1]}")
                    continue
                data: dict[str, Any] = {
                    "contact_id": contact,
                    **{k: values[k] for k in FIELDS if k in values},
                }
                if data.get("kind"):  # an export's label (電話) reads back as its code
                    data["kind"] = display.to_code(doc, "activity", "kind", data["kind"])
                try:
                    with ctx.session.begin_nested():
                        records.create(ctx, actor, "activity", data, purpose=purpose)
                except ProvisionerError as exc:
                    for reason in getattr(exc, "problems", None) or [exc.message]:
                        key, sep, rest = reason.partition(": ")
                        problems.append(
                            f"row {number}, {label_of.get(key, key)}: {rest}"
                            if sep and key in label_of
                            else f"row {number}: {reason}"
                        )
                    continue
                report.created += 1
                if len(problems) >= MAX_PROBLEMS:
                    break
            if problems or dry_run:
                raise _DryRun
    except _DryRun:
        pass
    if problems:
        bad = len({p.split(",", 1)[0].split(":", 1)[0] for p in problems})
        raise ValidationFailed(
            f"{bad} of {len(body)} rows are not valid; nothing was imported",
            problems=problems,
            hint="fix the listed rows and import again",
        )
    if dry_run:
        report.created = 0
    else:
        records.log_access(
            ctx, actor, "import", "inquiries", rows=report.created, encoding=encoding, source=source
        )
    return report
