"""Whole numbers typed by people: ASCII digits only, after optional width normalisation.

``str.isdigit()`` is true for characters ``int()`` refuses (superscripts such as "²",
circled digits such as "①") and ``int()`` accepts digits of every script, so neither is
a test of "a number we can read". Every place that reads a whole number from text uses
:func:`parse_whole_number`.

    >>> parse_whole_number("42"), parse_whole_number("²"), parse_whole_number("٣")
    (42, None, None)
    >>> parse_whole_number("１２", width=True), parse_whole_number("-7", signed=True)
    (12, -7)
"""

from __future__ import annotations

import re
import unicodedata

_WHOLE = re.compile(r"[0-9]+", re.ASCII)
_SIGNED = re.compile(r"-?[0-9]+", re.ASCII)


def parse_whole_number(text: str, *, width: bool = False, signed: bool = False) -> int | None:
    """The number ``text`` spells in ASCII digits (surrounding spaces ignored), else None.

    ``width``: full-width digits count too (NFKC first), where the input rules
    say so (CRM record values). ``signed``: a leading ``-`` is allowed.
    """
    if width and not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    text = text.strip()
    if not (_SIGNED if signed else _WHOLE).fullmatch(text):
        return None
    return int(text)
