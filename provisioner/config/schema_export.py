"""JSON Schema files for the configuration document, generated from its models.

The files in ``config_schemas/`` describe the *structure* layer of
:mod:`provisioner.config.document` (types, required fields, lengths,
enumerations) for editors and other tools. They are produced from the pydantic
models by :func:`schemas`; never edit them by hand::

    python -m provisioner.config.schema_export          # (re)write the files
    python -m provisioner.config.schema_export --check  # exit 1 if they are stale

pydantic's ``model_json_schema()`` output is post-processed where it would not
say exactly what the models accept:

* a ``default_factory`` (``[]``, ``Conditions()``) becomes a ``default``, as a
  plain ``default`` already does;
* a pattern's end anchor ``$`` becomes ``$(?!\\n)``. Both mean "end of the
  string" in ECMA 262, the dialect JSON Schema uses, and in the Rust engine
  pydantic validates with; Python's ``re`` (which the ``jsonschema`` package
  uses) also lets ``$`` match before a final newline, so ``"vip\\n"`` would
  pass the schema there while the model rejects it;
* pydantic's OpenAPI ``discriminator`` keyword is dropped: the ``oneOf`` of
  actions, each with its own ``type`` constant, already says the same thing in
  plain draft 2020-12.

The rest is checked, not changed: every object closed by
``additionalProperties: false`` (``extra="forbid"``), no ``"number"`` type
(strict ints are ``"integer"``; JSON Schema never counts ``true`` as one).

Cross-reference rules (unique codes, a memo field naming an existing picklist,
...) need the whole document and live in :mod:`provisioner.config.references`.

    >>> sorted(schemas())
    ['config-document.v1.json', 'config-sections.v1.json']
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

from provisioner.config.document import SCHEMA_VERSION, ConfigDocument, ConfigSections

DRAFT = "https://json-schema.org/draft/2020-12/schema"
BASE_URI = "https://provisioner.example/schemas/"
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "config_schemas"

DOCUMENT_FILE = f"config-document.v{SCHEMA_VERSION}.json"
SECTIONS_FILE = f"config-sections.v{SCHEMA_VERSION}.json"

REGENERATE = "python -m provisioner.config.schema_export"

#: Keywords whose value is one subschema / a list of them / a name -> subschema map.
_SCHEMA_KEYWORDS = frozenset(
    {
        "additionalProperties",
        "contains",
        "else",
        "if",
        "items",
        "not",
        "propertyNames",
        "then",
        "unevaluatedItems",
        "unevaluatedProperties",
    }
)
_SCHEMA_LIST_KEYWORDS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_MAP_KEYWORDS = frozenset({"$defs", "dependentSchemas", "patternProperties", "properties"})

END_ANCHOR = r"$(?!\n)"


class _Generator(GenerateJsonSchema):
    """pydantic's generator, but a ``default_factory`` yields a ``default`` too."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data", False):
            return cast(Callable[[], Any], factory)()
        return super().get_default_value(schema)


def anchor_end(pattern: str) -> str:
    """Make a trailing ``$`` mean "end of string" for Python's ``re`` as well.

    >>> anchor_end("^[a-z]+$")
    '^[a-z]+$(?!\\\\n)'
    >>> anchor_end("^https://")
    '^https://'
    """
    if pattern.endswith(END_ANCHOR):
        return pattern
    unescaped = re.sub(r"\\.", "", pattern)
    anchored = unescaped.endswith("$")
    if "$" in (unescaped[:-1] if anchored else unescaped):
        raise ValueError(f"pattern {pattern!r}: only a final '$' anchor is supported")
    return pattern[:-1] + END_ANCHOR if anchored else pattern


def _postprocess(node: dict[str, Any], where: str) -> dict[str, Any]:
    """Return a post-processed copy of the (sub)schema ``node``; see the module doc."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "discriminator" and "oneOf" in node:
            continue
        if key in _SCHEMA_KEYWORDS and isinstance(value, dict):
            out[key] = _postprocess(value, f"{where}/{key}")
        elif key in _SCHEMA_LIST_KEYWORDS:
            out[key] = [_postprocess(v, f"{where}/{key}/{i}") for i, v in enumerate(value)]
        elif key in _SCHEMA_MAP_KEYWORDS:
            out[key] = {k: _postprocess(v, f"{where}/{key}/{k}") for k, v in value.items()}
        elif key == "pattern":
            out[key] = anchor_end(value)
        else:
            out[key] = value
    types = out.get("type")
    if types == "number" or (isinstance(types, list) and "number" in types):
        raise ValueError(f"{where}: 'number' type, but the models only have strict ints")
    if "properties" in out and out.get("additionalProperties") is not False:
        raise ValueError(f"{where}: object is not closed by additionalProperties: false")
    return out


def _schema(model: type[BaseModel], name: str, title: str, description: str) -> dict[str, Any]:
    body = model.model_json_schema(schema_generator=_Generator, mode="validation")
    return {
        **_postprocess(body, "#"),
        "$schema": DRAFT,
        "$id": BASE_URI + name,
        "$comment": f"Generated from provisioner.config.document by `{REGENERATE}`; do not edit.",
        "title": title,
        "description": description,
    }


def schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema (draft 2020-12), freshly generated from the models."""
    return {
        DOCUMENT_FILE: _schema(
            ConfigDocument,
            DOCUMENT_FILE,
            f"CRM tenant configuration document (schema version {SCHEMA_VERSION})",
            "A tenant's whole configuration; every section is present. Structure only: "
            "cross-references (unique codes and indexes, picklist, checkbox and role "
            "references) are checked by the provisioner, not by this schema.",
        ),
        SECTIONS_FILE: _schema(
            ConfigSections,
            SECTIONS_FILE,
            f"CRM tenant configuration sections (schema version {SCHEMA_VERSION})",
            "Some sections of a configuration document, as in a bundle or a `config set` "
            "file; absent and null sections are not included. Each present section has the "
            "same structure as in the whole document. The provisioner also requires at least "
            "one section and checks cross-references once the sections meet a document.",
        ),
    }


def render(schema: dict[str, Any]) -> str:
    """The committed text of a schema file: pretty, sorted keys, UTF-8, final newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def stale(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of the schema files in ``directory`` that are missing or out of date."""
    out = []
    for name, schema in schemas().items():
        path = directory / name
        try:
            current = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current != render(schema):
            out.append(name)
    return out


def write(directory: Path = SCHEMA_DIR) -> list[str]:
    """(Re)write the schema files that are stale; returns their names."""
    names = stale(directory)
    directory.mkdir(parents=True, exist_ok=True)
    generated = schemas()
    for name in names:
        (directory / name).write_text(render(generated[name]), encoding="utf-8", newline="\n")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m provisioner.config.schema_export",
        description="Write the configuration JSON Schema files generated from the models.",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is stale"
    )
    parser.add_argument(
        "--dir", type=Path, default=SCHEMA_DIR, help=f"output directory (default: {SCHEMA_DIR})"
    )
    args = parser.parse_args(argv)
    directory: Path = args.dir
    if args.check:
        names = stale(directory)
        for name in names:
            print(f"{directory / name} is stale; run `{REGENERATE}`", file=sys.stderr)
        return 1 if names else 0
    names = write(directory)
    for name in names:
        print(f"wrote {directory / name}")
    if not names:
        print(f"{directory}: schema files are up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
