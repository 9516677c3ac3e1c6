"""One coercer per record field: the one home of the rules that check and normalise a value.

    fields = Fields(doc, TYPES["contact"])
    fields.value("phone", "０３１２３４５６７８")      # '03-1234-5678' (input rules)
    fields.value("sex", "nonsense")                    # raises Refused(["sex: 'nonsense' ..."])
    values = fields.shape({"name": "田中", "memo_2": "gold"}, None, problems)   # row-wise
    fields.finish(values, None, problems)              # rules across fields (required, postal)
    fields.column("name", cells)                       # column-wise: the same values, faster

A field's coercer checks its type and length limit, applies the tenant's input rules
(width normalisation, phone format, company suffix) and checks its configured values
(picklists, classifications, e-mail form, enabled checkboxes). :func:`records.shape
<provisioner.services.crm.records.shape>` applies the coercers row by row (a create or an
update); the CSV import applies the very same coercers column by column, each distinct
cell once (:meth:`Fields.column`, whose whole-column shortcut for plain text sits beside
the per-value reference and is tested against it). Rules that read several fields of a
row (required fields, the individual mode, the purchase amount, postal code -> address)
are :meth:`Fields.finish`, used by both.

Problems are worded ``"field: reason"``, the wording a create's validation error lists.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from provisioner.config.document import ConfigDocument
from provisioner.numbers import parse_whole_number
from provisioner.services.crm import postal
from provisioner.services.crm.text import (
    company_suffix,
    format_phone,
    format_phone_column,
    nfkc,
    nfkc_column,
    phone_digits,
)

DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CHECKBOX_BITS = 48
#: text fields kept as typed (no width normalisation): free text
AS_TYPED = frozenset({"note", "body", "memo", "content", "detail", "response"})
PHONES = ("phone", "mobile", "fax")
#: field -> the picklist its value must be an active value of, per record type
#: (a contact's picklist memos come from the configuration)
PICKLISTS: Mapping[str, Mapping[str, str]] = {
    "contact": {"sex": "sex"},
    "family": {"relation": "family_relation", "sex": "sex"},
    "activity": {"kind": "activity_kind"},
    "purchase": {"payment_method": "payment_method", "media": "media"},
}


class RecordType(Protocol):
    """What the coercers read of a record type (:class:`records.RecordType
    <provisioner.services.crm.records.RecordType>`)."""

    @property
    def name(self) -> str: ...
    @property
    def fields(self) -> Mapping[str, str]: ...
    @property
    def required(self) -> tuple[str, ...]: ...


class Refused(Exception):
    """A value a field does not accept; ``problems`` are worded ``"field: reason"``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


Coerce = Callable[[Any], Any]


def text_limit(kind: str) -> int:
    return 200 if kind == "str" else 20000


