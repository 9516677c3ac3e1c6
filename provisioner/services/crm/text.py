"""Pure text rules of the CRM: width normalisation, company suffixes, phone numbers.

No database here: these functions are what "input rules" and search both rely on.

    >>> phone_digits("+81 3-1234-5678"), phone_digits("０３（１２３４）５６７８")
    ('0312345678', '0312345678')
    >>> company_suffix("(株)山田商事", "kabushiki_kaisha")
    '株式会社山田商事'
    >>> format_phone("0312345678", "hyphen"), format_phone("09012345678", "paren")
    ('03-1234-5678', '(090)1234-5678')
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from itertools import repeat

from provisioner.errors import ValidationFailed

#: spellings of 株式会社 users type, after NFKC ((株) and ㈱ both become "(株)")
_SUFFIX = re.compile(r"^(株式会社|\(株\))\s*|\s*(株式会社|\(株\))$")
_STYLE = {"kabushiki_kaisha": "株式会社", "kakko_kabu": "(株)", "maru_kabu": "㈱"}
_SPACES = re.compile(r"\s+")


#: every ASCII character but the digits, deleted by ``str.translate``
_NOT_DIGITS = {c: None for c in range(128) if not chr(c).isdigit()}


def nfkc(value: str) -> str:
    """Full-width digits and Latin letters to half-width, half-width kana to full-width."""
    if value.isascii():  # ASCII text is already in NFKC
        return value.strip()
    return unicodedata.normalize("NFKC", value).strip()


def nfkc_column(values: Sequence[str]) -> list[str]:
    """:func:`nfkc` of each value, normalised in one pass over them all (the values joined
    by U+001F, which composes with nothing and blocks reordering, then split again; see
    :func:`search_keys`); value by value if one holds U+001F."""
    joined = "\x1f".join(values)
    if joined.isascii():
        return list(map(str.strip, values))
    if joined.count("\x1f") != len(values) - 1:
        return list(map(nfkc, values))
    parts = unicodedata.normalize("NFKC", joined).split("\x1f")
    if len(parts) != len(values):  # not expected: NFKC makes no U+001F (kept as a guard)
        return list(map(nfkc, values))
    return list(map(str.strip, parts))


def phone_digits(value: str) -> str:
    """The digits of a phone number in national form: what lookup compares."""
    text = nfkc(value)
    if text.isascii():
        digits = text.translate(_NOT_DIGITS)
    else:
        digits = "".join(ch for ch in text if "0" <= ch <= "9")
    if text.startswith("+81"):
        rest = digits[2:]
        digits = rest if rest.startswith("0") else "0" + rest
    return digits


def _split(digits: str) -> tuple[str, str, str] | None:
    if len(digits) == 11 and digits[:3] in {"050", "070", "080", "090"}:
        return digits[:3], digits[3:7], digits[7:]
    if len(digits) == 10 and digits.startswith(("0120", "0800")):
        return digits[:4], digits[4:7], digits[7:]
    if len(digits) == 10 and digits.startswith(("03", "06")):
        return digits[:2], digits[2:6], digits[6:]
    if len(digits) == 10 and digits.startswith("0"):
        return digits[:3], digits[3:6], digits[6:]
    return None


def format_phone(value: str, style: str) -> str:
    """Apply ``input_rules.phone_format``; a number that cannot be split is kept as entered."""
    if style == "as_entered" or not value.strip():
        return value.strip()
    return _formatted(nfkc(value), phone_digits(value), style)


def _formatted(text: str, digits: str, style: str) -> str:
    """A non-empty number (``text``: its NFKC form) formatted by ``style`` (not
    ``as_entered``) from its :func:`phone_digits`."""
    if style == "digits":
        return digits
    parts = _split(digits)
    if parts is None:
        return text
    a, b, c = parts
    return f"{a}-{b}-{c}" if style == "hyphen" else f"({a}){b}-{c}"


def format_phone_column(values: Sequence[str], style: str) -> tuple[list[str], list[str]] | None:
    """:func:`format_phone` of each value and the :func:`phone_digits` of each result, for
    a column of ASCII values with no ``+`` (no +81 to read: a CSV file's usual phone
    column), where NFKC is ``strip`` and the digits one C-level ``translate`` per value;
    None for any other column (then value by value). Tested against the reference."""
    joined = "".join(values)
    if not joined.isascii() or "+" in joined:
        return None
    texts = list(map(str.strip, values))
    digits = list(map(str.translate, texts, repeat(_NOT_DIGITS)))
    if style == "as_entered":
        return texts, digits
    return [_formatted(t, d, style) if t else t for t, d in zip(texts, digits, strict=True)], digits


def company_suffix(name: str, style: str) -> str:
    """Apply ``input_rules.company_suffix`` (position before/after the name is kept)."""
    text = nfkc(name).replace("（", "(").replace("）", ")")
    if style == "as_entered":
        return name.strip()
    target = _STYLE[style]
    match = _SUFFIX.search(text)
    if match is None:
        return text
    if match.group(1):
        return target + text[match.end() :]
    return text[: match.start()] + target


def name_key(name: str) -> str:
    """What "the same name" means for duplicate checks: width, spaces and suffix ignored."""
    text = nfkc(name)
    text = _SUFFIX.sub("", text)
    return _SPACES.sub("", text).lower()


#: white space but the field separator U+001F (which ``str.isspace`` counts as space)
_SPACES_IN_FIELDS = re.compile(r"[^\S\x1f]+")


def search_keys(parts: Iterable[str]) -> str:
    """``"\\x1f".join(search_key(p) for p in parts if p)``, normalised in one pass.

    NFKC, white-space removal and lower case give the same result on the joined
    text as part by part: U+001F composes with nothing and blocks reordering
    (it is a starter), is neither cased nor case-ignorable (final sigma stops at
    it) and is kept by the white-space pattern. A part that itself holds U+001F
    (where :func:`search_key` would delete it) is keyed part by part.
    """
    present = list(filter(None, parts))
    joined = "\x1f".join(present)
    if joined.count("\x1f") != len(present) - 1:
        return "\x1f".join(map(search_key, present))
    if not joined.isascii():
        joined = unicodedata.normalize("NFKC", joined)
    return _SPACES_IN_FIELDS.sub("", joined).lower()


def search_key_column(values: Iterable[str]) -> list[str]:
    """:func:`search_key` of each value, normalised in one pass over them all.

    The values joined by U+001F are keyed as :func:`search_keys` keys a text (NFKC,
    white space but U+001F removed, lower case: the same on the joined text as value by
    value, see there), then split again; a value that itself holds U+001F (or a
    result that does not split back into as many keys) is keyed value by value."""
    values = list(values)
    joined = "\x1f".join(values)
    if joined.count("\x1f") != len(values) - 1 or not values:
        return list(map(search_key, values))
    if not joined.isascii():
        joined = unicodedata.normalize("NFKC", joined)
    keys = _SPACES_IN_FIELDS.sub("", joined).lower().split("\x1f")
    if len(keys) != len(values):  # not expected: NFKC makes no U+001F (kept as a guard)
        return list(map(search_key, values))
    return keys


def search_key(value: str) -> str:
    """Search normal form of a text or a query: NFKC, lower case, no white space."""
    if value.isascii() and value.isprintable() and " " not in value:
        return value.lower()  # already NFKC, and no white space (all of it is unprintable)
    return _search_key(value)


@lru_cache(maxsize=16384)
def _search_key(value: str) -> str:  # names, kana, companies and memos repeat a lot
    return _SPACES.sub("", unicodedata.normalize("NFKC", value)).lower()


# --------------------------------------------------------------------------- input boundaries

#: the first character of a spreadsheet formula (OWASP CSV injection), after NFKC
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


def formula_safe(cell: str) -> str:
    """A cell a spreadsheet will not run: one starting with ``= + - @``, TAB or CR (also
    after width normalisation: ``＝1+1`` is ``=1+1`` to NFKC) is prefixed with ``'``, as
    the OWASP CSV-injection guidance says; a number such as ``-5`` stays a number.

        >>> formula_safe("=1+1"), formula_safe("＝1+1"), formula_safe("-5"), formula_safe("田中")
        ("'=1+1", "'＝1+1", '-5', '田中')
    """
    if not cell:
        return cell
    first = cell[0] if cell.isascii() else unicodedata.normalize("NFKC", cell[:2])[:1]
    if first in FORMULA_START and not _NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def refuse_nul(value: object, where: str = "the record") -> None:
    """Refuse text holding a NUL character (U+0000), on every backend alike: PostgreSQL
    cannot store it and SQLite would. ``value``: a text, or a mapping or list of them
    (a record's fields), checked at the input boundaries (CSV import, record writes).

        >>> refuse_nul({"name": "a\\x00b"})
        Traceback (most recent call last):
        ...
        provisioner.errors.ValidationFailed: the record: name contains a NUL character (U+0000)
    """
    stack: list[tuple[str, object]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                field = f"{path} " if path else ""
                raise ValidationFailed(
                    f"{where}: {field}contains a NUL character (U+0000)",
                    hint="remove the NUL characters: no text field can hold one",
                )
        elif isinstance(item, Mapping):
            stack.extend((f"{path}.{k}" if path else str(k), v) for k, v in item.items())
            stack.extend((f"{path} (a key)", k) for k in item if isinstance(k, str))
        elif isinstance(item, (list, tuple)):
            stack.extend((path, v) for v in item)
