"""A phone column formatted in one pass (the CSV import's) equals each value formatted
by the reference (``format_phone``, ``phone_digits``, a field's coercer)."""

from __future__ import annotations

import random

import pytest

from provisioner.config.defaults import default_document
from provisioner.services.crm import records
from provisioner.services.crm.coerce import Fields, Refused
from provisioner.services.crm.text import format_phone, format_phone_column, phone_digits

STYLES = ("as_entered", "hyphen", "paren", "digits")
#: ASCII characters a phone cell holds, and some it should not
ASCII = list("0123456789" * 4 + "--()  .#x\tA")


def _column(rng: random.Random) -> list[str]:
    return [
        "".join(rng.choices(ASCII, k=rng.choice([0, 3, 10, 11, 12, 13, 22, 25])))
        for _ in range(rng.randint(0, 8))
    ]


@pytest.mark.parametrize("style", STYLES)
def test_an_ascii_phone_column_formats_as_each_value(style: str) -> None:
    rng = random.Random(STYLES.index(style))
    for _ in range(5000):
        values = _column(rng)
        found = format_phone_column(values, style)
        assert found is not None, values
        formatted = [format_phone(v, style) for v in values]
        assert found == (formatted, [phone_digits(f) for f in formatted]), values


def test_a_column_with_other_characters_or_a_plus_is_left_to_the_reference() -> None:
    assert format_phone_column(["03-1234-5678", "+81 3 1234 5678"], "hyphen") is None
    assert format_phone_column(["０３１２３４５６７８"], "hyphen") is None
    assert format_phone_column([], "hyphen") == ([], [])
    assert format_phone_column([" 0312345678 ", ""], "paren") == (
        ["(03)1234-5678", ""],
        ["0312345678", ""],
    )


def _coerced(fields: Fields, key: str, cell: str) -> object:
    try:
        return fields.value(key, cell)
    except Refused as exc:
        return exc.problems


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("key", ["phone", "mobile", "fax"])
def test_a_phone_field_column_equals_its_coercer_cell_by_cell(key: str, style: str) -> None:
    """Every value and every refusal (too many digits, too long) as :meth:`Fields.value`."""
    doc = default_document()
    doc = doc.model_copy(
        update={"input_rules": doc.input_rules.model_copy(update={"phone_format": style})}
    )
    rng = random.Random(len(key) * 7 + STYLES.index(style))
    columns = [_column(rng) for _ in range(400)]
    columns += [["1" * 21, "03-1234-5678"], ["0" * 201], ["０３１２３４５６７８", "090"]]
    for cells in columns:
        fields = Fields(doc, records.TYPES["contact"])
        got = [v.problems if isinstance(v, Refused) else v for v in fields.column(key, cells)]
        assert got == [_coerced(fields, key, c) for c in cells], cells