class Fields:
    """The coercers of one record type's fields under one configuration (built on first use)."""

    def __init__(self, doc: ConfigDocument, rt: RecordType) -> None:
        self.doc = doc
        self.rt = rt
        self.enabled = frozenset(c.index for c in doc.checkboxes if c.enabled)
        self._coercers: dict[str, Coerce] = {}
        self._plain: set[str] = set()
        #: phone fields normalised for width -> their format (see :meth:`column`)
        self._phones: dict[str, str] = {}

    # ------------------------------------------------------------ one value

    def value(self, key: str, value: Any) -> Any:
        """``value`` checked and normalised for field ``key``; :class:`Refused` if it is not
        valid (the checkboxes field: see :meth:`checkboxes`)."""
        return self.coercer(key)(value)

    def coercer(self, key: str) -> Coerce:
        found = self._coercers.get(key)
        if found is None:
            found = self._coercers[key] = self._build(key)
        return found

    def is_plain(self, key: str) -> bool:
        """Whether the coercer of ``key`` is ``nfkc`` of any text within its length limit."""
        self.coercer(key)
        return key in self._plain

    def shape(
        self, data: Mapping[str, Any], row: Any | None, problems: list[str]
    ) -> dict[str, Any]:
        """Each given field's coerced value (a refused one is left out, its problems
        added); ``row`` is the record an update changes (None for a create)."""
        out: dict[str, Any] = {}
        for key, value in data.items():
            try:
                if key == "checkboxes" and key in self.rt.fields:
                    out[key] = self.checkboxes(value, row.checkboxes if row else 0)
                else:
                    out[key] = self.value(key, value)
            except Refused as exc:
                problems.extend(exc.problems)
        return out

    def finish(self, values: dict[str, Any], row: Any | None, problems: list[str]) -> None:
        """The rules across fields of a row: required fields, the individual mode, a
        purchase's amount, a job's kind and period, the address of a postal code (filled
        in ``values``)."""
        for key in self.rt.required:
            if row is None and values.get(key) in (None, ""):
                problems.append(f"{key}: required")
            elif row is not None and key in values and values[key] in (None, ""):
                problems.append(f"{key}: may not be empty")
        name = self.rt.name
        if (
            name == "contact"
            and self.doc.mode == "individual"
            and (values.get("company_id") or values.get("department_id"))
        ):
            problems.append(
                "company_id: this tenant is in individual mode (the contact is the "
                "customer; no company)"
            )
        if name == "purchase":
            _amount(values, row, problems)
        if name == "job":
            _job(values, row, problems)
        if name in ("company", "department", "contact") and values.get("postal_code"):
            postal.fill_address(
                values, row, check=self.doc.input_rules.postal_code_check, problems=problems
            )

    # ------------------------------------------------------------ checkboxes

    def checkbox(self, index: Any, on: Any) -> int:
        """The bit of checkbox ``index`` (1-based), checked (``on``) or cleared."""
        if not isinstance(index, int) or isinstance(index, bool) or not 1 <= index <= 48:
            raise Refused([f"checkboxes: {index!r} is not a checkbox index 1..48"])
        if not isinstance(on, bool):
            raise Refused([f"checkboxes: checkbox {index} must be true or false"])
        if index not in self.enabled:
            raise Refused([f"checkboxes: checkbox {index} is disabled in the configuration"])
        return 1 << (index - 1)

    def checkboxes(self, value: Any, current: int) -> int:
        """``[1, 5]`` (exactly these checked) or ``{"1": true, "5": false}`` (changes to
        ``current``) as a bit mask."""
        if isinstance(value, list):
            changes: dict[Any, Any] = {item: True for item in value}
            mask = 0
        elif isinstance(value, dict):
            changes = {
                n
                if isinstance(k, str) and (n := parse_whole_number(k, width=True)) is not None
                else k: v
                for k, v in value.items()
            }
            mask = current
        else:
            raise Refused(["checkboxes: expected a list of checked indexes or {index: bool}"])
        problems: list[str] = []
        for index, on in changes.items():
            try:
                bit = self.checkbox(index, on)
            except Refused as exc:
                problems.extend(exc.problems)
                continue
            mask = mask | bit if on else mask & ~bit
        if problems:
            raise Refused(problems)
        return mask

    # ------------------------------------------------------------ a column

    def column(
        self, key: str, cells: Sequence[str], parse: Callable[[str], Any] | None = None
    ) -> list[Any]:
        """:meth:`value` of each cell (after ``parse``), or the :class:`Refused` it raised:
        each distinct cell is coerced once; a plain text column is ``nfkc`` of each cell
        when none is over the limit (what :meth:`value` gives each, tested)."""
        if (
            parse is None
            and self.is_plain(key)
            and max(map(len, cells), default=0) <= text_limit(self.rt.fields[key])
        ):
            return nfkc_column(cells)
        if parse is None and (phones := self._phone_column(key, cells)) is not None:
            return phones
        coerce = self.coercer(key)
        done: dict[str, Any] = {}
        out = []
        for cell in cells:
            if cell in done:
                out.append(done[cell])
                continue
            try:
                value = coerce(parse(cell) if parse is not None else cell)
            except Refused as exc:
                value = exc
            done[cell] = value
            out.append(value)
        return out

    def _phone_column(self, key: str, cells: Sequence[str]) -> list[str] | None:
        """:meth:`value` of each cell of a phone column that :func:`format_phone_column`
        takes and none of whose cells is refused; else None."""
        self.coercer(key)
        style = self._phones.get(key)
        if style is None or max(map(len, cells), default=0) > text_limit(self.rt.fields[key]):
            return None
        found = format_phone_column(cells, style)
        if found is None:
            return None
        values, digits = found
        if key != "fax" and max(map(len, digits), default=0) > _MOST_DIGITS:
            return None  # some are refused: value by value
        return values

    # ------------------------------------------------------------ building

    def _build(self, key: str) -> Coerce:
        kind = self.rt.fields.get(key)
        if kind is None:
            raise_unknown = Refused(
                [f"{key}: not a field of {self.rt.name} (fields: {', '.join(self.rt.fields)})"]
            )

            def unknown(_value: Any) -> Any:
                raise raise_unknown

            return unknown
        if kind in ("str", "text"):
            return self._text(key, kind)
        if kind in ("int", "ref"):
            return _whole(key)
        if kind == "bool":
            return _boolean(key)
        if kind == "date":
            return _date(key)
        if kind == "codes":
            return _codes(key, {n.code for n in self.doc.classifications.customer})
        if kind == "checkboxes":
            return lambda value: self.checkboxes(value, 0)
        return lambda value: value  # json: checked by its record type (custom databases)

    def _text(self, key: str, kind: str) -> Coerce:
        rules = self.doc.input_rules
        limit = text_limit(kind)
        width = rules.normalize_width and key not in AS_TYPED
        then = self._then(key)
        if then is None and width:
            self._plain.add(key)
        if key in PHONES and width:
            self._phones[key] = rules.phone_format

        def coerce(value: Any) -> Any:
            if value is None:
                value = ""
            if not isinstance(value, str):
                raise Refused([f"{key}: expected text, got {value!r}"])
            if len(value) > limit:
                raise Refused([f"{key}: longer than {limit} characters"])
            if width:
                value = nfkc(value)
            return then(value) if then is not None and value else value

        return coerce

    def _then(self, key: str) -> Callable[[str], str] | None:
        """The rule a non-empty text value of ``key`` meets after its width, if any."""
        rules, name = self.doc.input_rules, self.rt.name
        if key in PHONES:
            return _phone(key, rules.phone_format)
        if key == "email":
            return _email
        if name == "company" and key == "name":
            return lambda value: company_suffix(value, rules.company_suffix)
        if name in ("purchase", "product") and key == "product_class":
            return _one_of(
                key,
                {n.code for n in self.doc.classifications.product},
                "is not a product classification",
            )
        if name == "external_link" and key == "system":
            return _one_of(
                key,
                {s.code for s in self.doc.settings.external_systems},
                "is not an external system",
            )
        picklist = PICKLISTS.get(name, {}).get(key)
        if name == "contact" and key.startswith("memo_"):
            picklist = next(
                (
                    m.picklist
                    for m in self.doc.memo_fields
                    if f"memo_{m.index}" == key and m.type == "picklist" and m.picklist
                ),
                None,
            )
        allowed = next(
            (
                {v.code for v in pl.values if v.active}
                for pl in self.doc.picklists
                if pl.code == picklist
            ),
            None,
        )
        if picklist is None or allowed is None:
            return None
        return _one_of(
            key, allowed, f"is not an active value of picklist {picklist!r}", "no values"
        )


