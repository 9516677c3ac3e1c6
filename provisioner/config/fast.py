"""Validation straight to plain data, for the hot paths (receiving a bundle, applying it).

Building ~20,000 frozen model objects for a large configuration costs far more
than checking it. These validators run the *same* pydantic-core schema as
:class:`~provisioner.config.document.ConfigDocument` (same types, constraints,
strictness, unknown-field rejection and defaults), with every model node
rewritten into a typed-dict node, so the output is the normalised JSON data
``ConfigDocument.model_validate(x).to_data()`` would give, without the objects.

    >>> from provisioner.config.defaults import default_document
    >>> data = default_document().to_data()
    >>> validate_document(data) == data
    True
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic_core import SchemaValidator

from provisioner.config.document import ConfigDocument, ConfigSections


def _as_typed_dict(node: Any) -> Any:
    if isinstance(node, list):
        return [_as_typed_dict(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("type") == "model":
        inner = node["schema"]
        assert inner["type"] == "model-fields", inner["type"]
        # keys the model leaves out of its data when unset: no default here either
        omitted: tuple[str, ...] = getattr(node.get("cls"), "omit_unset", ())
        fields = {
            name: {
                "type": "typed-dict-field",
                "schema": _as_typed_dict(
                    field["schema"]["schema"] if name in omitted else field["schema"]
                ),
                "required": field["schema"]["type"] != "default" and name not in omitted,
            }
            for name, field in inner["fields"].items()
        }
        config = dict(node.get("config", {}))
        out: dict[str, Any] = {
            "type": "typed-dict",
            "fields": fields,
            "extra_behavior": config.get("extra_fields_behavior", "ignore"),
            "strict": bool(config.get("strict", False)),
            "config": config,
        }
        if "ref" in node:
            out["ref"] = node["ref"]
        if omitted:  # an explicit null is left out too, as the model's data does
            out = {
                "type": "function-after",
                "schema": out,
                "function": {"type": "no-info", "function": _dropping(omitted)},
            }
        return out
    out = {
        key: _as_typed_dict(value)
        for key, value in node.items()
        if key not in {"serialization", "metadata"}
    }
    factory = node.get("default_factory")
    if node.get("type") == "default" and factory is not None:
        out["default_factory"] = _plain_factory(factory)
    return out


def _dropping(keys: tuple[str, ...]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def drop(data: dict[str, Any]) -> dict[str, Any]:
        for key in keys:
            if key in data and data[key] is None:
                del data[key]
        return data

    return drop


def _plain_factory(factory: Callable[[], Any]) -> Callable[[], Any]:
    """A default factory that builds a model (``Conditions``) must yield plain data here."""

    def make() -> Any:
        value = factory()
        return value.model_dump(mode="json") if isinstance(value, BaseModel) else value

    return make


@cache
def dict_validator(model: type[BaseModel]) -> SchemaValidator:
    """A validator with ``model``'s rules that returns plain dicts."""
    return SchemaValidator(_as_typed_dict(model.__pydantic_core_schema__))


def validate_document(data: Any) -> dict[str, Any]:
    """Structure of a whole document; raises pydantic ValidationError. Returns normalised data."""
    result: dict[str, Any] = dict_validator(ConfigDocument).validate_python(data)
    return result


def validate_sections(data: Any) -> dict[str, Any]:
    """Structure of some sections; absent sections are left out of the result."""
    result: dict[str, Any] = dict_validator(ConfigSections).validate_python(data)
    return {key: value for key, value in result.items() if value is not None}
