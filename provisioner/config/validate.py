"""Turning untrusted data into a checked :class:`ConfigDocument`.

Every entry point (``config set`` files, bundle payloads, merge results) goes
through here, so every invalid document fails the same way: one
:class:`~provisioner.errors.ValidationFailed` listing each problem with its
location, e.g. ``checkboxes.3.label: String should have at least 1 character``.

    >>> from provisioner.config.defaults import default_document
    >>> document_from_data(default_document().to_data()).mode
    'corporate'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import ValidationError

from provisioner.config import fast, references
from provisioner.config.document import ConfigDocument, ConfigSections
from provisioner.config.memo import IdentityMemo
from provisioner.errors import ValidationFailed, excerpt


def _part(step: object) -> str:
    """One step of a problem's location, bounded (a key may be 100,000 characters long)."""
    text = str(step)
    return text if len(text) <= 64 and text.isprintable() else excerpt(text, 64)


def format_problems(error: ValidationError, prefix: str = "") -> list[str]:
    out = []
    for item in error.errors(include_url=False):
        loc = ".".join(_part(p) for p in item["loc"])
        where = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or "document")
        out.append(f"{where}: {item['msg']}")
    return out


def document_from_data(data: Any, *, what: str = "configuration") -> ConfigDocument:
    """Structure and references; raises ValidationFailed listing every problem."""
    try:
        doc = ConfigDocument.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(
            f"the {what} is not a valid configuration document", problems=format_problems(exc)
        ) from None
    problems = references.check(doc)
    if problems:
        raise ValidationFailed(f"the {what} is inconsistent", problems=problems)
    return doc


def normalized_document(data: Any, *, what: str = "configuration") -> dict[str, Any]:
    """Like :func:`document_from_data`, but returns normalised plain data (fast path)."""
    try:
        result = fast.validate_document(data)
    except ValidationError as exc:
        raise ValidationFailed(
            f"the {what} is not a valid configuration document", problems=format_problems(exc)
        ) from None
    check_references(result, what=what)
    return result


def check_references(
    data: dict[str, Any], *, what: str = "configuration", memo: IdentityMemo | None = None
) -> None:
    """Raise ValidationFailed listing every broken cross-reference of structurally valid data
    (``memo``: see :func:`references.check`)."""
    problems = references.check(data, memo=memo)
    if problems:
        raise ValidationFailed(f"the {what} is inconsistent", problems=problems)


def normalized_sections(data: Any, *, what: str = "configuration") -> dict[str, Any]:
    """Like :func:`sections_from_data`, but returns normalised plain data (fast path)."""
    try:
        return fast.validate_sections(data)
    except ValidationError as exc:
        raise ValidationFailed(
            f"the {what} does not have valid configuration sections",
            problems=format_problems(exc),
        ) from None


def sections_from_data(data: Any, *, what: str = "configuration") -> ConfigSections:
    """Structure only: references are checked once the sections meet a document."""
    try:
        sections = ConfigSections.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(
            f"the {what} does not have valid configuration sections", problems=format_problems(exc)
        ) from None
    require_sections(sections.present(), what=what)
    return sections


def require_sections(present: Sequence[str], *, what: str = "configuration") -> None:
    """Refuse a file of sections that carries none (names of the sections present)."""
    if not present:
        raise ValidationFailed(
            f"the {what} contains no configuration section",
            hint="a file holds a whole document or some of its sections, "
            'e.g. {"checkboxes": [...]}',
        )


def load_file(path: Path) -> Mapping[str, Any]:
    """Read a JSON or YAML file (by extension; JSON is also valid YAML)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValidationFailed(f"cannot read {path}: {exc.strerror}") from None
    try:
        if path.suffix.lower() in {".yaml", ".yml"}:
            data = yaml.safe_load(raw.decode("utf-8"))
        else:
            data = orjson.loads(raw)
    except (orjson.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        kind = "YAML" if path.suffix.lower() in {".yaml", ".yml"} else "JSON"
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValidationFailed(
            f"{path} is not valid {kind}: {first_line}",
            hint="save the file as UTF-8 JSON (.json) or YAML (.yaml)",
        ) from None
    if not isinstance(data, Mapping):
        raise ValidationFailed(f"{path} must hold an object of sections, not {type(data).__name__}")
    return data