def _whole(key: str) -> Coerce:
    def coerce(value: Any) -> Any:
        if value is None:
            return None
        if (
            isinstance(value, str)
            and (number := parse_whole_number(value, width=True, signed=True)) is not None
        ):
            return number
        if isinstance(value, bool) or not isinstance(value, int):
            raise Refused([f"{key}: expected a whole number, got {value!r}"])
        return value

    return coerce


def _boolean(key: str) -> Coerce:
    def coerce(value: Any) -> Any:
        if not isinstance(value, bool):
            raise Refused([f"{key}: expected true or false, got {value!r}"])
        return value

    return coerce


def _date(key: str) -> Coerce:
    def coerce(value: Any) -> Any:
        value = nfkc(value or "") if isinstance(value, str) else value
        if not isinstance(value, str) or (value and not DATE.match(value)):
            raise Refused([f"{key}: expected a date YYYY-MM-DD, got {value!r}"])
        return value

    return coerce


def _codes(key: str, allowed: set[str]) -> Coerce:
    """A list of classification codes, stored as ``,a,b,`` (``""`` for none)."""

    def coerce(value: Any) -> Any:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise Refused([f"{key}: expected a list of classification codes"])
        bad = [
            f"{key}: {code!r} is not a customer classification "
            f"({', '.join(sorted(allowed)) or 'none configured'})"
            for code in value
            if code not in allowed
        ]
        if bad:
            raise Refused(bad)
        return "," + ",".join(dict.fromkeys(value)) + "," if value else ""

    return coerce


