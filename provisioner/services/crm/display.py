"""Picklist and classification values as people read them: labels, not codes.

    shown = display.record(doc, "contact", card)        # sex "male" -> "男性", ...
    display.cell(doc, "purchase", "payment_method", "cash")   # "現金"
    display.to_code(doc, "contact", "sex", "男性")             # "male" (imports)

Records keep codes (stable across label renames and bundle copies). Exports,
print layouts and the CTI screen pop show the configured label of each coded
value -- memo fields of type picklist, sex, family relation, activity kind,
payment method, media, product and customer classifications -- unless the
caller asks for codes (``codes=True``: CLI ``--codes``, API ``codes=true``).
A value the configuration no longer knows is shown as stored. Imports read
either: a cell that is a label (and not itself a code) is taken as its code, so
every export imports back.

This module is the one home of that mapping (:func:`coded_fields`).
"""

from __future__ import annotations

from typing import Any

from provisioner.config.document import ConfigDocument
from provisioner.services.crm.text import nfkc

#: a classification column: its values are a list of codes (customer tree)
_CUSTOMER_TREE = "classifications.customer"
_PRODUCT_TREE = "classifications.product"


def _sources(doc: ConfigDocument, type_name: str) -> dict[str, str]:
    """Field -> where its codes come from: a picklist code or a classification tree."""
    if type_name in ("contact", "customers"):
        out = {
            f"memo_{m.index}": m.picklist
            for m in doc.memo_fields
            if m.type == "picklist" and m.picklist
        }
        out["sex"] = "sex"
        out["classifications"] = _CUSTOMER_TREE
        return out
    if type_name == "company":
        return {"classifications": _CUSTOMER_TREE}
    if type_name == "family":
        return {"relation": "family_relation", "sex": "sex"}
    if type_name in ("activity", "activities"):
        return {"kind": "activity_kind"}
    if type_name in ("purchase", "purchases"):
        return {
            "payment_method": "payment_method",
            "media": "media",
            "product_class": _PRODUCT_TREE,
        }
    if type_name == "product":
        return {"product_class": _PRODUCT_TREE}
    return {}


def _labels_of(doc: ConfigDocument, source: str) -> dict[str, str]:
    if source == _CUSTOMER_TREE:
        return {n.code: n.label for n in doc.classifications.customer}
    if source == _PRODUCT_TREE:
        return {n.code: n.label for n in doc.classifications.product}
    for picklist in doc.picklists:
        if picklist.code == source:
            return {v.code: v.label for v in picklist.values}
    return {}


def coded_fields(doc: ConfigDocument, type_name: str) -> dict[str, dict[str, str]]:
    """The coded fields of a record type (or export kind): field -> {code: label}."""
    return {name: _labels_of(doc, source) for name, source in _sources(doc, type_name).items()}


def cell(doc: ConfigDocument, type_name: str, name: str, value: Any) -> Any:
    """One value as shown: a code's label (a list of codes: each), else the value."""
    known = coded_fields(doc, type_name).get(name)
    return _shown(known, value)


def _shown(known: dict[str, str] | None, value: Any) -> Any:
    if not known:
        return value
    if isinstance(value, list):
        return [known.get(v, v) if isinstance(v, str) else v for v in value]
    if isinstance(value, str):
        return known.get(value, value)
    return value


def record(doc: ConfigDocument, type_name: str, data: dict[str, Any]) -> dict[str, Any]:
    """A record's dict (``records.to_dict``) with its coded values shown as labels."""
    fields = coded_fields(doc, type_name)
    return {k: _shown(fields.get(k), v) for k, v in data.items()}


def to_code(
    doc: ConfigDocument,
    type_name: str,
    name: str,
    text: str,
    fields: dict[str, dict[str, str]] | None = None,
) -> str:
    """An imported cell of a coded field as codes: each label (NFKC, case-insensitive)
    that is not itself a code becomes its code; anything else is left for the record
    rules to judge. Classification cells hold several values (``;`` or ``,``)."""
    known = (fields if fields is not None else coded_fields(doc, type_name)).get(name)
    if not known or not text.strip():
        return text
    by_label: dict[str, str] = {}
    for code, label in known.items():
        by_label.setdefault(nfkc(label).strip().lower(), code)

    def one(value: str) -> str:
        if value in known:
            return value
        return by_label.get(nfkc(value).strip().lower(), value)

    if name == "classifications":
        parts = [p for p in nfkc(text).replace(";", ",").split(",") if p.strip()]
        return ";".join(one(p.strip()) for p in parts)
    return one(text)