#: the most digits a phone or mobile number may have (a fax number: any)
_MOST_DIGITS = 20


def _phone(key: str, style: str) -> Callable[[str], str]:
    def coerce(value: str) -> str:
        value = format_phone(value, style)
        if key != "fax" and len(phone_digits(value)) > _MOST_DIGITS:
            raise Refused([f"{key}: too many digits"])
        return value

    return coerce


def _email(value: str) -> str:
    if not EMAIL.match(value):
        raise Refused([f"email: {value!r} is not an e-mail address"])
    return value


def _one_of(
    key: str, allowed: set[str], what: str, none: str = "none configured"
) -> Callable[[str], str]:
    def coerce(value: str) -> str:
        if value not in allowed:
            raise Refused([f"{key}: {value!r} {what} ({', '.join(sorted(allowed)) or none})"])
        return value

    return coerce


def _amount(values: dict[str, Any], row: Any | None, problems: list[str]) -> None:
    """amount = quantity x unit price whenever all three are known (given or kept); an
    update of either recomputes it."""
    known: list[Any] = [
        values.get(k, getattr(row, k, None)) for k in ("quantity", "unit_price", "amount")
    ]
    qty, price, amount = known
    if (
        row is not None
        and "amount" not in values
        and None not in (qty, price)
        and ("quantity" in values or "unit_price" in values)
    ):
        values["amount"] = amount = qty * price
    if None not in (qty, price, amount) and qty * price != amount:
        problems.append(
            f"amount: {amount} is not quantity x unit price ({qty} x {price} = {qty * price})"
        )


#: the kinds of a job entered by hand
JOB_KINDS = ("previous", "concurrent")


def _job(values: dict[str, Any], row: Any, problems: list[str]) -> None:
    """A job is previous (the default) or concurrent, and its period does not end before
    it starts."""
    if "kind" in values or row is None:
        values["kind"] = kind = values.get("kind") or "previous"
        if kind not in JOB_KINDS:
            problems.append(f"kind: {kind!r} is not a job kind ({', '.join(JOB_KINDS)})")
    start, end = (values.get(k, getattr(row, k, "")) for k in ("date_from", "date_to"))
    if isinstance(start, str) and isinstance(end, str) and start and end and end < start:
        problems.append(f"date_to: {end} is before date_from {start}")


def problems_of(values: Iterable[Any]) -> list[str]:
    """The problems of the :class:`Refused` among ``values`` (a row of :meth:`Fields.column`)."""
    return [p for v in values if isinstance(v, Refused) for p in v.problems]
